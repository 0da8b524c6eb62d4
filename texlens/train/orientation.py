"""Training the orientation classifier: stratified K-fold, early stopping, the final model.

Labels. Real use is imbalanced (``data.prior``: mostly upright). Each image is stored
upright and turned when a batch is made, by an angle drawn afresh every epoch, so that
the rare turned images are not drowned out in one of two ways (``train.balance``):
``sampler`` draws the four angles equally often (a class-balanced sampler over the
rotations we make), ``loss`` draws them with the real-use shares and weights the loss by
their inverse. Either way the model learns as if the angles were equally common;
:class:`texlens.orientation.Orienter` puts the prior back when it decides. The sampler
learns faster: with the weighted loss a turned image is 5% of the draws at 17 times the
weight, so its gradient is much noisier for the same number of images (measured: after
two epochs of 3,000 images, balanced validation loss 1.10 with the weighted loss, 0.87
with the sampler; chance is 1.39).
Validation angles are drawn once, with the prior, and kept.

Folds. Every image has a fixed angle drawn with the prior; folds keep equal expressions
together (CROHME has one expression from many writers) and spread each (angle, source)
stratum evenly, so each fold's validation part has the real-use mix of angles and of
printed and handwritten images.

Crops. With ``train.crop`` the model trains on squares around random ink of the canvas
instead of whole canvases: it pools over inked cells only, so it reads whole canvases
just the same, and a 64-pixel crop costs a quarter of a 128-pixel canvas. On one CPU
core the whole-canvas model learned sideways versus level (the aspect ratio) at once but
upright versus upside down hardly at all in the minutes it had (3 folds of 2 minutes:
macro F1 0.39 from scratch, 0.52 from handwritten-small's frozen stem, the aspect
heuristic 0.37); crops give it four times the samples.

Early stopping watches the balanced validation loss (the mean over angles of each angle's
mean cross-entropy), which does not depend on how common each angle is in the
validation part; the weights of the best epoch are kept.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from torch import nn

from texlens import metrics
from texlens.config import ConfigError, OrientationConfig, OrientationModelConfig
from texlens.data.orientation import (
    ANGLES,
    OrientationSet,
    check_prior,
    draw_labels,
    ink_crops,
    rotate,
)
from texlens.models.orientation import build_orientation_model
from texlens.orientation import (
    Orienter,
    Scorer,
    angle_log_probs,
    aspect_heuristic,
    save_orienter,
)

Log = Callable[[str], None]
BALANCE = ("sampler", "loss")


def stratified_group_folds(strata: Sequence[Hashable], groups: Sequence[str], k: int,
                           seed: int = 0) -> np.ndarray:
    """The fold (0..k-1) of each sample: all samples of a group in one fold, each stratum
    spread as evenly as the groups allow. Groups are dealt largest first (in a seeded
    order among equals) to the fold that holds the fewest of their strata so far."""
    if k < 2:
        raise ConfigError(f"k-fold needs at least 2 folds, not {k}")
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    if len(members) < k:
        raise ConfigError(f"{len(members)} expressions cannot make {k} folds")
    rng = np.random.default_rng(seed)
    names = list(members)
    order = sorted(rng.permutation(len(names)), key=lambda j: -len(members[names[j]]))
    count: dict[tuple[Hashable, int], int] = defaultdict(int)
    size = [0] * k
    folds = np.zeros(len(groups), np.int64)
    for j in order:
        idx = members[names[j]]
        f = min(range(k), key=lambda f: (sum(count[strata[i], f] for i in idx), size[f], f))
        for i in idx:
            folds[i] = f
            count[strata[i], f] += 1
        size[f] += len(idx)
    return folds


def class_weights(prior: Sequence[float]) -> torch.Tensor:
    """Inverse shares, scaled so a sample weighs 1 on average under the prior."""
    p = check_prior(prior)
    return torch.tensor(1.0 / (len(p) * p), dtype=torch.float32)


def to_batch(canvases: np.ndarray, labels: np.ndarray) -> torch.Tensor:
    """Upright (B, S, S) uint8 canvases turned by their labels -> (B, 1, S, S) in [0, 1]."""
    turned = np.stack([rotate(c, ANGLES[y]) for c, y in zip(canvases, labels, strict=True)])
    return torch.from_numpy(turned)[:, None].float() / 255.0


def build(cfg: OrientationConfig) -> tuple[nn.Module, OrientationModelConfig, list[nn.Module]]:
    """The model, its config as built (a stem's size comes from ``init_from``) and the
    frozen layers."""
    mcfg = copy.deepcopy(cfg.model)
    t = cfg.train
    if t.freeze and mcfg.arch != "stem":
        raise ConfigError("orientation train.freeze needs model.arch: stem")
    if t.init_from and mcfg.arch != "stem":
        # Fine-tuning an orientation model of the same shape, e.g. on whole canvases after
        # training on crops: a crop never shows the model a whole formula's layout.
        start = Orienter.load(t.init_from, tta=False)
        if start.cfg != mcfg:
            raise ConfigError(f"orientation train.init_from: {t.init_from} is a "
                              f"{start.cfg}, the config asks for a {mcfg}")
        return start.model.train(), mcfg, []
    state = None
    if t.init_from:
        from texlens.train.transfer import pretrained
        rcfg, _, state, _ = pretrained(t.init_from)
        if rcfg.model.backbone != "shallow" or rcfg.model.encoder != "satrn":
            raise ConfigError(f"orientation train.init_from: {t.init_from} has no shallow CNN "
                              f"stem (backbone {rcfg.model.backbone}, encoder "
                              f"{rcfg.model.encoder})")
        mcfg.stem_width, mcfg.stem_d_model = rcfg.model.cnn_width, rcfg.model.d_model
    model = build_orientation_model(mcfg)
    if state is not None:
        stem = {k[len("cnn."):]: v.float() for k, v in state.items() if k.startswith("cnn.")}
        model.cnn.load_state_dict(stem)
    frozen: list[nn.Module] = []
    if t.freeze:
        body = model.cnn.body
        if not 0 < t.freeze <= len(body):
            raise ConfigError(f"orientation train.freeze: 0..{len(body)} stem layers, "
                              f"not {t.freeze}")
        frozen = list(body[:t.freeze])
        for p in body[:t.freeze].parameters():
            p.requires_grad_(False)
    return model, mcfg, frozen


@torch.no_grad()
def score(model: nn.Module, canvases: np.ndarray, labels: np.ndarray,
          batch_size: int = 128) -> dict:
    """One look per image (no test-time rotations): balanced loss, accuracy, macro F1 and
    the confusion matrix (rows: true angle)."""
    model.eval()
    logits = torch.cat([model(to_batch(canvases[s:s + batch_size], labels[s:s + batch_size]))
                        for s in range(0, len(labels), batch_size)])
    y = torch.from_numpy(np.asarray(labels))
    ce = F.cross_entropy(logits, y, reduction="none")
    loss = float(np.mean([ce[y == c].mean() for c in range(len(ANGLES)) if (y == c).any()]))
    return {"loss": loss, **classification(labels, logits.argmax(-1).numpy())}


def classification(truth: Sequence[int], pred: Sequence[int]) -> dict:
    """Accuracy, macro F1 and confusion matrix of class indices."""
    t, p = np.asarray(truth), np.asarray(pred)
    return {"n": int(t.size), "accuracy": float((t == p).mean()) if t.size else 0.0,
            "macro_f1": metrics.macro_f1(t, p, len(ANGLES)),
            "confusion": metrics.confusion_matrix(t, p, len(ANGLES)).tolist()}


def heuristic_scores(shapes: np.ndarray, labels: np.ndarray) -> dict:
    """The aspect-ratio baseline on upright image shapes turned by ``labels``."""
    pred = []
    for (h, w), y in zip(shapes, labels, strict=True):
        hw = (w, h) if ANGLES[y] in (90, 270) else (h, w)
        pred.append(ANGLES.index(aspect_heuristic(np.empty(hw, np.uint8))))
    return classification(labels, pred)


def _progress() -> Progress:
    console = Console(stderr=True)
    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                    transient=True, disable=not console.is_terminal)


def fit(cfg: OrientationConfig, train: OrientationSet, val: OrientationSet,
        val_labels: np.ndarray, log: Log = print
        ) -> tuple[nn.Module, OrientationModelConfig, list[dict]]:
    """Train until the balanced validation loss stops falling (``train.patience`` epochs),
    ``train.max_epochs`` or ``train.max_time_min``; returns the best epoch's model."""
    t = cfg.train
    torch.manual_seed(t.seed)
    torch.set_num_threads(t.threads)
    rng = np.random.default_rng(t.seed)
    model, mcfg, frozen = build(cfg)
    if t.balance not in BALANCE:
        raise ConfigError(f"orientation train.balance must be one of {', '.join(BALANCE)}, "
                          f"not {t.balance!r}")
    if t.scale < 0 or (t.scale and not t.crop):
        raise ConfigError(f"orientation train.scale must be >= 0, and needs train.crop; got "
                          f"scale {t.scale}, crop {t.crop}")
    draw = cfg.data.prior if t.balance == "loss" else [1 / len(ANGLES)] * len(ANGLES)
    weights = class_weights(cfg.data.prior) if t.balance == "loss" else None
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.3, patience=2)
    deadline = time.monotonic() + 60 * t.max_time_min if t.max_time_min > 0 else float("inf")
    best, best_state, stale, history = float("inf"), None, 0, []
    for epoch in range(t.max_epochs):
        model.train()
        for m in frozen:  # frozen layers keep their BatchNorm statistics too
            m.eval()
        labels = draw_labels(len(train), draw, rng)
        order = rng.permutation(len(train))
        total, seen, t0 = 0.0, 0, time.monotonic()
        with _progress() as bar:
            task = bar.add_task(f"epoch {epoch}", total=len(order))
            for s in range(0, len(order), t.batch_size):
                idx = order[s:s + t.batch_size]
                y = torch.from_numpy(labels[idx])
                x = train.canvases[idx]
                if t.crop:
                    x = ink_crops(x, t.crop, rng, t.scale)
                loss = F.cross_entropy(model(to_batch(x, labels[idx])), y, weight=weights)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                seen += len(idx)
                bar.advance(task, len(idx))
                if time.monotonic() > deadline:
                    break
        v = score(model, val.canvases, val_labels)
        history.append({"epoch": epoch, "train_loss": total / max(seen, 1), "seen": seen,
                        "seconds": round(time.monotonic() - t0, 1), "lr": opt.param_groups[0]["lr"],
                        **{f"val_{k}": v[k] for k in ("loss", "accuracy", "macro_f1")}})
        log(f"epoch {epoch}: train loss {total / max(seen, 1):.4f} ({seen} images, "
            f"{time.monotonic() - t0:.0f} s), val loss {v['loss']:.4f}, accuracy "
            f"{v['accuracy']:.4f}, macro F1 {v['macro_f1']:.4f}")
        if v["loss"] < best - 1e-4:
            best, best_state, stale = v["loss"], copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
        sched.step(v["loss"])
        if stale >= t.patience:
            log(f"early stop: no better validation loss for {stale} epochs")
            break
        if time.monotonic() > deadline:
            log(f"time limit of {t.max_time_min:g} min reached")
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), mcfg, history


def _summary(rows: list[dict], keys: Sequence[str]) -> dict:
    # Population standard deviation: the spread of these folds, not an estimate.
    return {k: {"mean": statistics.fmean(r[k] for r in rows),
                "std": statistics.pstdev([r[k] for r in rows])} for k in keys}


def kfold_orienter(cfg: OrientationConfig, data: OrientationSet, k: int, out: str | Path,
                   log: Log = print) -> dict:
    """Train and score k fold models; writes OUT/kfold.json and returns what it holds."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = draw_labels(len(data), cfg.data.prior, np.random.default_rng(cfg.train.seed))
    folds = stratified_group_folds(list(zip(labels.tolist(), data.source.tolist(),
                                            strict=True)), data.groups, k, cfg.train.seed)
    per_fold = []
    for i in range(k):
        tr, va = np.flatnonzero(folds != i), np.flatnonzero(folds == i)
        log(f"fold {i}: training on {len(tr)} images, validating on {len(va)}")
        t0 = time.monotonic()
        model, _, history = fit(cfg, data.subset(tr), data.subset(va), labels[va], log)
        s = score(model, data.canvases[va], labels[va])
        per_fold.append({"fold": i, "n_train": len(tr), "seconds": round(time.monotonic() - t0),
                         "epochs": len(history), **s,
                         "heuristic": heuristic_scores(data.shapes[va], labels[va]),
                         "history": history})
    result = {"config": cfg.name, "arch": cfg.model.arch, "init_from": cfg.train.init_from,
              "freeze": cfg.train.freeze, "folds": k, "n": len(data),
              "mean": _summary(per_fold, ("accuracy", "macro_f1")),
              "heuristic": _summary([f["heuristic"] for f in per_fold],
                                    ("accuracy", "macro_f1")),
              "per_fold": per_fold}
    (out / "kfold.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def train_final(cfg: OrientationConfig, data: OrientationSet, out: str | Path,
                log: Log = print) -> dict:
    """Train on the images whose expressions are on the "train" side of the split rule,
    stop early on the "val" side seen at all four angles, and save the model to ``out``
    (float16, atomically). Returns the training summary stored with it."""
    val_idx = [i for i, s in enumerate(data.split) if s == "val"]
    tr_idx = [i for i, s in enumerate(data.split) if s == "train"]
    if not val_idx or not tr_idx:
        raise ConfigError(f"orientation data: {len(tr_idx)} training and {len(val_idx)} "
                          "validation images; both are needed")
    n = len(ANGLES)
    val = data.subset(np.repeat(val_idx, n))
    val_labels = np.tile(np.arange(n), len(val_idx))
    log(f"final model: training on {len(tr_idx)} images, stopping early on {len(val_idx)} "
        f"at {n} angles")
    model, mcfg, history = fit(cfg, data.subset(tr_idx), val, val_labels, log)
    best = min(history, key=lambda h: h["val_loss"])
    summary = {"config": cfg.name, "n_train": len(tr_idx), "n_val": len(val_idx),
               "n_printed": int((data.source == 0).sum()),
               "n_handwritten": int((data.source == 1).sum()),
               "init_from": cfg.train.init_from, "freeze": cfg.train.freeze,
               "epochs": len(history), "best_epoch": best["epoch"],
               "val_accuracy": best["val_accuracy"], "val_macro_f1": best["val_macro_f1"]}
    save_orienter(out, model, mcfg, cfg.data.prior, extra={"trained": summary})
    return summary


# -- the encoder scorer (texlens.models.orientation.EncoderScorer) -----------------------

SCORER_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def scorer_features(scorer: Scorer, grays: Sequence[np.ndarray],
                    progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """(N, 4 turns, 3 d) pooled features of every image turned by 0/90/180/270 degrees."""
    out = []
    for g in grays:
        out.append(scorer.turn_features(g))
        if progress:
            progress(1)
    return torch.stack(out) if out else torch.zeros(0, len(ANGLES), scorer.net.mu.numel())


def fit_scorer(scorer: Scorer, features: torch.Tensor, seed: int = 0, epochs: int = 60,
               batch_size: int = 128, lr: float = 1e-3) -> float:
    """Train the head on (N, 4, 3 d) features, the upright turn (index 0) the target of a
    softmax over each image's four turns; the encoder stays frozen. Sets the head's input
    standardisation from these features. Returns the training accuracy."""
    torch.manual_seed(seed)
    net = scorer.net
    flat = features.reshape(-1, features.shape[-1])
    net.mu.copy_(flat.mean(0))
    net.sd.copy_(flat.std(0) + 1e-6)
    opt = torch.optim.AdamW(net.head.parameters(), lr, weight_decay=1e-2)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(features)).split(batch_size):
            logits = net.score(features[idx])
            loss = F.cross_entropy(logits, torch.zeros(len(idx), dtype=torch.long))
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return float((net.score(features).argmax(-1) == 0).float().mean())


def choose_scorer_weight(orienter: Orienter, grays: Sequence[np.ndarray],
                         scorer_logp: np.ndarray) -> tuple[float, list[dict]]:
    """The weight of the scorer that gives the best macro F1 on ``grays`` (validation
    images, upright) seen at all four angles, with the orienter's prior and test-time
    rotations. ``scorer_logp``: (N, 4) the scorer's log-probabilities of the upright images;
    both opinions are rotation-equivariant, so a turned copy's are a cyclic shift.
    Ties go to the smaller weight."""
    n = len(ANGLES)
    turned = [rotate(g, a) for g in grays for a in ANGLES]
    cls = orienter.evidence(orienter.looks(turned))
    # Image i turned by ANGLES[j] is at angle j: its evidence for angle a is the upright
    # image's for angle a - j.
    shift = (np.arange(n)[None, :] - np.arange(n)[:, None]) % n  # [j, a] -> a - j
    scr = scorer_logp[:, shift].reshape(len(grays) * n, n)
    truth = np.tile(np.arange(n), len(grays))
    rows = []
    for w in SCORER_WEIGHTS:
        pred = orienter.decide(cls + w * scr).argmax(-1)
        rows.append({"weight": w, **{k: v for k, v in classification(truth, pred).items()
                                     if k != "confusion"}})
    best = max(rows, key=lambda r: (round(r["macro_f1"], 6), -r["weight"]))
    return best["weight"], rows


def scorer_from(recogniser: str | Path) -> Scorer:
    """A scorer (untrained head) on a SATRN recogniser's encoder, frozen."""
    from texlens.checkpoint import load_model
    from texlens.models.orientation import EncoderScorer
    from texlens.recognizer import resolve_model
    model, cfg, _ = load_model(resolve_model(recogniser))
    if cfg.model.arch != "satrn" or cfg.model.encoder != "satrn":
        raise ConfigError(f"{recogniser}: the scorer needs a SATRN recogniser (model.arch "
                          f"satrn, encoder satrn), not {cfg.model.arch}/{cfg.model.encoder}")
    net = EncoderScorer(cfg.model)
    encoder = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}
    net.recogniser.load_state_dict(encoder)  # strict: every encoder weight, nothing else
    return Scorer(net.eval(), cfg, 1.0, str(recogniser))


def _images(dirs: Sequence[str | Path], n: int, exclude: set[str], rng: np.random.Generator,
            log: Log) -> list[np.ndarray]:
    """Up to ``n`` images drawn from ``dirs`` (all when 0), leaving out the expressions in
    ``exclude``; an unreadable image is reported and skipped."""
    from texlens.data.datasets import read_layout
    from texlens.data.image import ImageError, load_image
    from texlens.data.splits import expression
    samples = [s for d in dirs for s in read_layout(d)[0]
               if expression(s.tokens) not in exclude]
    if n and n < len(samples):
        samples = [samples[i] for i in sorted(rng.choice(len(samples), n, replace=False))]
    grays = []
    for s in samples:
        try:
            grays.append(load_image(s.image))
        except ImageError as e:
            log(f"skipped: {s.where}: {e}")
    return grays


def make_scorer(orienter_path: str | Path, recogniser: str, train: Sequence[str | Path],
                n_train: int, val: str | Path, out: str | Path, seed: int = 0,
                log: Log = print) -> dict:
    """Train an encoder scorer on ``n_train`` images of ``train`` (never an expression of
    ``val``), choose its weight on ``val`` and write the orienter with it to ``out``."""
    from texlens.data.datasets import read_layout
    from texlens.data.splits import expression
    orienter = Orienter.load(orienter_path)
    scorer = scorer_from(recogniser)
    rng = np.random.default_rng(seed)
    held = {expression(s.tokens) for s in read_layout(val)[0]}
    train_grays = _images(train, n_train, held, rng, log)
    val_grays = _images([val], 0, set(), rng, log)
    with _progress() as prog:
        task = prog.add_task("encoder features", total=len(train_grays) + len(val_grays))
        f_train = scorer_features(scorer, train_grays, lambda k: prog.advance(task, k))
        f_val = scorer_features(scorer, val_grays, lambda k: prog.advance(task, k))
    accuracy = fit_scorer(scorer, f_train, seed)
    with torch.no_grad():
        upright = angle_log_probs(scorer.net.score(f_val).numpy())
    scorer.weight, rows = choose_scorer_weight(orienter, val_grays, upright)
    for r in rows:
        log(f"scorer weight {r['weight']:g}: validation macro F1 {r['macro_f1']:.4f}")
    orienter.scorer = scorer
    summary = {"recogniser": recogniser, "n_train": len(train_grays),
               "train": list(map(str, train)), "train_accuracy": accuracy, "val": str(val),
               "n_val": len(val_grays), "weight": scorer.weight, "grid": rows}
    orienter.save(out, extra={"scorer_trained": summary})
    return summary

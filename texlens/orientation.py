"""Which way up is a formula image? ``Orienter.load().upright(image)``.

The shipped ``orientation-small`` (texlens/weights/orientation-small.pt) tells whether an
image was turned by 0, 90, 180 or 270 degrees counter-clockwise
(:mod:`texlens.data.orientation` defines the angles), and ``upright`` turns it back.
``Recognizer.load(..., auto_rotate=True)`` and ``texlens predict/evaluate --auto-rotate``
run it on every image before recognition.

Two things make its answers steadier than one look at the image:

* test-time rotations (``tta``): the classifier also sees the image turned by 90, 180
  and 270 degrees; an image at angle a turned by k more is at angle a + k, so the four
  looks vote on one answer (their log-probabilities summed at matching angles);
* the prior: it was trained as if the four angles were equally common (balanced
  sampling of the rotations, or a class-weighted loss), but most inputs are upright.
  Multiplying its probabilities by the real-use shares (``prior``, stored with the
  weights) turns an upright image only when the evidence is strong, which keeps the
  cost on upright inputs low. ``prior=None``
  decides as if the angles were equally likely.

A second opinion can be stored with the classifier (``scorer``, an
:class:`texlens.models.orientation.EncoderScorer`): a recogniser's frozen encoder reads
each quarter turn of the image at the recogniser's own scale, and a small head scores how
upright each looks. Its log-probability for the turn that undoes an angle, times its
``weight`` (chosen on validation), is added to the classifier's evidence for that
angle, before the prior.

How much of the image it sees (``view``, stored with the weights): 0 is the square
canvas it was trained on (:func:`texlens.data.orientation.canvas`, the middle 128 px of
a long formula); a length L shows the whole formula up to L px at the same symbol size
(:func:`texlens.data.orientation.view`), more of the formula voting.

And one thing the recogniser adds (``reread``, used by ``Recognizer`` with
``auto_rotate``): the classifier's hard cases are an image and its half turn (180 read as
0, 90 as 270), where a recogniser tells sense from nonsense. When the classifier's best
angle has less than ``reread_below`` of the probability, the recogniser reads the image at
the classifier's ``reread_top`` likeliest angles (2: the best and the runner-up, mostly its
half turn; up to all 4), and each angle's score becomes its log-probability plus
``reread`` times the mean log-probability of the reading's tokens. The three numbers are
chosen on validation (benchmarks/orientation_rule.py) and stored with the weights; a file
without ``top`` (before 2026-12-05, fifth session) re-reads two.

A checkpoint is ``{"texlens-orientation": {format, model config, prior, ...},
"state_dict": ...}``, written atomically like the recogniser's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from texlens.checkpoint import CheckpointError, atomic_save, find_weights
from texlens.config import (
    Config,
    ConfigError,
    OrientationModelConfig,
    config_from_dict,
    config_to_dict,
    orientation_model_from_dict,
)
from texlens.data.image import load_image
from texlens.data.orientation import ANGLES, canvas, check_prior, rotate, view
from texlens.data.transforms import preprocess, to_tensor_array
from texlens.models.orientation import EncoderScorer, build_orientation_model

FORMAT = "texlens-orientation-v1"
KEY = "texlens-orientation"
DEFAULT_ORIENTER = "orientation-small"

ImageInput = str | Path | bytes | np.ndarray


def aspect_heuristic(gray: np.ndarray) -> int:
    """The baseline: a taller than wide image is on its side (90 degrees; it cannot tell 90
    from 270), anything else is upright. Formulas are mostly wider than tall."""
    h, w = gray.shape[:2]
    return 90 if h > w else 0


def combine_rotations(logp: np.ndarray) -> np.ndarray:
    """(N, 4 turns, 4 classes) log-probabilities of each image turned k more quarter turns
    -> (N, 4): the summed evidence for each angle of the image as given. Turned by k, an
    image at angle a is at angle a + k, so class (a + k) mod 4 of look k speaks for a."""
    n = len(ANGLES)
    cls = (np.arange(n)[:, None] + np.arange(n)[None, :]) % n  # [a, k] -> class of look k
    return logp[:, np.arange(n)[None, :], cls].sum(-1)


def reread_choice(probs: np.ndarray, reading: np.ndarray, weight: float, below: float,
                  top: int) -> np.ndarray:
    """The re-reading rule, vectorised: (..., 4) angle probabilities and the recogniser's
    mean token log-probability of its reading at each angle -> (...) index of the angle
    chosen. Where the best angle has ``below`` or more (or ``weight`` is 0) it stands;
    elsewhere the ``top`` likeliest angles compete on log-probability plus ``weight`` times
    the reading's score (other angles' readings are never looked at)."""
    rank = np.argsort(-probs, -1, kind="stable")
    scored = np.log(np.clip(probs, 1e-12, 1)) + weight * reading
    read = np.take_along_axis(scored, rank[..., :top], -1)
    pick = np.take_along_axis(rank, read.argmax(-1)[..., None], -1)[..., 0]
    unsure = (probs.max(-1) < below) & (weight > 0)
    return np.where(unsure, pick, rank[..., 0])


def resolve_orienter(name_or_path: str | Path) -> Path:
    found = find_weights(name_or_path)
    if found is not None:
        return found
    raise CheckpointError(f"{name_or_path}: no such orientation model file or shipped "
                          f"orientation model (shipped: {DEFAULT_ORIENTER})")


def _half(module: nn.Module, half: bool) -> dict:
    return {k: (v.half() if half and v.is_floating_point() else v)
            for k, v in module.state_dict().items()}


def save_orienter(path: str | Path, model: nn.Module, cfg: OrientationModelConfig,
                  prior: Sequence[float] | None, extra: dict | None = None,
                  half: bool = True, scorer: Scorer | None = None) -> None:
    """An inference checkpoint; ``half`` stores float16 weights (the shipped file)."""
    info = {"format": FORMAT, "model": dataclasses.asdict(cfg),
            "prior": None if prior is None else [float(p) for p in prior], **(extra or {})}
    raw = {KEY: info, "state_dict": _half(model, half)}
    if scorer is not None:
        info["scorer"] = {"recogniser": config_to_dict(scorer.cfg), "weight": scorer.weight,
                          "hidden": scorer.net.head[0].out_features, "from": scorer.source}
        raw["scorer_state"] = _half(scorer.net, half)
    atomic_save(raw, path)


@dataclasses.dataclass
class Scorer:
    """An EncoderScorer with the recogniser config whose preprocessing it reads, and its
    weight in the decision."""

    net: EncoderScorer
    cfg: Config  # the recogniser's: model (the encoder's shape) and data (preprocessing)
    weight: float = 1.0
    source: str = ""  # the recogniser it was made from, for the record

    @torch.no_grad()
    def turn_features(self, gray: np.ndarray) -> torch.Tensor:
        """(4, 3 d) pooled encoder features of ``gray`` turned by 0/90/180/270 degrees."""
        return torch.stack([self.net.pooled(torch.from_numpy(to_tensor_array(
            preprocess(rotate(gray, a), self.cfg.data)))[None]) for a in ANGLES])

    @torch.no_grad()
    def turn_logits(self, gray: np.ndarray) -> np.ndarray:
        """(4,) upright scores of ``gray`` turned by 0/90/180/270 degrees."""
        return self.net.score(self.turn_features(gray)).numpy()

    def log_probs(self, grays: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 4) log-probability that each image is at angle a."""
        if not grays:
            return np.zeros((0, len(ANGLES)))
        return angle_log_probs(np.stack([self.turn_logits(g) for g in grays]))


def angle_log_probs(turn_logits: np.ndarray) -> np.ndarray:
    """(N, 4) upright scores of each image turned by 0/90/180/270 -> (N, 4) log-probability
    that the image is at angle a, i.e. that turning it by -a makes it upright."""
    z = turn_logits - turn_logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return logp[:, [(-k) % len(ANGLES) for k in range(len(ANGLES))]]


def load_scorer(info: dict, state: dict) -> Scorer:
    cfg = config_from_dict(info["recogniser"])
    net = EncoderScorer(cfg.model, int(info.get("hidden", 64)))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return Scorer(net.eval(), cfg, float(info["weight"]), str(info.get("from", "")))


class Orienter:
    """An orientation classifier with its canvas size and decision rule."""

    def __init__(self, model: nn.Module, cfg: OrientationModelConfig,
                 prior: Sequence[float] | None = None, tta: bool = True, name: str = "",
                 info: dict | None = None, reread: float = 0.0, reread_below: float = 1.0,
                 scorer: Scorer | None = None, view: int = 0, reread_top: int = 2):
        self.model, self.cfg, self.tta, self.name = model.eval(), cfg, tta, name
        if view < 0 or view % 8:
            raise ValueError(f"view must be 0 (the training canvas) or a positive multiple "
                             f"of 8 px, got {view}")
        self.view = int(view)
        self.scorer = scorer
        self.prior = None if prior is None else check_prior(prior)
        self.info = info or {}
        if reread < 0 or not 0 <= reread_below <= 1:
            raise ValueError(f"reread must be >= 0 and reread_below in [0, 1], got {reread}, "
                             f"{reread_below}")
        self.reread, self.reread_below = float(reread), float(reread_below)
        if not 2 <= reread_top <= len(ANGLES):
            raise ValueError(f"reread_top must be 2 to {len(ANGLES)} angles, got {reread_top}")
        self.reread_top = int(reread_top)

    @classmethod
    def load(cls, name_or_path: str | Path = DEFAULT_ORIENTER, tta: bool = True) -> Orienter:
        """A shipped name (``orientation-small``) or a checkpoint path."""
        path = resolve_orienter(name_or_path)
        try:
            raw = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
            raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(e).__name__})"
                                  ) from None
        info = raw.get(KEY) if isinstance(raw, dict) else None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            what = ("a recogniser, not an orientation model" if isinstance(raw, dict)
                    and "texlens" in raw else f"no '{FORMAT}' entry")
            raise CheckpointError(f"{path}: not a texlens orientation model ({what})")
        try:
            cfg = orientation_model_from_dict(info["model"])
            model = build_orientation_model(cfg)
            model.load_state_dict({k: v.float() if v.is_floating_point() else v
                                   for k, v in raw["state_dict"].items()})
            rule = info.get("reread", {})
            scorer = (load_scorer(info["scorer"], raw["scorer_state"]) if "scorer" in info
                      else None)
            return cls(model, cfg, info.get("prior"), tta, str(name_or_path), info,
                       rule.get("weight", 0.0), rule.get("below", 1.0), scorer,
                       int(info.get("view", 0)), int(rule.get("top", 2)))
        except (ConfigError, KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{path}: bad orientation model: "
                                  f"{str(e).splitlines()[0]}") from None

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        rule = {"reread": {"weight": self.reread, "below": self.reread_below,
                           "top": self.reread_top},
                "view": self.view}
        info = {k: v for k, v in self.info.items() if k != "scorer"}  # written anew below
        save_orienter(path, self.model, self.cfg,
                      None if self.prior is None else self.prior.tolist(),
                      {**info, **rule, **(extra or {})}, scorer=self.scorer)

    def looks(self, grays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Grayscale images -> what the classifier sees of each (``view``)."""
        if self.view:
            return [view(g, self.view) for g in grays]
        return [canvas(g, self.cfg.canvas) for g in grays]

    @torch.no_grad()
    def evidence(self, looks: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """uint8 canvases or views (:meth:`looks`; any sizes) -> (N, 4) the classifier's
        log-evidence for 0/90/180/270 degrees (summed over the test-time rotations when
        they are on; no prior). Inputs of one shape are batched together."""
        turns = range(len(ANGLES)) if self.tta else range(1)
        out = np.zeros((len(looks), len(turns), len(ANGLES)))
        by_shape: dict[tuple[int, ...], list[tuple[int, int, np.ndarray]]] = {}
        for i, c in enumerate(looks):
            for k in turns:
                r = rotate(c, 90 * k)
                by_shape.setdefault(r.shape, []).append((i, k, r))
        for items in by_shape.values():
            for start in range(0, len(items), batch_size):
                chunk = items[start:start + batch_size]
                x = torch.from_numpy(np.stack([r for _, _, r in chunk])[:, None]).float() / 255
                logp = self.model(x).log_softmax(-1).numpy()
                for (i, k, _), row in zip(chunk, logp, strict=True):
                    out[i, k] = row
        return combine_rotations(out) if self.tta else out[:, 0]

    def scorer_evidence(self, grays: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 4) the scorer's weighted log-probabilities (zeros without a scorer)."""
        if self.scorer is None or self.scorer.weight == 0:
            return np.zeros((len(grays), len(ANGLES)))
        return self.scorer.weight * self.scorer.log_probs(grays)

    def decide(self, evidence: np.ndarray) -> np.ndarray:
        """(N, 4) summed log-evidence -> probabilities, with the prior when it is on."""
        score = evidence + np.log(self.prior) if self.prior is not None else evidence
        score = score - score.max(-1, keepdims=True)
        p = np.exp(score)
        return p / p.sum(-1, keepdims=True)

    def predict(self, images: Sequence[ImageInput], batch_size: int = 64) -> list[int]:
        """Images (paths, bytes, arrays) -> the angle (0, 90, 180, 270) each is turned by,
        counter-clockwise. An image without ink is upright. Raises ImageError naming a
        file that cannot be read."""
        grays = [load_image(im) for im in images]
        angles = [ANGLES[i] for i in self.angle_probs(grays, batch_size).argmax(-1)]
        return [0 if g.max() == g.min() else a for g, a in zip(grays, angles, strict=True)]

    def angle_probs(self, grays: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Grayscale images -> (N, 4) probabilities of 0/90/180/270 degrees."""
        if not grays:
            return np.zeros((0, len(ANGLES)))
        return self.decide(self.evidence(self.looks(grays), batch_size)
                           + self.scorer_evidence(grays))

    def candidates(self, probs: np.ndarray) -> list[int]:
        """Indices of the angles worth a recogniser's reading, best first: the classifier's
        choice alone, or its ``reread_top`` likeliest angles when the choice has less
        than ``reread_below`` (the order of :func:`reread_choice`)."""
        order = [int(i) for i in np.argsort(-probs, kind="stable")]
        if self.reread <= 0 or probs[order[0]] >= self.reread_below:
            return order[:1]
        return order[:self.reread_top]

    def choose(self, probs: np.ndarray, reading: np.ndarray) -> int:
        """(4,) probabilities and reading scores of the :meth:`candidates` (others: any
        value) -> index of the angle the rule picks."""
        return int(reread_choice(probs, reading, self.reread, self.reread_below,
                                 self.reread_top))

    def upright(self, image: ImageInput) -> np.ndarray:
        """The image (loaded as grayscale uint8) turned upright."""
        gray = load_image(image)
        return rotate(gray, -self.predict([gray])[0])

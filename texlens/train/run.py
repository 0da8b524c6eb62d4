"""``texlens train``: data checks, loaders, Lightning Trainer, checkpoints, logs."""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.profilers import AdvancedProfiler, SimpleProfiler
from torch.utils.data import DataLoader

from texlens.checkpoint import TRAIN_FORMULAS, atomic_save, kept_checkpoints, save_model
from texlens.config import Config, ConfigError
from texlens.data.datasets import (
    DatasetError,
    FormulaDataset,
    Sample,
    ScanReport,
    SizeBucketSampler,
    collate,
    read_layout,
    scan_dataset,
)
from texlens.data.splits import among, expression, pack_formulas, seen_formulas
from texlens.data.transforms import input_settings
from texlens.evaluate import list_samples
from texlens.tokens import Vocab
from texlens.train.module import Recognizer
from texlens.train.transfer import (
    Freeze,
    extend_vocab,
    frozen_parameters,
    load_pretrained,
    pretrained,
)


class LastValidation(Callback):
    """Remembers the step of the latest validation, to tell whether the run ended after
    steps that no validation has scored."""

    step = -1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.step = trainer.global_step


class KeepLast(Callback):
    """Keeps the checkpoints of the last ``k`` validations as checkpoints/step<S>.ckpt and
    deletes older ones, for checkpoint averaging. It also fires on validate_final's
    validation, so the weights a run ends with are among them."""

    def __init__(self, run_dir: Path, k: int):
        self.run_dir, self.k = run_dir, k

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.run_dir / "checkpoints" / f"step{trainer.global_step}.ckpt")
        if trainer.is_global_zero:  # files on disk, not memory: a resumed run prunes too
            for old in kept_checkpoints(self.run_dir)[:-self.k]:
                old.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but through a temp file + rename."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        atomic_save(checkpoint, path)


def build_vocab(cfg: Config) -> Vocab:
    """data.vocab if given, else a competition layout's tokens.txt, else the training captions."""
    if cfg.data.vocab:
        return Vocab.from_file(cfg.data.vocab)
    for root in cfg.data.train:
        if (Path(root) / "tokens.txt").is_file():
            return Vocab.from_file(str(Path(root) / "tokens.txt"))
    samples = [s for root in cfg.data.train for s in read_layout(root)[0]]
    return Vocab.build(s.tokens for s in samples)


def checked(roots: list[str], vocab: Vocab, cfg: Config, what: str,
            decode_images: bool = True) -> ScanReport:
    """Scan a split, print every problem, and stop here (before training) if asked to."""
    if not roots:
        raise DatasetError(f"data.{what} lists no dataset directory")
    report = scan_dataset(roots, vocab, cfg.data.max_tokens, decode_images)
    for p in report.problems[:50]:
        print(f"{what}: {p}")
    if report.problems:
        hidden = f" ({len(report.problems) - 50} not shown)" if len(report.problems) > 50 else ""
        print(f"{what}: {report.skipped} bad samples{hidden}")
        if cfg.data.on_error == "stop":
            raise DatasetError(f"data.{what}: {report.skipped} bad samples; fix them or set "
                               "data.on_error=skip")
    if not report.samples:
        raise DatasetError(f"data.{what}: no usable samples in {', '.join(roots)}")
    return report


def shared_formulas(train: Sequence[Sample], val: Sequence[Sample],
                    ancestry: bytes | None = None) -> int:
    """How many validation samples have a formula that a training sample has, or that the
    model started from (``ancestry``: its recorded formulas) was trained on."""
    seen = {expression(s.tokens) for s in train}
    exprs = [expression(s.tokens) for s in val]
    inherited = (seen_formulas(ancestry, exprs) if ancestry else np.zeros(len(exprs), bool))
    return sum(among(e, seen) or bool(i) for e, i in zip(exprs, inherited, strict=True))


# Lightning's profilers by name ("" = none); the report goes to <out_dir>/fit-profile.txt.
PROFILERS = {"": None, "simple": SimpleProfiler, "advanced": AdvancedProfiler}


def make_loader(ds: FormulaDataset, cfg: Config, shuffle: bool, rank: int = 0,
                world: int = 1) -> DataLoader:
    sizes = ds.input_sizes()
    sampler = SizeBucketSampler([w for _, w in sizes], cfg.data.batch_size, shuffle,
                                cfg.train.seed, rank, world, heights=[h for h, _ in sizes])
    if cfg.data.num_workers > 0:
        # Loader processes are the parallelism: OpenCV's own pool (a thread per core in
        # each of a dozen processes) would crowd out the process that feeds the GPU. Set here,
        # before the loader forks: set in a forked worker, it waits forever on the pool
        # threads of its parent, which a fork does not copy.
        cv2.setNumThreads(1)
    return DataLoader(ds, batch_sampler=sampler,
                      collate_fn=partial(collate, multiple=cfg.data.pad_multiple),
                      num_workers=cfg.data.num_workers,
                      persistent_workers=cfg.data.num_workers > 0)


def validate_final(trainer: L.Trainer, lit: Recognizer, val_loader: DataLoader,
                   best_cb: ModelCheckpoint, last_cb: ModelCheckpoint) -> None:
    """Score the final weights when the run stopped between validations (max_steps or
    max_time mid-interval) and checkpoint them like a scheduled validation would: as
    last.ckpt, and as best.ckpt if they beat it. Otherwise the last steps, where the
    learning rate has annealed, would be thrown away."""
    trainer.validate(lit, val_loader, verbose=False)
    score = float(trainer.callback_metrics["val/sentence_acc"])
    print(f"final validation at step {trainer.global_step}: sentence accuracy {score:.4f}")
    last = Path(last_cb.dirpath) / "last.ckpt"
    trainer.save_checkpoint(last)
    last_cb.best_model_path = str(last)
    if best_cb.best_model_score is None or score > float(best_cb.best_model_score):
        best = Path(best_cb.dirpath) / "best.ckpt"
        trainer.save_checkpoint(best)
        best_cb.best_model_path, best_cb.best_model_score = str(best), torch.tensor(score)


def train(cfg: Config, resume: str | None = None, devices: int | str = 1, num_nodes: int = 1,
          strategy: str = "auto", accelerator: str = "auto", *,
          train_samples: Sequence[Sample] | None = None,
          val_samples: Sequence[Sample] | None = None,
          callbacks: Sequence[Callback] = ()) -> Path:
    """Train from ``cfg``; returns the path of the exported best model.

    ``train_samples``/``val_samples``, already checked against the vocabulary (k-fold
    splits), replace scanning data.train/data.val; the vocabulary still comes from the
    config. ``callbacks`` are added to the Trainer's (hyper-parameter search pruning).
    """
    if cfg.data.on_error not in ("skip", "stop"):
        raise DatasetError(f"data.on_error must be skip or stop, not {cfg.data.on_error!r}")
    if cfg.train.keep_checkpoints < 0:
        raise ConfigError(f"train.keep_checkpoints must be 0 or more, not "
                          f"{cfg.train.keep_checkpoints}")
    if cfg.train.profiler not in PROFILERS:
        raise ConfigError(f"train.profiler must be one of {', '.join(map(repr, PROFILERS))}, "
                          f"not {cfg.train.profiler!r}")
    torch.set_num_threads(cfg.train.threads)
    L.seed_everything(cfg.train.seed, workers=True)
    out = Path(cfg.train.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = build_vocab(cfg)
    init = None
    # The formulas a model learned from, its ancestors' included; an ancestor that did not
    # record them leaves the set unknown (None) rather than wrongly small.
    ancestry: bytes | None = b""
    if cfg.train.init_from:
        src_cfg, src_vocab, state, ancestry = pretrained(cfg.train.init_from)
        src_in, new_in = input_settings(src_cfg.data), input_settings(cfg.data)
        if src_in != new_in:  # right when moving to new data; a slip when fine-tuning
            diff = ", ".join(f"{k} {src_in[k]} -> {new_in[k]}" for k in src_in
                             if src_in[k] != new_in[k])
            print(f"init_from {cfg.train.init_from}: its inputs were preprocessed "
                  f"differently ({diff})")
        if not cfg.data.vocab:  # keep the pre-trained ids; append what the new data adds
            vocab = extend_vocab(src_vocab, [vocab.itos])
        init = (state, src_vocab)
    if train_samples is None:
        train_samples = checked(cfg.data.train, vocab, cfg, "train").samples
    lost: list[Sample] = []  # bad validation samples: scored as wrong, as evaluate does
    if val_samples is None:
        val_samples = checked(cfg.data.val, vocab, cfg, "val").samples
        kept = {s.where for s in val_samples}
        lost = [s for root in cfg.data.val for s in list_samples(root)[0]
                if s.where not in kept]
    if not train_samples or not val_samples:
        raise DatasetError("no training or no validation samples given")
    pool = list(val_samples) + lost
    if cfg.data.val_limit and len(pool) > cfg.data.val_limit:
        pool = random.Random(0).sample(pool, cfg.data.val_limit)
    bad = {s.where for s in lost}
    val_samples = [s for s in pool if s.where not in bad]
    lost = [s for s in pool if s.where in bad]
    print(f"train: {len(train_samples)} samples, val: {len(val_samples)}"
          f"{f' (+{len(lost)} bad, counted wrong)' if lost else ''}, vocab: {len(vocab)} tokens")
    seen = shared_formulas(train_samples, pool, ancestry)
    if seen:  # a warning, not an error: data made before the split rule was one still trains
        print(f"val: {seen} of {len(pool)} lines have a formula of the training data (or of "
              "the model it starts from), so validation is not held out; make the sets with "
              "one split rule (texlens/data/splits.py)")
    train_ds = FormulaDataset(train_samples, vocab, cfg.data, train=True)
    val_ds = FormulaDataset(val_samples, vocab, cfg.data)
    lit = Recognizer(cfg, vocab)
    lit.val_unloadable = [s.tokens for s in lost]
    lit.train_formulas = (None if ancestry is None else
                          pack_formulas((expression(s.tokens) for s in train_samples), ancestry))
    if init is not None and resume is None:  # on resume the checkpoint's weights win anyway
        carried = load_pretrained(lit.model, init[0], init[1], vocab, cfg.train.init_from)
        print(f"init_from {cfg.train.init_from}: weights loaded, {carried}/{len(vocab)} "
              "token rows carried over")
    ckpt_cb = ModelCheckpoint(dirpath=out / "checkpoints", filename="best",
                              monitor="val/sentence_acc", mode="max",
                              enable_version_counter=False)
    # Lightning's save_last only rewrites last.ckpt when the monitored metric improves, so
    # it went stale on a plateau; this callback rewrites it after every validation.
    last_cb = ModelCheckpoint(dirpath=out / "checkpoints", filename="last", monitor=None,
                              save_top_k=1, enable_version_counter=False)
    last_val = LastValidation()
    callbacks = [ckpt_cb, last_cb, last_val, LearningRateMonitor("step"), *callbacks]
    if cfg.train.freeze:
        params = frozen_parameters(lit.model, cfg.train.freeze)
        callbacks.append(Freeze(params, cfg.train.freeze_steps))
        print(f"freeze: {sum(p.numel() for p in params)} parameters of "
              f"{', '.join(cfg.train.freeze)} held for "
              f"{cfg.train.freeze_steps or 'all'} steps")
    if cfg.train.early_stop_patience:
        callbacks.append(EarlyStopping("val/sentence_acc", mode="max",
                                       patience=cfg.train.early_stop_patience))
    if cfg.train.keep_checkpoints:
        callbacks.append(KeepLast(out, cfg.train.keep_checkpoints))
    if cfg.train.ema_decay:
        # Validation and the saved checkpoints then use the averaged weights.
        callbacks.append(EMAWeightAveraging(decay=cfg.train.ema_decay))
    make_profiler = PROFILERS[cfg.train.profiler]
    profiler = make_profiler(dirpath=out, filename="profile") if make_profiler else None
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
        max_epochs=cfg.train.max_epochs, max_steps=cfg.train.max_steps,
        max_time={"minutes": cfg.train.max_time_min} if cfg.train.max_time_min else None,
        gradient_clip_val=cfg.train.grad_clip or None, precision=cfg.train.precision,
        val_check_interval=cfg.train.val_every_steps or None,
        # Count val_every_steps over the whole run: counted within each epoch, validations
        # drift (steps 500 and 1200 of a run with 700-step epochs, not 500, 1000, 1500).
        check_val_every_n_epoch=None if cfg.train.val_every_steps else 1,
        accumulate_grad_batches=cfg.train.accumulate,
        log_every_n_steps=cfg.train.log_every, callbacks=callbacks,
        logger=[CSVLogger(out, name="logs"), TensorBoardLogger(out, name="tb")],
        plugins=[AtomicCheckpointIO()], use_distributed_sampler=False,
        default_root_dir=out, enable_model_summary=True, profiler=profiler)
    rank, world = trainer.global_rank, trainer.world_size
    val_loader = make_loader(val_ds, cfg, False)
    trainer.fit(lit, make_loader(train_ds, cfg, True, rank, world), val_loader,
                ckpt_path=resume)
    if trainer.global_step > max(last_val.step, 0) and not trainer.interrupted:
        validate_final(trainer, lit, val_loader, ckpt_cb, last_cb)
    best = ckpt_cb.best_model_path or last_cb.best_model_path
    export = out / "model.pt"
    if trainer.is_global_zero and best:
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        lit.load_state_dict(state)
        save_model(export, lit.model, cfg, vocab,
                   extra={"val_sentence_acc": float(ckpt_cb.best_model_score or 0.0),
                          TRAIN_FORMULAS: lit.train_formulas})
        print(f"best checkpoint {best} exported to {export}")
    return export

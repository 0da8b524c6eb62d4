"""Training throughput (images/s) of a config on this machine.

    python benchmarks/bench_train.py CONFIG [--steps 40] [--threads 2] [--set key=value ...]
        [--channels-last] [--bf16] [--compile] [--lightning] [--loader-only]

Runs the real training step (data loading and augmentation with the config's
workers, encoder, teacher-forced decoder, loss, backward, AdamW) on the config's
training data, outside Lightning, and reports images/s over ``--steps`` steps after
5 warm-up steps. The switches try CPU speed-ups: channels-last memory format,
bfloat16 autocast, torch.compile. ``--lightning`` instead times the same steps inside
``texlens train``'s Lightning run (texlens.train.run.train), to check the two agree;
``--loader-only`` times the batches alone (what one loader process, or data.num_workers of
them, can feed a faster device).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from texlens.config import load_config  # noqa: E402
from texlens.data.datasets import FormulaDataset, scan_dataset  # noqa: E402
from texlens.models.satrn import build_model  # noqa: E402
from texlens.train.module import sequence_loss  # noqa: E402
from texlens.train.run import build_vocab, make_loader  # noqa: E402

WARMUP = 5


def endless(loader):
    """Batches epoch after epoch. Not itertools.cycle: it keeps every batch alive, and
    the allocator then pays page faults on each step (half the bench's CPU time went
    to the kernel, halving its images/s)."""
    while True:
        yield from loader


def lightning_rate(cfg, steps: int) -> float:
    """images/s of steps WARMUP..WARMUP+steps of a real `texlens train` run of ``cfg``."""
    import lightning as L

    from texlens.train.run import train

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == WARMUP:
                self.t0, self.n = time.perf_counter(), 0
            elif trainer.global_step > WARMUP:
                self.n += batch["ids"].shape[0]
            if trainer.global_step == WARMUP + steps:
                self.rate = self.n / (time.perf_counter() - self.t0)

    clock = Clock()
    cfg.train.max_steps, cfg.train.val_every_steps = WARMUP + steps, 0
    cfg.data.val_limit, cfg.train.init_from, cfg.train.freeze = 16, None, []
    cfg.train.out_dir = str(ROOT / "outputs" / "bench_train_lightning")
    train(cfg, callbacks=[clock])
    return clock.rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--lightning", action="store_true")
    ap.add_argument("--loader-only", action="store_true")
    args = ap.parse_args()
    cfg = load_config(args.config, args.overrides)
    torch.set_num_threads(args.threads)
    if args.lightning:
        cfg.train.threads = args.threads
        rate = lightning_rate(cfg, args.steps)
        print(f"{args.config} {' '.join(args.overrides)} (Lightning)".strip())
        print(f"  {rate:.1f} images/s ({args.steps} steps, {args.threads} threads)")
        return
    torch.manual_seed(0)
    vocab = build_vocab(cfg)
    # The same scan as training: it records each image's size, which the size-bucketed
    # sampler needs (without it every batch is padded to the widest image).
    samples = scan_dataset(cfg.data.train, vocab, cfg.data.max_tokens,
                           decode_images=False).samples
    ds = FormulaDataset(samples, vocab, cfg.data, train=True)
    loader = make_loader(ds, cfg, shuffle=True)
    if args.loader_only:
        n_images = 0
        for i, batch in enumerate(itertools.islice(endless(loader), WARMUP + args.steps)):
            if i == WARMUP - 1:
                t0 = time.perf_counter()  # the clock starts once warm-up batch is in hand
            elif i >= WARMUP:
                n_images += batch["ids"].shape[0]
        seconds = time.perf_counter() - t0
        print(f"{args.config} {' '.join(args.overrides)} (loader only)".strip())
        print(f"  {n_images / seconds:.1f} images/s ({args.steps / seconds:.2f} batches/s of "
              f"{cfg.data.batch_size}, {cfg.data.num_workers} loader processes)")
        return
    model = build_model(cfg.model, len(vocab)).train()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_fn = torch.compile(model) if args.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    n_images, t0 = 0, 0.0
    batches = itertools.islice(endless(loader), WARMUP + args.steps)
    for i, batch in enumerate(batches):
        if i == WARMUP:
            n_images, t0 = 0, time.perf_counter()
        images = batch["images"]
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        ids = batch["ids"]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = step_fn(images, batch["mask"], ids[:, :-1])
        loss = sequence_loss(logits, ids[:, 1:], cfg.train.ignore_pad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n_images += ids.shape[0]
    seconds = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters()) / 1e6
    switches = [s for s, on in (("channels-last", args.channels_last), ("bf16", args.bf16),
                                ("compile", args.compile)) if on]
    print(f"{args.config} {' '.join(args.overrides)} {' '.join(switches)}".strip())
    print(f"  {params:.2f} M parameters, height {cfg.data.height}, batch "
          f"{cfg.data.batch_size}, {args.threads} threads, {platform.machine()}, "
          f"torch {torch.__version__}")
    print(f"  {n_images / seconds:.1f} images/s ({seconds / args.steps:.2f} s/step, "
          f"{args.steps} steps)")


if __name__ == "__main__":
    main()

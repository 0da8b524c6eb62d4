"""What a new input shape costs a training step, against a shape seen before.

    python benchmarks/shape_cost.py CONFIG [--batch 128] [--steps 8] [--set key=value ...]

The first lent-GPU run of printed-base (docs/RESULTS.md) made 1.2 steps/s with the GPU
idle most of the time and every batch of a new (height, width). This times the config's
model, one teacher-forced step with backward on random images and captions (bf16 autocast
on a GPU, as training), three ways: one shape repeated; a new shape every step (as the
batches of that run); shapes rounded to data.pad_multiple drawn again (as the batches of a
run with it, once its shapes have all been seen). Seconds a step, on the GPU if there is
one; a CPU run checks the script.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from texlens.config import load_config  # noqa: E402
from texlens.models.satrn import build_model  # noqa: E402
from texlens.tokens import Vocab  # noqa: E402
from texlens.train.module import sequence_loss  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--batch", type=int, default=0, help="default: the config's batch size")
    ap.add_argument("--steps", type=int, default=8, help="timed steps of each kind")
    ap.add_argument("--tokens", type=int, default=60, help="caption length")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    cfg = load_config(args.config, args.set)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vocab = Vocab.from_file(cfg.data.vocab) if cfg.data.vocab else Vocab(["x"])
    model = build_model(cfg.model, len(vocab)).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = args.batch or cfg.data.batch_size
    rng = random.Random(0)

    def step(h: int, w: int) -> float:
        images = torch.rand(batch, 1, h, w, device=dev)
        mask = torch.ones(batch, h, w, dtype=torch.bool, device=dev)
        mask[: batch // 2, :, w * 3 // 4:] = False  # padded, as in any real batch
        ids = torch.randint(4, len(vocab), (batch, args.tokens), device=dev)
        t = time.perf_counter()
        with torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
            logits = model(images, mask, ids[:, :-1])
            loss = sequence_loss(logits.float(), ids[:, 1:], True)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    # Formula-sized inputs (printed-base's batches are mostly 64-128 px high, 300-700 wide),
    # each new shape distinct; the same shapes rounded up to data.pad_multiple for the third.
    sizes = rng.sample([(h, w) for h in range(64, 129, 8) for w in range(320, 705, 8)],
                       args.steps)
    m = max(cfg.data.pad_multiple, 8)
    padded = sorted({(-(-h // m) * m, -(-w // m) * m) for h, w in sizes})
    for shape in [(96, 512)] * 3 + padded:  # warm-up, and each rounded shape seen once
        step(*shape)
    timed = {"one shape, 96 x 512": [step(96, 512) for _ in range(args.steps)],
             "a new shape every step": [step(*hw) for hw in sizes],
             f"rounded to {m} ({len(padded)} shapes), seen": [step(*rng.choice(padded))
                                                           for _ in range(args.steps)]}
    print(f"{dev.type} {torch.cuda.get_device_name() if dev.type == 'cuda' else ''}, "
          f"batch {batch}, {args.tokens} tokens: seconds a step, median (max) of {args.steps}")
    for name, ts in timed.items():
        print(f"  {name:36s} {sorted(ts)[len(ts) // 2]:.3f} ({max(ts):.3f})")


if __name__ == "__main__":
    main()

"""Learning-rate schedules, stepped once per optimizer step."""

from __future__ import annotations

import math

import torch

from texlens.config import TrainConfig


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.01) -> float:
    """LR multiplier: linear warm-up to 1, then cosine down to ``floor``."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "onecycle":
        # The competition baseline's schedule, with beta1 cycled inversely to the LR.
        total = max(total_steps, 4)
        # OneCycleLR divides by the warm-up length in steps: keep it at least 2 steps.
        pct = min(max(cfg.warmup, 2.0 / total), 0.5)
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total, pct_start=pct,
            cycle_momentum=True, base_momentum=0.85, max_momentum=cfg.betas[0])
    if cfg.scheduler == "cosine":
        warm = int(cfg.warmup * total_steps)
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, total_steps, warm))
    raise ValueError(f"train.scheduler must be onecycle, cosine or none, not {cfg.scheduler!r}")

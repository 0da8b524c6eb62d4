"""Schedules stepped once per optimizer step: learning rate and teacher forcing."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from texlens.config import TrainConfig

SCHEDULERS = ("onecycle", "cosine", "step", "plateau", "none")
TF_SCHEDULES = ("constant", "linear", "cosine", "arctan")


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.01) -> float:
    """LR multiplier: linear warm-up to 1, then cosine down to ``floor``."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class ExtendableOneCycleLR(torch.optim.lr_scheduler.OneCycleLR):
    """OneCycleLR that keeps the schedule it was built with when a checkpoint is loaded.

    Resuming with a larger train.max_steps (training on in a later session) then
    continues from the saved step along the new, longer schedule, instead of
    restoring the old total and failing once it is passed.
    """

    def load_state_dict(self, state_dict: dict) -> None:
        keep = {k: self.__dict__[k] for k in ("total_steps", "_schedule_phases")}
        super().load_state_dict(state_dict)
        self.__dict__.update(keep)


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int,
                    time_spent: Callable[[], float] | None = None):
    """A torch LR scheduler for ``cfg.scheduler`` (None for "none").

    ``time_spent`` (the share of train.max_time_min used, 0..1) makes the cosine follow
    whichever budget runs out first, steps or time: a run stopped by its clock then ends
    annealed, not at a high rate halfway down the curve. That matters where the speed
    is unknown beforehand (a borrowed GPU with a fixed number of minutes).
    """
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "onecycle":
        total = max(total_steps, 4)
        # OneCycleLR divides by the warm-up length in steps: keep it at least 2 steps.
        pct = min(max(cfg.warmup, 2.0 / total), 0.5)
        # The competition baseline's schedule, with beta1 cycled inversely to the LR.
        return ExtendableOneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total, pct_start=pct,
            cycle_momentum=True, base_momentum=0.85, max_momentum=cfg.betas[0])
    if cfg.scheduler == "cosine":
        warm = int(cfg.warmup * total_steps)

        def factor(step: int) -> float:
            if time_spent is not None:
                step = max(step, round(time_spent() * total_steps))
            return warmup_cosine(step, total_steps, warm)
        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    if cfg.scheduler == "step":
        every = max(1, int(cfg.step_every * total_steps))
        return torch.optim.lr_scheduler.StepLR(opt, every, cfg.step_gamma)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5,
                                                          patience=cfg.plateau_patience)
    raise ValueError(f"train.scheduler must be one of {', '.join(SCHEDULERS)}, "
                     f"not {cfg.scheduler!r}")


def teacher_forcing_ratio(step: int, total: int, cfg: TrainConfig) -> float:
    """The teacher-forcing ratio at ``step`` of ``total``.

    arctan decays fast early and flattens later: start + (end - start) *
    atan(10 p) / atan(10), p the training progress in [0, 1].
    """
    start = cfg.teacher_forcing
    end = start if cfg.teacher_forcing_end is None else cfg.teacher_forcing_end
    p = min(1.0, step / max(1, total))
    kind = cfg.tf_schedule
    if kind == "constant" or end == start:
        return start
    if kind == "linear":
        return start + (end - start) * p
    if kind == "cosine":
        return end + (start - end) * 0.5 * (1 + math.cos(math.pi * p))
    if kind == "arctan":
        return start + (end - start) * math.atan(10 * p) / math.atan(10)
    raise ValueError(f"train.tf_schedule must be one of {', '.join(TF_SCHEDULES)}, not {kind!r}")


def simulate(cfg: TrainConfig, total_steps: int) -> dict[str, list[float]]:
    """The LR, beta1 and teacher-forcing ratio a config would use at every step (for plots;
    the plateau scheduler depends on validation scores and is drawn flat)."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=cfg.lr, betas=cfg.betas)
    sched = build_scheduler(opt, cfg, total_steps)
    out: dict[str, list[float]] = {"lr": [], "beta1": [], "teacher_forcing": []}
    for step in range(total_steps):
        group = opt.param_groups[0]
        out["lr"].append(group["lr"])
        out["beta1"].append(group["betas"][0])
        out["teacher_forcing"].append(teacher_forcing_ratio(step, total_steps, cfg))
        opt.step()
        if sched is not None and cfg.scheduler != "plateau":
            sched.step()
    return out

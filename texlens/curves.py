"""Learning curves of training runs, from the CSV logs Lightning writes.

A run directory (``train.out_dir``) holds ``logs/version_N/metrics.csv``, one version
per start: a run resumed from a checkpoint at step s writes a new version from s on.
``read_metrics`` stitches the versions into one curve per metric, the newer version
replacing what an older one logged from s on (those steps were redone after the
resume). ``plot_curves`` draws training loss and validation accuracy of several runs.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

Curve = list[tuple[int, float]]


class CurveError(ValueError):
    """A run directory without readable training logs."""


def _version(path: Path) -> int:
    m = re.fullmatch(r"version_(\d+)", path.parent.name)
    return int(m.group(1)) if m else -1


def read_metrics(run_dir: str | Path) -> dict[str, Curve]:
    """Metric name -> [(step, value)] sorted by step, over every logged version."""
    files = sorted(Path(run_dir).glob("logs/version_*/metrics.csv"), key=_version)
    if not files:
        raise CurveError(f"{run_dir}: no logs/version_*/metrics.csv (not a texlens run "
                         "directory, or it has not logged yet)")
    curves: dict[str, Curve] = {}
    for f in files:
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh))
        steps = [int(r["step"]) for r in rows if r.get("step")]
        if not steps:
            continue
        start = min(steps)
        for name in curves:  # superseded by this version from its first step on
            curves[name] = [(s, v) for s, v in curves[name] if s < start]
        for r in rows:
            if not r.get("step"):
                continue
            for name, value in r.items():
                if name in ("step", "epoch") or value in ("", None):
                    continue
                curves.setdefault(name, []).append((int(r["step"]), float(value)))
    return {k: sorted(v) for k, v in curves.items() if v}


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over ``window`` points (training loss is noisy batch to batch)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_curves(runs: Sequence[str | Path], out: str | Path,
                labels: Sequence[str] | None = None, smooth_window: int = 10) -> Path:
    """Write a PNG: training loss (smoothed, log scale) and validation sentence accuracy
    against the optimizer step, one line per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(labels) if labels else [Path(r).name for r in runs]
    if len(labels) != len(runs):
        raise CurveError(f"{len(labels)} labels for {len(runs)} runs")
    fig, (ax_loss, ax_acc) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for run, label in zip(runs, labels, strict=True):
        m = read_metrics(run)
        if loss := m.get("train/loss"):
            steps, values = zip(*loss, strict=True)
            ax_loss.plot(steps, smooth(values, smooth_window), label=label)
        if acc := m.get("val/sentence_acc"):
            steps, values = zip(*acc, strict=True)
            ax_acc.plot(steps, [100 * v for v in values], marker="o", ms=3, label=label)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("training loss")
    ax_acc.set_ylabel("validation ExpRate (%)")
    ax_acc.set_xlabel("optimizer step")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out

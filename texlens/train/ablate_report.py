"""The report of ``texlens ablate``: OUT/table.md (per eval set, each arm's mean and
spread over seeds and its difference to the base arm) and OUT/curves.png (training loss
and validation ExpRate against the step, the mean over each training arm's seeds).

Both are rebuilt from the unit directories alone, so they can be written at any time,
also while runs are missing (those arms show as pending).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, stdev

from texlens.curves import Curve, CurveError, read_metrics, smooth
from texlens.train.ablate import (
    LOWER_IS_BETTER,
    AblationSpec,
    Arm,
    plan,
    read_json,
    unit_state,
)

NAMES = {"sentence_acc": "ExpRate %", "exprate_le1": "ExpRate <=1 %",
         "exprate_le2": "ExpRate <=2 %", "wer": "WER", "corpus_wer": "corpus WER",
         "ned": "NED", "bleu": "BLEU %", "token_acc": "token acc %", "score": "score %"}


@dataclass
class ArmResults:
    arm: Arm
    planned: int  # units (seeds, or ensemble groups) the spec asks for
    results: list[dict]  # result.json of those that are done

    def values(self, data: str, metric: str) -> list[float]:
        return [r["eval"][data][metric] for r in self.results]

    def mean(self, data: str, metric: str) -> float | None:
        v = self.values(data, metric)
        return fmean(v) if v else None

    def sd(self, data: str, metric: str) -> float | None:
        """Sample standard deviation over runs (n - 1); None below two runs."""
        v = self.values(data, metric)
        return stdev(v) if len(v) > 1 else None

    def average(self, key: str) -> float | None:
        v = [r[key] for r in self.results if r.get(key) is not None]
        return fmean(v) if v else None


def collect(spec: AblationSpec) -> dict[str, ArmResults]:
    """Arm name -> its finished results, in spec order."""
    out = {name: ArmResults(arm, 0, []) for name, arm in spec.arms.items()}
    for unit in plan(spec):
        out[unit.arm].planned += 1
        if unit_state(spec, unit) == "done":
            out[unit.arm].results.append(read_json(unit.dir / "result.json"))
    return out


def fmt(metric: str, value: float | None, sign: bool = False) -> str:
    if value is None:
        return ""
    plus = "+" if sign else ""
    if metric in LOWER_IS_BETTER:
        return f"{value:{plus}.3f}"
    return f"{100 * value:{plus}.1f}"


def beyond_spread(delta: float, sd_arm: float | None, sd_base: float | None) -> str:
    """yes when |delta| exceeds the sum of the two standard deviations; a single run's
    spread is unknown: taken as 0 and marked *, or ? when both arms ran once."""
    if sd_arm is None and sd_base is None:
        return "?"
    mark = "*" if sd_arm is None or sd_base is None else ""
    return ("yes" if abs(delta) > (sd_arm or 0.0) + (sd_base or 0.0) else "no") + mark


def _sort_key(spec: AblationSpec, data: str):
    sign = 1 if spec.metric in LOWER_IS_BETTER else -1

    def key(a: ArmResults) -> tuple:
        m = a.mean(data, spec.metric)
        return (a.arm.name != spec.baseline, m is None, sign * (m or 0.0))
    return key


def table_markdown(spec: AblationSpec) -> str:
    arms = collect(spec)
    base = arms[spec.baseline]
    metrics = list(dict.fromkeys([spec.metric, "sentence_acc", "exprate_le1", "wer"]))
    m = NAMES.get(spec.metric, spec.metric)
    sets = ", ".join(f"`{o}`" for o in spec.overrides) or "nothing"
    lines = [
        f"# Ablation `{spec.path.stem}`", "",
        f"Written by `texlens ablate {spec.path}`. Every arm starts from `{spec.base}` "
        f"with {sets}; seeds {', '.join(map(str, spec.seeds))} unless the arm says. "
        + ("Scored: each run's final weights, unless the arm says."
           if spec.eval_checkpoint == "last" else
           "Scored: the checkpoint each run's validation chose, unless the arm says."), "",
        "A cell is the mean ± the standard deviation over an arm's runs (sample standard "
        "deviation, n - 1; no ± for one run); n is finished runs / planned. "
        f"**Δ**: the arm's mean {m} minus `{spec.baseline}`'s. **beyond spread**: yes when "
        "|Δ| is larger than the sum of the two arms' standard deviations, a screen for "
        "differences worth a closer look rather than a significance test; `*` when one arm "
        "ran once (its spread taken as 0), `?` when both did. An ensemble arm scores one "
        "ensemble per group of seeds: its n counts groups. Steps and training minutes (wall "
        "time, shared with the other runs) are means over runs; an arm that reuses another "
        "reports that arm's.", ""]
    if len(spec.eval_data) > 1:
        lines += summary_markdown(spec, arms)
    for data in spec.eval_data:
        n = next((r["eval"][data]["n"] for a in arms.values() for r in a.results), None)
        short = (f", captions of at most {spec.eval_max_tokens} tokens"
                 if spec.eval_max_tokens else "")
        if spec.eval_unseen_in:
            short += ", formulas of " + ", ".join(spec.eval_unseen_in) + " left out"
        lines += [f"## {data}" + (f" ({n} samples{short})" if n is not None else ""), ""]
        header = ["arm", "what", "n", *(NAMES.get(k, k) for k in metrics), f"Δ {m}",
                  "beyond spread", "steps", "train min"]
        lines += ["| " + " | ".join(header) + " |",
                  "|---|---|---:|" + "---:|" * len(metrics) + "---:|:-:|---:|---:|"]
        for a in sorted(arms.values(), key=_sort_key(spec, data)):
            cells = []
            for k in metrics:
                mean, sd = a.mean(data, k), a.sd(data, k)
                cells.append(fmt(k, mean) + (f" ± {fmt(k, sd)}" if sd is not None else ""))
            delta = beyond = ""
            mean, ref = a.mean(data, spec.metric), base.mean(data, spec.metric)
            if a is not base and mean is not None and ref is not None:
                d = mean - ref
                delta = fmt(spec.metric, d, sign=True)
                beyond = beyond_spread(d, a.sd(data, spec.metric), base.sd(data, spec.metric))
            steps, minutes = a.average("steps"), a.average("train_minutes")
            name = f"**{a.arm.name}**" if a is base else a.arm.name
            row = [name, a.arm.describe(), f"{len(a.results)}/{a.planned}", *cells, delta,
                   beyond, f"{steps:.0f}" if steps is not None else "",
                   f"{minutes:.1f}" if minutes is not None else ""]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def summary_markdown(spec: AblationSpec, arms: dict[str, ArmResults]) -> list[str]:
    """One row an arm, the metric on every eval set side by side (Δ and beyond spread as
    in the tables per set), in spec order."""
    m = NAMES.get(spec.metric, spec.metric)
    base = arms[spec.baseline]
    header = ["arm", "n"]
    for data in spec.eval_data:
        header += [f"{data}: {m}", "Δ", "beyond spread"]
    lines = [f"## Summary: {m} on each set", "", "| " + " | ".join(header) + " |",
             "|---|---:|" + "---:|---:|:-:|" * len(spec.eval_data)]
    for a in arms.values():
        row = [f"**{a.arm.name}**" if a is base else a.arm.name,
               f"{len(a.results)}/{a.planned}"]
        for data in spec.eval_data:
            mean, sd = a.mean(data, spec.metric), a.sd(data, spec.metric)
            ref = base.mean(data, spec.metric)
            cell = fmt(spec.metric, mean) + (f" ± {fmt(spec.metric, sd)}" if sd is not None
                                             else "")
            delta = beyond = ""
            if a is not base and mean is not None and ref is not None:
                delta = fmt(spec.metric, mean - ref, sign=True)
                beyond = beyond_spread(mean - ref, sd, base.sd(data, spec.metric))
            row += [cell, delta, beyond]
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


def mean_curve(curves: list[Curve]) -> Curve:
    """The mean at every step, over the curves that have a value there."""
    at: dict[int, list[float]] = defaultdict(list)
    for c in curves:
        for step, v in c:
            at[step].append(v)
    return [(s, fmean(v)) for s, v in sorted(at.items())]


def plot_arms(spec: AblationSpec, out: Path, smooth_window: int = 10) -> Path | None:
    """Training loss (smoothed, log scale) and validation ExpRate of every training arm,
    each the mean over its runs so far; None when no run has logged yet."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure  # not pyplot: no global state, no GUI backend

    runs: dict[str, list[dict[str, Curve]]] = defaultdict(list)
    for unit in plan(spec):
        if spec.arms[unit.arm].trains:
            try:
                runs[unit.arm].append(read_metrics(unit.dir))
            except CurveError:
                continue  # not started yet
    if not runs:
        return None
    fig = Figure(figsize=(11, 7))
    ax_loss, ax_acc = fig.subplots(2, 1, sharex=True)
    colors = colormaps["tab10"].colors  # then the same colours dashed, then dotted
    for i, (arm, logs) in enumerate(runs.items()):
        style = {"color": colors[i % len(colors)], "ls": ("-", "--", ":")[i // len(colors) % 3],
                 "label": f"{arm} (n={len(logs)})"}
        if loss := mean_curve([m["train/loss"] for m in logs if "train/loss" in m]):
            steps, values = zip(*loss, strict=True)
            ax_loss.plot(steps, smooth(values, smooth_window), **style)
        if acc := mean_curve([m["val/sentence_acc"] for m in logs if "val/sentence_acc" in m]):
            steps, values = zip(*acc, strict=True)
            ax_acc.plot(steps, [100 * v for v in values], marker="o", ms=3, **style)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("training loss")
    ax_acc.set_ylabel("validation ExpRate (%)")
    ax_acc.set_xlabel("optimizer step")
    ax_loss.set_title(f"{spec.path.stem}: mean over seeds")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if ax_acc.get_legend_handles_labels()[0] or ax_loss.get_legend_handles_labels()[0]:
        ax_loss.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    return out


def write_report(spec: AblationSpec) -> Path:
    """OUT/table.md and OUT/curves.png; returns the table's path."""
    spec.out.mkdir(parents=True, exist_ok=True)
    table = spec.out / "table.md"
    tmp = table.with_suffix(".tmp")
    tmp.write_text(table_markdown(spec), encoding="utf-8")
    tmp.replace(table)
    plot_arms(spec, spec.out / "curves.png")
    return table

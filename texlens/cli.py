"""The ``texlens`` command line. Thin: each command parses options and calls a module."""

from __future__ import annotations

import glob
import json
import sys
import tarfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from texlens.data.splits import NOT_TRAIN_SHARE  # a default below; torch-free

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Read images of mathematical formulas and write LaTeX.")
data_app = typer.Typer(no_args_is_help=True, help="Make datasets.")
app.add_typer(data_app, name="data")
orientation_app = typer.Typer(no_args_is_help=True,
                              help="The orientation classifier (0/90/180/270 degrees).")
app.add_typer(orientation_app, name="orientation")
err = Console(stderr=True)


def _fail(msg: str, code: int = 2) -> None:
    # Messages name files: print them verbatim (no markup) and on one line (no wrapping).
    err.print(f"[red]error:[/red] {escape(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _known_errors() -> tuple[type[Exception], ...]:
    from texlens.checkpoint import CheckpointError
    from texlens.config import ConfigError
    from texlens.data.datasets import DatasetError
    from texlens.data.image import ImageError
    from texlens.data.synth.render import RenderError
    from texlens.tokens import TokenizeError
    return (CheckpointError, ConfigError, DatasetError, ImageError, RenderError, TokenizeError,
            FileNotFoundError)


def _progress() -> Progress:
    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeRemainingColumn(), console=err, transient=True)


def _expand(paths: list[str]) -> list[Path]:
    """Files, directories (their images, sorted; a dataset directory's ``images/`` when
    it holds none itself, as ``examples/handwritten`` does) and glob patterns, in the order
    given."""
    from texlens.data.image import IMAGE_SUFFIXES

    def images(d: Path) -> list[Path]:
        return sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)

    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = images(path)
            out += found or (images(path / "images") if (path / "images").is_dir() else [])
        elif any(c in p for c in "*?["):
            out += [Path(f) for f in sorted(glob.glob(p, recursive=True))]
        else:
            out.append(path)
    return out


def _backend(backend: str, beam: int, rescore: str | None, tta: bool) -> str:
    """The backend to load, after checking the decoding options: test-time views and
    rescoring run on PyTorch, so ``auto`` skips the ONNX export for them."""
    if tta and (beam > 1 or rescore):
        _fail("--tta reads greedily: leave out --beam and --rescore")
    return "torch" if backend == "auto" and (rescore or tta) else backend


# Options that predict and evaluate share, spelt once.
ModelOption = Annotated[list[str] | None, typer.Option(
    help="Shipped model name or checkpoint path (default: printed-base); repeat "
         "for an ensemble.")]
BeamOption = Annotated[int, typer.Option(min=1, help="Beam width; 1 = greedy.")]
RescoreOption = Annotated[str | None, typer.Option(
    help="r2l: rerank the beam's n-best by left-to-right plus right-to-left "
    "log-probability (bidirectional models, --beam 2 or more).")]
BackendOption = Annotated[str, typer.Option(
    help="auto | torch | onnx | onnx-int8: where decoding runs (auto: onnx for one "
         "model, exported once into ~/.cache/texlens; --rescore and --tta run on torch).")]
AutoRotateOption = Annotated[bool, typer.Option(
    "--auto-rotate", help="Turn each image upright first (orientation-small).")]
TtaOption = Annotated[bool, typer.Option(
    "--tta", help="Test-time views: read each image at 5 sizes and keep the reading "
    "they all score best (slower; PyTorch weights, greedy).")]
LinesOption = Annotated[bool, typer.Option(
    "--lines/--no-lines", help="Read an image of several text lines line by line, "
    "joined as an aligned block, and a long line it cannot read whole in pieces "
    "(models that can write an aligned block).")]


@app.command()
def predict(
    paths: Annotated[list[str], typer.Argument(help="Image files, directories or globs.")],
    model: ModelOption = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    beam: BeamOption = 1,
    rescore: RescoreOption = None,
    fmt: Annotated[str, typer.Option(
        "--format", help="latex | inline | display | mathml | json (one object per line).")
    ] = "latex",
    json_out: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    backend: BackendOption = "auto",
    auto_rotate: AutoRotateOption = False,
    tta: TtaOption = False,
    lines: LinesOption = True,
) -> None:
    """Recognise formula images; prints file<TAB>output per image (or JSON lines)."""
    from texlens.data.image import ImageError
    from texlens.decoding import check_rescore
    from texlens.formats import FormatError, check_format, to_json, to_text
    from texlens.recognizer import DEFAULT_MODEL, Recognizer, main_input
    fmt = "json" if json_out else fmt
    backend = _backend(backend, beam, rescore, tta)
    try:
        check_format(fmt)
        rec = Recognizer.load(model or [DEFAULT_MODEL], backend=backend, auto_rotate=auto_rotate,
                              tta=tta)
        rec.read_lines &= lines
        check_rescore(rec.models, beam, rescore)
    except (FormatError, ValueError, *_known_errors()) as e:
        _fail(str(e))
    files = _expand(paths)
    if not files:
        _fail("no images found in " + " ".join(paths))
    # A bar only on long runs: short ones finish before it would help.
    show = len(files) > 20 and err.is_terminal
    arrays, ok, bad = [], [], 0
    with _progress() as bar:
        task = bar.add_task("reading", total=len(files), visible=show)
        for f in files:
            try:
                arrays.append(rec.prepare(f))
                ok.append(f)
            except ImageError as e:
                bar.console.print(f"[yellow]skipped:[/yellow] {escape(str(e))}",
                                  highlight=False, soft_wrap=True)
                bad += 1
            bar.advance(task)
        # Batches of similar widths, as predict_arrays makes them, one at a time so the
        # bar moves; every image gets the answer it would get in one call.
        order = sorted(range(len(arrays)), key=lambda i: main_input(arrays[i]).shape[-1])
        preds: list = [None] * len(arrays)
        task = bar.add_task("recognising", total=len(arrays), visible=show)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            for i, p in zip(idx, rec.predict_arrays([arrays[i] for i in idx], batch_size,
                                                    beam=beam, rescore=rescore), strict=True):
                preds[i] = p
            bar.advance(task, len(idx))
    for f, p in zip(ok, preds, strict=True):
        if fmt == "json":
            print(json.dumps({"file": str(f), **to_json(p)}))
            continue
        try:
            print(f"{f}\t{to_text(p, fmt)}")
        except FormatError as e:
            err.print(f"[yellow]not converted:[/yellow] {escape(f'{f}: {e}')}",
                      highlight=False, soft_wrap=True)
            bad += 1
    if bad:
        err.print(f"{bad} of {len(files)} files could not be read or converted")
        raise typer.Exit(1)


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="Dataset directory (caption.txt or gt.txt).")],
    model: ModelOption = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    beam: BeamOption = 1,
    rescore: RescoreOption = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write metrics here.")] = None,
    samples: Annotated[Path | None, typer.Option(
        help="Per-sample TSV (key, prediction, truth); default next to --json.")] = None,
    on_error: Annotated[str, typer.Option(help="skip or stop on bad samples.")] = "skip",
    limit: Annotated[int, typer.Option(help="Evaluate only the first N samples.")] = 0,
    max_tokens: Annotated[int, typer.Option(
        min=0, help="Only the lines whose caption has at most N tokens (0: all).")] = 0,
    unseen_in: Annotated[list[Path] | None, typer.Option(
        help="A training caption file; lines whose formula it has are left out (repeat for "
        "several): the held-out part of a test set.")] = None,
    held_out: Annotated[bool, typer.Option(
        "--held-out", help="Leave out the lines whose formula the model records having "
        "trained on.")] = False,
    writable_by: Annotated[str | None, typer.Option(
        help="Another model: only the lines whose truth it can write (its vocabulary and "
        "caption style), to compare two models' vocabularies on the same formulas.")] = None,
    render: Annotated[bool | None, typer.Option(
        "--render/--no-render", help="TeX metrics (render_match, compiles); default: on "
        "when TeX is installed.")] = None,
    backend: BackendOption = "auto",
    auto_rotate: AutoRotateOption = False,
    tta: TtaOption = False,
    lines: LinesOption = True,
) -> None:
    """Score a model on a dataset: sentence accuracy (ExpRate), WER, BLEU, NED, render match...

    Every line with a caption counts: a truth outside the model's vocabulary, a missing or
    unreadable image and a caption that does not normalise are scored as wrong and listed.
    """
    from texlens.evaluate import evaluate as run_eval
    from texlens.evaluate import tex_unavailable
    from texlens.recognizer import DEFAULT_MODEL, Recognizer
    if on_error not in ("skip", "stop"):
        _fail("--on-error must be skip or stop")
    backend = _backend(backend, beam, rescore, tta)
    no_tex = tex_unavailable() if render is not False else None
    if render and no_tex:
        _fail(f"--render needs TeX: {no_tex}")
    if render is None:
        render = no_tex is None
        if no_tex:
            err.print(f"render metrics skipped: {escape(no_tex)}", highlight=False)
    try:
        rec = Recognizer.load(model or [DEFAULT_MODEL], backend=backend, auto_rotate=auto_rotate,
                              tta=tta)
        rec.read_lines &= lines
        other = Recognizer.load(writable_by, backend="torch") if writable_by else None
        with _progress() as prog:
            task = prog.add_task("evaluating", total=None)
            result = run_eval(rec, data, batch_size, on_error, limit, beam=beam,
                              progress=lambda k: prog.advance(task, k), render=render,
                              rescore=rescore, max_tokens=max_tokens,
                              unseen_in=unseen_in or (), held_out=held_out,
                              writable_by=other)
    except (ValueError, *_known_errors()) as e:
        _fail(str(e))
    for p in result["problems"][:20]:
        err.print(f"[yellow]problem:[/yellow] {escape(p)}", highlight=False,
                  soft_wrap=True)
    if len(result["problems"]) > 20:
        err.print(f"{len(result['problems'])} problems, 20 shown")
    m = result["metrics"]
    if m.get("n_trained_formula"):
        err.print(f"[yellow]not held out:[/yellow] {m['n_trained_formula']} of {m['n']} lines "
                  f"are formulas {escape(rec.name)} trained on (--held-out leaves them out)",
                  highlight=False)
    table = Table(title=f"{rec.name} on {data}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in m.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    Console().print(table)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({**m, "model": rec.name, "beam": beam,
                                         "rescore": rescore, "data": str(data),
                                         "unseen_in": [str(f) for f in unseen_in or ()],
                                         "held_out": held_out, "writable_by": writable_by,
                                         "auto_rotate": auto_rotate, "tta": rec.tta,
                                         "lines": rec.read_lines,
                                         "by_length": result["by_length"],
                                         "by_height": result["by_height"],
                                         "by_symbol_size": result["by_symbol_size"]},
                                        indent=2))
        samples = samples or json_path.with_suffix(".samples.tsv")
    if samples:
        with open(samples, "w", encoding="utf-8") as f:
            f.write("key\tprediction\ttruth\tcorrect\tconfidence"
                    + ("\trender_match\tcompiles\n" if render else "\n"))
            for r in result["rows"]:
                f.write(f"{r['key']}\t{r['prediction']}\t{r['truth']}\t{int(r['correct'])}\t"
                        f"{r['confidence']}")
                f.write(f"\t{int(r['render_match'])}\t{int(r['compiles'])}\n" if render
                        else "\n")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config.")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a config value: section.key=value (repeatable).")] = None,
    resume: Annotated[str | None, typer.Option(help="Checkpoint to resume from.")] = None,
    devices: Annotated[str, typer.Option(help="Devices per node: a number or 'auto'.")] = "1",
    num_nodes: Annotated[int, typer.Option(min=1)] = 1,
    strategy: Annotated[str, typer.Option(help="Lightning strategy, e.g. ddp.")] = "auto",
    accelerator: Annotated[str, typer.Option(help="cpu, gpu or auto.")] = "auto",
) -> None:
    """Train a model from a config; writes checkpoints, logs and model.pt to train.out_dir."""
    from texlens.config import load_config
    from texlens.train.run import train as run_train
    try:
        cfg = load_config(config, set_ or [])
        dev = int(devices) if devices.isdigit() else devices
        run_train(cfg, resume, dev, num_nodes, strategy, accelerator)
    except _known_errors() as e:
        _fail(str(e))


@app.command()
def tune(
    config: Annotated[Path, typer.Argument(help="YAML config the trials start from.")],
    space: Annotated[Path, typer.Option(help="Search space YAML: config key -> distribution.")],
    trials: Annotated[int, typer.Option(
        min=1, help="Finished trials wanted, counting those of a resumed study.")] = 20,
    study_dir: Annotated[Path | None, typer.Option(
        help="Study database, trial runs and reports; default train.out_dir + '-tune'.")] = None,
    sampler: Annotated[str, typer.Option(help="random or tpe.")] = "random",
    trial_steps: Annotated[int | None, typer.Option(
        min=1, help="Training steps per trial; default train.max_steps.")] = None,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a config value: section.key=value (repeatable).")] = None,
) -> None:
    """Search hyper-parameters with short training runs (Optuna, median pruning)."""
    from texlens.config import load_config
    from texlens.train.tune import format_value
    from texlens.train.tune import tune as run_tune
    if sampler not in ("random", "tpe"):
        _fail("--sampler must be random or tpe")
    try:
        cfg = load_config(config, set_ or [])
        study_dir = study_dir or Path(cfg.train.out_dir + "-tune")
        result = run_tune(config, space, trials, study_dir, sampler, trial_steps, seed,
                          set_ or [])
    except _known_errors() as e:
        _fail(str(e))
    columns = ["trial", "state", "score", *result.keys]
    table = Table(title=f"{len(result.trials)} trials in {study_dir} (best first)")
    for col in columns:
        table.add_column(col, justify="left" if col == "state" else "right")
    for row in result.trials[:10]:
        table.add_row(*(format_value(row[c]) for c in columns))
    Console().print(table)
    if result.best:
        print(f"best: trial {result.best['trial']}; config written to {study_dir / 'best.yaml'}")


@app.command()
def kfold(
    config: Annotated[Path, typer.Argument(help="YAML config.")],
    folds: Annotated[int, typer.Option(min=2, help="Number of folds.")] = 5,
    out: Annotated[Path | None, typer.Option(
        help="Fold runs and kfold.json; default train.out_dir + '-kfold'.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fold assignment.")] = 0,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a config value: section.key=value (repeatable).")] = None,
) -> None:
    """Cross-validate on data.train, then score the fold models' ensemble on data.val.

    Folds are stratified by source (printed/handwritten) and formula length.
    """
    from texlens.config import load_config
    from texlens.train.kfold import SUMMARY
    from texlens.train.kfold import kfold as run_kfold
    try:
        cfg = load_config(config, set_ or [])
        out = out or Path(cfg.train.out_dir + "-kfold")
        result = run_kfold(cfg, folds, out, seed)
    except _known_errors() as e:
        _fail(str(e))
    table = Table(title=f"{folds}-fold cross-validation of {cfg.name}")
    for col in ("model on data", "n", *SUMMARY):
        table.add_column(col, justify="left" if col == "model on data" else "right")
    n_val = str(result["ensemble"]["n"])
    rows = [(f"fold {f['fold']} on its fold", str(f["heldout"]["n"]), f["heldout"])
            for f in result["per_fold"]]
    rows += [("mean over folds", "", result["mean"]), ("std over folds", "", result["std"]),
             ("fold models on val", n_val, result["val_mean"]),
             ("ensemble on val", n_val, result["ensemble"])]
    for label, n, scores in rows:
        table.add_row(label, n, *(f"{scores[m]:.4f}" for m in SUMMARY))
    Console().print(table)
    print(f"wrote {out / 'kfold.json'}")


@app.command()
def ablate(
    spec: Annotated[Path, typer.Argument(help="Ablation spec YAML (configs/ablations/).")],
    jobs: Annotated[int | None, typer.Option(
        min=1, help="Trainings side by side; default one per core.")] = None,
    cores: Annotated[int | None, typer.Option(
        min=1, help="Cores to use, split evenly between the jobs; default all.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List the runs and what each still needs; run nothing.")] = False,
    report: Annotated[bool, typer.Option(
        "--report", help="Rewrite OUT/table.md and OUT/curves.png from the finished runs; "
        "run nothing.")] = False,
    arm: Annotated[list[str] | None, typer.Option(
        help="Only this arm (repeatable); the table still shows every arm.")] = None,
) -> None:
    """Train every arm of a spec over its seeds, score them alike, compare with the base.

    Resumable: finished runs are skipped. Writes OUT/table.md and OUT/curves.png.
    """
    import os
    import shlex
    import time

    from texlens.train.ablate import (
        load_spec,
        run_ablation,
        select_arms,
        train_command,
        unit_state,
    )
    from texlens.train.ablate_report import write_report
    try:
        s = load_spec(spec)
        units = select_arms(s, arm)
    except _known_errors() as e:
        _fail(str(e))
    if not cores:  # the cores this process may run on (a container's share), where known
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count() or 1)
    jobs = jobs or cores
    if jobs > cores:
        _fail(f"--jobs {jobs} on {cores} cores: give each job at least a core")
    if report:
        print(f"wrote {write_report(s)} and {s.out / 'curves.png'}")
        return
    states = {u: unit_state(s, u) for u in units}
    if dry_run:
        table = Table(title=f"{spec}: {len(units)} runs into {s.out}")
        for col in ("arm", "seeds", "state", "in"):
            table.add_column(col)
        for u in units:
            table.add_row(u.arm, "+".join(map(str, u.seeds)), states[u],
                          str(u.dir.relative_to(s.out)))
        Console().print(table)
        for u in units:
            if states[u] in ("train", "resume"):
                print(shlex.join(train_command(s, u, cores // jobs)))
        return
    todo = sum(states[u] != "done" for u in units)
    err.print(f"{spec}: {todo} of {len(units)} runs to do, {jobs} at a time with "
              f"{cores // jobs} thread(s) each; results in {s.out}", highlight=False)
    try:
        outcome = run_ablation(s, jobs, cores, log=lambda m: err.print(
            f"{time.strftime('%H:%M')} {escape(m)}", highlight=False, soft_wrap=True),
            report=write_report, arms=arm)
    except _known_errors() as e:
        _fail(str(e))
    print(f"wrote {s.out / 'table.md'} and {s.out / 'curves.png'}")
    if outcome.failed:
        for u, why in outcome.failed:
            err.print(f"[red]not done:[/red] {escape(f'{u.label}: {why}')}", highlight=False,
                      soft_wrap=True)
        raise typer.Exit(1)


@app.command("plot-lr")
def plot_lr(
    config: Annotated[Path, typer.Argument(help="YAML config.")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("lr.png"),
    steps: Annotated[int, typer.Option(
        help="Total optimizer steps; default train.max_steps.")] = 0,
) -> None:
    """Draw a config's learning-rate, beta1 and teacher-forcing schedules."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from texlens.config import load_config
    from texlens.train.schedules import simulate
    try:
        cfg = load_config(config)
    except _known_errors() as e:
        _fail(str(e))
    total = steps or cfg.train.max_steps
    if total <= 0:
        _fail("the config has no train.max_steps; pass --steps")
    curves = simulate(cfg.train, total)
    fig, axes = plt.subplots(3, 1, figsize=(7, 6), sharex=True)
    for ax, key in zip(axes, ("lr", "beta1", "teacher_forcing"), strict=True):
        ax.plot(curves[key])
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{cfg.name}: {cfg.train.scheduler}, tf {cfg.train.tf_schedule}")
    axes[-1].set_xlabel("optimizer step")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


@app.command("plot-curves")
def plot_curves_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (train.out_dir).")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("curves.png"),
    label: Annotated[list[str] | None, typer.Option(
        help="Legend label per run (repeat); default the directory names.")] = None,
) -> None:
    """Draw training loss and validation ExpRate of runs, resumed parts stitched."""
    from texlens.curves import CurveError, plot_curves, read_metrics
    try:
        for run in runs:
            acc = read_metrics(run).get("val/sentence_acc", [])
            if acc:
                step, best = max(acc, key=lambda sv: sv[1])
                print(f"{run}: {len(acc)} validations, best {100 * best:.1f}% at step {step}, "
                      f"last {100 * acc[-1][1]:.1f}% at step {acc[-1][0]}")
            else:
                print(f"{run}: no validation yet")
        plot_curves(runs, out, label)
    except CurveError as e:
        _fail(str(e))
    print(f"wrote {out}")


@app.command()
def average(
    checkpoints: Annotated[list[Path], typer.Argument(help="Checkpoints of one model.")],
    out: Annotated[Path, typer.Option(help="Averaged inference checkpoint to write.")],
) -> None:
    """Average the weights of several checkpoints of the same model."""
    from texlens.checkpoint import TRAIN_FORMULAS, average_checkpoints, save_model
    from texlens.models.satrn import build_model
    try:
        state, cfg, vocab, formulas = average_checkpoints(list(checkpoints))
        model = build_model(cfg.model, len(vocab))
        model.load_state_dict(state)
        save_model(out, model, cfg, vocab, extra={"averaged_from": [str(c) for c in checkpoints],
                                                  TRAIN_FORMULAS: formulas})
    except _known_errors() as e:
        _fail(str(e))
    print(f"averaged {len(checkpoints)} checkpoints into {out}")


@app.command()
def export(
    checkpoint: Annotated[str, typer.Argument(
        help="A training or inference checkpoint, or a shipped model name.")],
    out: Annotated[Path | None, typer.Option(help="Inference checkpoint to write.")] = None,
    half: Annotated[bool, typer.Option(help="Store float16 weights (half the size).")] = False,
    onnx: Annotated[Path | None, typer.Option(
        help="Directory for encoder.onnx, encoder_unpadded.onnx, decoder_step.onnx, "
             "greedy.onnx and texlens.json.")] = None,
    int8: Annotated[bool, typer.Option(
        help="With --onnx: also int8 dynamically quantised graphs (*.int8.onnx).")] = False,
    train_data: Annotated[list[Path] | None, typer.Option(
        help="A dataset directory or caption file the model trained on: its formulas are "
        "recorded in --out with those the checkpoint records (repeat for several), so "
        "`texlens evaluate` can tell seen lines from held-out ones.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Change an input setting in --out: data.key=value (repeatable), e.g. "
        "data.margin_keep=0.4; the weights stay as trained.")] = None,
) -> None:
    """Write a small inference checkpoint (weights, config, vocabulary, training formulas;
    no optimizer) and/or ONNX graphs for onnxruntime (`predict --backend onnx --model DIR`)."""
    from texlens.checkpoint import TRAIN_FORMULAS, load_model_raw, save_model
    from texlens.config import with_overrides
    from texlens.data.splits import caption_expressions, pack_formulas
    from texlens.recognizer import resolve_model
    if set_ and out is None:
        _fail("--set needs --out FILE")
    if any(not s.startswith("data.") for s in set_ or []):
        _fail("export --set changes input settings only (data.key=value): the model and "
              "training sections describe the weights as trained")
    if out is None and onnx is None:
        _fail("give --out FILE (a checkpoint) and/or --onnx DIR")
    if int8 and onnx is None:
        _fail("--int8 needs --onnx DIR")
    if train_data and out is None:
        _fail("--train-data needs --out FILE")
    try:
        path = resolve_model(checkpoint)
        model, cfg, vocab, raw = load_model_raw(path)
        cfg = with_overrides(cfg, set_ or [])
        formulas = raw.get(TRAIN_FORMULAS)
        if train_data:
            files = [d / "caption.txt" if d.is_dir() else d for d in train_data]
            formulas = pack_formulas(caption_expressions(files), formulas)
        if out is not None:
            save_model(out, model, cfg, vocab, half=half,
                       extra={"exported_from": raw.get("exported_from") or path.name,
                              TRAIN_FORMULAS: formulas})
            known = (f"{len(formulas) // 8} training formulas recorded" if formulas
                     is not None else "its training formulas unknown")
            print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB; {known})")
        if onnx is not None:
            from texlens.onnx_backend import export_checkpoint
            for f in export_checkpoint(path, onnx, int8, (model, cfg, vocab)):
                print(f"wrote {f} ({f.stat().st_size / 1e6:.1f} MB)")
    except (ValueError, *_known_errors()) as e:
        _fail(str(e))


@app.command()
def serve(
    model: Annotated[list[str] | None, typer.Option(
        help="Model to serve (shipped name or checkpoint); repeat for several. "
             "Default: printed-base (images), printed-small and handwritten-small (ink).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    threads: Annotated[int | None, typer.Option(
        min=1, help="torch threads for inference (default: torch's choice).")] = None,
    max_batch: Annotated[int, typer.Option(min=1, help="Most images per model call.")] = 16,
    batch_wait_ms: Annotated[float, typer.Option(
        min=0, help="How long a batch waits for more images.")] = 10.0,
    backend: Annotated[str, typer.Option(
        help="auto | torch | onnx | onnx-int8 (decoding on onnxruntime, 3-6x faster at "
             "batch 1; auto: onnx for one model).")] = "auto",
) -> None:
    """HTTP API (/v1/predict, /v1/predict/ink, /docs) and the web page at /."""
    import torch
    import uvicorn

    from texlens.server.app import DEFAULT_MODELS, create_app
    if threads:
        torch.set_num_threads(threads)
    try:
        api = create_app(model or list(DEFAULT_MODELS), max_batch, batch_wait_ms,
                         backend=backend)
    except (ValueError, *_known_errors()) as e:
        _fail(str(e))
    err.print(f"texlens: http://{host}:{port}/ (API docs: /docs)", highlight=False)
    uvicorn.run(api, host=host, port=port, log_level="info")


@app.command()
def models() -> None:
    """List the shipped models: recognisers (size, caption style, which is the default),
    then orientation classifiers."""
    from texlens.recognizer import DEFAULT_MODEL, WEIGHTS_DIR, Recognizer, shipped_models
    for name in shipped_models():
        size = (WEIGHTS_DIR / f"{name}.pt").stat().st_size / 1e6
        style = Recognizer.load(name, backend="torch").cfg.data.style
        default = "\t(default)" if name == DEFAULT_MODEL else ""
        print(f"{name}\t{size:.1f} MB\t{style} style{default}")
    for f in sorted(WEIGHTS_DIR.glob("orientation*.pt")):
        print(f"{f.stem}\t{f.stat().st_size / 1e6:.1f} MB\t(orientation, --auto-rotate)")


@data_app.command("heldout")
def data_heldout(
    data: Annotated[Path, typer.Argument(help="Dataset directory (caption.txt or gt.txt).")],
    out: Annotated[Path, typer.Option(help="Output dataset directory.")],
    unseen_in: Annotated[list[Path], typer.Option(
        help="A training caption file or dataset directory (repeat for several): its "
        "formulas are left out.")],
) -> None:
    """The held-out part of a dataset: the lines whose formula no training set has, as a
    dataset of its own (images hard-linked, or copied across file systems)."""
    import os
    import shutil

    from texlens.data.datasets import read_layout
    from texlens.data.splits import among, caption_expressions, expression
    try:
        samples, problems = read_layout(data)
        seen = caption_expressions(f / "caption.txt" if f.is_dir() else f for f in unseen_in)
    except (ValueError, *_known_errors()) as e:
        _fail(str(e))
    for p in problems:
        err.print(f"[yellow]skipped:[/yellow] {escape(p)}", highlight=False)
    kept = [s for s in samples if not among(expression(s.tokens), seen)]
    lines = []
    for s in kept:  # the same relative path, so the key finds its image as it did
        dest = out / s.image.relative_to(data)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        try:
            os.link(s.image, dest)
        except OSError:
            shutil.copyfile(s.image, dest)
        lines.append(f"{s.key}\t{' '.join(s.tokens)}\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "caption.txt").write_text("".join(lines), encoding="utf-8")
    print(f"wrote {len(kept)} of {len(samples)} lines to {out}; "
          f"{len(samples) - len(kept)} have a formula of {len(unseen_in)} training set(s)")


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="Output dataset directory.")],
    n: Annotated[int, typer.Option(min=1, help="Number of images.")] = 1000,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    captions: Annotated[Path | None, typer.Option(
        help="Render these real formulas (key<TAB>tokens) instead of random ones.")] = None,
    split: Annotated[str, typer.Option(
        help="With --captions: all, train, val or heldout (a stable hash of the "
        "expression: texlens/data/splits.py).")] = "all",
    workers: Annotated[int, typer.Option(min=1, help="Rendering processes.")] = 1,
) -> None:
    """Render synthetic printed formulas into a dataset directory."""
    from texlens.data.synth.dataset import read_caption_file, synth_dataset
    try:
        caps = read_caption_file(captions, split) if captions else None
        with _progress() as prog:
            task = prog.add_task("rendering", total=n)
            res = synth_dataset(out, n, seed, caps, workers,
                                progress=lambda k: prog.advance(task, k))
    except (ValueError, OSError) as e:
        _fail(str(e))
    print(f"wrote {res['written']} images to {out} ({res['failed']} failed to render)")


@data_app.command("generate")
def data_generate(
    out: Annotated[Path, typer.Option(help="Output file: key<TAB>tokens lines.")],
    n: Annotated[int, typer.Option(min=1, help="Number of formulas.")] = 1000,
    seed: Annotated[int, typer.Option(help="Same seed, same file.")] = 0,
    max_tokens: Annotated[int, typer.Option(min=5, help="Longest formula, in tokens.")] = 250,
    vocab: Annotated[Path | None, typer.Option(
        help="Write only tokens of this vocabulary (one token per line).")] = None,
    exclude: Annotated[list[Path] | None, typer.Option(
        help="A caption file (a validation or test set): formulas it has are left out "
             "(repeat for several).")] = None,
) -> None:
    """Write random formulas over the full LaTeX vocabulary (input of `data render`)."""
    from texlens.data.splits import among, caption_expressions
    from texlens.data.synth.latex_gen import unplaceable, write_formulas
    from texlens.tokens import SPECIALS, Vocab
    try:
        banned = caption_expressions(exclude or [])
        toks = [t for t in Vocab.from_file(str(vocab)).itos if t not in SPECIALS] if vocab else None
        lengths = write_formulas(out, n, seed, max_tokens, toks)
        written = n
        if banned:  # short random formulas can be test formulas ("x + y")
            lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [ln for ln in lines if not among(ln.split("\t", 1)[1].strip(), banned)]
            out.write_text("".join(kept), encoding="utf-8")
            written = len(kept)
            print(f"left out {n - written} formulas of the --exclude files")
    except (ValueError, OSError, RuntimeError) as e:
        _fail(f"{vocab}: {e}" if vocab and not isinstance(e, OSError) else str(e))
    mean = sum(k * v for k, v in lengths.items()) / n
    print(f"wrote {written} formulas to {out} (length {min(lengths)}..{max(lengths)}, "
          f"mean {mean:.0f} tokens of the {n} drawn)")
    if toks is not None:
        left = unplaceable(toks)
        print(f"{len(left)} vocabulary tokens the grammar cannot place: {' '.join(left)}")


@data_app.command("corpus")
def data_corpus(
    formulas: Annotated[list[Path], typer.Argument(
        help="Formula files (one LaTeX formula per line, or key<TAB>latex) or folders of "
             "them, e.g. ../shared/data/formulas.")],
    out: Annotated[Path, typer.Option(help="Output folder: train/val/heldout.txt, stats.")],
    style: Annotated[str, typer.Option(help="Caption style: latex or crohme.")] = "latex",
    workers: Annotated[int, typer.Option(min=1)] = 2,
) -> None:
    """Normalise real formulas, de-duplicate them and split them by expression."""
    from texlens.data.corpus import build_corpus, corpus_files, read_formula_file, write_corpus
    try:
        files = [f for root in formulas for f in corpus_files(root)]
        rows = [r for f in files for r in read_formula_file(f)]
        with _progress() as prog:
            task = prog.add_task("normalising", total=len(rows))
            rep = build_corpus(rows, style, workers, progress=lambda k: prog.advance(task, k))
        write_corpus(rep, out)
    except (ValueError, OSError) as e:
        _fail(str(e))
    table = Table(title=f"corpus {out}")
    for col in ("source", "lines", "failed", "too_long", "duplicates", *rep.splits):
        table.add_column(col, justify="left" if col == "source" else "right")
    for src, st in sorted(rep.stats.items()):
        table.add_row(src, *(str(st.get(c, 0)) for c in ("lines", "failed", "too_long",
                                                          "duplicates", *rep.splits)))
    Console().print(table)
    print(f"problems: {len(rep.problems)} (listed in {out / 'problems.txt'})")


@data_app.command("sample")
def data_sample(
    captions: Annotated[Path, typer.Argument(help="key<TAB>tokens file (data corpus output).")],
    out: Annotated[Path, typer.Option(help="Output key<TAB>tokens file.")],
    n: Annotated[int, typer.Option(min=1, help="Captions to draw.")],
    alpha: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="A source's share ~ its size^alpha (1: as they come).")] = 0.5,
    seed: Annotated[int, typer.Option()] = 0,
    min_tokens: Annotated[int, typer.Option(min=0, help="Only captions this long or longer.")] = 0,
    max_tokens: Annotated[int, typer.Option(min=0, help="Only captions this long or shorter "
                                            "(0: any).")] = 0,
) -> None:
    """Draw captions with source weights (one book is 82% of the corpus lines)."""
    from texlens.data.corpus import weighted_sample
    from texlens.data.synth.dataset import read_caption_file
    try:
        rows = [(k, " ".join(t)) for k, t in read_caption_file(captions)
                if len(t) >= min_tokens and (not max_tokens or len(t) <= max_tokens)]
        drawn = weighted_sample(rows, n, seed, alpha)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(f"{k}\t{t}\n" for k, t in drawn), encoding="utf-8")
    except (ValueError, OSError) as e:
        _fail(str(e))
    print(f"wrote {len(drawn)} captions to {out}")


@data_app.command("vocab")
def data_vocab(
    captions: Annotated[list[Path], typer.Argument(help="key<TAB>tokens files.")],
    out: Annotated[Path, typer.Option(help="Vocabulary file, one token a line.")],
    min_count: Annotated[int, typer.Option(min=1, help="Keep tokens seen this often.")] = 3,
) -> None:
    """A model's vocabulary from caption files: tokens seen at least --min-count times.

    Multi-character tokens that are not commands (lengths such as ``1pt`` from
    ``\\hspace``) are left out: a model should not learn units as symbols."""
    from texlens.data.synth.dataset import read_caption_file
    from texlens.tokens import Vocab
    try:
        vocab = Vocab.build((t for f in captions for _, t in read_caption_file(f)), min_count)
    except (ValueError, OSError) as e:
        _fail(str(e))
    tokens = [t for t in vocab.itos[4:] if len(t) == 1 or t.startswith("\\")]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    print(f"wrote {len(tokens)} tokens to {out}")


@data_app.command("render")
def data_render(
    captions: Annotated[Path, typer.Option(
        help="key<TAB>caption lines, or one formula per line (keyed by line number).")],
    out: Annotated[Path, typer.Option(help="Output dataset directory (KEY.png, caption.txt).")],
    n: Annotated[int | None, typer.Option(min=1, help="Only the first N formulas.")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Same seed, same bytes.")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="Rendering processes.")] = 1,
    fonts: Annotated[str | None, typer.Option(
        help="Comma-separated font families (default: all of the engine's).")] = None,
    dpi: Annotated[str, typer.Option(help="MIN,MAX resolution range, or one value.")] =
        "90,300",
    display_prob: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of formulas set in display style.")] = 0.5,
    engine: Annotated[str, typer.Option(
        help="Typesetting engine: a name in tex_dataset.ENGINES (tex, ...).")] = "tex",
) -> None:
    """Typeset formulas with real TeX (random font family, dpi, style, margins per sample)."""
    from texlens.data.synth.tex import tex_missing
    from texlens.data.synth.tex_dataset import read_formulas, render_dataset
    try:
        lo, _, hi = dpi.partition(",")
        dpi_range = (int(lo), int(hi or lo))
    except ValueError:
        _fail(f"--dpi: expected MIN,MAX or one integer, not {dpi!r}")
    if engine == "tex" and tex_missing():
        _fail(f"cannot typeset: {tex_missing()}")
    try:
        formulas = read_formulas(captions)[:n]
        with _progress() as prog:
            task = prog.add_task("typesetting", total=len(formulas))
            res = render_dataset(out, formulas, seed, fonts.split(",") if fonts else None,
                                 dpi_range, display_prob, engine, workers, source=str(captions),
                                 progress=lambda k: prog.advance(task, k))
    except (ValueError, OSError, RuntimeError) as e:
        _fail(str(e))
    for line in res["problems"][:20]:
        err.print(escape(line.replace("\t", "  ")), highlight=False, soft_wrap=True)
    if res["failed"] > 20:
        err.print(f"... {res['failed'] - 20} more", highlight=False)
    print(f"wrote {res['written']} images to {out} ({res['failed']} did not typeset: "
          f"{out / 'problems.txt'})")


@data_app.command("crohme")
def data_crohme(
    inkml: Annotated[Path, typer.Option(
        help="Directory tree of .inkml files, or a .tar/.tar.gz of them (read in place).")],
    out: Annotated[Path, typer.Option(help="Output directory: OUT/train and OUT/val.")],
    captions: Annotated[Path | None, typer.Option(
        help="Take the captions from this key<TAB>tokens file instead of the truth LaTeX.")]
        = None,
    val_fraction: Annotated[float, typer.Option(
        min=0.0, max=0.99, help="Share of the expressions held out for validation, by "
        "texlens's split rule; the default holds out every expression that `data synth "
        "--split train` leaves out.")] = NOT_TRAIN_SHARE,
    seed: Annotated[int, typer.Option(help="Seed of the distorted copies.")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="Rendering processes.")] = 2,
    mode: Annotated[str, typer.Option(
        help="crohme: binary white on black like the standard offline images; "
             "default: anti-aliased dark ink on white.")] = "crohme",
    compare: Annotated[Path | None, typer.Option(
        help="Without --captions: measure the truth tokenisation against this caption "
             "file (exact match rate; disagreements go to OUT/compare.tsv).")] = None,
    max_side: Annotated[int, typer.Option(
        min=64, help="Largest image side; files that need more are skipped.")] = 2000,
    copies: Annotated[int, typer.Option(
        min=0, help="Extra renderings of each training expression from randomly "
                    "distorted strokes (key_augN; validation is never copied).")] = 0,
    warp: Annotated[float, typer.Option(
        min=0.0, max=0.3, help="Local elastic warp of the copies' strokes, in typical "
                               "stroke heights (0: none; 0.1 bends each symbol a little).")]
        = 0.0,
    val_writers: Annotated[float, typer.Option(
        min=0.0, max=0.99, help="Share of the writers (<annotation type=\"writer\">, by a "
        "hash of source and name) whose files all go to OUT/val-writers and none to "
        "training: validation on new writers.")] = 0.0,
) -> None:
    """Render CROHME InkML pen strokes into train/val image datasets."""
    from texlens.data.crohme import build_crohme, write_disagreements
    from texlens.data.inkml import InkmlError
    from texlens.data.stroke_augment import StrokeAugment
    from texlens.data.strokes import MODES
    if mode not in MODES:
        _fail(f"--mode must be one of {', '.join(MODES)}")
    if compare and captions:
        _fail("--compare measures the truth tokenisation: use it without --captions")
    try:
        with _progress() as prog:
            task = prog.add_task("rendering", total=None)
            rep = build_crohme(inkml, out, captions, val_fraction, seed, workers, mode,
                               compare, max_side, copies,
                               progress=lambda k: prog.advance(task, k),
                               augment=StrokeAugment(warp=warp), val_writers=val_writers)
    except (ValueError, OSError, EOFError, tarfile.TarError, InkmlError) as e:
        _fail(str(e))
    shown = 50
    for _, msg in rep.skipped[:shown]:
        err.print(f"[yellow]skipped:[/yellow] {escape(msg)}", highlight=False, soft_wrap=True)
    if len(rep.skipped) > shown:
        err.print(f"... and {len(rep.skipped) - shown} more, listed in {out / 'skipped.txt'}")
    (out / "skipped.txt").write_text("".join(f"{m}\n" for _, m in rep.skipped),
                                     encoding="utf-8")
    reasons = ", ".join(f"{n} {r}" for r, n in rep.skip_counts.most_common()) or "none"
    extra = f" + {rep.copies} distorted copies" if copies else ""
    held = (f", {rep.written['val-writers']} val-writers images of {rep.held_writers} "
            f"writers" if val_writers else "")
    print(f"wrote {rep.written['train']} train{extra} and {rep.written['val']} val images"
          f"{held} to {out} ({len(rep.skipped)} skipped: {reasons}) in {rep.seconds:.1f} s")
    if compare:
        rate = rep.agreed / rep.compared if rep.compared else 0.0
        write_disagreements(out / "compare.tsv", rep.disagreements)
        print(f"truth tokens agree with {compare} on {rep.agreed} of {rep.compared} keys "
              f"({100 * rate:.2f}%); disagreements in {out / 'compare.tsv'}")


@data_app.command("symbols")
def data_symbols(
    inkml: Annotated[Path, typer.Option(
        help="Training InkML only: a directory tree of .inkml files or a .tar/.tar.gz.")],
    out: Annotated[Path, typer.Option(
        help="Library file to write (.npz; research data: keep it out of git).")] =
        Path("data/hand/symbols.npz"),
    limit: Annotated[int, typer.Option(
        min=0, help="Read only the first N files (0: all).")] = 0,
) -> None:
    """Build a handwritten symbol library from segmented InkML (for `data synth-hand`)."""
    import itertools

    from texlens.data.crohme import iter_inkml
    from texlens.data.handwriting.glyphs import DRAWN, sources
    from texlens.data.handwriting.labels import INK_FREE
    from texlens.data.handwriting.symbols import build_library
    from texlens.data.synth.generator import SYMBOLS
    if "test" in inkml.name.lower():
        # Symbols from a test set would leak its writers into synthetic training data.
        err.print(f"[yellow]warning:[/yellow] {escape(str(inkml))} looks like a test set; "
                  "build the library from training files only", highlight=False, soft_wrap=True)
    try:
        files = iter_inkml(inkml)
        with _progress() as prog:
            task = prog.add_task("reading", total=None)
            lib, rep = build_library(itertools.islice(files, limit or None),
                                     progress=lambda k: prog.advance(task, k))
        lib.save(out)
    except (ValueError, OSError, EOFError, tarfile.TarError) as e:
        _fail(str(e))
    for msg in rep.skipped[:20]:
        err.print(f"[yellow]skipped:[/yellow] {escape(msg)}", highlight=False, soft_wrap=True)
    if rep.ignored_labels:
        labels = ", ".join(f"{k!r} x{n}" for k, n in rep.ignored_labels.most_common(20))
        err.print(f"[yellow]labels outside the dictionary, ignored:[/yellow] {escape(labels)}",
                  highlight=False, soft_wrap=True)
    inked = [t for t in SYMBOLS if t not in INK_FREE]
    print("samples per token:")
    cells = [f"{t} {lib.count(t)}" for t in inked]
    for k in range(0, len(cells), 8):
        print("  " + "   ".join(cells[k:k + 8]))
    empty = [t for t in inked if not lib.count(t)]
    borrowed = {t: next((s for s in sources(t) if lib.count(s)), None) for t in empty}
    print(f"tokens with no sample: {' '.join(empty) or 'none'}")
    notes = [f"{t} from {s}" for t, s in borrowed.items() if s] + \
        [f"{t} drawn by the layout" for t in empty if t in DRAWN and not borrowed[t]]
    if notes:
        print(f"  still drawable: {', '.join(notes)}")
    lost = [t for t in empty if not borrowed[t] and t not in DRAWN]
    print(f"  cannot be drawn (formulas with them are redrawn or skipped): "
          f"{' '.join(lost) or 'none'}")
    print(f"wrote {rep.glyphs} samples of {sum(1 for t in inked if lib.count(t))} of "
          f"{len(inked)} inked tokens ({len(SYMBOLS) - len(inked)} more are structure: "
          f"{' '.join(sorted(INK_FREE))}) from {rep.files} files to {out} "
          f"({rep.outliers} implausible sizes dropped, {len(rep.skipped)} files skipped) "
          f"in {rep.seconds:.1f} s")


@data_app.command("synth-hand")
def data_synth_hand(
    out: Annotated[Path, typer.Option(help="Output dataset directory.")],
    symbols: Annotated[Path, typer.Option(help="Library from `texlens data symbols`.")] =
        Path("data/hand/symbols.npz"),
    n: Annotated[int, typer.Option(min=1, help="Number of images.")] = 1000,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    captions: Annotated[Path | None, typer.Option(
        help="Write these formulas (key<TAB>tokens) instead of random ones.")] = None,
    mode: Annotated[str, typer.Option(
        help="crohme: binary white on black like the CROHME offline images; "
             "default: anti-aliased dark ink on white.")] = "crohme",
    workers: Annotated[int, typer.Option(min=1, help="Rendering processes.")] = 1,
    exclude: Annotated[list[Path] | None, typer.Option(
        help="Caption file (key<TAB>tokens) whose expressions are never written, e.g. the "
             "validation and test sets; repeatable.")] = None,
    short: Annotated[bool, typer.Option(
        help="Random formulas of 1 to 3 tokens (lone symbols, a sign or an operator).")
    ] = False,
) -> None:
    """Write synthetic handwritten formulas: library symbols laid out like typeset maths."""
    from texlens.data.handwriting.dataset import synth_hand_dataset
    from texlens.data.handwriting.symbols import SymbolLibrary
    from texlens.data.splits import caption_expressions
    from texlens.data.strokes import MODES
    from texlens.data.synth.dataset import read_caption_file
    if mode not in MODES:
        _fail(f"--mode must be one of {', '.join(MODES)}")
    if short and captions:
        _fail("--short draws random formulas: it does not go with --captions")
    try:
        banned = caption_expressions(exclude or [])
        lib = SymbolLibrary.load(symbols)
        caps = read_caption_file(captions) if captions else None
        with _progress() as prog:
            task = prog.add_task("writing", total=n)
            rep = synth_hand_dataset(out, n, seed, lib, caps, mode, workers,
                                     progress=lambda k: prog.advance(task, k), exclude=banned,
                                     short=short)
    except (ValueError, OSError) as e:
        _fail(str(e))
    for key, missing in rep.skipped[:20]:
        err.print(f"[yellow]skipped caption:[/yellow] {escape(key)}: no sample for "
                  f"{escape(' '.join(missing))}", highlight=False, soft_wrap=True)
    for msg in rep.failed[:20]:
        err.print(f"[yellow]failed:[/yellow] {escape(msg)}", highlight=False, soft_wrap=True)
    if rep.skipped:
        (out / "skipped.txt").write_text(
            "".join(f"{k}\t{' '.join(m)}\n" for k, m in rep.skipped), encoding="utf-8")
    extra = f"; {len(rep.skipped)} captions skipped, listed in {out / 'skipped.txt'}" \
        if rep.skipped else ""
    if rep.excluded:
        extra += f"; {len(rep.excluded)} captions skipped as excluded expressions"
    print(f"wrote {rep.written} images to {out} ({len(rep.failed)} failed, "
          f"{rep.redrawn} random formulas redrawn{extra})")


@data_app.command("extract-crohme-test")
def data_extract_crohme_test(
    images: Annotated[Path, typer.Option(
        help="The CROHME offline test images tarball (off_image_test/<key>_0.bmp).")],
    captions: Annotated[Path, typer.Option(help="Their key<TAB>tokens caption file.")],
    out: Annotated[Path, typer.Option(
        help="Directory to write (your own copy, outside this repository).")],
) -> None:
    """Unpack the CROHME test bitmaps and captions for `texlens evaluate --data OUT`."""
    from texlens.data.crohme_images import extract_crohme_images
    try:
        rep = extract_crohme_images(images, captions, out)
    except (ValueError, OSError, EOFError, tarfile.TarError) as e:
        _fail(str(e))
    for what, keys in (("captions without an image", rep.no_image),
                       ("images without a caption", rep.no_caption)):
        if keys:
            err.print(f"[yellow]{len(keys)} {what}:[/yellow] {escape(' '.join(keys[:20]))}",
                      highlight=False, soft_wrap=True)
    print(f"wrote {rep.images} images and {rep.captions} captions to {out}")


SetOption = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a config value: section.key=value (repeatable).")]


def _orientation_data(config: Path, set_: list[str] | None):
    """The config and its training images as canvases (a progress bar while loading)."""
    from texlens.config import load_orientation_config
    from texlens.data.orientation import load_orientation_set
    cfg = load_orientation_config(config, set_ or [])
    total = cfg.data.n_printed + cfg.data.n_handwritten
    with _progress() as prog:
        task = prog.add_task("loading images", total=total or None)
        data = load_orientation_set(cfg.data, cfg.model.canvas, cfg.train.seed,
                                    progress=lambda k: prog.advance(task, k))
    for p in data.problems[:10]:
        err.print(f"[yellow]skipped:[/yellow] {escape(p)}", highlight=False, soft_wrap=True)
    n_hand = int(data.source.sum())
    err.print(f"{len(data)} images: {len(data) - n_hand} printed, {n_hand} handwritten "
              f"({len(data.problems)} skipped)", highlight=False)
    return cfg, data


def _log(line: str) -> None:
    err.print(escape(line), highlight=False, soft_wrap=True)


@orientation_app.command("kfold")
def orientation_kfold(
    config: Annotated[Path, typer.Argument(help="Orientation YAML config.")],
    out: Annotated[Path, typer.Option(help="Directory for kfold.json.")],
    folds: Annotated[int, typer.Option(min=2, help="Number of folds.")] = 3,
    set_: SetOption = None,
) -> None:
    """Stratified K-fold cross-validation of the orientation classifier (folds keep equal
    expressions together), with the aspect-ratio heuristic on the same folds."""
    from texlens.train.orientation import kfold_orienter
    try:
        cfg, data = _orientation_data(config, set_)
        result = kfold_orienter(cfg, data, folds, out, _log)
    except (ValueError, *_known_errors()) as e:
        _fail(str(e))
    table = Table(title=f"{folds}-fold cross-validation of {cfg.name} ({cfg.model.arch})")
    for col in ("model", "accuracy", "macro F1"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for label, s in (("classifier", result["mean"]), ("aspect heuristic", result["heuristic"])):
        table.add_row(label, *(f"{s[k]['mean']:.4f} ± {s[k]['std']:.4f}"
                               for k in ("accuracy", "macro_f1")))
    Console().print(table)
    print(f"wrote {out / 'kfold.json'}")


@orientation_app.command("train")
def orientation_train(
    config: Annotated[Path, typer.Argument(help="Orientation YAML config.")],
    out: Annotated[Path, typer.Option(help="Model file to write (.pt).")],
    set_: SetOption = None,
) -> None:
    """Train the orientation classifier on the training side of the expression split,
    stopping early on the validation side; writes the model atomically."""
    from texlens.train.orientation import train_final
    try:
        cfg, data = _orientation_data(config, set_)
        summary = train_final(cfg, data, out, _log)
    except (ValueError, *_known_errors()) as e:
        _fail(str(e))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): best epoch {summary['best_epoch']}"
          f" of {summary['epochs']}, validation accuracy {summary['val_accuracy']:.4f}, "
          f"macro F1 {summary['val_macro_f1']:.4f}")


@orientation_app.command("scorer")
def orientation_scorer(
    out: Annotated[Path, typer.Option(help="Orientation model file to write (.pt).")],
    train: Annotated[list[Path], typer.Option(
        help="Dataset directory of upright images to train the scorer on; repeatable.")],
    val: Annotated[Path, typer.Option(help="Validation dataset: chooses the scorer's weight "
                                      "(its expressions are never trained on).")],
    orienter: Annotated[str, typer.Option(help="Orientation model to add the scorer to.")] =
        "orientation-small",
    model: Annotated[str, typer.Option(help="SATRN recogniser whose encoder is used.")] =
        "handwritten-small",
    n: Annotated[int, typer.Option(min=0, help="Training images drawn (0: all).")] = 4000,
    seed: int = 0,
    threads: Annotated[int, typer.Option(min=1, help="torch threads.")] = 1,
) -> None:
    """Add an encoder scorer to an orientation model: the recogniser's frozen encoder reads
    every quarter turn and a small head learns which looks upright (texlens/orientation.py)."""
    import torch

    from texlens.train.orientation import make_scorer
    torch.set_num_threads(threads)
    try:
        summary = make_scorer(orienter, model, train, n, val, out, seed, _log)
    except (ValueError, *_known_errors()) as e:
        _fail(str(e))
    best = max(summary["grid"], key=lambda r: r["weight"] == summary["weight"])
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): scorer on {summary['n_train']} "
          f"images (training accuracy {summary['train_accuracy']:.4f}), weight "
          f"{summary['weight']:g}, validation macro F1 {best['macro_f1']:.4f}")


@orientation_app.command("predict")
def orientation_predict(
    paths: Annotated[list[str], typer.Argument(help="Image files, directories or globs.")],
    model: Annotated[str, typer.Option(help="Orientation model name or path.")] =
        "orientation-small",
) -> None:
    """Print file<TAB>angle: how far each image is turned counter-clockwise (0/90/180/270)."""
    from texlens.data.image import ImageError
    from texlens.orientation import Orienter
    try:
        orienter = Orienter.load(model)
    except _known_errors() as e:
        _fail(str(e))
    files = _expand(paths)
    if not files:
        _fail("no images found in " + " ".join(paths))
    bad = 0
    for f in files:
        try:
            print(f"{f}\t{orienter.predict([f])[0]}")
        except ImageError as e:
            err.print(f"[yellow]skipped:[/yellow] {escape(str(e))}", highlight=False,
                      soft_wrap=True)
            bad += 1
    if bad:
        err.print(f"{bad} of {len(files)} files could not be read")
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

"""``texlens ablate SPEC.yaml``: the arms of one experiment, trained alike over several
seeds, scored alike, and compared with the base arm.

A spec names a base config, overrides common to every arm (the data and the budget, so
each arm gets the same), the seeds, the data every model is scored on, and the arms::

    base: configs/ablations/log-base.yaml
    set: [train.max_steps=900, train.val_every_steps=100]
    seeds: [0, 1]
    eval_data: [data/printed/val-real]     # default: the base config's data.val
    eval_max_tokens: 10                    # score only captions this short (default: all)
    eval_unseen_in: [data/train/caption.txt]  # score only lines whose formula these lack
    eval_checkpoint: last                  # each run's final weights (default best: the
                                           # checkpoint its validation chose)
    metric: sentence_acc                   # what the difference to the base is taken on
    arms:
      base: [train.keep_checkpoints=3]     # the reference (or name another: baseline: NAME)
      conv-ffn: [model.ffn=conv]           # a training arm: its overrides
      wide: {set: [model.d_model=256], seeds: [0, 1, 2]}
      beam5: {reuse: base, beam: 5}        # base's models, decoded with beam search
      average3: {reuse: base, average: 3}  # per seed, the last 3 kept checkpoints averaged
      ensemble3: {reuse: base, ensemble: 3}  # base's seed models, 3 decoding together
      stop: {set: [train.early_stop_patience=3], checkpoint: best}  # an arm's own choice

Each (arm, seed) is a unit with its own directory, OUT/ARM/seedS. A training unit runs
``texlens train BASE --set ...`` in a subprocess (log: train.log), then is scored with
:func:`texlens.evaluate.evaluate` on every eval_data set (one denominator: every
captioned line). An arm that reuses another decodes that arm's models differently and
trains nothing; an ensemble arm scores one ensemble per group of ``ensemble`` seeds (in
the order given; leftover seeds are unused), so its n counts groups.

Resumable: a unit whose result.json was written for the same recipe is skipped; a unit
whose training finished is only scored; one that stopped midway resumes from its
last.ckpt. A unit directory trained with other overrides than the spec now gives is an
error (delete it to retrain): results never silently mix two recipes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from texlens.config import ConfigError, load_config

SPEC_KEYS = ("base", "set", "seeds", "arms", "eval_data", "eval_max_tokens",
             "eval_unseen_in", "eval_checkpoint", "metric", "baseline", "out")
ARM_KEYS = ("set", "seeds", "reuse", "beam", "rescore", "average", "ensemble", "checkpoint")
# Which weights of a run are scored: the checkpoint its validation chose (model.pt), or its
# final weights (checkpoints/last.ckpt): a fixed budget compared without a validation choice.
CHECKPOINTS = ("best", "last")
# Metrics of texlens.metrics.compute_all an arm can be compared on; lower is better for
# the error rates.
METRICS = ("sentence_acc", "exprate_le1", "exprate_le2", "wer", "corpus_wer", "ned", "bleu",
           "token_acc", "score")
LOWER_IS_BETTER = ("wer", "corpus_wer", "ned")
# Set by ablate itself for every unit.
RESERVED = ("train.seed", "train.out_dir", "train.threads")


class AblationError(ConfigError):
    """A wrong spec, or unit directories that do not match it; the message says which."""


@dataclass
class Arm:
    name: str
    overrides: list[str] = field(default_factory=list)  # training arms: on top of spec.set
    seeds: list[int] = field(default_factory=list)
    reuse: str | None = None  # evaluation-only arms: the training arm whose models they use
    beam: int = 1
    average: int = 0  # average the last K kept checkpoints of each reused seed
    ensemble: int = 0  # decode K seed models of the reused arm together
    rescore: str | None = None  # "r2l": rerank the beam by both directions (bidirectional)
    checkpoint: str | None = None  # best | last; None: the spec's eval_checkpoint

    @property
    def trains(self) -> bool:
        return self.reuse is None

    def describe(self) -> str:
        """What the arm changes, for the table."""
        if self.trains:
            what = ", ".join(f"`{o}`" for o in self.overrides) or "the base config"
        elif self.average:
            what = f"{self.reuse}: mean weights of each run's last {self.average} checkpoints"
        elif self.ensemble:
            what = f"{self.reuse}: ensembles of {self.ensemble} seed models"
        else:
            what = f"{self.reuse}'s models"
        what += f", beam {self.beam}" if self.beam > 1 else ""
        return what + (f"; scores its {self.checkpoint} checkpoint" if self.checkpoint else "")


@dataclass
class AblationSpec:
    path: Path
    base: Path
    overrides: list[str]  # the spec's `set`: every training arm gets them
    seeds: list[int]
    arms: dict[str, Arm]
    eval_data: list[str]
    metric: str = "sentence_acc"
    baseline: str = "base"
    out: Path = Path("runs/ablate")
    eval_max_tokens: int = 0  # 0: every line of eval_data
    # Caption files (the training sets): eval lines with one of their formulas are left out.
    eval_unseen_in: list[str] = field(default_factory=list)
    eval_checkpoint: str = "best"  # CHECKPOINTS; an arm may say otherwise

    def checkpoint(self, arm: str) -> str:
        return self.arms[arm].checkpoint or self.eval_checkpoint


@dataclass(frozen=True)
class Unit:
    """One run of an arm: a seed, or an ensemble arm's group of seeds."""

    arm: str
    seeds: tuple[int, ...]
    dir: Path

    @property
    def label(self) -> str:
        if len(self.seeds) == 1:
            return f"{self.arm} seed {self.seeds[0]}"
        return f"{self.arm} seeds {'+'.join(map(str, self.seeds))}"


# -- the spec ------------------------------------------------------------------------

def _seeds(value: Any, where: str) -> list[int]:
    if (not isinstance(value, list) or not value
            or any(isinstance(s, bool) or not isinstance(s, int) for s in value)):
        raise AblationError(f"{where}: expected a non-empty list of integers, got {value!r}")
    if len(set(value)) != len(value):
        raise AblationError(f"{where}: a seed is listed twice in {value!r}")
    return list(value)


def _overrides(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or any(not isinstance(o, str) or "=" not in o
                                          for o in value):
        raise AblationError(f"{where}: expected a list of key=value overrides, got {value!r}")
    for o in value:
        if o.partition("=")[0].strip() in RESERVED:
            raise AblationError(f"{where}: {o!r}: {', '.join(RESERVED)} are set by "
                                "texlens ablate for each run")
    return list(value)


def _count(raw: dict, key: str, where: str, least: int) -> int:
    value = raw.get(key, least)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise AblationError(f"{where}.{key}: expected an integer of at least {least}, "
                            f"got {value!r}")
    return value


def _checkpoint(value: Any, where: str) -> str | None:
    if value is not None and value not in CHECKPOINTS:
        raise AblationError(f"{where}: {value!r} is not one of {', '.join(CHECKPOINTS)}")
    return value


def _arm(name: str, raw: Any, seeds: list[int], where: str) -> Arm:
    if raw is None or isinstance(raw, list):
        return Arm(name, _overrides(raw, where), list(seeds))
    if not isinstance(raw, dict):
        raise AblationError(f"{where}: expected a list of overrides or a mapping, got {raw!r}")
    unknown = sorted(set(raw) - set(ARM_KEYS))
    if unknown:
        raise AblationError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(ARM_KEYS)})")
    arm = Arm(name, _overrides(raw.get("set"), f"{where}.set"),
              _seeds(raw["seeds"], f"{where}.seeds") if "seeds" in raw else list(seeds),
              raw.get("reuse"), _count(raw, "beam", where, 1), rescore=raw.get("rescore"),
              checkpoint=_checkpoint(raw.get("checkpoint"), f"{where}.checkpoint"))
    if arm.rescore is not None:
        from texlens.decoding import RESCORERS
        if arm.rescore not in RESCORERS or arm.beam < 2:
            raise AblationError(f"{where}.rescore: {arm.rescore!r}: choose from "
                                f"{', '.join(RESCORERS)}, with beam of at least 2")
    if arm.reuse is None:
        for key in ("average", "ensemble"):
            if key in raw:
                raise AblationError(f"{where}.{key}: needs reuse: ARM, the arm whose runs it "
                                    "uses")
        return arm
    if not isinstance(arm.reuse, str):
        raise AblationError(f"{where}.reuse: expected an arm name, got {arm.reuse!r}")
    if "set" in raw:
        raise AblationError(f"{where}: an arm that reuses {arm.reuse!r} trains nothing; "
                            "it cannot have set")
    if "average" in raw and "ensemble" in raw:
        raise AblationError(f"{where}: average and ensemble are two arms")
    arm.average = _count(raw, "average", where, 2) if "average" in raw else 0
    arm.ensemble = _count(raw, "ensemble", where, 2) if "ensemble" in raw else 0
    if arm.ensemble and "seeds" in raw:
        raise AblationError(f"{where}.seeds: an ensemble arm takes the seeds of {arm.reuse!r}")
    if "seeds" not in raw:
        arm.seeds = []  # the reused arm's, filled in by _check_reuse
    return arm


def load_spec(path: str | Path) -> AblationSpec:
    """Read and check a spec. Every training arm's config is built once here, so a wrong
    override fails before anything trains, naming the arm."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise AblationError(f"{path}: cannot read ablation spec: {e}") from None
    if not isinstance(raw, dict):
        raise AblationError(f"{path}: the top level must be a mapping")
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise AblationError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(SPEC_KEYS)})")
    for key in ("base", "arms"):
        if key not in raw:
            raise AblationError(f"{path}: missing {key!r}")
    for key in ("base", "out"):
        if not isinstance(raw.get(key, ""), str):
            raise AblationError(f"{path}: {key}: expected a path, got {raw[key]!r}")
    seeds = _seeds(raw.get("seeds", [0]), f"{path}: seeds")
    if not isinstance(raw["arms"], dict) or not raw["arms"]:
        raise AblationError(f"{path}: arms: expected a mapping of arm names to overrides")
    for name in raw["arms"]:
        if not re.fullmatch(r"[\w.+-]+", str(name)):  # it names a directory
            raise AblationError(f"{path}: arms.{name}: use letters, digits and . _ + - only")
    arms = {str(n): _arm(str(n), a, seeds, f"{path}: arms.{n}") for n, a in raw["arms"].items()}
    metric = raw.get("metric", "sentence_acc")
    if metric not in METRICS:
        raise AblationError(f"{path}: metric: {metric!r} is not one of {', '.join(METRICS)}")
    baseline = str(raw.get("baseline", "base"))
    if baseline not in arms:
        raise AblationError(f"{path}: no arm named {baseline!r} to compare with; name one "
                            "arm base, or give baseline: ARM")
    spec = AblationSpec(path, Path(raw["base"]), _overrides(raw.get("set"), f"{path}: set"),
                        seeds, arms, [], metric, baseline,
                        Path(raw.get("out") or Path("runs/ablate") / path.stem))
    configs = {}
    for arm in arms.values():
        if arm.trains:
            try:
                configs[arm.name] = load_config(spec.base, [*spec.overrides, *arm.overrides])
            except ConfigError as e:
                raise AblationError(f"{path}: arms.{arm.name}: {e}") from None
    for arm in arms.values():
        if not arm.trains:
            _check_reuse(arm, arms, configs, f"{path}: arms.{arm.name}")
    # By default, the validation data of the reference (or of the first training arm;
    # every other arm reuses one, so there is one).
    data = raw.get("eval_data", configs.get(baseline, next(iter(configs.values()))).data.val)
    if isinstance(data, str):
        data = [data]
    if not isinstance(data, list) or not data or any(not isinstance(d, str) for d in data):
        raise AblationError(f"{path}: eval_data: expected a list of dataset directories, "
                            f"got {data!r}")
    spec.eval_data = data
    spec.eval_max_tokens = _count(raw, "eval_max_tokens", str(path), 0)
    unseen = raw.get("eval_unseen_in", [])
    if not isinstance(unseen, list) or any(not isinstance(f, str) for f in unseen):
        raise AblationError(f"{path}: eval_unseen_in: expected a list of caption files, "
                            f"got {unseen!r}")
    spec.eval_unseen_in = unseen
    spec.eval_checkpoint = _checkpoint(raw.get("eval_checkpoint"),
                                       f"{path}: eval_checkpoint") or "best"
    return spec


def _check_reuse(arm: Arm, arms: dict[str, Arm], configs: dict, where: str) -> None:
    src = arms.get(arm.reuse)
    if src is None or not src.trains:
        training = ", ".join(a for a in arms if arms[a].trains) or "none"
        raise AblationError(f"{where}.reuse: {arm.reuse!r} is not a training arm of this "
                            f"spec (training arms: {training})")
    # Same seeds as the reused arm unless given: paired with its runs.
    arm.seeds = arm.seeds or list(src.seeds)
    if arm.ensemble:
        if arm.ensemble > len(src.seeds):
            raise AblationError(f"{where}.ensemble: {arm.ensemble} models, but "
                                f"{arm.reuse!r} trains {len(src.seeds)} seeds")
        return
    if not set(arm.seeds) <= set(src.seeds):
        raise AblationError(f"{where}.seeds: {arm.reuse!r} trains seeds {src.seeds}, "
                            f"not {arm.seeds}")
    keep = configs[src.name].train.keep_checkpoints
    if arm.average and keep < arm.average:
        raise AblationError(f"{where}.average: {arm.reuse!r} keeps {keep} checkpoints; add "
                            f"train.keep_checkpoints={arm.average} to its overrides")


# -- units and their state -----------------------------------------------------------

def plan(spec: AblationSpec) -> list[Unit]:
    """Every unit of the spec: training arms first, in spec order, then the others."""
    units = []
    for arm in sorted(spec.arms.values(), key=lambda a: not a.trains):
        if arm.ensemble:
            seeds = spec.arms[arm.reuse].seeds
            groups = [tuple(seeds[i:i + arm.ensemble])
                      for i in range(0, len(seeds) - arm.ensemble + 1, arm.ensemble)]
        else:
            groups = [(s,) for s in arm.seeds]
        units += [unit_of(spec, arm.name, g) for g in groups]
    return units


def unit_of(spec: AblationSpec, arm: str, seeds: tuple[int, ...]) -> Unit:
    key = f"seed{seeds[0]}" if len(seeds) == 1 else "seeds" + "+".join(map(str, seeds))
    return Unit(arm, seeds, spec.out / arm / key)


def train_recipe(spec: AblationSpec, unit: Unit) -> dict:
    """What decides a training unit's weights (not its thread count or directory)."""
    arm = spec.arms[unit.arm]
    return {"base": str(spec.base),
            "set": [*spec.overrides, *arm.overrides, f"train.seed={unit.seeds[0]}"]}


def sources(spec: AblationSpec, unit: Unit) -> list[Unit]:
    """The training units whose models a unit decodes (itself, for a training unit)."""
    arm = spec.arms[unit.arm]
    if arm.trains:
        return [unit]
    return [unit_of(spec, arm.reuse, (s,)) for s in unit.seeds]


def eval_recipe(spec: AblationSpec, unit: Unit) -> dict:
    arm = spec.arms[unit.arm]
    recipe = {"models": [train_recipe(spec, u) for u in sources(spec, unit)],
              "average": arm.average, "beam": arm.beam, "eval_data": spec.eval_data}
    # Only when set: results scored before these keys existed stay valid.
    if arm.rescore:
        recipe["rescore"] = arm.rescore
    if spec.eval_max_tokens:
        recipe["eval_max_tokens"] = spec.eval_max_tokens
    if spec.eval_unseen_in:
        recipe["eval_unseen_in"] = spec.eval_unseen_in
    if spec.checkpoint(unit.arm) != "best" and not arm.average:
        recipe["checkpoint"] = spec.checkpoint(unit.arm)
    return recipe


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _trained(unit: Unit) -> bool:
    info = read_json(unit.dir / "train.json")
    return bool(info and info.get("finished")) and (unit.dir / "model.pt").is_file()


def unit_state(spec: AblationSpec, unit: Unit) -> str:
    """done | evaluate (trained, not scored) | resume (stopped midway) | train | waiting (an
    evaluation-only unit whose models are not trained yet) | stale (trained with another
    recipe)."""
    if spec.arms[unit.arm].trains:
        recipe = read_json(unit.dir / "recipe.json")
        if recipe is not None and recipe != train_recipe(spec, unit):
            return "stale"
    result = read_json(unit.dir / "result.json")
    if result and result.get("recipe") == eval_recipe(spec, unit):
        return "done"
    if all(_trained(u) for u in sources(spec, unit)):
        return "evaluate"
    if not spec.arms[unit.arm].trains:
        return "waiting"
    return "resume" if (unit.dir / "checkpoints" / "last.ckpt").is_file() else "train"


def train_command(spec: AblationSpec, unit: Unit, threads: int) -> list[str]:
    sets = [*train_recipe(spec, unit)["set"], f"train.out_dir={unit.dir}",
            f"train.threads={threads}"]
    cmd = [sys.executable, "-m", "texlens.cli", "train", str(spec.base)]
    for s in sets:
        cmd += ["--set", s]
    last = unit.dir / "checkpoints" / "last.ckpt"
    return cmd + (["--resume", str(last)] if last.is_file() else [])


# -- running -------------------------------------------------------------------------

def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    tmp.replace(path)


def train_unit(spec: AblationSpec, unit: Unit, threads: int) -> None:
    """Run (or resume) ``texlens train`` for one unit; train.json keeps the wall minutes,
    summed over attempts, and says when training finished."""
    unit.dir.mkdir(parents=True, exist_ok=True)
    _write_json(unit.dir / "recipe.json", train_recipe(spec, unit))
    minutes = (read_json(unit.dir / "train.json") or {}).get("minutes", 0.0)
    cmd = train_command(spec, unit, threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.monotonic()
    with open(unit.dir / "train.log", "a", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        while True:
            try:
                rc = proc.wait(timeout=60)
                break
            except subprocess.TimeoutExpired:  # so a killed run still counts its time
                _write_json(unit.dir / "train.json", {
                    "minutes": minutes + (time.monotonic() - t0) / 60, "finished": False})
    minutes += (time.monotonic() - t0) / 60
    ok = rc == 0 and (unit.dir / "model.pt").is_file()
    _write_json(unit.dir / "train.json", {"minutes": round(minutes, 2), "finished": ok,
                                          "steps": _steps(unit.dir) if ok else None})
    if not ok:
        raise AblationError(f"{unit.label}: texlens train exited with {rc}; see "
                            f"{unit.dir / 'train.log'}")


def _steps(run_dir: Path) -> int | None:
    import torch
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    return int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])


def evaluate_unit(spec: AblationSpec, unit: Unit) -> dict:
    """Score a unit's model(s) on every eval_data set; writes and returns result.json."""
    from texlens.checkpoint import TRAIN_FORMULAS, average_checkpoints, kept_checkpoints, save_model
    from texlens.evaluate import evaluate
    from texlens.models.satrn import build_model
    from texlens.recognizer import Recognizer
    arm = spec.arms[unit.arm]
    srcs = sources(spec, unit)
    last = spec.checkpoint(unit.arm) == "last"
    models = [final_model(u) if last else u.dir / "model.pt" for u in srcs]
    if arm.average:
        kept = kept_checkpoints(srcs[0].dir)[-arm.average:]
        if len(kept) < arm.average:
            raise AblationError(f"{unit.label}: {srcs[0].dir} kept {len(kept)} checkpoints, "
                                f"{arm.average} needed (fewer validations than that?)")
        state, cfg, vocab, formulas = average_checkpoints(kept)
        model = build_model(cfg.model, len(vocab))
        model.load_state_dict(state)
        unit.dir.mkdir(parents=True, exist_ok=True)
        models = [unit.dir / "model.pt"]
        save_model(models[0], model, cfg, vocab, extra={"averaged_from": [str(k) for k in kept],
                                                        TRAIN_FORMULAS: formulas})
    rec = Recognizer.load(models, backend="torch")
    t0 = time.monotonic()
    scores = {d: evaluate(rec, d, beam=arm.beam, rescore=arm.rescore,
                          max_tokens=spec.eval_max_tokens,
                          unseen_in=spec.eval_unseen_in)["metrics"]
              for d in spec.eval_data}
    train = [read_json(u.dir / "train.json") or {} for u in srcs]
    result = {"arm": unit.arm, "seeds": list(unit.seeds), "models": [str(m) for m in models],
              "recipe": eval_recipe(spec, unit), "eval": scores,
              "eval_minutes": round((time.monotonic() - t0) / 60, 2),
              # An evaluation-only arm reports the training of the runs it reuses.
              "train_minutes": sum(t.get("minutes", 0.0) for t in train) / len(train),
              "steps": train[0].get("steps")}
    unit.dir.mkdir(parents=True, exist_ok=True)
    _write_json(unit.dir / "result.json", result)
    return result


def final_model(unit: Unit) -> Path:
    """A training unit's final weights (checkpoints/last.ckpt) as an inference checkpoint,
    unit.dir/last.pt, exported once (again when last.ckpt is newer)."""
    from texlens.checkpoint import TRAIN_FORMULAS, average_checkpoints, read_checkpoint, save_model
    from texlens.models.satrn import build_model
    ckpt, out = unit.dir / "checkpoints" / "last.ckpt", unit.dir / "last.pt"
    if not ckpt.is_file():
        raise AblationError(f"{unit.label}: {ckpt} is missing; eval_checkpoint last needs it")
    if out.is_file() and out.stat().st_mtime >= ckpt.stat().st_mtime:
        return out
    state, cfg, vocab, _ = average_checkpoints([ckpt])  # one checkpoint: its own weights
    model = build_model(cfg.model, len(vocab))
    model.load_state_dict(state)
    best = unit.dir / "model.pt"  # the run's record of its training formulas, if it has one
    formulas = read_checkpoint(best)[3].get(TRAIN_FORMULAS) if best.is_file() else None
    save_model(out, model, cfg, vocab, extra={"exported_from": str(ckpt),
                                              TRAIN_FORMULAS: formulas})
    return out


@dataclass
class Outcome:
    done: list[Unit] = field(default_factory=list)  # finished by this run
    skipped: list[Unit] = field(default_factory=list)  # finished before
    failed: list[tuple[Unit, str]] = field(default_factory=list)


def select_arms(spec: AblationSpec, arms: Collection[str] | None) -> list[Unit]:
    """The units of ``arms`` (all when None), in plan order; an unknown name is an error."""
    units = plan(spec)
    if arms is None:
        return units
    unknown = sorted(set(arms) - set(spec.arms))
    if unknown:
        raise AblationError(f"{spec.path}: no arm {', '.join(map(repr, unknown))}; its arms: "
                            f"{', '.join(spec.arms)}")
    return [u for u in units if u.arm in arms]


def run_ablation(spec: AblationSpec, jobs: int, cores: int,
                 log: Callable[[str], None] = print,
                 report: Callable[[AblationSpec], Any] | None = None,
                 arms: Collection[str] | None = None) -> Outcome:
    """Train and score every unit not done yet, ``jobs`` at a time with ``cores // jobs``
    threads each; ``report(spec)`` (the table and curves) is called after each unit.
    ``arms``: only these (two processes may then share a spec if their arms differ)."""
    import torch
    if jobs < 1 or cores < 1 or jobs > cores:
        raise AblationError(f"--jobs {jobs} on {cores} cores: give each job at least a core")
    units = select_arms(spec, arms)
    states = {u: unit_state(spec, u) for u in units}
    stale = [u for u in units if states[u] == "stale"]
    if stale:
        raise AblationError(
            f"{', '.join(str(u.dir) for u in stale)}: trained with other overrides than "
            f"{spec.path} gives now (see recipe.json); delete to retrain, or restore the spec")
    threads = cores // jobs
    out = Outcome(skipped=[u for u in units if states[u] == "done"])
    report = report or (lambda s: None)

    def one(unit: Unit) -> None:
        if states[unit] in ("train", "resume"):
            log(f"{unit.label}: {'resuming' if states[unit] == 'resume' else 'training'} "
                f"({threads} thread{'s' * (threads > 1)}), log {unit.dir / 'train.log'}")
            train_unit(spec, unit, threads)
        r = evaluate_unit(spec, unit)
        log(f"{unit.label}: " + ", ".join(
            f"{spec.metric} {r['eval'][d][spec.metric]:.4f} on {d}" for d in spec.eval_data))

    # Each finished training is scored in its worker (torch threads: that job's share),
    # so at most `jobs` trainings or evaluations run at once.
    torch.set_num_threads(threads)
    todo = [u for u in units if spec.arms[u.arm].trains and states[u] != "done"]
    with ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(one, u): u for u in todo}
        for f in as_completed(futures):
            _settle(f, futures[f], out, log)
            report(spec)
    # Evaluation-only arms: after the runs they reuse, one at a time on every core.
    torch.set_num_threads(cores)
    for u in units:
        if spec.arms[u.arm].trains or states[u] == "done":
            continue
        if unit_state(spec, u) == "waiting":
            missing = [s.label for s in sources(spec, u) if not _trained(s)]
            out.failed.append((u, f"waits for {', '.join(missing)}"))
            log(f"{u.label}: skipped, waits for {', '.join(missing)}")
            continue
        try:
            one(u)
            out.done.append(u)
        except Exception as e:  # noqa: BLE001 - as in _settle
            out.failed.append((u, str(e)))
            log(f"{u.label}: failed: {e}")
        report(spec)
    report(spec)
    return out


def _settle(future, unit: Unit, out: Outcome, log: Callable[[str], None]) -> None:
    try:
        future.result()
        out.done.append(unit)
    except Exception as e:  # noqa: BLE001 - one failed run must not stop the others
        out.failed.append((unit, str(e)))
        log(f"{unit.label}: failed: {e}")

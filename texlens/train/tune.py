"""``texlens tune``: hyper-parameter search with Optuna over short training runs.

The search space is a YAML mapping of dotted config keys to distributions::

    train.lr: {low: 1e-4, high: 3e-3, log: true}     # float, log-uniform
    train.label_smoothing: {low: 0.0, high: 0.2}     # float, uniform
    model.enc_layers: {low: 2, high: 4, int: true}   # integer
    model.d_model: {choices: [128, 160, 192]}        # categorical

Every trial trains ``trial_steps`` steps into STUDY_DIR/trial-NNNN and is scored by
its best validation sentence accuracy; a median pruner stops trials that fall behind.
The study lives in STUDY_DIR/study.db (SQLite), so a search that was stopped resumes
where it was: finished trials count towards the number asked for. A study directory
is meant for one search process at a time.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from texlens.config import Config, ConfigError, config_to_dict, load_config
from texlens.train.run import train

MONITOR = "val/sentence_acc"
STUDY_NAME = "texlens-tune"
_SPEC_FIELDS = {"low", "high", "log", "int", "step", "choices"}


@dataclasses.dataclass
class TuneResult:
    study_dir: Path
    keys: list[str]  # the searched config keys
    trials: list[dict]  # rows of trials.csv, best first
    best: dict | None  # the best finished trial's row, None before any finished


class OptunaPruning(L.Callback):
    """Reports each validation's sentence accuracy to an Optuna trial and stops the run
    when the pruner says so (optuna-integration has such a callback, but it pins Lightning
    versions; this is all that is needed). ``best`` is the trial's score."""

    def __init__(self, trial: optuna.Trial, monitor: str = MONITOR):
        self.trial, self.monitor = trial, monitor
        self.best: float | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        value = float(value)
        self.best = value if self.best is None else max(self.best, value)
        self.trial.report(value, trainer.global_step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.monitor} {value:.4f} at step {trainer.global_step}")


def _number(value: Any, where: str) -> float | int:
    # PyYAML reads 1e-4 (no dot) as a string, so numeric strings are accepted too.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return value


def _parse_spec(key: str, spec: Any) -> dict:
    where = f"search space {key}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping like {{low: 0.1, high: 1.0}} or "
                          f"{{choices: [...]}}, got {spec!r}")
    unknown = sorted(set(spec) - _SPEC_FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} "
                          f"(known: {', '.join(sorted(_SPEC_FIELDS))})")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list, alone")
        if any(not isinstance(c, (str, int, float, bool)) for c in choices):
            raise ConfigError(f"{where}: choices must be numbers, strings or booleans")
        return {"choices": choices}
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: needs low and high, or choices")
    out = {"low": _number(spec["low"], f"{where}.low"),
           "high": _number(spec["high"], f"{where}.high"),
           "log": bool(spec.get("log", False)), "int": bool(spec.get("int", False))}
    if "step" in spec:
        out["step"] = _number(spec["step"], f"{where}.step")
    for f in ("low", "high", "step"):
        if f not in out:
            continue
        if out["int"] and out[f] != int(out[f]):
            raise ConfigError(f"{where}.{f}: an integer range needs integers")
        out[f] = int(out[f]) if out["int"] else float(out[f])
    if out["low"] > out["high"]:
        raise ConfigError(f"{where}: low is above high")
    if out["log"] and out["low"] <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0")
    if out["log"] and "step" in out:
        raise ConfigError(f"{where}: step and log cannot be combined")
    return out


def _override(key: str, value: Any) -> str:
    # JSON scalars are YAML too, so load_config's --set parser reads them back unchanged.
    return f"{key}={json.dumps(value)}"


def load_space(path: str | Path, config: str | Path, overrides: Sequence[str] = ()) -> dict:
    """Read and check a search space; every key and bound is applied to the config once,
    so a typo or a value of the wrong type fails here, naming the key."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read search space: {e}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: expected a mapping of config keys to distributions")
    space = {str(key): _parse_spec(str(key), spec) for key, spec in raw.items()}
    for key, spec in space.items():
        for value in spec.get("choices", [spec.get("low"), spec.get("high")]):
            try:
                load_config(config, [*overrides, _override(key, value)])
            except ConfigError as e:
                raise ConfigError(f"{path}: {e}") from None
    return space


def suggest(trial: optuna.Trial, space: dict) -> dict:
    """One value per key, drawn by the study's sampler."""
    params = {}
    for key, spec in space.items():
        if "choices" in spec:
            params[key] = trial.suggest_categorical(key, spec["choices"])
        elif spec["int"]:
            params[key] = trial.suggest_int(key, spec["low"], spec["high"],
                                            step=spec.get("step", 1), log=spec["log"])
        else:
            params[key] = trial.suggest_float(key, spec["low"], spec["high"],
                                              step=spec.get("step"), log=spec["log"])
    return params


def trial_config(config: str | Path, overrides: Sequence[str], params: dict, out_dir: Path,
                 steps: int | None) -> Config:
    cfg = load_config(config, [*overrides, *(_override(k, v) for k, v in params.items())])
    cfg.train.out_dir = str(out_dir)
    if steps:
        cfg.train.max_steps = steps
        # A trial must validate at least once to have a score.
        if cfg.train.val_every_steps > steps:
            cfg.train.val_every_steps = steps
    return cfg


def _score(t: FrozenTrial) -> float | None:
    if t.value is not None:
        return t.value
    if t.intermediate_values:  # a pruned trial: its last report
        return t.intermediate_values[max(t.intermediate_values)]
    return None


def trial_rows(study: optuna.Study, keys: Sequence[str]) -> list[dict]:
    """One row per trial, best score first (trials without a score last)."""
    rows = []
    for t in study.trials:
        score = _score(t)
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        rows.append({"trial": t.number, "state": t.state.name.lower(), "score": score,
                     "seconds": round(seconds, 1) if seconds is not None else None,
                     **{k: t.params.get(k) for k in keys}})
    return sorted(rows, key=lambda r: (r["score"] is None, -(r["score"] or 0.0), r["trial"]))


def format_value(value: Any) -> str:
    """A table cell: blank for missing, 4 significant digits for floats."""
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plain(value: Any) -> Any:
    # safe_dump cannot write tuples (config pairs like train.betas).
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_reports(study: optuna.Study, space: dict, config: str | Path,
                  overrides: Sequence[str], study_dir: Path) -> TuneResult:
    """trials.csv, trials.md (best first) and best.yaml, the config with the best values."""
    keys = list(space)
    rows = trial_rows(study, keys)
    columns = ["trial", "state", "score", "seconds", *keys]
    with open(study_dir / "trials.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(r[c]) for c in columns) + " |" for r in rows]
    (study_dir / "trials.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = [r for r in rows if r["state"] == "complete"]
    if not done:
        return TuneResult(study_dir, keys, rows, None)
    best = done[0]
    cfg = load_config(config, [*overrides, *(_override(k, best[k]) for k in keys)])
    cfg.train.out_dir = str(study_dir / "best")
    header = (f"# Best of {len(done)} completed trials in {study_dir}: trial {best['trial']}, "
              f"validation sentence accuracy {best['score']:.4f}.\n"
              f"# Searched: {', '.join(keys)}.\n")
    body = yaml.safe_dump(_plain(config_to_dict(cfg)), sort_keys=False)
    (study_dir / "best.yaml").write_text(header + body, encoding="utf-8")
    return TuneResult(study_dir, keys, rows, best)


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    raise ConfigError(f"--sampler must be random or tpe, not {name!r}")


def open_study(study_dir: Path, space: dict, sampler: str, seed: int) -> optuna.Study:
    """Create or reopen the study in study_dir/study.db."""
    study_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=f"sqlite:///{(study_dir / 'study.db').resolve()}",
                                study_name=STUDY_NAME, direction="maximize",
                                load_if_exists=True,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5))
    stored = study.user_attrs.get("space")
    if stored is None:
        study.set_user_attr("space", space)
    elif stored != json.loads(json.dumps(space)):
        raise ConfigError(f"{study_dir} holds a search over another space "
                          f"({', '.join(stored)}); use another --study-dir")
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # Left running by a search that was killed: it will never finish.
        study.tell(t.number, state=TrialState.FAIL)
    # Offset by the trials so far: a resumed search must not redraw the first values.
    study.sampler = _sampler(sampler, seed + len(study.trials))
    return study


def tune(config: str | Path, space_path: str | Path, trials: int, study_dir: str | Path,
         sampler: str = "random", trial_steps: int | None = None, seed: int = 0,
         overrides: Sequence[str] = ()) -> TuneResult:
    """Run trials until ``trials`` have finished (completed or pruned) in the study."""
    study_dir = Path(study_dir)
    space = load_space(space_path, config, overrides)
    study = open_study(study_dir, space, sampler, seed)

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, space)
        cfg = trial_config(config, overrides, params, study_dir / f"trial-{trial.number:04d}",
                           trial_steps)
        pruning = OptunaPruning(trial)
        try:
            train(cfg, callbacks=[pruning])
        except SystemExit as e:
            # Lightning answers Ctrl-C with sys.exit(1); as KeyboardInterrupt Optuna
            # records the trial as failed (to be redone) and the search stops.
            raise KeyboardInterrupt from e
        if pruning.best is None:
            raise ConfigError(f"trial {trial.number} ran no validation; set "
                              "train.val_every_steps to validate within --trial-steps")
        return pruning.best

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    left = trials - len(study.get_trials(deepcopy=False, states=finished))

    def report(s: optuna.Study, _trial: FrozenTrial) -> None:
        write_reports(s, space, config, overrides, study_dir)  # progress survives a crash

    if left > 0:
        study.optimize(objective, n_trials=left, callbacks=[report])
    return write_reports(study, space, config, overrides, study_dir)

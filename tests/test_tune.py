"""Hyper-parameter search (``texlens tune``): space checks, pruning, reports, resuming."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from texlens.cli import app
from texlens.config import ConfigError, config_to_dict, load_config
from texlens.train.tune import OptunaPruning, load_space, open_study, trial_rows

runner = CliRunner()
SPACE = {"train.lr": {"low": "1e-4", "high": "3e-3", "log": True},
         "train.label_smoothing": {"low": 0.0, "high": 0.2}}


def write_yaml(path: Path, data: dict) -> Path:
    # The JSON round trip turns the config's tuples into lists, which safe_dump can write.
    path.write_text(yaml.safe_dump(json.loads(json.dumps(data))), encoding="utf-8")
    return path


@pytest.fixture
def tiny_yaml(tmp_path, make_cfg, synth_master) -> Path:
    cfg = make_cfg(tmp_path / "run", [str(synth_master)], [str(synth_master)])
    return write_yaml(tmp_path / "tiny.yaml", config_to_dict(cfg))


def read_rows(study_dir: Path) -> list[dict]:
    with open(study_dir / "trials.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def tune(cfg: Path, space: Path, study: Path, trials: int):
    # 3 steps = one epoch of the 12 samples in batches of 4, validated at its end.
    return runner.invoke(app, ["tune", str(cfg), "--space", str(space), "--trials", str(trials),
                               "--study-dir", str(study), "--trial-steps", "3"])


def test_search_writes_sorted_reports_and_resumes(tmp_path, tiny_yaml):
    space = write_yaml(tmp_path / "space.yaml", SPACE)
    study = tmp_path / "study"
    result = tune(tiny_yaml, space, study, 3)
    assert result.exit_code == 0, result.output
    rows = read_rows(study)
    assert [r["state"] for r in rows] == ["complete"] * 3
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    for r in rows:
        assert 1e-4 <= float(r["train.lr"]) <= 3e-3
        assert 0.0 <= float(r["train.label_smoothing"]) <= 0.2
    md = (study / "trials.md").read_text().splitlines()
    assert md[0].startswith("| trial | state | score |") and len(md) == 2 + 3
    assert [line.split(" | ")[0].strip("| ") for line in md[2:]] == [r["trial"] for r in rows]
    best = load_config(study / "best.yaml")
    assert best.train.lr == pytest.approx(float(rows[0]["train.lr"]))
    assert best.train.label_smoothing == pytest.approx(float(rows[0]["train.label_smoothing"]))
    assert best.train.max_steps == 6  # the config's own, not the trials' 3
    assert best.model.d_model == 32 and best.train.out_dir == str(study / "best")
    assert "best: trial" in result.output
    assert torch.load(study / "trial-0000" / "checkpoints" / "last.ckpt",
                      weights_only=False)["global_step"] == 3

    result = tune(tiny_yaml, space, study, 4)  # resumes: only one more trial runs
    assert result.exit_code == 0, result.output
    rows = read_rows(study)
    assert sorted(int(r["trial"]) for r in rows) == [0, 1, 2, 3]
    assert sorted(p.name for p in study.glob("trial-*")) == [f"trial-000{i}" for i in range(4)]
    lrs = [r["train.lr"] for r in rows]
    assert len(set(lrs)) == 4  # the resumed sampler does not redraw the first trial's values


def test_unknown_key_in_space_is_an_error_naming_it(tmp_path, tiny_yaml):
    space = write_yaml(tmp_path / "space.yaml", {**SPACE, "train.lrr": {"low": 0.1, "high": 1}})
    result = tune(tiny_yaml, space, tmp_path / "study", 2)
    assert result.exit_code == 2, result.output
    assert "train.lrr" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("spec,fragment", [
    ({"model.d_model": {"low": 16.5, "high": 64}}, "model.d_model"),  # float for an int field
    ({"train.lr": {"low": 0.0, "high": 1e-3, "log": True}}, "log range"),
    ({"train.lr": {"low": 1e-3}}, "needs low and high"),
    ({"train.lr": {"low": 1e-3, "high": 1e-2, "scale": "log"}}, "'scale'"),
    ({"model.d_model": {"choices": []}}, "choices"),
    ({"model.enc_layers": {"low": 1, "high": 2.5, "int": True}}, "integers"),
])
def test_bad_search_spaces(tmp_path, tiny_yaml, spec, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_space(write_yaml(tmp_path / "s.yaml", spec), tiny_yaml)


def test_space_values_are_typed(tmp_path, tiny_yaml):
    space = load_space(write_yaml(tmp_path / "s.yaml", {
        **SPACE, "model.d_model": {"choices": [16, 32]},
        "model.enc_layers": {"low": 1, "high": 2, "int": True}}), tiny_yaml)
    assert space["train.lr"] == {"low": 1e-4, "high": 3e-3, "log": True, "int": False}
    assert space["model.enc_layers"]["low"] == 1 and space["model.enc_layers"]["int"]


def test_rows_sort_by_score_with_pruned_and_failed_trials():
    study = optuna.create_study(direction="maximize")
    dist = {"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2)}
    add = study.add_trial
    add(optuna.trial.create_trial(params={"train.lr": 1e-3}, distributions=dist, value=0.2))
    add(optuna.trial.create_trial(params={"train.lr": 2e-3}, distributions=dist,
                                  state=TrialState.FAIL))
    add(optuna.trial.create_trial(params={"train.lr": 3e-3}, distributions=dist, value=0.5))
    add(optuna.trial.create_trial(params={"train.lr": 4e-3}, distributions=dist,
                                  state=TrialState.PRUNED, intermediate_values={1: 0.1, 2: 0.3}))
    rows = trial_rows(study, ["train.lr"])
    assert [(r["trial"], r["state"], r["score"]) for r in rows] == [
        (2, "complete", 0.5), (3, "pruned", 0.3), (0, "complete", 0.2), (1, "fail", None)]
    assert rows[0]["train.lr"] == 3e-3


def test_pruning_callback_reports_and_prunes():
    reports = []
    trial = SimpleNamespace(report=lambda v, step: reports.append((v, step)),
                            should_prune=lambda: len(reports) >= 2)
    cb = OptunaPruning(trial)
    trainer = SimpleNamespace(sanity_checking=True, global_step=0,
                              callback_metrics={"val/sentence_acc": torch.tensor(0.9)})
    cb.on_validation_end(trainer, None)  # the sanity check is not a score
    assert reports == [] and cb.best is None
    trainer.sanity_checking, trainer.global_step = False, 3
    trainer.callback_metrics = {"val/sentence_acc": torch.tensor(0.5)}
    cb.on_validation_end(trainer, None)
    trainer.global_step = 6
    trainer.callback_metrics = {"val/sentence_acc": torch.tensor(0.25)}
    with pytest.raises(optuna.TrialPruned):
        cb.on_validation_end(trainer, None)
    assert reports == [(0.5, 3), (0.25, 6)] and cb.best == 0.5


def test_reopening_a_study_fails_stale_trials_and_checks_the_space(tmp_path):
    space = {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True, "int": False}}
    study = open_study(tmp_path, space, "random", 0)
    study.ask()  # left running, as by a killed search
    study = open_study(tmp_path, space, "tpe", 0)
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    with pytest.raises(ConfigError, match="another space"):
        open_study(tmp_path, {"train.warmup": {"low": 0.0, "high": 0.1}}, "random", 0)

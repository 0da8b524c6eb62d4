"""``texlens ablate``: spec checks, a tiny spec end to end, resuming without retraining."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from texlens.cli import app
from texlens.config import config_to_dict, load_config
from texlens.train.ablate import (
    AblationError,
    eval_recipe,
    load_spec,
    plan,
    select_arms,
    unit_state,
)
from texlens.train.ablate_report import beyond_spread, mean_curve

runner = CliRunner()


def write_base(path: Path, data: Path) -> Path:
    """A ~40k-parameter model; 12 samples in batches of 4, validated every 2 steps."""
    cfg = {
        "name": "tiny",
        "model": {"d_model": 32, "n_heads": 2, "enc_layers": 1, "enc_ff": 64,
                  "dec_layers": 1, "dec_ff": 64, "cnn_width": 8, "dropout": 0.0,
                  "max_len": 64},
        "data": {"train": [str(data)], "val": [str(data)], "height": 32, "max_width": 256,
                 "batch_size": 4, "max_tokens": 60, "val_limit": 4,
                 "augment": {"enabled": False}},
        "train": {"max_epochs": 50, "max_steps": 6, "val_every_steps": 2, "log_every": 1,
                  "threads": 1},
    }
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def write_spec(path: Path, **spec) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def base_cfg(tmp_path, synth_master) -> Path:
    return write_base(tmp_path / "tiny.yaml", synth_master)


def spec_error(tmp_path: Path, base_cfg: Path, **spec) -> str:
    spec = {"base": str(base_cfg), "out": str(tmp_path / "out"), **spec}
    with pytest.raises(AblationError) as e:
        load_spec(write_spec(tmp_path / "spec.yaml", **spec))
    return str(e.value)


def test_spec_errors_name_the_key_and_the_file(tmp_path, base_cfg):
    msg = spec_error(tmp_path, base_cfg, arms={"base": []}, seed=[0])
    assert "spec.yaml" in msg and "unknown key 'seed'" in msg
    msg = spec_error(tmp_path, base_cfg, arms={"base": [], "b": {"reuse": "base", "beem": 3}})
    assert "arms.b" in msg and "unknown key 'beem'" in msg
    msg = spec_error(tmp_path, base_cfg, arms={"base": [], "b": {"reuse": "nope", "beam": 3}})
    assert "arms.b.reuse" in msg and "'nope'" in msg and "training arms: base" in msg
    msg = spec_error(tmp_path, base_cfg, arms={"base": [], "b": ["train.lrr=0.1"]})
    assert "arms.b" in msg and "'train.lrr'" in msg
    msg = spec_error(tmp_path, base_cfg, arms={"base": ["train.seed=3"]})
    assert "train.seed" in msg and "set by texlens ablate" in msg
    msg = spec_error(tmp_path, base_cfg, arms={"base": [], "a": {"reuse": "base", "average": 3}})
    assert "train.keep_checkpoints=3" in msg
    msg = spec_error(tmp_path, base_cfg, seeds=[0, 1],
                     arms={"base": [], "e": {"reuse": "base", "ensemble": 3}})
    assert "arms.e.ensemble" in msg and "2 seeds" in msg
    msg = spec_error(tmp_path, base_cfg,
                     arms={"base": [], "r": {"reuse": "base", "rescore": "r2l"}})
    assert "arms.r.rescore" in msg and "beam of at least 2" in msg
    msg = spec_error(tmp_path, base_cfg, arms={"other": []})
    assert "no arm named 'base'" in msg
    msg = spec_error(tmp_path, base_cfg, seeds=[], arms={"base": []})
    assert "seeds" in msg


def test_cli_spec_error_is_one_line(tmp_path, base_cfg):
    spec = write_spec(tmp_path / "s.yaml", base=str(base_cfg), arms={"base": {"sett": []}})
    result = runner.invoke(app, ["ablate", str(spec), "--dry-run"])
    assert result.exit_code == 2
    assert "unknown key 'sett'" in result.output and "Traceback" not in result.output


def test_changed_overrides_make_a_unit_stale(tmp_path, base_cfg):
    path = write_spec(tmp_path / "s.yaml", base=str(base_cfg), out=str(tmp_path / "out"),
                      arms={"base": [], "lr": ["train.lr=0.001"]})
    spec = load_spec(path)
    unit = next(u for u in plan(spec) if u.arm == "lr")
    unit.dir.mkdir(parents=True)
    (unit.dir / "recipe.json").write_text(json.dumps(
        {"base": str(base_cfg), "set": ["train.lr=0.002", "train.seed=0"]}))
    assert unit_state(spec, unit) == "stale"
    result = runner.invoke(app, ["ablate", str(path), "--jobs", "1", "--cores", "1"])
    assert result.exit_code == 2 and "other overrides" in result.output


def test_arm_selection_runs_only_those_arms(tmp_path, base_cfg):
    path = write_spec(tmp_path / "s.yaml", base=str(base_cfg), out=str(tmp_path / "out"),
                      arms={"base": [], "lr": ["train.lr=0.001"],
                            "beam2": {"reuse": "base", "beam": 2}})
    spec = load_spec(path)
    assert [u.arm for u in select_arms(spec, ["beam2", "lr"])] == ["lr", "beam2"]
    assert select_arms(spec, None) == plan(spec)
    with pytest.raises(AblationError, match="no arm 'nope'; its arms: base, lr, beam2"):
        select_arms(spec, ["nope"])
    result = runner.invoke(app, ["ablate", str(path), "--arm", "lr", "--dry-run"])
    assert result.exit_code == 0 and "lr" in result.output and "beam2" not in result.output
    result = runner.invoke(app, ["ablate", str(path), "--arm", "nope"])
    assert result.exit_code == 2 and "no arm 'nope'" in result.output


def test_eval_max_tokens_is_part_of_the_scoring_recipe(tmp_path, base_cfg):
    spec = load_spec(write_spec(tmp_path / "s.yaml", base=str(base_cfg), eval_max_tokens=5,
                                out=str(tmp_path / "out"), arms={"base": []}))
    unit = plan(spec)[0]
    assert spec.eval_max_tokens == 5 and eval_recipe(spec, unit)["eval_max_tokens"] == 5
    plain = load_spec(write_spec(tmp_path / "p.yaml", base=str(base_cfg),
                                 out=str(tmp_path / "out"), arms={"base": []}))
    assert "eval_max_tokens" not in eval_recipe(plain, plan(plain)[0])  # old results stay valid
    msg = spec_error(tmp_path, base_cfg, arms={"base": []}, eval_max_tokens=-1)
    assert "eval_max_tokens" in msg


def test_eval_unseen_in_is_part_of_the_scoring_recipe(tmp_path, base_cfg):
    spec = load_spec(write_spec(tmp_path / "s.yaml", base=str(base_cfg), arms={"base": []},
                                eval_unseen_in=["data/train/caption.txt"],
                                out=str(tmp_path / "out")))
    assert eval_recipe(spec, plan(spec)[0])["eval_unseen_in"] == ["data/train/caption.txt"]
    msg = spec_error(tmp_path, base_cfg, arms={"base": []}, eval_unseen_in="data/train")
    assert "eval_unseen_in" in msg and "list of caption files" in msg


SPECS = sorted((Path(__file__).parents[1] / "configs" / "ablations").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_shipped_specs_load(path, monkeypatch):
    monkeypatch.chdir(path.parents[2])  # spec paths are relative to the repository
    spec = load_spec(path)
    assert spec.baseline in spec.arms and len(spec.seeds) >= 1
    if path.stem == "log":  # at least 2 seeds an arm; 2 groups of 3 for the 3-model ensembles
        assert all(len(a.seeds) >= 2 for a in spec.arms.values())
        assert len(spec.arms["base"].seeds) == 6


def test_variants_spec_matches_the_variant_configs(monkeypatch):
    """Each arm of configs/ablations/variants.yaml is its configs/variants/ARM.yaml."""
    root = Path(__file__).parents[1]
    monkeypatch.chdir(root)
    spec = load_spec(root / "configs" / "ablations" / "variants.yaml")
    for arm in spec.arms.values():
        mine = load_config(spec.base, [*spec.overrides, *arm.overrides])
        theirs = load_config(root / "configs" / "variants" / f"{arm.name}.yaml")
        for cfg in (mine, theirs):
            cfg.name, cfg.train.out_dir = arm.name, ""
        assert config_to_dict(mine) == config_to_dict(theirs), arm.name


def test_beyond_spread_and_mean_curve():
    assert beyond_spread(0.05, 0.01, 0.02) == "yes"
    assert beyond_spread(-0.02, 0.01, 0.02) == "no"
    assert beyond_spread(0.05, None, 0.02) == "yes*"
    assert beyond_spread(0.05, None, None) == "?"
    assert mean_curve([[(1, 1.0), (2, 3.0)], [(1, 3.0)]]) == [(1, 2.0), (2, 3.0)]


def test_summary_puts_the_sets_side_by_side_and_report_runs_nothing(tmp_path, base_cfg):
    from texlens.train.ablate_report import ArmResults, summary_markdown
    path = write_spec(tmp_path / "two.yaml", base=str(base_cfg), out=str(tmp_path / "o"),
                      eval_data=["a", "b"], arms={"base": [], "wide": ["model.d_model=48"]})
    spec = load_spec(path)

    def result(a: float, b: float) -> dict:
        return {"eval": {"a": {"sentence_acc": a}, "b": {"sentence_acc": b}}}
    arms = {"base": ArmResults(spec.arms["base"], 2, [result(0.5, 0.2), result(0.6, 0.2)]),
            "wide": ArmResults(spec.arms["wide"], 2, [result(0.8, 0.21)])}
    rows = [line for line in summary_markdown(spec, arms) if line.startswith("| ")]
    assert rows[1].startswith("| **base** | 2/2 | 55.0 ± 7.1 |  |  | 20.0 ± 0.0 |")
    # +25 points beyond base's spread of 7.1 on a; +1 within 0.0 + an unknown spread on b.
    assert rows[2] == "| wide | 1/2 | 80.0 | +25.0 | yes* | 21.0 | +1.0 | yes* |"
    res = runner.invoke(app, ["ablate", str(path), "--report"])
    assert res.exit_code == 0, res.output
    table = (tmp_path / "o" / "table.md").read_text()
    assert "## Summary: ExpRate % on each set" in table and "| wide | 0/1 |" in table
    assert not (tmp_path / "o" / "base").exists()  # nothing trained


def test_tiny_spec_end_to_end_then_resume(tmp_path, base_cfg, synth_master):
    out = tmp_path / "abl"
    spec = write_spec(
        tmp_path / "tiny-ablation.yaml", base=str(base_cfg), seeds=[0, 1],
        eval_data=[str(synth_master)], out=str(out),
        arms={"base": ["train.keep_checkpoints=2"],
              "slow": {"set": ["train.lr=0.0001"], "seeds": [0]},
              "beam2": {"reuse": "base", "beam": 2},
              "avg2": {"reuse": "base", "average": 2, "seeds": [0]},
              "ens2": {"reuse": "base", "ensemble": 2}})
    args = ["ablate", str(spec), "--jobs", "1", "--cores", "1"]

    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.count("--set train.seed=") == 3  # base x 2, slow x 1
    assert not out.exists()

    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    # Kept checkpoints: validations at steps 2, 4, 6; the last two kept.
    ckpts = sorted(p.name for p in (out / "base" / "seed0" / "checkpoints").glob("step*"))
    assert ckpts == ["step4.ckpt", "step6.ckpt"]
    results = {p.parent.relative_to(out).as_posix(): json.loads(p.read_text())
               for p in out.glob("*/*/result.json")}
    assert sorted(results) == ["avg2/seed0", "base/seed0", "base/seed1", "beam2/seed0",
                               "beam2/seed1", "ens2/seeds0+1", "slow/seed0"]
    assert len(results["ens2/seeds0+1"]["models"]) == 2
    assert results["avg2/seed0"]["models"] == [str(out / "avg2" / "seed0" / "model.pt")]
    assert all(r["eval"][str(synth_master)]["n"] == 12 for r in results.values())
    assert results["base/seed0"]["steps"] == 6
    table = (out / "table.md").read_text()
    rows = {line.split(" | ")[0].strip("| *"): line.split(" | ")
            for line in table.splitlines() if line.startswith("| ")}
    assert {"base", "slow", "beam2", "avg2", "ens2"} <= set(rows)
    assert rows["base"][2] == "2/2" and rows["slow"][2] == "1/1" and rows["ens2"][2] == "1/1"
    assert "±" in rows["base"][3] and rows["slow"][7] in ("yes*", "no*")
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"

    # Run again: only what is missing is redone. base seed 1 lost its scores: scored
    # again, not retrained; everything else is left as it is.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*/*") if p.is_file()}
    (out / "base" / "seed1" / "result.json").unlink()
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.output.count(" done ") == 6 and dry.output.count(" evaluate ") == 1
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    changed = {p.relative_to(out).as_posix() for p, t in stamps.items()
               if not p.exists() or p.stat().st_mtime_ns != t}
    assert changed == {"base/seed1/result.json"}

    # A run that stopped midway (no finished mark, no scores) resumes from its last.ckpt.
    (out / "slow" / "seed0" / "train.json").unlink()
    (out / "slow" / "seed0" / "result.json").unlink()
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert " resume " in dry.output
    assert f"--resume {out / 'slow' / 'seed0' / 'checkpoints' / 'last.ckpt'}" in dry.output

    # Scoring the final weights instead of validation's choice: rescored, not retrained;
    # an arm may keep its own choice.
    write_spec(spec, base=str(base_cfg), seeds=[0, 1], eval_data=[str(synth_master)],
               out=str(out), eval_checkpoint="last",
               arms={"base": ["train.keep_checkpoints=2"],
                     "beam2": {"reuse": "base", "beam": 2},
                     "ens2": {"reuse": "base", "ensemble": 2},
                     "avg2": {"reuse": "base", "average": 2, "seeds": [0], "checkpoint": "best"}})
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.output.count(" evaluate ") == 5 and dry.output.count(" done ") == 1  # avg2
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    again = {p.parent.relative_to(out).as_posix(): json.loads(p.read_text())
             for p in out.glob("*/*/result.json")}
    assert again["ens2/seeds0+1"]["models"] == [str(out / "base" / f"seed{s}" / "last.pt")
                                                for s in (0, 1)]
    assert again["base/seed0"]["recipe"]["checkpoint"] == "last"
    assert "checkpoint" not in again["avg2/seed0"]["recipe"]
    assert "final weights" in (out / "table.md").read_text()
    msg = spec_error(tmp_path, base_cfg, arms={"base": []}, eval_checkpoint="first")
    assert "eval_checkpoint" in msg and "best, last" in msg

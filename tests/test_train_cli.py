"""End to end through the command line: data synth, train, resume, predict, evaluate.

One tiny training run (6 steps) is shared by the module; the other commands use
its exported model. Everything is written under pytest's temporary directories.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import texlens.train.run  # noqa: F401 - import Lightning now, see below
from texlens.checkpoint import FORMAT, atomic_save, load_model
from texlens.cli import app
from texlens.tokens import Vocab

# Lightning's log handler keeps the stderr it saw when first imported; imported inside a
# CliRunner call, that stream is closed by the next call ("--- Logging error ---" noise).
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def assert_clean_error(result, code: int, *fragments: str) -> str:
    """Exit ``code`` with exactly one one-line 'error:' message and no traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = error_lines(result)
    assert len(lines) == 1, result.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def write_config(path: Path, train_dir: Path, val_dir: Path, out_dir: Path, **train) -> Path:
    cfg = {
        "name": "tiny",
        "model": {"d_model": 32, "n_heads": 2, "enc_layers": 1, "enc_ff": 64,
                  "dec_layers": 1, "dec_ff": 64, "cnn_width": 8, "dropout": 0.0,
                  "max_len": 64},
        "data": {"train": [str(train_dir)], "val": [str(val_dir)], "height": 32,
                 "max_width": 256, "batch_size": 4, "max_tokens": 60, "val_limit": 4,
                 "augment": {"enabled": True, "p_affine": 0.5}},
        "train": {"max_epochs": 50, "max_steps": 6, "threads": 1, "log_every": 1,
                  "seed": 0, "out_dir": str(out_dir), **train},
    }
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_master):
    """Train 6 steps (12 samples, batch 4: two epochs, validated after each)."""
    root = tmp_path_factory.mktemp("train")
    train_dir = root / "train"
    shutil.copytree(synth_master, train_dir)
    # One bad line: skipped with a report (data.on_error defaults to skip).
    with open(train_dir / "caption.txt", "a", encoding="utf-8") as f:
        f.write("ghost\tx + 1\n")
    out = root / "run"
    cfg = write_config(root / "tiny.yaml", train_dir, synth_master, out)
    result = invoke("train", cfg)
    assert result.exit_code == 0, result.output
    return {"root": root, "out": out, "cfg": cfg, "train_dir": train_dir,
            "val_dir": synth_master, "output": result.output, "model": out / "model.pt"}


# -- train ----------------------------------------------------------------------

def test_train_writes_checkpoints_logs_and_model(trained):
    out = trained["out"]
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file() and (out / "checkpoints" / "best.ckpt").is_file()
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 6
    assert ckpt["texlens"]["format"] == FORMAT
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temp files
    metrics = next(out.glob("logs/version_*/metrics.csv")).read_text()
    assert "train/loss" in metrics and "val/sentence_acc" in metrics
    assert "train: 12 samples, val: 4" in trained["output"]
    assert "train: 1 bad samples" in trained["output"]
    assert f"{trained['train_dir'] / 'caption.txt'}:13" in trained["output"]


def test_exported_model_loads_with_the_training_vocabulary(trained):
    model, cfg, vocab = load_model(trained["model"])
    assert cfg.model.d_model == 32 and cfg.data.height == 32
    caps = (trained["train_dir"] / "caption.txt").read_text(encoding="utf-8").splitlines()
    assert vocab == Vocab.build(line.split("\t")[1].split() for line in caps)
    assert not model.training
    raw = torch.load(trained["model"], map_location="cpu", weights_only=False)
    assert "val_sentence_acc" in raw


def test_resume_continues_from_last_checkpoint(tmp_path, synth_master):
    cfg = write_config(tmp_path / "c.yaml", synth_master, synth_master, tmp_path / "run",
                       max_steps=3, scheduler="cosine")
    assert invoke("train", cfg).exit_code == 0
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 3
    result = invoke("train", cfg, "--resume", last, "--set", "train.max_steps=6")
    assert result.exit_code == 0, result.output
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["global_step"] == 6
    assert ckpt["epoch"] >= 1


def test_resume_with_more_steps_under_onecycle(trained, tmp_path):
    last = trained["out"] / "checkpoints" / "last.ckpt"
    result = invoke("train", trained["cfg"], "--resume", last, "--set", "train.max_steps=9",
                    "--set", f"train.out_dir={tmp_path / 'more'}")
    assert result.exit_code == 0, repr(result.exception)
    assert torch.load(tmp_path / "more" / "checkpoints" / "last.ckpt",
                      weights_only=False)["global_step"] == 9


def test_train_config_errors_exit_2(tmp_path, synth_master):
    cfg = write_config(tmp_path / "c.yaml", synth_master, synth_master, tmp_path / "run")
    assert_clean_error(invoke("train", cfg, "--set", "train.lr=fast"), 2, "train.lr", "float")
    assert_clean_error(invoke("train", cfg, "--set", "train.lrr=0.1"), 2, "'train.lrr'")
    assert_clean_error(invoke("train", cfg, "--set", "train.profiler=fast"), 2,
                       "train.profiler", "'simple'")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  d_model: big\n")
    assert_clean_error(invoke("train", bad), 2, "model.d_model")
    assert_clean_error(invoke("train", tmp_path / "missing.yaml"), 2, "missing.yaml")
    assert not (tmp_path / "run").exists()


def test_train_stops_on_bad_samples_when_asked(tmp_path, synth_master):
    data = tmp_path / "data"
    shutil.copytree(synth_master, data)
    with open(data / "caption.txt", "a", encoding="utf-8") as f:
        f.write("ghost\tx\n")
    cfg = write_config(tmp_path / "c.yaml", data, data, tmp_path / "run")
    result = invoke("train", cfg, "--set", "data.on_error=stop")
    assert_clean_error(result, 2, "data.train: 1 bad samples")
    assert f"{data / 'caption.txt'}:13" in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


# -- predict -------------------------------------------------------------------------

def test_predict_prints_one_line_per_image(trained):
    images = trained["val_dir"] / "images"
    result = invoke("predict", "--model", trained["model"], images)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    files = sorted(images.iterdir())
    assert len(lines) == len(files) == 12
    for line, f in zip(lines, files, strict=True):
        name, sep, _latex = line.partition("\t")
        assert sep == "\t" and name == str(f)


def test_predict_json_lines(trained):
    files = sorted((trained["val_dir"] / "images").iterdir())[:3]
    result = invoke("predict", "--model", trained["model"], "--json", *files)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in rows] == [str(f) for f in files]
    assert all(0.0 <= r["confidence"] <= 1.0 and isinstance(r["latex"], str) for r in rows)


def test_predict_skips_unreadable_files_and_exits_1(trained, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted((trained["val_dir"] / "images").iterdir())[:3]
    for f in good:
        shutil.copy(f, folder / f.name)
    (folder / "broken[v1].png").write_text("not an image")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    result = invoke("predict", "--model", trained["model"], folder)
    assert result.exit_code == 1, result.output
    printed = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert printed == [str(folder / f.name) for f in good]
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 1
    assert str(folder / "broken[v1].png") in skipped[0]  # whole path, on one line
    assert "1 of 4 files could not be read" in result.stderr


def test_predict_reads_a_dataset_directory(trained):
    # a dataset directory keeps its images in images/, beside caption.txt
    result = invoke("predict", "--model", trained["model"], trained["val_dir"])
    assert result.exit_code == 0, result.output
    printed = [Path(line.split("\t")[0]) for line in result.stdout.splitlines()]
    assert printed and all(p.parent == Path(trained["val_dir"]) / "images" for p in printed)


def test_predict_without_images(trained, tmp_path):
    assert_clean_error(invoke("predict", "--model", trained["model"], tmp_path), 2,
                       "no images found")


# -- evaluate ----------------------------------------------------------------------------

def test_evaluate_writes_metrics_json_and_samples(trained, tmp_path):
    out = tmp_path / "eval" / "metrics.json"
    result = invoke("evaluate", "--data", trained["val_dir"], "--model", trained["model"],
                    "--json", out)
    assert result.exit_code == 0, result.output
    m = json.loads(out.read_text())
    for key in ("n", "sentence_acc", "exprate_le1", "exprate_le2", "wer", "token_acc",
                "ned", "bleu", "score"):
        assert key in m, key
    assert m["n"] == 12
    assert 0.0 <= m["sentence_acc"] <= m["exprate_le1"] <= m["exprate_le2"] <= 1.0
    for grouping in ("by_length", "by_height", "by_symbol_size"):
        assert sum(row["n"] for row in m[grouping]) == 12, grouping
    rows = out.with_suffix(".samples.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[0].split("\t")[:3] == ["key", "prediction", "truth"]
    assert len(rows) == 13
    caps = dict(line.split("\t") for line in
                (trained["val_dir"] / "caption.txt").read_text().splitlines())
    for row in rows[1:]:
        key, _pred, truth = row.split("\t")[:3]
        assert caps[key] == truth


def test_evaluate_limit_and_bad_option(trained, tmp_path):
    out = tmp_path / "m.json"
    result = invoke("evaluate", "--data", trained["val_dir"], "--model", trained["model"],
                    "--json", out, "--limit", "5")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["n"] == 5
    assert_clean_error(invoke("evaluate", "--data", trained["val_dir"], "--model",
                              trained["model"], "--on-error", "maybe"), 2, "--on-error")


# -- bad checkpoints -----------------------------------------------------------------------

@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_non_texlens_checkpoints_exit_2_without_traceback(tmp_path, trained, command):
    # Deep paths make long messages: they must still come out on one line.
    deep = tmp_path / ("a_rather_long_directory_name_" * 3)
    deep.mkdir()
    pickle_dict = deep / "other.pt"
    torch.save({"a": 1}, pickle_dict)
    text = deep / "notes.pt"
    text.write_text("not a checkpoint at all")
    image = sorted((trained["val_dir"] / "images").iterdir())[0]
    target = [image] if command == "predict" else ["--data", trained["val_dir"]]
    for path, why in [(pickle_dict, "not a texlens checkpoint"),
                      (text, "not a PyTorch checkpoint"),
                      (deep / "missing.pt", "no such checkpoint")]:
        result = invoke(command, "--model", path, *target)
        assert_clean_error(result, 2, str(path), why)


# -- data synth ---------------------------------------------------------------------------

def test_data_synth_same_seed_same_bytes(tmp_path, hash_tree):
    for name in ("a", "b"):
        result = invoke("data", "synth", "--out", tmp_path / name, "--n", "5", "--seed", "3")
        assert result.exit_code == 0, result.output
        assert "wrote 5 images" in result.stdout
    assert hash_tree(tmp_path / "a") == hash_tree(tmp_path / "b")
    assert len(hash_tree(tmp_path / "a")) == 6
    invoke("data", "synth", "--out", tmp_path / "c", "--n", "5", "--seed", "4")
    assert hash_tree(tmp_path / "a") != hash_tree(tmp_path / "c")


def test_data_synth_from_captions_split(tmp_path):
    caps = tmp_path / "caps.txt"
    caps.write_text("".join(f"k{i}\tx + {i}\n" for i in range(60)), encoding="utf-8")
    result = invoke("data", "synth", "--out", tmp_path / "d", "--n", "4", "--captions", caps,
                    "--split", "heldout")
    assert result.exit_code == 0, result.output
    from texlens.data.splits import expression_split
    allowed = {f"x + {i}" for i in range(60) if expression_split(f"x + {i}") == "heldout"}
    written = [line.split("\t")[1] for line in
               (tmp_path / "d" / "caption.txt").read_text().splitlines()]
    assert len(written) == 4 and set(written) <= allowed
    bad = invoke("data", "synth", "--out", tmp_path / "e", "--n", "2", "--captions", caps,
                 "--split", "test")
    assert_clean_error(bad, 2, "split")


# -- atomic save -----------------------------------------------------------------------------

def test_atomic_save(tmp_path):
    target = tmp_path / "sub" / "ckpt.pt"
    atomic_save({"w": torch.arange(3)}, target)
    assert torch.equal(torch.load(target)["w"], torch.arange(3))
    atomic_save({"w": torch.arange(5)}, target)  # overwrite in place
    assert torch.equal(torch.load(target)["w"], torch.arange(5))
    assert sorted(p.name for p in target.parent.iterdir()) == ["ckpt.pt"]
    assert (target.stat().st_mode & 0o777) == 0o644


def test_atomic_save_failure_keeps_old_file(tmp_path):
    target = tmp_path / "ckpt.pt"
    atomic_save({"w": 1}, target)
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails in torch.save
        atomic_save({"w": lambda: 0}, target)
    assert torch.load(target, weights_only=False) == {"w": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_validation_every_n_global_steps_and_at_the_end(tmp_path, synth_master):
    # 12 samples, batch 4: 3 steps an epoch. Validations at steps 2 and 4 (counted over
    # the run, not within epochs), then the final weights of step 5 are validated and
    # checkpointed too instead of being lost.
    cfg = write_config(tmp_path / "c.yaml", synth_master, synth_master, tmp_path / "run",
                       max_steps=5, val_every_steps=2, profiler="simple")
    result = invoke("train", cfg)
    assert result.exit_code == 0, result.output
    assert "final validation at step 5" in result.output
    # The profile says how long the step waited for data, apart from the step itself.
    profile = (tmp_path / "run" / "fit-profile.txt").read_text()
    assert "train_dataloader_next" in profile and "run_training_batch" in profile
    metrics = next((tmp_path / "run").glob("logs/version_*/metrics.csv")).read_text()
    header, *rows = [line.split(",") for line in metrics.splitlines()]
    col, step = header.index("val/sentence_acc"), header.index("step")
    # Lightning logs a scheduled validation at step - 1; the final one at the step itself.
    assert [int(r[step]) for r in rows if r[col]] == [1, 3, 5]
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 5
    # Resuming from the end-of-run checkpoint continues the run.
    result = invoke("train", cfg, "--resume", tmp_path / "run" / "checkpoints" / "last.ckpt",
                    "--set", "train.max_steps=6")
    assert result.exit_code == 0, result.output
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt",
                      weights_only=False)["global_step"] == 6


def test_a_run_stopped_by_its_clock_ends_annealed(tmp_path, synth_master):
    # 10,000 steps cannot run in 1.5 s: the time limit stops the run, and the cosine,
    # which follows whichever budget runs out first, brings the rate down with the clock
    # (by steps alone it would still be at 1e-3 after a few of 10,000). How far down the
    # last logged step got depends on the machine's speed: the exact rates at a given share
    # of the time are tests/test_models.py::test_cosine_follows_the_clock_when_time_runs_out_first.
    cfg = write_config(tmp_path / "c.yaml", synth_master, synth_master, tmp_path / "run",
                       max_steps=10000, max_epochs=10000, max_time_min=0.025,
                       scheduler="cosine", warmup=0.0, lr=0.001)
    result = invoke("train", cfg)
    assert result.exit_code == 0, result.output
    metrics = next((tmp_path / "run").glob("logs/version_*/metrics.csv")).read_text()
    header, *rows = [line.split(",") for line in metrics.splitlines()]
    col = next(i for i, h in enumerate(header) if h.startswith("lr-"))
    lrs = [float(r[col]) for r in rows if r[col]]
    assert 2 < len(lrs) < 10000
    assert lrs[0] > 0.9e-3 and lrs[-1] < 0.98e-3, lrs
    assert all(b <= a for a, b in zip(lrs, lrs[1:], strict=False)), lrs

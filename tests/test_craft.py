"""Training craft: schedules, scheduled sampling, checkpoint averaging, plot-lr, beam CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import tiny_model_config
from typer.testing import CliRunner

from texlens.checkpoint import TRAIN_FORMULAS, CheckpointError, average_checkpoints, save_model
from texlens.cli import app
from texlens.config import Config, TrainConfig
from texlens.data.splits import pack_formulas, seen_formulas
from texlens.models.satrn import build_model
from texlens.recognizer import Recognizer
from texlens.tokens import Vocab
from texlens.train.module import Recognizer as LitRecognizer
from texlens.train.module import sequence_loss
from texlens.train.schedules import simulate, teacher_forcing_ratio


@pytest.mark.parametrize("kind,mid", [("constant", 1.0), ("linear", 0.75),
                                      ("cosine", 0.75), ("arctan", None)])
def test_teacher_forcing_schedules(kind, mid):
    cfg = TrainConfig(teacher_forcing=1.0, teacher_forcing_end=0.5, tf_schedule=kind)
    ratios = [teacher_forcing_ratio(s, 100, cfg) for s in range(101)]
    assert ratios[0] == 1.0
    assert ratios[100] == pytest.approx(1.0 if kind == "constant" else 0.5)
    if mid is not None:
        assert ratios[50] == pytest.approx(mid)
    assert all(a >= b - 1e-12 for a, b in zip(ratios, ratios[1:], strict=False))
    if kind == "arctan":  # fast early decay: three quarters of the drop by a fifth of training
        assert ratios[20] == pytest.approx(1.0 - 0.5 * math.atan(2) / math.atan(10))
        assert ratios[20] < 0.65
    if kind == "cosine":
        assert ratios[10] == pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi * 0.1)))


def test_onecycle_cycles_beta1_against_the_lr():
    curves = simulate(TrainConfig(lr=1e-3, scheduler="onecycle", warmup=0.2), 100)
    peak = max(range(100), key=lambda i: curves["lr"][i])
    assert curves["lr"][peak] == pytest.approx(1e-3)
    assert 15 <= peak <= 25
    assert curves["beta1"][peak] == pytest.approx(0.85)
    assert curves["beta1"][0] == pytest.approx(0.9) and curves["lr"][-1] < 1e-5


def test_step_and_cosine_schedules():
    step = simulate(TrainConfig(lr=1.0, scheduler="step", step_every=0.25, step_gamma=0.5), 100)
    assert [step["lr"][i] for i in (0, 24, 25, 74, 75)] == [1.0, 1.0, 0.5, 0.25, 0.125]
    cos = simulate(TrainConfig(lr=1.0, scheduler="cosine", warmup=0.1), 100)
    assert cos["lr"][4] == pytest.approx(0.5) and cos["lr"][9] == pytest.approx(1.0)
    assert cos["lr"][99] < 0.05


def _lit(**train) -> LitRecognizer:
    torch.manual_seed(0)
    cfg = Config(model=tiny_model_config(), train=TrainConfig(**train))
    return LitRecognizer(cfg, Vocab([str(i) for i in range(10)]))


def test_scheduled_sampling_mixes_predictions_into_decoder_inputs():
    lit = _lit()
    ids = torch.tensor([[1, 5, 6, 7, 2, 0, 0]] * 4)
    memory, mask = lit.model.encode(torch.rand(4, 1, 32, 64), None)
    gold = lit.decoder_inputs(memory, mask, ids, 1.0)
    assert torch.equal(gold, ids[:, :-1])
    with torch.no_grad():
        pred = lit.model.decoder(ids[:, :-1], memory, mask).argmax(-1)
    mixed = lit.decoder_inputs(memory, mask, ids, 0.0)
    assert torch.equal(mixed[:, 0], ids[:, 0])  # <sos> is always gold
    assert torch.equal(mixed[:, 1:5], pred[:, :4])  # every other input is the prediction
    assert torch.equal(mixed[:, 5], ids[:, 5])  # padding stays padding


def test_batch_mode_free_running_logits_train():
    lit = _lit(tf_mode="batch")
    ids = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    memory, mask = lit.model.encode(torch.rand(2, 1, 32, 64), None)
    logits = lit.free_running_logits(memory, mask, ids.shape[1] - 1)
    assert logits.shape == (2, 3, 14)
    loss = sequence_loss(logits, ids[:, 1:])
    loss.backward()
    assert lit.model.cnn.body[0][0].weight.grad is not None


def test_average_checkpoints_is_the_mean(tmp_path):
    cfg = Config(model=tiny_model_config())
    vocab = Vocab(list("abc"))
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(build_model(cfg.model, len(vocab)))
        save_model(tmp_path / f"m{seed}.pt", models[-1], cfg, vocab,
                   extra={TRAIN_FORMULAS: pack_formulas([f"a ^ {{ {seed} }}"])})
    state, _, _, formulas = average_checkpoints([tmp_path / "m0.pt", tmp_path / "m1.pt"])
    key = "decoder.head.weight"
    expect = (models[0].state_dict()[key] + models[1].state_dict()[key]) / 2
    assert torch.allclose(state[key], expect, atol=1e-6)
    # The average has seen what either checkpoint has (until 2026-12-04 it recorded
    # nothing, and `evaluate --held-out` refused it).
    assert seen_formulas(formulas, ["a ^ { 0 }", "a ^ { 1 }", "a ^ { 2 }"]).tolist() == [
        True, True, False]
    save_model(tmp_path / "m2.pt", models[0], cfg, vocab)
    assert average_checkpoints([tmp_path / "m0.pt", tmp_path / "m2.pt"])[3] is None
    save_model(tmp_path / "other.pt", models[0], cfg, Vocab(list("abd")))
    with pytest.raises(CheckpointError, match="vocabulary"):
        average_checkpoints([tmp_path / "m0.pt", tmp_path / "other.pt"])
    with pytest.raises(CheckpointError, match="vocabulary"):
        Recognizer.load([tmp_path / "m0.pt", tmp_path / "other.pt"])


def test_plot_lr_and_average_commands(tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("train: {max_steps: 50, scheduler: cosine, teacher_forcing_end: 0.6, "
                        "tf_schedule: linear}\n")
    runner = CliRunner()
    res = runner.invoke(app, ["plot-lr", str(cfg_path), "--out", str(tmp_path / "lr.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"


def save_tiny_model(path: Path) -> None:
    """An untrained tiny model over the vocabulary a b c, 32-pixel-high input."""
    cfg = Config(model=tiny_model_config())
    cfg.data.height = 32
    vocab = Vocab(list("abc"))
    torch.manual_seed(0)
    save_model(path, build_model(cfg.model, len(vocab)), cfg, vocab)


def test_beam_predict_json_has_nbest(tmp_path, dataset_dir):
    save_tiny_model(tmp_path / "m.pt")
    img = sorted((dataset_dir / "images").glob("*.png"))[0]
    res = CliRunner().invoke(app, ["predict", str(img), "--model", str(tmp_path / "m.pt"),
                                   "--model", str(tmp_path / "m.pt"), "--beam", "3", "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(row["nbest"]) == 3 and 0 < row["confidence"] <= 1
    scores = [h["score"] for h in row["nbest"]]
    assert scores == sorted(scores, reverse=True) and row["nbest"][0]["latex"] == row["latex"]


def test_export_half_keeps_predictions(tmp_path, dataset_dir):
    save_tiny_model(tmp_path / "m.pt")
    res = CliRunner().invoke(app, ["export", str(tmp_path / "m.pt"), "--out",
                                   str(tmp_path / "h.pt"), "--half"])
    assert res.exit_code == 0, res.output
    raw = torch.load(tmp_path / "h.pt", weights_only=False)
    assert raw["state_dict"]["decoder.head.weight"].dtype == torch.float16
    imgs = sorted((dataset_dir / "images").glob("*.png"))[:3]
    full = Recognizer.load(tmp_path / "m.pt").predict(imgs)
    half = Recognizer.load(tmp_path / "h.pt").predict(imgs)
    assert [p.tokens for p in full] == [p.tokens for p in half]


def test_export_set_changes_input_settings_only(tmp_path):
    save_tiny_model(tmp_path / "m.pt")
    res = CliRunner().invoke(app, ["export", str(tmp_path / "m.pt"), "--out",
                                   str(tmp_path / "s.pt"), "--set", "data.margin_keep=0.4",
                                   "--set", "data.margin_limit=2"])
    assert res.exit_code == 0, res.output
    before, after = Recognizer.load(tmp_path / "m.pt"), Recognizer.load(tmp_path / "s.pt")
    assert (after.cfg.data.margin_limit, after.cfg.data.margin_keep) == (2.0, 0.4)
    assert after.cfg.model == before.cfg.model
    for bad in (["--set", "model.d_model=8"], ["--set", "data.no_such_key=1"]):
        res = CliRunner().invoke(app, ["export", str(tmp_path / "m.pt"), "--out",
                                       str(tmp_path / "x.pt"), *bad])
        assert res.exit_code != 0 and not (tmp_path / "x.pt").exists()
    assert "model.d_model" not in res.output and "no_such_key" in res.output


def test_export_records_training_formulas_and_evaluate_reports_them(tmp_path, dataset_dir):
    save_tiny_model(tmp_path / "m.pt")
    assert Recognizer.load(tmp_path / "m.pt").train_formulas is None
    res = CliRunner().invoke(app, ["export", str(tmp_path / "m.pt"), "--out",
                                   str(tmp_path / "r.pt"), "--train-data", str(dataset_dir)])
    assert res.exit_code == 0, res.output
    n = sum(1 for line in (dataset_dir / "caption.txt").read_text().splitlines() if line)
    # The dataset's every line is a training formula now: --held-out leaves nothing to score.
    res = CliRunner().invoke(app, ["evaluate", "--data", str(dataset_dir), "--model",
                                   str(tmp_path / "r.pt"), "--no-render", "--json",
                                   str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    assert "not held out" in res.output
    m = json.loads((tmp_path / "e.json").read_text())
    assert m["n"] == n and m["n_trained_formula"] == n
    res = CliRunner().invoke(app, ["evaluate", "--data", str(dataset_dir), "--model",
                                   str(tmp_path / "m.pt"), "--no-render", "--held-out"])
    assert res.exit_code != 0 and "does not record its training formulas" in res.output


def test_data_heldout_keeps_the_lines_no_training_set_has(tmp_path, dataset_dir):
    from texlens.data.datasets import read_layout
    lines = [line for line in (dataset_dir / "caption.txt").read_text().splitlines() if line]
    train = tmp_path / "train.txt"  # the first two formulas, spaced differently
    train.write_text("".join(f"t{i}\t {line.split(chr(9))[1]}  \n"
                             for i, line in enumerate(lines[:2])), encoding="utf-8")
    formulas = {" ".join(line.split("\t")[1].split()) for line in lines[:2]}
    res = CliRunner().invoke(app, ["data", "heldout", str(dataset_dir), "--unseen-in",
                                   str(train), "--out", str(tmp_path / "h")])
    assert res.exit_code == 0, res.output
    samples, problems = read_layout(tmp_path / "h")
    expected = [line for line in lines if " ".join(line.split("\t")[1].split()) not in formulas]
    assert problems == [] and len(samples) == len(expected) < len(lines)
    assert all(s.image.is_file() and " ".join(s.tokens) not in formulas for s in samples)
    res = CliRunner().invoke(app, ["data", "heldout", str(dataset_dir), "--unseen-in",
                                   str(tmp_path / "nope.txt"), "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "nope.txt: no such caption file" in res.output


def test_formulas_are_known_in_both_spellings() -> None:
    """A record or test set made before the canonical form changed still matches."""
    from texlens.data.splits import among, spellings
    old, new = "\\operatorname { c o s } x ^ { \\ast }", "\\cos x ^ { * }"
    assert spellings(old) == [old, new] and spellings(new) == [new]
    assert spellings("\\frac {") == ["\\frac {"]  # does not parse: as written
    assert seen_formulas(pack_formulas([old]), [new, old, "\\cos x"]).tolist() == [
        True, True, False]
    assert among(old, {new}) and among(new, {new}) and not among("x", {new})

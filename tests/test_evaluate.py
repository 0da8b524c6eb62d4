"""texlens evaluate: truth normalisation, one denominator, TeX metrics, validation decoding.

The recognizer here is a stub that answers from a table (image name -> LaTeX), so the
tests check the scoring, not a model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_model_config
from PIL import Image
from typer.testing import CliRunner

from texlens import evaluate as ev
from texlens.config import Config, DataConfig
from texlens.data.datasets import DatasetError, collate
from texlens.data.image import load_image
from texlens.evaluate import evaluate, render_scores
from texlens.recognizer import Prediction
from texlens.tokens import Vocab, tokenize
from texlens.train import module as train_module

VOCAB = Vocab(["x", "y", "+", "=", "1", "2", "^", "{", "}", "\\frac"])


class StubRecognizer:
    """What evaluate needs of a Recognizer; the prediction for an image is ANSWERS[stem]."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.cfg = Config(data=DataConfig(height=16))
        self.vocab = VOCAB
        self.name = "stub"
        self._seen: list[str] = []

    def prepare(self, image: Path) -> np.ndarray:
        load_image(image)  # raises ImageError for a missing or broken file, as the real one
        self._seen.append(Path(image).stem)
        return np.full((1, 16, 16), len(self._seen) - 1, np.float32)  # index of the answer

    def predict_arrays(self, arrays, batch_size=16, max_len=None, beam=1, rescore=None):
        out = []
        for a in arrays:
            latex = self.answers[self._seen[int(a[0, 0, 0])]]
            out.append(Prediction(latex, latex.split(), 0.9))
        return out


def write_dataset(root: Path, lines: list[str], images: list[str]) -> Path:
    root.mkdir(parents=True)
    for name in images:
        Image.fromarray(np.full((16, 40), 255, np.uint8)).save(root / f"{name}.png")
    (root / "caption.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = write_dataset(tmp_path / "d", [
        "raw\t\\frac12+x^2",    # 1 raw LaTeX, normalised to caption tokens
        "ok\tx = y",            # 2
        "wrong\tx + 1",         # 3 the stub answers something else
        "oov\tx \\weird",       # 4 \weird is not in VOCAB
        "bad\t\\frac { 1",      # 5 does not normalise
        "gone\tx",              # 6 no image
        "broken\ty",            # 7 not an image
        "blank\t  ",            # 8 empty caption: not scored
    ], ["raw", "ok", "wrong", "oov", "bad"])
    (root / "broken.png").write_text("not an image")
    return root


ANSWERS = {"raw": "\\frac { 1 } { 2 } + x ^ { 2 }", "ok": "x = y", "wrong": "x + 2",
           "oov": "x", "bad": "\\frac { 1"}


def test_raw_latex_truth_is_normalised_and_every_bad_sample_counts_wrong(dataset):
    result = evaluate(StubRecognizer(ANSWERS), dataset)
    m = result["metrics"]
    rows = {r["key"]: r for r in result["rows"]}
    assert list(rows) == ["raw", "ok", "wrong", "oov", "bad", "gone", "broken"]
    assert rows["raw"]["correct"] and rows["raw"]["truth"] == " ".join(tokenize("\\frac12+x^2"))
    # The stub wrote exactly the unparsable caption: still wrong, and its output is shown.
    assert not rows["bad"]["correct"] and rows["bad"]["prediction"] == "\\frac { 1"
    assert rows["gone"]["prediction"] == rows["broken"]["prediction"] == ""
    assert (m["n"], m["n_oov"], m["n_unreadable"], m["n_bad_truth"], m["n_empty"]) == (
        7, 1, 2, 1, 1)
    assert m["sentence_acc"] == pytest.approx(2 / 7)  # raw and ok, out of every scored line
    # Every problem names its line; the unknown token is listed.
    cap = str(dataset / "caption.txt")
    by_line = {int(p[len(cap) + 1:].split(":")[0]): p for p in result["problems"]}
    assert sorted(by_line) == [4, 5, 6, 7, 8]
    assert "\\weird" in by_line[4] and "normalise" in by_line[5]
    assert "gone" in by_line[6] and "broken.png" in by_line[7] and "empty" in by_line[8]
    assert sum(r["n"] for r in result["by_length"]) == 7
    assert sum(r["n"] for r in result["by_height"]) == 5  # readable images only


def test_a_token_written_in_an_older_spelling_is_in_the_vocabulary():
    """\\operatorname{cosh} is \\cosh today; a model with \\operatorname and the letters can
    write it (its output is brought to today's form), one without them cannot."""
    rec = StubRecognizer({})
    rec.cfg = Config(data=DataConfig(height=16, style="latex"))
    samples = [ev.Sample(k, Path(f"{k}.png"), t.split(), f"caption.txt:{i}")
               for i, (k, t) in enumerate([("a", "\\operatorname{cosh} x"), ("b", "\\cos x")], 1)]
    rec.vocab = Vocab(["x", "{", "}", "\\operatorname", "c", "o", "s", "h"])
    truths, _, unknown, _ = ev.check_truths(rec, samples)
    assert truths[0] == ["\\cosh", "x"] and unknown == [[], []]
    rec.vocab = Vocab(["x", "\\cos"])
    assert ev.check_truths(rec, samples)[2] == [["\\cosh"], []]


def test_on_error_stop_refuses_before_decoding(dataset, tmp_path):
    with pytest.raises(DatasetError, match="5 bad samples"):
        evaluate(StubRecognizer(ANSWERS), dataset, on_error="stop")
    clean = write_dataset(tmp_path / "clean", ["ok\tx = y"], ["ok"])
    assert evaluate(StubRecognizer(ANSWERS), clean, on_error="stop")["metrics"]["n"] == 1


def test_limit_counts_listed_lines(dataset):
    m = evaluate(StubRecognizer(ANSWERS), dataset, limit=3)["metrics"]
    assert m["n"] == 3 and m["sentence_acc"] == pytest.approx(2 / 3)


def test_max_tokens_keeps_short_captions_only(dataset):
    # Caption tokens as written: raw (1), oov (2), gone (1), broken (1); the rest are longer.
    m = evaluate(StubRecognizer(ANSWERS), dataset, max_tokens=2)["metrics"]
    assert m["n"] == 4 and m["sentence_acc"] == pytest.approx(1 / 4)


def test_unseen_in_leaves_out_the_lines_a_training_set_has(dataset, tmp_path):
    train = tmp_path / "train.txt"  # "ok" and "wrong" as training formulas, spaced otherwise
    train.write_text("a\tx  =  y\nb\tx + 1\nc\ty + y\n", encoding="utf-8")
    result = evaluate(StubRecognizer(ANSWERS), dataset, unseen_in=[train])
    m = result["metrics"]
    assert [r["key"] for r in result["rows"]] == ["raw", "oov", "bad", "gone", "broken"]
    assert m["n"] == 5 and m["n_seen_left_out"] == 2
    assert m["sentence_acc"] == pytest.approx(1 / 5)  # raw only
    with pytest.raises(ValueError, match="no such caption file"):
        evaluate(StubRecognizer(ANSWERS), dataset, unseen_in=[tmp_path / "missing.txt"])


def test_writable_by_keeps_the_lines_another_model_can_write(dataset, tmp_path):
    # The other model knows no "+": "raw" and "wrong" go, as do "oov" (\weird) and "bad"
    # (does not normalise); "gone" and "broken" have writable truths and stay, counted wrong.
    other = StubRecognizer(ANSWERS)
    other.vocab = Vocab(["x", "y", "=", "1", "2", "^", "{", "}", "\\frac"])
    train = tmp_path / "train.txt"
    train.write_text("a\tx = y\n", encoding="utf-8")
    result = evaluate(StubRecognizer(ANSWERS), dataset, writable_by=other, unseen_in=[train])
    m = result["metrics"]
    assert [r["key"] for r in result["rows"]] == ["gone", "broken"]
    assert (m["n"], m["n_unwritable_left_out"], m["n_seen_left_out"]) == (2, 4, 1)
    assert "n_unwritable_left_out" not in evaluate(StubRecognizer(ANSWERS), dataset)["metrics"]


# -- TeX metrics ------------------------------------------------------------------------

def fake_render(calls: list):
    """Stands in for render_tex: a formula's image is its characters without spaces or
    braces drawn as columns (so x^2 and x ^ { 2 } look alike); "\\bad" fails."""
    from texlens.data.synth.tex import RenderFailure

    def render(formulas, font="cm", dpi=150, display=True):
        calls.append(list(formulas))
        out = []
        for f in formulas:
            if "\\bad" in f:
                out.append(RenderFailure("Undefined control sequence"))
                continue
            chars = [c for c in f if c not in " {}"]
            img = np.zeros((8, 2 * len(chars)), np.uint8)
            for k, c in enumerate(chars):
                img[: 1 + ord(c) % 8, 2 * k] = 255  # one inked column per character
            out.append(img)
        return out
    return render


def test_render_scores_batched_equivalent_spellings_and_failures(monkeypatch):
    pytest.importorskip("texlens.data.synth.tex")
    calls: list = []
    monkeypatch.setattr("texlens.data.synth.tex.render_tex", fake_render(calls))
    preds = [["x^2"], ["y"], [], ["\\bad"], ["x"], ["x"], ["\\bad", "y"]]
    truths = [["x", "^", "{", "2", "}"], ["x"], ["x"], ["x"], ["\\bad"], ["x"], ["\\bad", "y"]]
    scorable = [True, True, True, True, True, False, True]
    out = render_scores(preds, truths, scorable, [f"c.txt:{i}" for i in range(1, 8)])
    assert len(calls) == 1  # one latex run for all of them
    assert sorted(calls[0]) == sorted({"x^2", "y", "\\bad", "x", "x ^ { 2 }", "\\bad y"})
    # The last is the truth token for token: a match although TeX rejects both.
    assert out["match"] == [True, False, False, False, False, False, True]
    assert out["compiles"] == [True, True, False, False, True, True, False]
    m = out["metrics"]
    assert m["render_match"] == pytest.approx(2 / 7) and m["compiles"] == pytest.approx(4 / 7)
    assert m["n_truth_untypeset"] == 2
    assert len(out["problems"]) == 1 and out["problems"][0].startswith("c.txt:5:")


def test_render_scores_in_chunks_gives_the_same_answers(monkeypatch):
    """Chunks of 2 formulas (one latex run each, so a failure costs a rerun of its chunk
    only): the images still go to the right formulas."""
    pytest.importorskip("texlens.data.synth.tex")
    preds = [["x^2"], ["y"], [], ["\\bad"], ["x"], ["x"], ["\\bad", "y"]]
    truths = [["x", "^", "{", "2", "}"], ["x"], ["x"], ["x"], ["\\bad"], ["x"], ["\\bad", "y"]]
    args = preds, truths, [True] * 7, [f"c.txt:{i}" for i in range(1, 8)]
    calls: list = []
    monkeypatch.setattr("texlens.data.synth.tex.render_tex", fake_render(calls))
    whole = render_scores(*args, workers=1)
    monkeypatch.setattr("texlens.data.synth.tex_dataset.CHUNK", 2)
    calls.clear()
    chunked = render_scores(*args, workers=1)
    assert [len(c) for c in calls] == [2, 2, 2]
    assert chunked == whole


def test_evaluate_with_render_adds_tex_metrics(dataset, monkeypatch):
    pytest.importorskip("texlens.data.synth.tex")
    monkeypatch.setattr("texlens.data.synth.tex.render_tex", fake_render([]))
    result = evaluate(StubRecognizer(ANSWERS), dataset, render=True)
    m = result["metrics"]
    # raw and ok match; bad's truth is not scorable; gone and broken have no prediction.
    assert m["render_match"] == pytest.approx(2 / 7)
    assert m["compiles"] == pytest.approx(5 / 7)
    assert [r["render_match"] for r in result["rows"]] == [True, True, False, False, False,
                                                           False, False]


def test_render_match_with_real_tex():
    reason = ev.tex_unavailable()
    if reason:
        pytest.skip(f"TeX unavailable: {reason}")
    preds = [["x^2+\\frac12"], ["x^3"], ["\\frac", "{"]]
    truths = [tokenize("x^{2}+\\frac{1}{2}")] * 3
    out = render_scores(preds, truths, [True] * 3, ["a:1", "a:2", "a:3"])
    assert out["match"] == [True, False, False]
    assert out["compiles"] == [True, True, False]


def test_cli_render_needs_tex(dataset, monkeypatch):
    from texlens.cli import app

    monkeypatch.setattr(ev, "tex_unavailable", lambda: "no latex here")
    res = CliRunner().invoke(app, ["evaluate", "--data", str(dataset), "--render"])
    assert res.exit_code != 0 and "no latex here" in res.output


# -- validation during training ---------------------------------------------------------

def tiny_module(max_tokens: int = 40) -> train_module.Recognizer:
    cfg = Config(model=tiny_model_config(max_len=64), data=DataConfig(max_tokens=max_tokens))
    return train_module.Recognizer(cfg, VOCAB)


def val_batch(tokens: list[str]) -> dict:
    img = np.zeros((1, 32, 64), np.float32)
    return collate([{"image": img, "ids": VOCAB.encode(tokens), "index": 0}])


def test_validation_decodes_without_the_truth_length(monkeypatch):
    lit = tiny_module(max_tokens=40).eval()
    budgets = []

    def greedy(model, images, mask, max_len=150):
        budgets.append(max_len)
        return torch.full((images.shape[0], 1), Vocab.eos_id), torch.zeros(images.shape[0])

    monkeypatch.setattr(train_module, "greedy_decode", greedy)
    monkeypatch.setattr(lit, "log", lambda *a, **k: None)
    with torch.no_grad():
        lit.validation_step(val_batch(["x"]), 0)
        lit.validation_step(val_batch(["x", "+", "y", "=", "1"] * 6), 1)
    # The old code allowed 2 x the truth's length: 8 tokens for "x", 66 for the long one.
    assert budgets == [40, 40]


def test_validation_counts_unloadable_samples_wrong():
    lit = tiny_module()
    lit._preds, lit._refs = [["x"], ["y"]], [["x"], ["x"]]
    assert lit.validation_scores()["sentence_acc"] == pytest.approx(1 / 2)
    lit.val_unloadable = [["x", "+", "1"], ["y"]]
    scores = lit.validation_scores()
    assert scores["n"] == 4 and scores["sentence_acc"] == pytest.approx(1 / 4)


def test_training_validation_set_keeps_bad_samples_counted(tmp_path, monkeypatch):
    """train.run hands the module the truths of validation lines it cannot load."""
    from texlens.train import run

    seen = {}

    class Stop(Exception):
        pass

    def fake_fit(self, lit, *a, **k):
        seen["lost"] = lit.val_unloadable
        seen["n_val"] = len(a[1].dataset)
        raise Stop

    monkeypatch.setattr(run.L.Trainer, "fit", fake_fit)
    train_dir = write_dataset(tmp_path / "tr", ["a\tx + 1", "b\ty = 2"], ["a", "b"])
    val_dir = write_dataset(tmp_path / "va", ["a\tx", "gone\ty", "oov\tx \\weird", "e\t "],
                            ["a", "oov"])
    cfg = tiny_module().cfg
    cfg = replace(cfg, data=replace(cfg.data, train=[str(train_dir)], val=[str(val_dir)],
                                    vocab=None, height=16),
                  train=replace(cfg.train, out_dir=str(tmp_path / "run"), threads=1))
    with pytest.raises(Stop):
        run.train(cfg, accelerator="cpu")
    assert seen["n_val"] == 1
    assert sorted(seen["lost"]) == [["x", "\\weird"], ["y"]]


def test_held_out_uses_the_formulas_the_model_records(dataset):
    from texlens.data.splits import pack_formulas
    rec = StubRecognizer(ANSWERS)
    assert "n_trained_formula" not in evaluate(rec, dataset)["metrics"]  # not recorded
    with pytest.raises(ValueError, match="does not record its training formulas"):
        evaluate(rec, dataset, held_out=True)
    rec.train_formulas = pack_formulas(["x = y", "x + 1", "y + y"])
    m = evaluate(rec, dataset)["metrics"]
    assert m["n"] == 7 and m["n_trained_formula"] == 2
    result = evaluate(rec, dataset, held_out=True)
    assert [r["key"] for r in result["rows"]] == ["raw", "oov", "bad", "gone", "broken"]
    m = result["metrics"]
    assert (m["n"], m["n_seen_left_out"], m["n_trained_formula"]) == (5, 2, 0)

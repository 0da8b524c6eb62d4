"""Recognizer outputs: per-token probabilities, the formula confidence, blank and
non-formula images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from texlens import recognizer as recognizer_module
from texlens.checkpoint import CheckpointError
from texlens.recognizer import (
    CONFIDENCE_THRESHOLD,
    Calibration,
    Recognizer,
    midtone_share,
    resolve_model,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def printed() -> Recognizer:
    return Recognizer.load("printed-small")


def example_arrays(rec: Recognizer, folder: str, n: int = 4) -> list[np.ndarray]:
    return [rec.prepare(p) for p in sorted((EXAMPLES / folder / "images").glob("*.png"))[:n]]


def teacher_forced_probs(rec: Recognizer, array: np.ndarray, tokens: list[str]) -> list[float]:
    """Each token's probability (and the <eos>'s) given the true prefix, in one pass."""
    ids = rec.vocab.encode(tokens)
    x = torch.from_numpy(array)[None]
    with torch.no_grad():
        logp = rec.model(x, None, torch.tensor([ids[:-1]])).log_softmax(-1)[0]
    return logp.gather(1, torch.tensor(ids[1:])[:, None]).exp().flatten().tolist()


@pytest.mark.parametrize("beam", [1, 3])
def test_token_probs_are_the_models_probabilities(printed, beam):
    arrays = example_arrays(printed, "printed")
    preds = printed.predict_arrays(arrays, batch_size=4, beam=beam)
    for a, p in zip(arrays, preds, strict=True):
        assert p.tokens and len(p.token_probs) == len(p.tokens)
        want = teacher_forced_probs(printed, a, p.tokens)
        assert p.token_probs == pytest.approx(want[:-1], abs=1e-4)
        # Without a calibration file the confidence is the output's probability, <eos> too.
        raw = Recognizer([printed.model], printed.cfg, printed.vocab)
        assert raw.predict_arrays([a], beam=beam)[0].confidence == pytest.approx(
            float(np.prod(want)), abs=1e-4)


def test_greedy_and_beam_one_give_the_same_probabilities(printed):
    arrays = example_arrays(printed, "printed", 3)
    greedy = printed.predict_arrays(arrays, beam=1)
    # beam=1 through beam search: an ensemble of one takes that path
    ens = Recognizer([printed.model, printed.model], printed.cfg, printed.vocab)
    beamed = ens.predict_arrays(arrays, beam=1)
    for g, b in zip(greedy, beamed, strict=True):
        assert g.tokens == b.tokens
        assert g.token_probs == pytest.approx(b.token_probs, abs=1e-5)


def test_an_output_cut_off_by_the_length_budget_gets_no_confidence(printed):
    long = max(example_arrays(printed, "printed", 20), key=lambda a: a.shape[-1])
    raw = Recognizer([printed.model], printed.cfg, printed.vocab)
    cut = raw.predict_arrays([long], max_len=3)[0]
    assert len(cut.tokens) == 3 and cut.confidence == 0.0


def test_calibration_file_is_read_and_checked(tmp_path):
    ckpt = tmp_path / "m.pt"
    shutil.copyfile(resolve_model("printed-small"), ckpt)
    assert not Calibration.find(ckpt).fitted
    ckpt.with_suffix(".calibration.json").write_text(
        json.dumps({"score": "min", "a": 2.0, "b": -1.0}))
    calib = Recognizer.load(ckpt).calibration
    assert calib.fitted and (calib.score, calib.a, calib.b) == ("min", 2.0, -1.0)
    scores = [calib([0.99, p], 0.999) for p in (0.1, 0.5, 0.9, 0.999)]
    assert scores == sorted(scores) and all(0 < s < 1 for s in scores)
    assert calib([0.9, 0.5], 1.0) == pytest.approx(1 / (1 + np.exp(1.0)))
    for bad in ('{"a": 1}', '{"score": "mean", "a": 1, "b": 0}', "[1, 2"):
        ckpt.with_suffix(".calibration.json").write_text(bad)
        with pytest.raises(CheckpointError, match="m.calibration.json"):
            Recognizer.load(ckpt)


def junk_images(seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs that hold no formula: paper, noise, gradients, a photo-like texture."""
    rng = np.random.default_rng(seed)
    h, w = 120, 400
    yy, xx = np.mgrid[0:h, 0:w]
    texture = 128 + 60 * np.sin(xx / 37.0) * np.cos(yy / 23.0) + rng.normal(0, 5, (h, w))
    return {
        "white": np.full((h, w), 255, np.uint8),
        "black": np.zeros((h, w), np.uint8),
        "grey paper": np.full((h, w), 200, np.uint8) + rng.integers(0, 3, (h, w), np.uint8),
        "noise": rng.integers(0, 256, (h, w)).astype(np.uint8),
        "paper grain": (230 + rng.normal(0, 8, (h, w))).clip(0, 255).astype(np.uint8),
        "horizontal gradient": (xx / w * 255).astype(np.uint8),
        "vertical gradient": (60 + yy / h * 180).astype(np.uint8),
        "photo-like": texture.clip(0, 255).astype(np.uint8),
    }


@pytest.mark.parametrize("model", ["printed-small", "handwritten-small"])
def test_blank_and_non_formula_images_are_not_read_confidently(model, monkeypatch):
    rec = Recognizer.load(model)
    images = junk_images()
    preds = dict(zip(images, rec.predict(list(images.values())), strict=True))
    for name in ("white", "black", "grey paper"):
        assert preds[name].latex == "" and preds[name].tokens == [], name
        assert preds[name].confidence == 0.0 and preds[name].token_probs == [], name
    for name, p in preds.items():
        assert p.confidence < CONFIDENCE_THRESHOLD, (name, p.latex, p.confidence)
    # A blank page is not even decoded.
    monkeypatch.setattr(recognizer_module, "greedy_decode", lambda *a, **k: 1 / 0)
    assert rec.predict([images["white"]])[0].latex == ""


@pytest.mark.parametrize(("model", "folder"), [("printed-small", "printed"),
                                               ("handwritten-small", "handwritten")])
def test_formulas_pass_the_ink_checks(model, folder):
    rec = Recognizer.load(model)
    arrays = example_arrays(rec, folder, 20)
    assert all(midtone_share(a) < recognizer_module.MIDTONE_MAX for a in arrays)
    assert all(p.tokens for p in rec.predict_arrays(arrays))


def test_mixed_batch_keeps_order(printed):
    arrays = example_arrays(printed, "printed", 3)
    blank = np.zeros_like(arrays[1])
    preds = printed.predict_arrays([arrays[0], blank, arrays[1], arrays[2]])
    alone = printed.predict_arrays([arrays[0], arrays[1], arrays[2]])
    assert preds[1].tokens == []
    assert [p.tokens for p in (preds[0], preds[2], preds[3])] == [p.tokens for p in alone]



# -- test-time views -------------------------------------------------------------------

def test_one_view_at_the_models_size_reads_as_plain_greedy(printed):
    files = sorted((EXAMPLES / "printed" / "images").glob("*.png"))[:4]
    plain = printed.predict(files)
    viewed = Recognizer([printed.model], printed.cfg, printed.vocab, tta=[1.0])
    for p, v in zip(plain, viewed.predict(files), strict=True):
        assert v.tokens == p.tokens
        assert v.token_probs == pytest.approx(p.token_probs, abs=1e-4)


def test_views_keep_the_reading_they_all_score_best():
    rec = Recognizer.load("handwritten-small", tta=[0.9, 1.0, 1.2])
    files = sorted((EXAMPLES / "handwritten" / "images").glob("*.png"))[:6]
    inputs = [rec.prepare(f) for f in files]
    assert all(isinstance(x, recognizer_module.Views) and len(x) == 3 for x in inputs)
    assert inputs[0][0].shape[-1] < inputs[0][2].shape[-1]  # 0.9 smaller than 1.2
    each_view = [rec.predict_arrays([x[j] for x in inputs]) for j in range(3)]
    for i, pred in enumerate(rec.predict_arrays(inputs)):
        readings = {" ".join(v[i].tokens) for v in each_view}
        assert {latex for latex, _ in pred.nbest} == readings
        scores = [s for _, s in pred.nbest]
        assert scores == sorted(scores, reverse=True) and pred.latex == pred.nbest[0][0]
        # Its score: the mean over the views of its log-probability (<eos> included).
        want = np.mean([np.log(teacher_forced_probs(rec, view, pred.tokens)).sum()
                        for view in inputs[i]])
        assert scores[0] == pytest.approx(float(want), abs=1e-3)


def test_views_read_blank_pages_as_nothing_and_refuse_what_they_cannot_do(printed):
    rec = Recognizer([printed.model], printed.cfg, printed.vocab, tta=[1.0, 1.2])
    [blank] = rec.predict([np.full((60, 200), 255, np.uint8)])
    assert blank.latex == "" and blank.confidence == 0.0
    with pytest.raises(ValueError, match="greedily"):
        rec.predict_arrays([rec.prepare(np.full((60, 200), 255, np.uint8))], beam=3)
    with pytest.raises(ValueError, match="positive"):
        Recognizer([printed.model], printed.cfg, printed.vocab, tta=[1.0, 0.0])
    with pytest.raises(ValueError, match="one model"):
        Recognizer([printed.model, printed.model], printed.cfg, printed.vocab, tta=[1.0])


def words(text: str) -> list[str]:
    return text.split()


def test_full_latex_output_drops_the_braces_the_normaliser_drops():
    base = Recognizer.load("printed-base", backend="torch")
    out = words("x = { \\vec { L } _ { S } } + { a + } 1")
    probs = [0.5 + 0.02 * i for i in range(len(out))]
    toks, kept = base._canonical(out, probs)
    assert toks == words("x = \\vec { L } _ { S } + { a + } 1")  # {a+} is spaced apart
    assert kept == [p for i, p in enumerate(probs) if i not in (2, 11)]  # the outer pair
    # one spelling of a glyph: replaced tokens share the product of their probabilities
    toks, kept = base._canonical(words("a \\not = b \\operatorname { l n } x"),
                                 [0.9, 0.5, 0.8, 0.6, 1, 1, 0.5, 0.5, 1, 0.7])
    assert toks == words("a \\neq b \\ln x")
    assert kept == pytest.approx([0.9, 0.4, 0.6, 0.25, 0.7])
    broken = ["x", "^"]  # does not parse: stays as written
    assert base._canonical(broken, [0.9, 0.8]) == (broken, [0.9, 0.8])
    crohme = Recognizer.load("printed-small", backend="torch")  # CROHME captions: as written
    assert crohme._canonical(["{", "a", "+", "b", "}"], [1.0] * 5)[0] == ["{", "a", "+", "b", "}"]

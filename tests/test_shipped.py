"""The shipped model loads by name and reads the shipped examples (a regression guard)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from texlens.config import load_config
from texlens.data.synth.generator import FormulaGenerator
from texlens.data.synth.render import render
from texlens.data.transforms import input_settings
from texlens.evaluate import evaluate
from texlens.recognizer import Recognizer, shipped_models

EXAMPLES = Path(__file__).parents[1] / "examples" / "printed"


def test_printed_small_is_shipped_and_reads_examples():
    assert "printed-small" in shipped_models()
    result = evaluate(Recognizer.load("printed-small"), EXAMPLES)
    m = result["metrics"]
    assert m["n"] == 20 and m["n_oov"] == m["n_unreadable"] == m["n_bad_truth"] == 0
    # Measured 2026-12-02: 0.95 and WER 0.0035 (stage 3, at height 48: 0.75 / 0.022); a
    # broken preprocessing or decoding path drops this to ~0.
    assert m["sentence_acc"] >= 0.8 and m["wer"] < 0.05
    # Rendered at random sizes, the examples all reach the model at one symbol size.
    assert {row["bin"] for row in result["by_symbol_size"]} <= {"12-14", "15-19"}


def test_handwritten_small_is_shipped_and_reads_handwritten_examples():
    assert "handwritten-small" in shipped_models()
    rec = Recognizer.load("handwritten-small")
    assert rec.cfg.data.size_mode == "scale"
    m = evaluate(rec, EXAMPLES.parent / "handwritten")["metrics"]
    assert m["n"] == 5 and m["n_oov"] == m["n_unreadable"] == m["n_bad_truth"] == 0
    # Measured 2026-11-22: WER 0.48 on these five long random formulas (the stage-1 model
    # scored 0.28: stage 2 trains on CROHME-like expressions only), where printed-small
    # scores 0.68; a broken path scores near 1.
    assert m["wer"] < 0.6


def test_printed_finetune_config_feeds_printed_small_its_own_inputs():
    # Fine-tuning on inputs preprocessed unlike the shipped weights' would silently start
    # from a model that cannot read them.
    shipped = Recognizer.load("printed-small").cfg.data
    tuned = load_config(Path(__file__).parents[1] / "configs" / "printed-finetune.yaml")
    assert tuned.train.init_from == "printed-small"
    assert input_settings(tuned.data) == input_settings(shipped)


def test_printed_small_reads_int_limits_and_full_size_primes():
    # Until 2026-12-02 the renderer drew \int\limits like \int and, in the STIX fonts,
    # x \prime like x ': the stage-4 model read none of the \limits test formulas. Twelve
    # fresh formulas (a seed used nowhere else) with one or the other: measured 2026-12-02,
    # 10 read right (the stage-4 file: 6).
    gen = FormulaGenerator(seed=2026)
    formulas: list[list[str]] = []
    while len(formulas) < 12:
        toks = gen.generate()
        want = "\\limits" if len(formulas) % 2 else "\\prime"
        if want in toks and len(toks) <= 30:
            formulas.append(toks)
    rng = np.random.default_rng(2026)
    preds = Recognizer.load("printed-small").predict([render(f, rng) for f in formulas])
    right = sum(p.tokens == f for p, f in zip(preds, formulas, strict=True))
    assert right >= 9, [" ".join(p.tokens) for p in preds]

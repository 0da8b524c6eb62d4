"""Tests for texlens.metrics. Expected values are worked out by hand in the comments."""

import math

import numpy as np
import pytest

from texlens import metrics
from texlens.metrics import (
    bleu,
    by_length,
    by_value,
    competition_score,
    compute_all,
    corpus_wer,
    edit_distance,
    exprate_within,
    normalized_edit_distance,
    render_match,
    sentence_accuracy,
    token_accuracy,
    wer,
)


def toks(s: str) -> list[str]:
    return s.split()


# Shared corpus. Per sentence: token distance d, longest length L.
#   1: "a b c"   vs "a b c"    d=0 (exact)                    L=3
#   2: "a x c"   vs "a b c d"  d=2 (x->b, insert d)           L=4
#   3: "a c"     vs "a b c"    d=1 (insert b)                 L=3
#   4: "x y z w" vs "a b"      d=4 (2 subs + 2 deletes)       L=4
PREDS = [toks("a b c"), toks("a x c"), toks("a c"), toks("x y z w")]
REFS = [toks("a b c"), toks("a b c d"), toks("a b c"), toks("a b")]


# --- edit_distance ---------------------------------------------------------------------


def test_edit_distance_single_substitution():
    assert edit_distance(["\\frac", "{", "1", "}"], ["\\frac", "{", "2", "}"]) == 1


def test_edit_distance_is_token_level_not_char_level():
    # Same characters "abc", different tokens: 2 substitutions.
    assert edit_distance(["ab", "c"], ["a", "bc"]) == 2
    # Multi-character tokens count as one symbol each.
    assert edit_distance(["\\alpha"], ["\\beta"]) == 1


def test_edit_distance_classic_and_empty():
    # kitten -> sitting: k->s, e->i, insert g = 3.
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert edit_distance([], ["x", "y"]) == 2
    assert edit_distance(["x"], []) == 1
    assert edit_distance([], []) == 0


def test_edit_distance_shared_corpus():
    assert [edit_distance(p, r) for p, r in zip(PREDS, REFS, strict=True)] == [0, 2, 1, 4]


# --- sentence accuracy / ExpRate -------------------------------------------------------


def test_sentence_accuracy():
    # Only sentence 1 matches: 1/4.
    assert sentence_accuracy(PREDS, REFS) == pytest.approx(0.25)


def test_sentence_accuracy_tuple_equals_list():
    assert sentence_accuracy([("a", "b")], [["a", "b"]]) == 1.0


def test_exprate_within():
    # d = [0, 2, 1, 4]
    assert exprate_within(PREDS, REFS, 0) == pytest.approx(0.25)  # {1}
    assert exprate_within(PREDS, REFS, 1) == pytest.approx(0.5)  # {1, 3}
    assert exprate_within(PREDS, REFS, 2) == pytest.approx(0.75)  # {1, 2, 3}
    assert exprate_within(PREDS, REFS, 4) == pytest.approx(1.0)


def test_exprate_within_negative_k():
    with pytest.raises(ValueError):
        exprate_within(PREDS, REFS, -1)


# --- WER -------------------------------------------------------------------------------


def test_wer_competition_definition():
    # mean(0/3, 2/4, 1/3, 4/4) = (0 + 1/2 + 1/3 + 1) / 4 = (11/6) / 4 = 11/24 = 0.458333...
    assert wer(PREDS, REFS) == pytest.approx(11 / 24)


def test_wer_normalises_by_longer_side():
    # d=3 (three insertions), max(len)=4 -> 0.75; dividing by len(ref)=1 would give 3.0.
    assert wer([toks("a b c d")], [toks("a")]) == pytest.approx(0.75)


def test_wer_both_empty_is_zero():
    # Sentence 1: both empty -> 0; sentence 2: d=1, L=1 -> 1. Mean 0.5.
    assert wer([[], ["a"]], [[], ["b"]]) == pytest.approx(0.5)


def test_corpus_wer():
    # (0 + 2 + 1 + 4) / (3 + 4 + 3 + 2) = 7/12 = 0.58333...
    assert corpus_wer(PREDS, REFS) == pytest.approx(7 / 12)


def test_corpus_wer_can_exceed_one():
    # 3 insertions over a 1-token reference.
    assert corpus_wer([toks("a b c d")], [toks("a")]) == pytest.approx(3.0)


def test_corpus_wer_all_refs_empty():
    assert corpus_wer([[]], [[]]) == 0.0
    assert corpus_wer([["a"]], [[]]) == 1.0


# --- token accuracy --------------------------------------------------------------------


def test_token_accuracy_position_wise():
    # Matches at equal positions / max length:
    #   1: a b c | a b c   -> 3 of 3
    #   2: a x c | a b c d -> a, c match -> 2 of 4
    #   3: a c   | a b c   -> only a (c sits at index 1, ref has b) -> 1 of 3
    #   4: x y z w | a b   -> 0 of 4
    # (3 + 2 + 1 + 0) / (3 + 4 + 3 + 4) = 6/14 = 3/7 = 0.428571...
    assert token_accuracy(PREDS, REFS) == pytest.approx(3 / 7)


def test_token_accuracy_shift_is_not_realigned():
    # One leading insertion shifts everything: no position matches, 0 / 4.
    assert token_accuracy([toks("z a b c")], [toks("a b c")]) == 0.0


def test_token_accuracy_all_empty_sentences():
    assert token_accuracy([[]], [[]]) == 1.0


# --- NED -------------------------------------------------------------------------------


def test_ned_character_level():
    # Joined strings, character Levenshtein / longer string length:
    #   1: "a b c"   vs "a b c"    0 / 5 = 0
    #   2: "a x c"   vs "a b c d"  x->b, insert " d" = 3 / 7
    #   3: "a c"     vs "a b c"    insert "b " = 2 / 5
    #   4: "x y z w" vs "a b"      keep 3 chars (2 subs, space matches) + 4 deletes = 6 / 7
    # mean = (0 + 3/7 + 2/5 + 6/7) / 4 = (59/35) / 4 = 59/140 = 0.421428...
    assert normalized_edit_distance(PREDS, REFS) == pytest.approx(59 / 140)
    # It really differs from token-level WER (11/24) on this corpus.
    assert normalized_edit_distance(PREDS, REFS) != pytest.approx(wer(PREDS, REFS))


def test_ned_partial_credit_for_near_miss_token():
    # "\alpha" (6 chars) vs "\alpha_" (7 chars): 1 insertion / 7. Token WER would be 1.0.
    assert normalized_edit_distance([["\\alpha"]], [["\\alpha_"]]) == pytest.approx(1 / 7)
    assert wer([["\\alpha"]], [["\\alpha_"]]) == 1.0


# --- BLEU ------------------------------------------------------------------------------


def test_bleu_perfect():
    corpus = [toks("a b c d e"), toks("\\frac { 1 } { 2 }")]
    assert bleu(corpus, corpus) == pytest.approx(1.0)


def test_bleu4_hand_computed():
    # pred "a b c d e" vs ref "a b c d f":
    #   p1 = 4/5 (a b c d), p2 = 3/4 (ab bc cd), p3 = 2/3 (abc bcd), p4 = 1/2 (abcd)
    #   product = 24/120 = 1/5; c = r = 5 so BP = 1. BLEU = (1/5)^(1/4) = 0.668740...
    assert bleu([toks("a b c d e")], [toks("a b c d f")]) == pytest.approx(0.2**0.25)
    assert bleu([toks("a b c d e")], [toks("a b c d f")]) == pytest.approx(0.668740, abs=1e-6)


def test_bleu2_corpus_level_with_brevity_penalty():
    # Sentence 1: "a b c d" vs "a b c e"; sentence 2: "a a" vs "a b a".
    # 1-grams: s1 a,b,c match, d not -> 3/4; s2 "a" twice, ref has two "a" -> 2/2.
    #   corpus p1 = (3 + 2) / (4 + 2) = 5/6
    # 2-grams: s1 ab, bc match, cd not -> 2/3; s2 "aa" not in {ab, ba} -> 0/1.
    #   corpus p2 = (2 + 0) / (3 + 1) = 1/2  (an average of sentence scores would give 0)
    # c = 6, r = 7 -> BP = exp(1 - 7/6) = exp(-1/6) = 0.846482
    # BLEU = 0.846482 * sqrt(5/6 * 1/2) = 0.846482 * 0.645497 = 0.546402
    preds = [toks("a b c d"), toks("a a")]
    refs = [toks("a b c e"), toks("a b a")]
    assert bleu(preds, refs, max_n=2) == pytest.approx(0.546402, abs=1e-6)


def test_bleu_clipping():
    # "the" x4 against a reference with one "the": clipped 1/4, unclipped would be 4/4.
    # c = 4 > r = 2, so BP = 1. BLEU-1 = 0.25.
    assert bleu([toks("the the the the")], [toks("the cat")], max_n=1) == pytest.approx(0.25)


def test_bleu_brevity_penalty_only_when_shorter():
    # Shorter: p1 = 1, c=2, r=4 -> exp(1 - 2) = 0.367879
    assert bleu([toks("a b")], [toks("a b c d")], max_n=1) == pytest.approx(0.367879, abs=1e-6)
    # Longer: p1 = 2/4, no penalty -> 0.5
    assert bleu([toks("a b c d")], [toks("a b")], max_n=1) == pytest.approx(0.5)


def test_bleu_zero_precision_gives_zero():
    # No 4-gram in a 3-token prediction -> p4 undefined/zero -> 0.0 (no smoothing).
    assert bleu([toks("a b c")], [toks("a b c")]) == 0.0
    # No shared unigram.
    assert bleu([toks("w x y z")], [toks("a b c d")]) == 0.0


def test_bleu4_corpus_hand_computed_with_brevity_penalty():
    # s1 "a b c d e" vs "a b c d e f g": every n-gram matches (5, 4, 3, 2 of them).
    # s2 "x b c d" vs "a b c d": 1-grams 3/4, 2-grams 2/3 (bc cd), 3-grams 1/2 (bcd), 4-grams 0/1.
    # corpus p1..p4 = 8/9, 6/7, 4/5, 2/3 (product 384/945); c = 9 < r = 11 -> BP = exp(-2/9).
    preds = [toks("a b c d e"), toks("x b c d")]
    refs = [toks("a b c d e f g"), toks("a b c d")]
    assert bleu(preds, refs) == pytest.approx(math.exp(-2 / 9) * (384 / 945) ** 0.25)
    assert bleu(refs, refs) == pytest.approx(1.0)


def test_ned_divides_by_the_longer_string():
    # "a b c d e" (9 chars) vs "a" (1 char): 8 deletions / 9. Dividing by the truth's
    # length (pix2tex) would give 8.
    assert normalized_edit_distance([toks("a b c d e")], [toks("a")]) == pytest.approx(8 / 9)
    assert normalized_edit_distance([toks("a b")], [toks("c d")]) == pytest.approx(2 / 3)


def test_bleu_invalid_max_n():
    with pytest.raises(ValueError):
        bleu(PREDS, REFS, max_n=0)


# --- competition score and compute_all -------------------------------------------------


def test_competition_score():
    # 0.9 * 0.8 + 0.1 * (1 - 0.1) = 0.72 + 0.09 = 0.81
    assert competition_score(0.8, 0.1) == pytest.approx(0.81)
    assert competition_score(1.0, 0.0) == pytest.approx(1.0)


def test_compute_all_shared_corpus():
    out = compute_all(PREDS, REFS)
    assert set(out) == {
        "n",
        "sentence_acc",
        "exprate_le1",
        "exprate_le2",
        "wer",
        "corpus_wer",
        "token_acc",
        "ned",
        "bleu",
        "score",
    }
    assert out["n"] == 4 and isinstance(out["n"], int)
    assert out["sentence_acc"] == pytest.approx(0.25)
    assert out["exprate_le1"] == pytest.approx(0.5)
    assert out["exprate_le2"] == pytest.approx(0.75)
    assert out["wer"] == pytest.approx(11 / 24)
    assert out["corpus_wer"] == pytest.approx(7 / 12)
    assert out["token_acc"] == pytest.approx(3 / 7)
    assert out["ned"] == pytest.approx(59 / 140)
    # Only sentence 4 has a 4-gram ("x y z w"), absent from its ref -> p4 = 0 -> BLEU 0.
    assert out["bleu"] == 0.0
    # 0.9 * 0.25 + 0.1 * (1 - 11/24) = 0.225 + 13/240 = 0.279166...
    assert out["score"] == pytest.approx(0.225 + 13 / 240)


# --- empty corpus and length checks ----------------------------------------------------

CORPUS_FUNCS = [
    sentence_accuracy,
    wer,
    corpus_wer,
    token_accuracy,
    normalized_edit_distance,
    bleu,
    lambda p, r: exprate_within(p, r, 1),
]


@pytest.mark.parametrize("func", CORPUS_FUNCS)
def test_empty_corpus_is_zero(func):
    assert func([], []) == 0.0


def test_compute_all_empty():
    out = compute_all([], [])
    assert out["n"] == 0
    # score included: the raw formula would give 0.1 here.
    assert all(v == 0.0 for k, v in out.items() if k != "n")
    assert len(out) == 10


def test_by_length_empty():
    assert by_length([], []) == []


@pytest.mark.parametrize("func", [*CORPUS_FUNCS, compute_all, by_length])
def test_mismatched_lengths_raise(func):
    with pytest.raises(ValueError, match=r"3 preds and 2 refs"):
        func([["a"], ["b"], ["c"]], [["a"], ["b"]])


# --- by_length -------------------------------------------------------------------------


def test_by_length_default_bins_and_boundaries():
    refs = [["a"] * 5, ["a"] * 10, ["a"] * 11, ["a"] * 50, ["a"] * 51]
    preds = [
        ["a"] * 5,  # exact
        ["a"] * 9,  # one deletion: 1/10
        ["a"] * 11,  # exact
        ["a"] * 49 + ["b"],  # one substitution: 1/50
        [],  # everything deleted: 51/51
    ]
    assert by_length(preds, refs) == [
        # lengths 5 and 10 (10 is inclusive): acc 1/2, wer (0 + 0.1) / 2 = 0.05
        {"bin": "1-10", "n": 2, "sentence_acc": 0.5, "wer": pytest.approx(0.05)},
        {"bin": "11-20", "n": 1, "sentence_acc": 1.0, "wer": 0.0},
        # "21-30" is empty and omitted; 50 is the inclusive top of "31-50".
        {"bin": "31-50", "n": 1, "sentence_acc": 0.0, "wer": pytest.approx(0.02)},
        {"bin": ">50", "n": 1, "sentence_acc": 0.0, "wer": 1.0},
    ]


def test_by_length_custom_bins_and_empty_ref():
    # Bins (3,) -> "1-3" and ">3". The empty ref goes to the first bin.
    refs = [[], toks("a b c"), toks("a b c d")]
    preds = [[], toks("a b x"), toks("a b c d")]
    assert by_length(preds, refs, bins=(3,)) == [
        # mean(0, 1/3) = 1/6; 1 exact of 2
        {"bin": "1-3", "n": 2, "sentence_acc": 0.5, "wer": pytest.approx(1 / 6)},
        {"bin": ">3", "n": 1, "sentence_acc": 1.0, "wer": 0.0},
    ]


def test_by_value_groups_by_the_given_numbers():
    # Image heights 30, 48 (inclusive top of "1-48") and 100 (open bin), not lengths.
    refs = [toks("a b"), toks("a b c"), toks("a")]
    preds = [toks("a b"), toks("a x c"), toks("b")]
    assert by_value(preds, refs, [30, 48, 100], bins=(48, 72)) == [
        {"bin": "1-48", "n": 2, "sentence_acc": 0.5, "wer": pytest.approx(1 / 6)},
        {"bin": ">72", "n": 1, "sentence_acc": 0.0, "wer": 1.0},
    ]
    with pytest.raises(ValueError, match="2 values for 3"):
        by_value(preds, refs, [30, 48], bins=(48,))


@pytest.mark.parametrize("bins", [(), (0, 10), (10, 10), (20, 10)])
def test_by_length_invalid_bins(bins):
    with pytest.raises(ValueError):
        by_length(PREDS, REFS, bins=bins)


def test_public_api_listed():
    for name in metrics.__all__:
        assert callable(getattr(metrics, name))


# --- render_match ----------------------------------------------------------------------


def glyphs(*columns: int, gap: int = 1, pad: int = 0) -> np.ndarray:
    """A fake typeset formula: ink blocks of the given widths, ``gap`` blank columns apart,
    inside ``pad`` blank pixels of margin; the second block is half as tall."""
    h = 6
    parts = []
    for k, w in enumerate(columns):
        block = np.zeros((h, w), np.uint8)
        block[(h // 2 if k == 1 else 0):, :] = 255
        parts += [block, np.zeros((h, gap), np.uint8)]
    img = np.concatenate(parts[:-1], 1)
    return np.pad(img, pad)


def test_render_match_identical_and_margins():
    a = glyphs(2, 3, 1)
    assert render_match(a, a.copy())
    # Margins are cropped away: the same glyphs inside a larger image still match.
    assert render_match(a, glyphs(2, 3, 1, pad=4))
    assert render_match(a, glyphs(2, 3, 1, pad=4), ignore_space=True)


def test_render_match_shifted_whitespace_only_lenient():
    a, b = glyphs(2, 3, 1, gap=1), glyphs(2, 3, 1, gap=3)  # wider spaces between glyphs
    assert not render_match(a, b)
    assert render_match(a, b, ignore_space=True)


def test_render_match_different_glyphs():
    a = glyphs(2, 3, 1)
    assert not render_match(a, glyphs(2, 3, 2))
    assert not render_match(a, glyphs(2, 3, 2), ignore_space=True)
    flipped = a[::-1]  # same columns' ink counts, different shapes
    assert not render_match(a, flipped, ignore_space=True)


def test_render_match_binarises_coverage_at_half():
    a = glyphs(2, 3)
    faint = np.where(a > 0, 200, 40).astype(np.uint8)  # antialiasing-like levels
    assert render_match(a, faint)
    assert not render_match(a, np.where(a > 0, 100, 0).astype(np.uint8))  # below half: blank
    assert render_match(np.zeros((3, 3), np.uint8), np.zeros((5, 1), np.uint8))

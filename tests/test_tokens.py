"""Tokenizer (caption style) and vocabulary."""

from __future__ import annotations

import json

import pytest

from texlens.data.synth.generator import FormulaGenerator
from texlens.tokens import EOS, PAD, SOS, SPECIALS, UNK, TokenizeError, Vocab, join, tokenize


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_on_generated_captions(seed):
    gen = FormulaGenerator(seed=seed)
    for _ in range(400):
        toks = gen.generate()
        assert tokenize(join(toks)) == toks, toks


def test_already_tokenised_caption_comes_back_unchanged():
    cap = "\\frac { 1 } { 2 } + \\sqrt [ 3 ] { x } = y _ { i } ^ { 2 }"
    assert tokenize(cap) == cap.split()
    assert join(tokenize(cap)) == cap


def test_frac_arguments_are_braced():
    assert tokenize("\\frac12") == ["\\frac", "{", "1", "}", "{", "2", "}"]
    assert tokenize("\\frac 1 2") == tokenize("\\frac{1}{2}")
    assert tokenize("\\dfrac{a}{b}") == ["\\frac", "{", "a", "}", "{", "b", "}"]
    # Nested bare arguments are braced at every level.
    assert tokenize("\\frac{x^2}3") == ["\\frac", "{", "x", "^", "{", "2", "}", "}",
                                        "{", "3", "}"]


def test_script_arguments_are_braced():
    assert tokenize("x^2") == tokenize("x^{2}") == ["x", "^", "{", "2", "}"]
    assert tokenize("x_i^2") == ["x", "_", "{", "i", "}", "^", "{", "2", "}"]
    assert tokenize("e^\\alpha") == ["e", "^", "{", "\\alpha", "}"]
    # Only the first token is the argument: x^23 is x^{2}3.
    assert tokenize("x^23") == ["x", "^", "{", "2", "}", "3"]


def test_frac_or_sqrt_as_a_script_argument():
    # CROHME truth writes t^\frac{2}{3}: the whole fraction is the exponent.
    assert tokenize("t^\\frac{2}{3}") == ["t", "^", "{", "\\frac", "{", "2", "}", "{", "3",
                                           "}", "}"]
    assert tokenize("x^\\frac12 y") == tokenize("x^{\\frac{1}{2}} y")
    assert tokenize("e^\\sqrt[3]x") == tokenize("e^{\\sqrt[3]{x}}")
    with pytest.raises(TokenizeError):
        tokenize("x^\\frac{1}")


def test_sqrt_with_index():
    assert tokenize("\\sqrt[3]x") == ["\\sqrt", "[", "3", "]", "{", "x", "}"]
    assert tokenize("\\sqrt2") == ["\\sqrt", "{", "2", "}"]


def test_sizing_commands_are_dropped():
    assert tokenize("\\left( x \\right)") == ["(", "x", ")"]
    assert tokenize("\\left. x \\right|") == ["x", "|"]
    assert tokenize("\\Big[ a \\, b \\quad c \\Big]") == ["[", "a", "b", "c", "]"]


def test_aliases_use_caption_spelling():
    assert tokenize("a \\lt b") == ["a", "<", "b"]
    assert tokenize("a \\gt b \\le c \\ge d \\ne e") == ["a", ">", "b", "\\leq", "c",
                                                         "\\geq", "d", "\\neq", "e"]
    assert tokenize("x \\to \\infty") == ["x", "\\rightarrow", "\\infty"]
    assert tokenize("\\lbrace x \\rbrace") == ["\\{", "x", "\\}"]


def test_text_wrappers_keep_their_content():
    assert tokenize("\\mbox{ab}") == ["a", "b"]
    assert tokenize("\\text{if} x") == ["i", "f", "x"]
    assert tokenize("\\mathrm{d} x") == ["d", "x"]
    assert tokenize("$x+1$") == ["x", "+", "1"]


def test_control_symbols_are_single_tokens():
    assert tokenize("\\{ x \\}") == ["\\{", "x", "\\}"]
    assert tokenize("\\sin\\theta") == ["\\sin", "\\theta"]


@pytest.mark.parametrize("bad", ["{x", "x}", "\\frac{1", "} x {", "a } b { c",
                                 "\\mbox{ab", "x^", "\\frac{1}", "\\sqrt[3 x",
                                 "{x^}", "x^^2", "\\frac{a}&"])
def test_malformed_formulas_raise(bad):
    with pytest.raises(TokenizeError):
        tokenize(bad)


def test_sqrt_index_ends_at_the_first_bracket_outside_braces():
    # as in LaTeX: \sqrt[{]}]{x} has the index {]}
    assert tokenize("\\sqrt[{]}]{x}") == ["\\sqrt", "[", "{", "]", "}", "]", "{", "x", "}"]


def test_tokenize_error_is_a_value_error():
    assert issubclass(TokenizeError, ValueError)


# -- Vocab -------------------------------------------------------------------

def test_specials_have_fixed_ids():
    v = Vocab(["b", "a", "c"])
    assert v.itos[:4] == [PAD, SOS, EOS, UNK] == list(SPECIALS)
    assert (v.pad_id, v.sos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert [v.stoi[t] for t in SPECIALS] == [0, 1, 2, 3]
    assert len(v) == 7
    # Specials given in the token list are not duplicated.
    assert Vocab([EOS, "a", PAD]).itos == [PAD, SOS, EOS, UNK, "a"]


def test_duplicate_tokens_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        Vocab(["a", "b", "a"])


def test_encode_decode_round_trip():
    v = Vocab(["x", "+", "1", "\\frac", "{", "}"])
    toks = ["\\frac", "{", "x", "}", "{", "1", "}", "+", "x"]
    ids = v.encode(toks)
    assert ids[0] == v.sos_id and ids[-1] == v.eos_id
    assert len(ids) == len(toks) + 2
    assert v.decode(ids) == toks
    assert v.encode(toks, add_special=False) == ids[1:-1]


def test_decode_stops_at_eos_and_skips_pad_sos():
    v = Vocab(["a", "b"])
    a, b = v.stoi["a"], v.stoi["b"]
    assert v.decode([v.sos_id, a, v.pad_id, b, v.eos_id, a, b]) == ["a", "b"]
    assert v.decode([v.eos_id, a]) == []
    assert v.decode([]) == []


def test_unknown_tokens_and_ids():
    v = Vocab(["a"])
    assert v.encode(["a", "zz"], add_special=False) == [v.stoi["a"], v.unk_id]
    assert v.decode([v.stoi["a"], 99, -1]) == ["a", UNK, UNK]
    assert v.unknown(["a", "zz", "\\foo"]) == ["zz", "\\foo"]
    assert "a" in v and "zz" not in v


def test_build_counts_and_extra():
    v = Vocab.build([["a", "b"], ["a", "c"]], min_count=2, extra=["z"])
    assert v.itos[4:] == ["a", "z"]
    assert Vocab.build([["b", "a"]]) == Vocab(["a", "b"])


def test_json_round_trip():
    v = Vocab(["x", "\\alpha", "{"])
    assert Vocab.from_list(v.itos) == v
    assert json.loads(v.to_json()) == ["x", "\\alpha", "{"]


def test_from_file_crohme_dictionary(tmp_path):
    # CROHME's dictionary.txt has "token<TAB>id" lines; extra columns are ignored.
    path = tmp_path / "dictionary.txt"
    path.write_text("x\t4\n\\frac\t5\n\n{\t6\n}\t7\n", encoding="utf-8")
    v = Vocab.from_file(str(path))
    assert v.itos == [*SPECIALS, "x", "\\frac", "{", "}"]
    assert v.decode(v.encode(["\\frac", "{", "x", "}"])) == ["\\frac", "{", "x", "}"]

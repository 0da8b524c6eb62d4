"""InkML reading: the variants of the CROHME sources, symbols, truth, and bad files."""

from __future__ import annotations

import numpy as np
import pytest
from inkml_samples import X_PLUS_1, make_inkml

from texlens.data.inkml import InkmlError, read_inkml


def expected_points(k: int, scale: float = 100.0) -> np.ndarray:
    return np.array(X_PLUS_1["strokes"][k]) * scale + [100, 50]


@pytest.mark.parametrize("namespace,prefix", [("http://www.w3.org/2003/InkML", ""),
                                              ("http://www.w3.org/2003/InkML", "inkml"),
                                              (None, "")])
def test_namespaces_give_the_same_ink(tmp_path, namespace, prefix):
    path = tmp_path / "a_formula.inkml"
    path.write_text(make_inkml(namespace=namespace, prefix=prefix), encoding="utf-8")
    ink = read_inkml(path)
    assert ink.key == "a_formula"
    assert ink.truth_latex == "x+1"  # the $...$ wrapper is removed
    assert ink.trace_order == ["0", "1", "2", "3", "4"]
    for k, tid in enumerate(ink.trace_order):
        assert ink.traces[tid].shape == (len(X_PLUS_1["strokes"][k]), 2)
        np.testing.assert_allclose(ink.traces[tid], expected_points(k))
    assert [(s.label, s.trace_ids) for s in ink.symbols] == [
        ("x", ["0", "1"]), ("+", ["2", "3"]), ("1", ["4"])]
    assert ink.symbols[0].href == "x_0" and ink.symbols[0].xml_id == "6"
    assert ink.mathml is not None and ink.mathml.startswith("<math")


@pytest.mark.parametrize("values", [2, 3])
@pytest.mark.parametrize("integers", [True, False])
def test_two_or_three_values_int_or_float(values, integers):
    scale = 0.0137 if not integers else 100.0  # HAMEX-like tiny decimals vs pixel ints
    doc = make_inkml(values=values, integers=integers, scale=scale)
    ink = read_inkml(doc.encode(), name="dir/sub/k1.inkml")
    assert ink.key == "k1"
    got = ink.traces["4"]
    assert got.dtype == np.float64 and got.shape == (3, 2)  # time channel dropped
    np.testing.assert_allclose(got, expected_points(4, scale), atol=0.5 if integers else 1e-4)


def test_separators_and_trailing_comma_are_tolerated():
    doc = make_inkml(trace_texts={0: " 1 2 ,3 4,\n 5   6, "})
    ink = read_inkml(doc.encode(), name="t.inkml")
    np.testing.assert_array_equal(ink.traces["0"], [[1, 2], [3, 4], [5, 6]])


def test_nested_groups_only_leaf_groups_are_symbols():
    ink = read_inkml(make_inkml().encode(), name="n.inkml")
    # The outer "Segmentation" group references no stroke itself: not a symbol.
    assert "Segmentation" not in [s.label for s in ink.symbols]
    assert sorted(t for s in ink.symbols for t in s.trace_ids) == ink.trace_order


@pytest.mark.parametrize("truth", [None, "", "   "])
def test_missing_or_empty_truth_is_none(truth):
    ink = read_inkml(make_inkml(truth=truth, mathml=False).encode(), name="MfrDB9999.inkml")
    assert ink.truth_latex is None
    assert ink.mathml is None
    assert len(ink.traces) == 5


def test_file_without_symbols_still_reads():
    ink = read_inkml(make_inkml(symbols=[]).encode(), name="s.inkml")
    assert ink.symbols == [] and len(ink.traces) == 5


def test_latin1_byte_without_declaration_is_read():
    # One MfrDB file has a bare Latin-1 middle dot in its MathML and no encoding line.
    doc = make_inkml().replace(">x</mi>", ">\xb7</mi>").encode("latin-1")
    ink = read_inkml(doc, name="m.inkml")
    assert ink.mathml is not None and "\xb7" in ink.mathml


@pytest.mark.parametrize("text,fragment", [
    ("10 20, 30 abc", "not a number: 'abc'"),
    ("10 20, 30 40 50", "same number"),
    ("10, 20", "same number"),
    ("", "empty trace"),
    ("10 20, 'nan 40", "difference-encoded"),
    ("10 20, nan 40", "non-finite"),
])
def test_bad_trace_names_file_and_trace(text, fragment):
    doc = make_inkml(trace_texts={3: text})
    with pytest.raises(InkmlError) as e:
        read_inkml(doc.encode(), name="bad_one.inkml")
    assert "bad_one.inkml" in str(e.value)
    assert "trace '3'" in str(e.value)
    assert fragment in str(e.value)


def test_malformed_files_name_the_file(tmp_path):
    cases = {"empty.inkml": b"", "blank.inkml": b"  \n",
             "broken.inkml": make_inkml().encode()[:-20],
             "notink.inkml": b"<svg><trace id='0'>1 2</trace></svg>",
             "notrace.inkml": b"<ink xmlns='http://www.w3.org/2003/InkML'></ink>"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InkmlError, match=name):
            read_inkml(tmp_path / name)
    with pytest.raises(InkmlError, match="missing.inkml"):
        read_inkml(tmp_path / "missing.inkml")


def test_unknown_trace_reference_and_duplicate_ids():
    doc = make_inkml(symbols=[("x", [0, 9])])
    with pytest.raises(InkmlError, match="unknown trace '9'"):
        read_inkml(doc.encode(), name="ref.inkml")
    dup = make_inkml().replace('<trace id="1">', '<trace id="0">')
    with pytest.raises(InkmlError, match="duplicate trace id '0'"):
        read_inkml(dup.encode(), name="dup.inkml")


def test_inkml_error_is_a_value_error():
    assert issubclass(InkmlError, ValueError)

from __future__ import annotations

from collections import Counter

import pytest
from typer.testing import CliRunner

from texlens.cli import app
from texlens.data.corpus import (
    build_corpus,
    read_formula_file,
    source_of,
    weighted_sample,
    write_corpus,
)
from texlens.data.splits import expression_split

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _book(tmp_path, name, lines):
    path = tmp_path / f"{name}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_corpus_dedupes_spellings_reports_failures_and_splits_by_expression(tmp_path):
    # The crohme style needs no LaTeX parser; both styles share this path.
    book = _book(tmp_path, "book", ["x^2", "x ^ { 2 }", "", "\\frac{1", "a+b"]
                 + [f"y_{i}" for i in range(30)])
    rows = read_formula_file(book)
    assert rows[2].where.endswith("book.txt:4") and rows[2].key == "book-4"
    rep = build_corpus(rows, style="crohme")
    st = rep.stats["book"]
    assert st["lines"] == 34 and st["duplicates"] == 1 and st["failed"] == 1
    assert len(rep.problems) == 1 and "book.txt:4" in rep.problems[0]
    kept = [t for rows_ in rep.splits.values() for _, _, t in rows_]
    assert len(kept) == len(set(kept)) == 32
    for split, rows_ in rep.splits.items():
        assert all(expression_split(t) == split for _, _, t in rows_)
    write_corpus(rep, tmp_path / "out")
    lines = (tmp_path / "out" / "train.txt").read_text().splitlines()
    assert len(lines) == len(rep.splits["train"]) and "\t" in lines[0]
    assert "book.txt:4" in (tmp_path / "out" / "problems.txt").read_text()


def test_weighted_sample_shares_follow_size_to_the_alpha():
    rows = [(f"big-{i}", f"b {i}") for i in range(900)] + [(f"small-{i}", f"s {i}")
                                                           for i in range(100)]
    drawn = weighted_sample(rows, 400, seed=1, alpha=0.5)
    shares = Counter(source_of(k) for k, _ in drawn)
    assert sum(shares.values()) == 400
    assert shares["small"] == 100  # sqrt(100) / (sqrt(900) + sqrt(100)) = 1/4
    assert len({k for k, _ in drawn}) == 400  # keys stay unique
    again = weighted_sample(rows, 400, seed=1, alpha=0.5)
    assert again == drawn
    as_is = Counter(source_of(k) for k, _ in weighted_sample(rows, 400, seed=1, alpha=1.0))
    assert as_is["small"] == 40
    # A small source is repeated only after all of its rows were used; repeats get new keys.
    many = weighted_sample(rows, 4000, seed=2, alpha=0.0)
    small = [k for k, _ in many if source_of(k) == "small"]
    assert len(small) == 2000 and len(set(small)) == 2000
    assert Counter(k.split("__r")[0] for k in small).most_common(1)[0][1] == 20
    with pytest.raises(ValueError):
        weighted_sample([], 3)


def test_data_corpus_and_sample_cli(tmp_path):
    (tmp_path / "src").mkdir()
    _book(tmp_path / "src", "b1", [f"x + {i}" for i in range(40)] + ["\\frac{"])
    res = invoke("data", "corpus", tmp_path / "src", "--out", tmp_path / "c", "--style",
                 "crohme", "--workers", "1")
    assert res.exit_code == 0, res.output
    assert "b1.txt:41" in (tmp_path / "c" / "problems.txt").read_text()
    res = invoke("data", "sample", tmp_path / "c" / "train.txt", "--out", tmp_path / "w.txt",
                 "--n", "50")
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "w.txt").read_text().splitlines()) == 50
    res = invoke("data", "sample", tmp_path / "c" / "train.txt", "--out", tmp_path / "s.txt",
                 "--n", "30", "--max-tokens", "3")  # x + 7, not x + 1 2
    assert res.exit_code == 0, res.output
    def lengths(f: str) -> set[int]:
        return {len(ln.split("\t")[1].split()) for ln in (tmp_path / f).read_text().splitlines()}
    assert lengths("s.txt") == {3}
    res = invoke("data", "sample", tmp_path / "c" / "train.txt", "--out", tmp_path / "l.txt",
                 "--n", "30", "--min-tokens", "4")
    assert lengths("l.txt") == {4}
    bad = invoke("data", "corpus", tmp_path / "nope", "--out", tmp_path / "d")
    assert bad.exit_code != 0 and "nope" in bad.output

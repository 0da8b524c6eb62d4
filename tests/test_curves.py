"""Learning curves: stitching resumed runs' CSV logs, and the plot-curves command."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from texlens.cli import app
from texlens.curves import CurveError, plot_curves, read_metrics, smooth

HEADER = "epoch,lr-AdamW/pg1,step,train/loss,val/sentence_acc\n"


def _write_version(run: Path, n: int, rows: list[str]) -> None:
    d = run / "logs" / f"version_{n}"
    d.mkdir(parents=True)
    (d / "metrics.csv").write_text(HEADER + "".join(r + "\n" for r in rows))


@pytest.fixture
def resumed_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    # First start: logs to step 299, validates at 99 and 199; its last checkpoint was at
    # step 150, so the resume (version 1) redoes 150.. and its values replace the old.
    _write_version(run, 0, ["0,0.001,49,2.0,", "0,,99,,0.10", "0,0.001,149,1.5,",
                            "0,,199,,0.30", "0,0.0005,249,1.2,", "0,,299,,0.35"])
    _write_version(run, 1, ["0,0.0009,199,1.4,", "0,,199,,0.25", "0,0.0008,249,1.1,",
                            "1,,399,,0.50"])
    return run


def test_read_metrics_stitches_resumed_versions(resumed_run):
    m = read_metrics(resumed_run)
    assert m["val/sentence_acc"] == [(99, 0.10), (199, 0.25), (399, 0.50)]
    assert m["train/loss"] == [(49, 2.0), (149, 1.5), (199, 1.4), (249, 1.1)]
    assert [s for s, _ in m["lr-AdamW/pg1"]] == [49, 149, 199, 249]
    assert "epoch" not in m and "step" not in m


def test_versions_are_ordered_numerically(tmp_path):
    run = tmp_path / "run"
    for n in range(11):  # version_10 must come after version_9, not after version_1
        _write_version(run, n, [f"0,,{100 * n + 99},,{n / 100}"])
    assert read_metrics(run)["val/sentence_acc"][-1] == (1099, 0.10)
    assert len(read_metrics(run)["val/sentence_acc"]) == 11


def test_smooth_is_a_trailing_mean():
    assert smooth([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert smooth([4.0], 10) == [4.0]


def test_plot_curves_writes_png(resumed_run, tmp_path):
    out = plot_curves([resumed_run, resumed_run], tmp_path / "sub" / "c.png", ["a", "b"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(CurveError, match="labels"):
        plot_curves([resumed_run], tmp_path / "c.png", ["a", "b"])


def test_plot_curves_cli(resumed_run, tmp_path):
    out = tmp_path / "c.png"
    r = CliRunner().invoke(app, ["plot-curves", str(resumed_run), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "best 50.0% at step 399" in r.output and out.is_file()
    r = CliRunner().invoke(app, ["plot-curves", str(tmp_path / "nope"), "--out", str(out)])
    assert r.exit_code == 2 and "no logs/version_*/metrics.csv" in r.output

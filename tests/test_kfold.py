"""K-fold cross-validation (``texlens kfold``): stratified folds, end-to-end run, ensemble."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from texlens.cli import app
from texlens.config import ConfigError, config_to_dict
from texlens.data.datasets import Sample
from texlens.train.kfold import assign_folds, length_bin

runner = CliRunner()


def fake_samples(n: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    return [Sample(f"k{i}", Path(f"k{i}.png"), ["x"] * rng.randint(1, 45), f"gt.txt:{i + 1}",
                   rng.choice([0, 0, 1, None])) for i in range(n)]


def deviations(samples: list[Sample], folds: list[int], k: int, group) -> list[float]:
    """|samples of a group in a fold - the group's size / k|, for every group and fold."""
    total = Counter(group(s) for s in samples)
    per_fold = Counter((group(s), f) for s, f in zip(samples, folds, strict=True))
    return [abs(per_fold[g, f] - n / k) for g, n in total.items() for f in range(k)]


def test_length_bins():
    assert [length_bin(n) for n in (1, 10, 11, 20, 21, 30, 31, 200)] == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("n,k,seed", [(97, 2, 0), (150, 3, 1), (61, 5, 2), (400, 4, 3),
                                      (23, 7, 4)])
def test_folds_are_stratified_disjoint_and_cover_everything(n, k, seed):
    samples = fake_samples(n, seed)
    folds = assign_folds(samples, k, seed)
    assert len(folds) == n and set(folds) == set(range(k))  # each sample in exactly one fold
    # Sources and fold sizes: within one sample of the exact share.
    assert max(deviations(samples, folds, k, lambda s: s.source)) < 1
    assert max(deviations(samples, folds, k, lambda s: 0)) < 1
    # Length bins: balanced by swaps, about one sample off at most.
    assert max(deviations(samples, folds, k, lambda s: length_bin(len(s.tokens)))) <= 1.5


def test_folds_are_deterministic_per_seed():
    samples = fake_samples(80, 0)
    assert assign_folds(samples, 4, seed=1) == assign_folds(samples, 4, seed=1)
    assert assign_folds(samples, 4, seed=1) != assign_folds(samples, 4, seed=2)


def test_fold_count_errors():
    with pytest.raises(ConfigError, match="at least 2"):
        assign_folds(fake_samples(10, 0), 1)
    with pytest.raises(ConfigError, match="cannot make"):
        assign_folds(fake_samples(3, 0), 4)


@pytest.fixture
def competition_dir(tmp_path, synth_master) -> Path:
    """The 12 rendered samples in the competition layout, alternately printed and handwritten."""
    root = tmp_path / "comp"
    shutil.copytree(synth_master / "images", root / "images")
    lines = (synth_master / "caption.txt").read_text(encoding="utf-8").splitlines()
    keys = [line.split("\t")[0] for line in lines]
    (root / "gt.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "source.txt").write_text("".join(f"{key}\t{i % 2}\n" for i, key in enumerate(keys)),
                                     encoding="utf-8")
    return root


def test_two_fold_run_writes_per_fold_mean_std_and_ensemble(tmp_path, make_cfg, competition_dir,
                                                            synth_master):
    cfg = make_cfg(tmp_path / "run", [str(competition_dir)], [str(synth_master)])
    cfg.train.max_steps = 2  # 6 training samples per fold: 2 batches, one epoch
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(config_to_dict(cfg)))))
    out = tmp_path / "cv"
    result = runner.invoke(app, ["kfold", str(path), "--folds", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "kfold.json").read_text())
    assert report["folds"] == 2 and report["n_samples"] == 12
    assert [f["fold"] for f in report["per_fold"]] == [0, 1]
    assert [f["heldout"]["n"] for f in report["per_fold"]] == [6, 6]
    assert all(f["n_train"] == 6 and Path(f["model"]).is_file() for f in report["per_fold"])
    for key in ("sentence_acc", "wer"):
        values = [f["heldout"][key] for f in report["per_fold"]]
        assert report["mean"][key] == pytest.approx(sum(values) / 2)
        assert report["std"][key] == pytest.approx(abs(values[0] - values[1]) / 2)
    ensemble = report["ensemble"]
    assert ensemble["n"] == 12 and len(ensemble["models"]) == 2
    assert ensemble["data"] == [str(synth_master)] and 0.0 <= ensemble["sentence_acc"] <= 1.0
    # Stratified by source: each fold holds 3 printed and 3 handwritten samples.
    rows = [line.split("\t") for line in (out / "folds.tsv").read_text().splitlines()[1:]]
    assert Counter((fold, source) for fold, source, _, _ in rows) == {
        (f, s): 3 for f in "01" for s in "01"}
    assert "ensemble on val" in result.output

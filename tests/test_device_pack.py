"""benchmarks/pack_for_device.py: datasets packed for a GPU machine come back unchanged."""

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

from texlens.data.datasets import read_layout, read_pairs
from texlens.data.image import load_image

ROOT = Path(__file__).resolve().parents[1]


def test_a_packed_dataset_unpacks_to_the_same_pixels_and_captions(tmp_path, synth_master):
    repo = tmp_path / "repo"
    shutil.copytree(synth_master, repo / "data" / "set")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pack_for_device.py"),
                    "data/set=5", "--out", "out/pack.tar.xz", "--workers", "1"],
                   cwd=repo, check=True, capture_output=True)
    there = tmp_path / "there"
    with tarfile.open(repo / "out" / "pack.tar.xz") as tar:
        tar.extractall(there, filter="data")
    packed = there / "data" / "set"
    assert read_pairs(packed / "caption.txt") == read_pairs(synth_master / "caption.txt")[:5]
    samples, problems = read_layout(packed)
    assert not problems and len(samples) == 5
    originals = {s.key: s.image for s in read_layout(synth_master)[0]}
    for s in samples:
        assert s.image.suffix == ".pgm"
        np.testing.assert_array_equal(load_image(s.image), load_image(originals[s.key]))

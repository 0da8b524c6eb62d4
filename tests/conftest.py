"""Shared fixtures: a tiny config and small rendered datasets, all under pytest's tmp dirs.

A long training run may share the machine, so everything here is kept small and
single-threaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from texlens.config import AugmentConfig, Config, DataConfig, ModelConfig, TrainConfig
from texlens.data.synth.dataset import synth_dataset

torch.set_num_threads(1)

SYNTH_N = 12
SYNTH_SEED = 7


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory):
    """ONNX exports go to a folder of this run, not to the user's ~/.cache/texlens;
    subprocesses inherit it."""
    # Most tests load a tiny checkpoint once, where an ONNX export (seconds each) buys
    # nothing: PyTorch is their default; tests of the ONNX paths ask for it by name.
    env = {"TEXLENS_CACHE": str(tmp_path_factory.mktemp("texlens-cache")),
           "TEXLENS_BACKEND": "torch"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def randomize_norms(model: torch.nn.Module) -> None:
    """Fresh BatchNorm maps blank paper to zero, which would hide a padding leak."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)


def tiny_model_config(**overrides) -> ModelConfig:
    base = dict(d_model=32, n_heads=2, enc_layers=1, enc_ff=64, dec_layers=1, dec_ff=64,
                dropout=0.0, cnn_width=8, downsample=8, max_len=64)
    return ModelConfig(**{**base, **overrides})


def make_tiny_config(out_dir: Path, train: list[str] | None = None,
                     val: list[str] | None = None, augment: bool = False) -> Config:
    return Config(
        name="tiny",
        model=tiny_model_config(),
        data=DataConfig(train=list(train or []), val=list(val or []), height=32, width=128,
                        max_width=256, batch_size=4, max_tokens=60, val_limit=4,
                        augment=AugmentConfig(enabled=augment)),
        train=TrainConfig(max_epochs=50, max_steps=6, threads=1, log_every=1, seed=0,
                          out_dir=str(out_dir)),
    )


def tree_hashes(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def make_cfg():
    """Factory for tiny configs: make_cfg(out_dir, train=[...], val=[...], augment=False)."""
    return make_tiny_config


@pytest.fixture(scope="session")
def hash_tree():
    """Function: directory -> {relative path: sha256} of every file in it."""
    return tree_hashes


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> Config:
    """A Config with a ~40k-parameter model, 32-pixel-high images, batches of 4, no augment."""
    return make_tiny_config(tmp_path / "run")


@pytest.fixture(scope="session")
def synth_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 rendered samples in the standard layout (rendered once per session; do not modify)."""
    root = tmp_path_factory.mktemp("synth") / "ds"
    res = synth_dataset(root, SYNTH_N, SYNTH_SEED)
    assert res == {"written": SYNTH_N, "failed": 0}
    return root


@pytest.fixture
def dataset_dir(tmp_path: Path, synth_master: Path) -> Path:
    """A private copy of the rendered dataset (caption.txt + images/) inside tmp_path."""
    dst = tmp_path / "ds"
    shutil.copytree(synth_master, dst)
    return dst

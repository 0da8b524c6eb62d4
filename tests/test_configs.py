"""Every shipped config builds, and its model (at the config's own size and input policy)
learns: a few optimizer steps on a fixed batch lower the loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from texlens.config import load_config
from texlens.data.datasets import collate
from texlens.data.synth.generator import FormulaGenerator
from texlens.data.synth.render import render
from texlens.data.transforms import preprocess, to_tensor_array
from texlens.models.satrn import build_model
from texlens.models.summary import model_configs
from texlens.tokens import Vocab
from texlens.train.module import sequence_loss

CONFIGS = model_configs(Path(__file__).parents[1])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_model_learns(path):
    cfg = load_config(path)
    torch.manual_seed(0)
    gen = FormulaGenerator(seed=3, max_tokens=12)
    formulas = [gen.generate() for _ in range(4)]
    vocab = Vocab.build(formulas)
    rng = np.random.default_rng(0)
    items = [{"image": to_tensor_array(preprocess(render(f, rng), cfg.data)),
              "ids": vocab.encode(f), "index": i} for i, f in enumerate(formulas)]
    batch = collate(items)
    model = build_model(cfg.model, len(vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        ids = batch["ids"]
        loss = sequence_loss(model(batch["images"], batch["mask"], ids[:, :-1]), ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses

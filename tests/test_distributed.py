"""Distributed data parallel training on CPU: two processes (gloo) started by the command line,
as ``texlens train --devices N --strategy ddp`` starts them on a GPU node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import torch
import yaml

from texlens.checkpoint import load_model
from texlens.config import config_to_dict

# Variables a cluster or an outer launcher sets: inherited, they would make Lightning join
# that job instead of starting its own two processes.
LAUNCH_VARS = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK",
               "GROUP_RANK", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID")


def read_seen(path: Path) -> dict[int, list[int]]:
    """TEXLENS_DEBUG_SEEN file -> {epoch: training-set indices, in order}."""
    seen: dict[int, list[int]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        epoch, indices = line.split("\t")
        seen[int(epoch)] += [int(i) for i in indices.split()]
    return seen


def test_ddp_on_cpu_two_processes_train_on_different_data(tmp_path, make_cfg, synth_master):
    cfg = make_cfg(tmp_path / "run", [str(synth_master)], [str(synth_master)])
    # 12 samples in batches of 2: 6 batches, 3 per process, so 3 steps are one epoch.
    cfg.data.batch_size, cfg.train.max_steps = 2, 3
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(config_to_dict(cfg)))))
    env = {k: v for k, v in os.environ.items()
           if k not in LAUNCH_VARS and not k.startswith("SLURM_")}
    env["TEXLENS_DEBUG_SEEN"] = str(tmp_path / "seen")
    proc = subprocess.run(
        [sys.executable, "-m", "texlens.cli", "train", str(path), "--devices", "2",
         "--strategy", "ddp", "--accelerator", "cpu"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    log = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, log
    assert "distributed_backend=gloo" in log and "Starting with 2 processes" in log

    model, loaded_cfg, vocab = load_model(tmp_path / "run" / "model.pt")
    assert loaded_cfg.model.d_model == 32 and len(vocab) > 4 and not model.training
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 3

    ranks = [read_seen(tmp_path / f"seen.rank{r}") for r in (0, 1)]
    assert list(ranks[0]) == list(ranks[1]) == [0]  # one epoch each
    first, second = ranks[0][0], ranks[1][0]
    assert len(first) == len(second) == 6
    assert not set(first) & set(second)  # different samples on each process
    assert set(first) | set(second) == set(range(12))

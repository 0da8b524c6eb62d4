"""What a model config costs: parameters, FLOPs, and the input it sees.

docs/MODELS.md is written from these summaries (benchmarks/model_table.py adds measured
latency); tests/test_model_table.py recomputes them, so the page cannot drift from the
configs unnoticed. Everything here is deterministic: no timing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from texlens.config import Config, DataConfig, load_config
from texlens.models.satrn import build_model
from texlens.tokens import Vocab

STEPS = 30  # decoder steps counted and timed: a typical formula's length in tokens
CROHME_VOCAB = 115  # output size assumed for configs without a vocabulary file

HEADER = ("| config | parameters | GFLOPs / image | input policy | nominal HxW | vocabulary |")


@dataclass(frozen=True)
class ConfigSummary:
    config: str  # path relative to the repository root
    params: int
    flops: int  # one encode + STEPS cached decoder steps at the nominal input size
    policy: str  # how an input image is sized (the config's data.size_mode in words)
    height: int
    width: int
    vocab: int

    def cells(self) -> list[str]:
        """The markdown cells of this summary, as docs/MODELS.md prints them."""
        return [f"`{self.config}`", f"{self.params / 1e6:.2f} M", f"{self.flops / 1e9:.2f}",
                self.policy, f"{self.height}x{self.width}", str(self.vocab)]


def model_configs(root: Path) -> list[Path]:
    """Every recogniser config (search spaces, ablation specs and the orientation
    classifier's config are other kinds of file)."""
    return sorted(p for p in (root / "configs").rglob("*.yaml")
                  if not p.name.startswith("search-") and "ablations" not in p.parts
                  and not p.name.startswith("orientation"))


def input_policy(data: DataConfig) -> str:
    """The size policy of texlens/data/transforms.py in words, with its limits."""
    if data.size_mode == "fixed":
        return f"fixed {data.height}x{data.width}"
    if data.size_mode == "height":
        return f"height {data.height}, width <= {data.max_width}"
    ink = f", ink {data.ink_height:g} px" if data.ink_height else ""
    return f"scale x{data.scale:g}{ink}, <= {data.height}x{data.max_width}"


def vocab_size(cfg: Config, root: Path) -> int:
    if cfg.data.vocab:
        return len(Vocab.from_file(str(root / cfg.data.vocab)).itos)
    return CROHME_VOCAB


@torch.no_grad()
def decode_fixed(model: torch.nn.Module, images: torch.Tensor, steps: int = STEPS) -> None:
    """Encode, then exactly ``steps`` cached decoder steps (no early stop at <eos>)."""
    cache = model.start(*model.encode(images, None))
    tok = torch.full((images.shape[0], 1), Vocab.sos_id, dtype=torch.long)
    for _ in range(steps):
        tok = model.step(tok, cache).argmax(-1, keepdim=True)


def build(path: Path, root: Path) -> tuple[ConfigSummary, torch.nn.Module]:
    """The summary of one config, and its (untrained) model in eval mode."""
    cfg = load_config(path)
    vocab = vocab_size(cfg, root)
    # No autograd: FlopCounterMode would otherwise hook parameters returned as outputs.
    model = build_model(cfg.model, vocab).eval().requires_grad_(False)
    h, w = cfg.data.height, cfg.data.width
    with FlopCounterMode(display=False) as counter:
        decode_fixed(model, torch.rand(1, 1, h, w))
    summary = ConfigSummary(str(path.relative_to(root)), sum(p.numel() for p in model.parameters()),
                            counter.get_total_flops(), input_policy(cfg.data), h, w, vocab)
    return summary, model

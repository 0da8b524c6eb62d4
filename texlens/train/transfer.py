"""Transfer learning: start from another model's weights, optionally with parts frozen.

``train.init_from`` names a texlens checkpoint (a path or a shipped model name). Its
vocabulary is kept and extended with the new data's tokens, so the rows of the
embedding and the output layer are carried over token by token; a new token's rows
keep their fresh initialisation. ``train.freeze`` lists parameter-name prefixes
(``cnn``, ``encoder``, ``decoder.embed``...) held fixed for the first
``train.freeze_steps`` optimizer steps (0: the whole run).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import lightning as L
import torch
from torch import nn

from texlens.checkpoint import TRAIN_FORMULAS, CheckpointError, read_checkpoint
from texlens.config import Config, ConfigError
from texlens.models.decoder import L2R
from texlens.tokens import Vocab


def pretrained(name_or_path: str
               ) -> tuple[Config, Vocab, dict[str, torch.Tensor], bytes | None]:
    """Config, vocabulary, weights and training formulas (None: not recorded) of a model."""
    from texlens.recognizer import resolve_model  # the recognizer imports the models

    cfg, vocab, state, raw = read_checkpoint(resolve_model(name_or_path))
    return cfg, vocab, state, raw.get(TRAIN_FORMULAS)


def extend_vocab(base: Vocab, sequences: Iterable[Sequence[str]]) -> Vocab:
    """``base`` with the tokens it lacks from ``sequences`` appended (ids of ``base`` kept)."""
    new = sorted({t for seq in sequences for t in seq if t not in base})
    return Vocab([*base.itos, *new]) if new else base


def load_pretrained(model: nn.Module, state: dict[str, torch.Tensor], src_vocab: Vocab,
                    vocab: Vocab, source: str = "init_from") -> int:
    """Copy ``state`` into ``model``; rows indexed by token are mapped from ``src_vocab`` to
    ``vocab``. Returns how many tokens of ``vocab`` got trained rows. A missing or
    mis-shaped tensor is an error naming it: silently training half a model from
    scratch would look like a bad recipe, not a bad checkpoint."""
    own = model.state_dict()
    state = _conv_ffn_from_linear(_with_direction(state, own), own)
    shared = [(i, src_vocab.stoi[t]) for i, t in enumerate(vocab.itos) if t in src_vocab]
    dst_ids = torch.tensor([i for i, _ in shared])
    src_ids = torch.tensor([j for _, j in shared])
    missing = sorted(set(own) - set(state))
    if missing:
        raise CheckpointError(f"{source}: the checkpoint lacks {len(missing)} tensors of this "
                              f"model, e.g. {missing[0]!r}; is model.* the same?")
    merged = {}
    for key, target in own.items():
        src = state[key].to(target.dtype)
        if src.ndim and src.shape[0] == len(src_vocab) and target.shape[0] == len(vocab) \
                and src.shape[1:] == target.shape[1:] and src_vocab != vocab:
            rows = target.clone()
            rows[dst_ids] = src[src_ids]
            merged[key] = rows
        elif src.shape == target.shape:
            merged[key] = src
        elif key.endswith("pos_embed"):
            merged[key] = src  # the ViT encoder interpolates it on load
        else:
            raise CheckpointError(f"{source}: tensor {key!r} is {tuple(src.shape)} in the "
                                  f"checkpoint but {tuple(target.shape)} here; is model.* "
                                  "the same?")
    model.load_state_dict(merged)
    return len(shared)


def _with_direction(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
                    ) -> dict[str, torch.Tensor]:
    """A bidirectional model (model.bidirectional) may start from a one-way checkpoint: its
    left-to-right direction vector starts at zero, so it first reads left to right exactly
    as that model did; the right-to-left vector keeps its fresh initialisation."""
    key = "decoder.direction_embed.weight"
    if key not in own or key in state:
        return state
    fresh = own[key].clone()
    fresh[L2R] = 0.0
    return {**state, key: fresh}


def _conv_ffn_from_linear(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
                          ) -> dict[str, torch.Tensor]:
    """A conv feed-forward encoder (model.ffn: conv) may start from a linear one: the two
    position-wise layers become its 1x1 convolutions and the 3x3 depth-wise filter starts
    as the identity (centre tap 1), so it first computes what the linear layer did (but
    for a second GELU, close to the identity on the activations that matter) and learns
    spatial mixing from there, instead of dropping the encoder's trained feed-forwards."""
    out = dict(state)
    for key in own:
        if not key.endswith(".ffn.depthwise.weight") or key in state:
            continue
        layer = key[: -len("depthwise.weight")]
        if f"{layer}net.0.weight" not in state:
            continue
        for conv, lin in (("expand", "net.0"), ("project", "net.3")):
            out[f"{layer}{conv}.weight"] = state[f"{layer}{lin}.weight"][..., None, None]
            out[f"{layer}{conv}.bias"] = state[f"{layer}{lin}.bias"]
            del out[f"{layer}{lin}.weight"], out[f"{layer}{lin}.bias"]
        ident = torch.zeros_like(own[key])
        ident[:, 0, 1, 1] = 1.0
        out[key] = ident
        out[f"{layer}depthwise.bias"] = torch.zeros_like(own[f"{layer}depthwise.bias"])
    return out


def frozen_parameters(model: nn.Module, prefixes: Sequence[str]) -> list[nn.Parameter]:
    """Parameters whose dotted name starts with one of ``prefixes``; a prefix that names
    nothing is an error listing the model's top-level parts."""
    params = []
    for prefix in prefixes:
        hits = [p for n, p in model.named_parameters()
                if n == prefix or n.startswith(prefix.rstrip(".") + ".")]
        if not hits:
            parts = sorted({n.split(".")[0] for n, _ in model.named_parameters()})
            raise ConfigError(f"train.freeze: {prefix!r} names no parameter; top-level parts "
                             f"are {', '.join(parts)}")
        params += hits
    return params


class Freeze(L.Callback):
    """Hold parameters fixed, then release them after ``steps`` optimizer steps (0: never).

    Frozen parameters get no gradient, so AdamW neither moves nor decays them; BatchNorm
    running statistics still adapt to the new data, which is what fine-tuning on a new
    domain wants."""

    def __init__(self, params: list[nn.Parameter], steps: int = 0):
        self.params, self.steps, self.released = params, steps, False

    def _set(self, trainable: bool) -> None:
        for p in self.params:
            p.requires_grad_(trainable)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.released = bool(self.steps) and trainer.global_step >= self.steps
        self._set(self.released)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch, batch_idx: int) -> None:
        if not self.released and self.steps and trainer.global_step >= self.steps:
            self._set(True)
            self.released = True
            pl_module.log("train/unfrozen_at", float(trainer.global_step))

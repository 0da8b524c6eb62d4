"""texlens checkpoints: weights + config + vocabulary in one file, written atomically.

A training checkpoint written by Lightning also works: its ``texlens`` entry (added
by the LightningModule) carries the config and vocabulary.

An exported model also carries the formulas it was trained on (``train_formulas``: the
packed digests of :func:`texlens.data.splits.pack_formulas`, its ancestors' included when
it was started from another model), so ``texlens evaluate`` can say which test lines it
has seen.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from texlens.config import Config, ConfigError, config_from_dict, config_to_dict
from texlens.data.splits import pack_formulas
from texlens.models.satrn import build_model
from texlens.tokens import Vocab

FORMAT = "texlens-checkpoint-v1"
TRAIN_FORMULAS = "train_formulas"


class CheckpointError(ValueError):
    """The file is not a usable texlens checkpoint; the message names it."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: a crash mid-write
    never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; checkpoints are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def meta(cfg: Config, vocab: Vocab) -> dict:
    return {"format": FORMAT, "config": config_to_dict(cfg), "vocab": vocab.itos}


def save_model(path: str | Path, model: nn.Module, cfg: Config, vocab: Vocab,
               extra: dict | None = None, half: bool = False) -> None:
    """A small inference checkpoint. ``half`` stores float16 weights (shipped models)."""
    state = {k: (v.half() if half and v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    atomic_save({"texlens": meta(cfg, vocab), "state_dict": state, **(extra or {})}, path)


def read_checkpoint(path: str | Path) -> tuple[Config, Vocab, dict[str, torch.Tensor], dict]:
    """Config, vocabulary, model weights and the raw dict; CheckpointError if not ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(e).__name__})") from None
    info = raw.get("texlens") if isinstance(raw, dict) else None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        if isinstance(raw, dict) and "texlens-orientation" in raw:
            raise CheckpointError(f"{path}: an orientation model (texlens.orientation), "
                                  "not a recogniser")
        raise CheckpointError(f"{path}: not a texlens checkpoint (no '{FORMAT}' entry)")
    try:
        cfg = config_from_dict(info["config"])
    except ConfigError as e:
        raise CheckpointError(f"{path}: bad config inside checkpoint: {e}") from None
    vocab = Vocab.from_list(info["vocab"])
    state = raw["state_dict"]
    # Lightning prefixes the module's attribute name.
    if any(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    return cfg, vocab, state, raw


WEIGHTS_DIR = Path(__file__).parent / "weights"  # the shipped models, NAME.pt


def find_weights(name_or_path: str | Path) -> Path | None:
    """A model file given by its path or a shipped model's name; None if neither exists.
    Recognisers and orientation classifiers share the folder; each loader checks kind."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = WEIGHTS_DIR / f"{name_or_path}.pt"
    return shipped if shipped.is_file() else None


def kept_checkpoints(run_dir: str | Path) -> list[Path]:
    """The ``checkpoints/step<S>.ckpt`` files a run kept (train.keep_checkpoints), oldest
    first."""
    found = []
    for f in Path(run_dir, "checkpoints").glob("step*.ckpt"):
        step = f.stem[len("step"):]
        if step.isdigit():
            found.append((int(step), f))
    return [f for _, f in sorted(found)]


def average_checkpoints(paths: list[str | Path]
                        ) -> tuple[dict[str, torch.Tensor], Config, Vocab, bytes | None]:
    """Uniform average of the weights of checkpoints of one model (e.g. the last few of a
    run), and the formulas they record having trained on (all of them together; None when
    one records none). Different architectures or vocabularies are an error naming the file."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    cfg, vocab, total, raw = read_checkpoint(paths[0])
    records = [raw.get(TRAIN_FORMULAS)]
    total = {k: v.double() if v.is_floating_point() else v.clone() for k, v in total.items()}
    for p in paths[1:]:
        c, v, state, raw = read_checkpoint(p)
        records.append(raw.get(TRAIN_FORMULAS))
        if v != vocab:
            raise CheckpointError(f"{p}: its vocabulary differs from {paths[0]}'s")
        if c.model != cfg.model or state.keys() != total.keys():
            raise CheckpointError(f"{p}: a different model than {paths[0]}; cannot average")
        for k, t in state.items():
            if t.is_floating_point():
                total[k] += t.double()
    n = len(paths)
    formulas = (None if any(r is None for r in records)
                else pack_formulas((), b"".join(records)))
    # Integer buffers (BatchNorm's step counter) are kept from the first checkpoint.
    return ({k: (t / n).float() if t.is_floating_point() else t for k, t in total.items()},
            cfg, vocab, formulas)


def load_model(path: str | Path) -> tuple[nn.Module, Config, Vocab]:
    model, cfg, vocab, _ = load_model_raw(path)
    return model, cfg, vocab


def load_model_raw(path: str | Path) -> tuple[nn.Module, Config, Vocab, dict]:
    """:func:`load_model` plus the checkpoint's raw dict (its ``TRAIN_FORMULAS``...)."""
    cfg, vocab, state, raw = read_checkpoint(path)
    model = build_model(cfg.model, len(vocab))
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in state.items()})
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the model in its config: "
                              f"{str(e).splitlines()[0]}") from None
    model.eval()
    return model, cfg, vocab, raw

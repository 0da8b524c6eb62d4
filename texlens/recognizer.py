"""The Python API: ``Recognizer.load("printed-small").predict(["formula.png"])``.

Every entry point (CLI predict/evaluate, server, benchmarks) goes through this
class, so image loading, preprocessing and decoding are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from texlens.checkpoint import CheckpointError, load_model
from texlens.data.datasets import collate
from texlens.data.image import load_image
from texlens.data.transforms import preprocess, to_tensor_array
from texlens.decoding import greedy_decode
from texlens.tokens import join

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = "printed-small"


def shipped_models() -> list[str]:
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))


def resolve_model(name_or_path: str | Path) -> Path:
    """A shipped model's name (``printed-small``) or a checkpoint path."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = WEIGHTS_DIR / f"{name_or_path}.pt"
    if shipped.is_file():
        return shipped
    raise CheckpointError(f"{name_or_path}: no such checkpoint file or shipped model "
                          f"(shipped: {', '.join(shipped_models()) or 'none'})")


@dataclass
class Prediction:
    latex: str
    tokens: list[str]
    confidence: float  # exp(mean token log-probability), 0..1


ImageInput = str | Path | bytes | np.ndarray


class Recognizer:
    def __init__(self, model: torch.nn.Module, cfg, vocab, name: str = ""):
        self.model, self.cfg, self.vocab, self.name = model, cfg, vocab, name

    @classmethod
    def load(cls, name_or_path: str | Path = DEFAULT_MODEL) -> Recognizer:
        path = resolve_model(name_or_path)
        model, cfg, vocab = load_model(path)
        return cls(model, cfg, vocab, str(name_or_path))

    def prepare(self, image: ImageInput, name: str | None = None) -> np.ndarray:
        """Load and preprocess one image to the model's float input (1, H, W)."""
        return to_tensor_array(preprocess(load_image(image, name), self.cfg.data))

    @torch.no_grad()
    def predict_arrays(self, arrays: Sequence[np.ndarray], batch_size: int = 16,
                       max_len: int | None = None) -> list[Prediction]:
        """Preprocessed inputs -> predictions, batched by width to limit padding."""
        order = sorted(range(len(arrays)), key=lambda i: arrays[i].shape[-1])
        out: list[Prediction | None] = [None] * len(arrays)
        max_len = max_len or self.cfg.data.max_tokens
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = collate([{"image": arrays[i], "ids": [0], "index": i} for i in idx])
            ids, score = greedy_decode(self.model, batch["images"], batch["mask"], max_len)
            for row, i in enumerate(idx):
                toks = self.vocab.decode(ids[row].tolist())
                out[i] = Prediction(join(toks), toks, float(np.exp(score[row].item())))
        return out  # type: ignore[return-value]

    def predict(self, images: Iterable[ImageInput], batch_size: int = 16) -> list[Prediction]:
        """Images (paths, bytes or arrays) -> predictions in the same order.

        Raises ImageError (naming the file) on the first unreadable image; the CLI
        loads images one by one instead, to report bad files and go on.
        """
        return self.predict_arrays([self.prepare(im) for im in images], batch_size)

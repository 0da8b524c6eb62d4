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
from texlens.data.transforms import input_settings, preprocess, to_tensor_array
from texlens.decoding import beam_search, greedy_decode
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
    nbest: list[tuple[str, float]] | None = None  # beam search: (latex, score), best first


ImageInput = str | Path | bytes | np.ndarray


class Recognizer:
    """One model, or an ensemble of several that share a vocabulary and input size."""

    def __init__(self, models: torch.nn.Module | Sequence[torch.nn.Module], cfg, vocab,
                 name: str = ""):
        self.models = [models] if isinstance(models, torch.nn.Module) else list(models)
        self.model = self.models[0]
        self.cfg, self.vocab, self.name = cfg, vocab, name

    @classmethod
    def load(cls, name_or_path: str | Path | Sequence[str | Path] = DEFAULT_MODEL
             ) -> Recognizer:
        names = [name_or_path] if isinstance(name_or_path, (str, Path)) else list(name_or_path)
        loaded = [load_model(resolve_model(n)) for n in names]
        _, cfg, vocab = loaded[0]
        for n, (_, c, v) in zip(names[1:], loaded[1:], strict=True):
            if v != vocab:
                raise CheckpointError(f"{n}: its vocabulary differs from {names[0]}'s; "
                                      "an ensemble needs one vocabulary")
            if input_settings(c.data) != input_settings(cfg.data):
                raise CheckpointError(f"{n}: its input size differs from {names[0]}'s")
        return cls([m for m, _, _ in loaded], cfg, vocab, " + ".join(map(str, names)))

    def prepare(self, image: ImageInput, name: str | None = None) -> np.ndarray:
        """Load and preprocess one image to the model's float input (1, H, W)."""
        return to_tensor_array(preprocess(load_image(image, name), self.cfg.data))

    @torch.no_grad()
    def predict_arrays(self, arrays: Sequence[np.ndarray], batch_size: int = 16,
                       max_len: int | None = None, beam: int = 1) -> list[Prediction]:
        """Preprocessed inputs -> predictions, batched by width to limit padding.

        beam=1 with one model is greedy decoding (key/value cache); otherwise batched
        beam search, averaging the models' log-probabilities for an ensemble.
        """
        order = sorted(range(len(arrays)), key=lambda i: arrays[i].shape[-1])
        out: list[Prediction | None] = [None] * len(arrays)
        max_len = max_len or self.cfg.data.max_tokens
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = collate([{"image": arrays[i], "ids": [0], "index": i} for i in idx])
            if beam == 1 and len(self.models) == 1:
                ids, score = greedy_decode(self.model, batch["images"], batch["mask"], max_len)
                for row, i in enumerate(idx):
                    toks = self.vocab.decode(ids[row].tolist())
                    out[i] = Prediction(join(toks), toks, float(np.exp(score[row].item())))
                continue
            hyps = beam_search(self.models, batch["images"], batch["mask"], beam, max_len)
            for row, i in enumerate(idx):
                best = hyps[row][0]
                toks = self.vocab.decode(best.ids)
                conf = float(np.exp(best.logprob / (len(best.ids) + 1)))
                out[i] = Prediction(join(toks), toks, conf,
                                    [(join(self.vocab.decode(h.ids)), h.score)
                                     for h in hyps[row]])
        return out  # type: ignore[return-value]

    def predict(self, images: Iterable[ImageInput], batch_size: int = 16,
                beam: int = 1) -> list[Prediction]:
        """Images (paths, bytes or arrays) -> predictions in the same order.

        Raises ImageError (naming the file) on the first unreadable image; the CLI
        loads images one by one instead, to report bad files and go on.
        """
        return self.predict_arrays([self.prepare(im) for im in images], batch_size, beam=beam)

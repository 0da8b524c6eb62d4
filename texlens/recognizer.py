"""The Python API: ``Recognizer.load("printed-base").predict(["formula.png"])``.

Every entry point (CLI predict/evaluate, server, benchmarks) goes through this
class, so image loading, preprocessing and decoding are the same everywhere.
With ``auto_rotate`` an image is first turned upright by the orientation classifier
(texlens/orientation.py), before preprocessing.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from texlens.checkpoint import (
    TRAIN_FORMULAS,
    WEIGHTS_DIR,
    CheckpointError,
    find_weights,
    load_model_raw,
)
from texlens.data.datasets import collate
from texlens.data.image import load_image
from texlens.data.orientation import rotate
from texlens.data.splits import pack_formulas
from texlens.data.transforms import (
    MIDTONE_MAX,
    input_settings,
    midtone_share,
    preprocess,
    to_tensor_array,
    view_config,
)
from texlens.decoding import (
    beam_search,
    check_rescore,
    greedy_decode,
    sequence_logprobs,
    trim_runaway,
)
from texlens.lines import (
    LINE_TOKENS,
    PIECE_CONFIDENCE,
    PIECE_WIDTH,
    cut_lines,
    cut_pieces,
    join_lines,
)
from texlens.tokens import Vocab, join, normalizer

# The model `texlens predict` and `Recognizer.load()` use: printed-base reads the full LaTeX
# vocabulary and, on CROHME formulas typeset by TeX that neither model trained on, more of
# them than printed-small (docs/RESULTS.md), which stays the model for mathtext renderings.
DEFAULT_MODEL = "printed-base"
BACKENDS = ("torch", "onnx", "onnx-int8")
# The default: onnx for one model (greedy decoding about 3 times faster than torch on the
# same weights, with the same readings; docs/RESULTS.md), torch for an ensemble, and torch
# whenever the ONNX export cannot be made or cached here (said on stderr, never an error).
AUTO = "auto"
# Test-time views (``tta``): the input at these multiples of the model's size, each read
# greedily; every distinct reading is then scored by all views (summed teacher-forced
# log-probabilities) and the best kept. Chosen on data/crohme/val with handwritten-small
# (docs/RESULTS.md): one view 41.5%, views 1.0/1.1/1.2 47.5%, 1.0-1.3 48.5%, these 49.0%.
# Their cost: one greedy decoding and one scoring pass per view.
TTA_SCALES = (0.9, 1.0, 1.1, 1.2, 1.3)


def shipped_models() -> list[str]:
    """The shipped recognisers (orientation-* files are orientation classifiers)."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt")
                  if not p.stem.startswith("orientation"))


def resolve_model(name_or_path: str | Path) -> Path:
    """A shipped model's name (``printed-small``) or a checkpoint path."""
    found = find_weights(name_or_path)
    if found is not None:
        return found
    raise CheckpointError(f"{name_or_path}: no such checkpoint file or shipped model "
                          f"(shipped: {', '.join(shipped_models()) or 'none'})")


class Views(list):
    """One image's model inputs at each test-time size (``Recognizer.tta``), in order;
    ``main`` is the index of the one nearest the model's own size."""

    main: int = 0


class Lines(list):
    """One image's model inputs, one per text line (texlens/lines.py): read apart and
    joined as the rows of an aligned block."""


def main_input(a: np.ndarray | Views | Lines) -> np.ndarray:
    """The model input of a prepared image: itself, its views' main one, or its widest
    line."""
    if isinstance(a, Lines):
        return max((main_input(x) for x in a), key=lambda x: x.shape[-1])
    return a[a.main] if isinstance(a, Views) else a


@dataclass
class Prediction:
    latex: str
    tokens: list[str]
    confidence: float  # estimated probability that the whole formula is right, 0..1
    nbest: list[tuple[str, float]] | None = None  # beam search: (latex, score), best first
    token_probs: list[float] | None = None  # probability of each of ``tokens``


# A formula is wrong when any one token is, so the confidence is the model's probability
# of the whole output, the product of its steps' probabilities (the <eos> included:
# stopping early is a mistake too), not their geometric mean, which a long formula with
# one bad guess keeps near 1 (wrong answers averaged 0.94 on TeX renderings). Of the
# scores benchmarks/calibration.py compares, the product was the best calibrated on
# renderings unlike the training data, with the minimum step a close second. Platt
# scaling, sigmoid(a * logit(score) + b), fitted on a validation set by that script and
# stored next to the weights (NAME.calibration.json), corrects what is left; a
# checkpoint without such a file gets the raw product.
CONFIDENCE_THRESHOLD = 0.5  # below it an answer is flagged as unsure
INK_RANGE = 0.1  # input value range (0..1) under which an image holds no ink at all


def probs_of(pred: Prediction) -> list[float]:
    return pred.token_probs if pred.token_probs is not None else [1.0] * len(pred.tokens)


def joined(parts: Sequence[Prediction], tokens: list[str], probs: list[float]) -> Prediction:
    """One reading made of several (an image's lines, a line's pieces): right only if all
    of them are, so its confidence is the product of theirs."""
    return Prediction(join(tokens), tokens, float(np.prod([p.confidence for p in parts])),
                      token_probs=probs)


def looks_blank(a: np.ndarray) -> bool:
    return a.size == 0 or float(a.max() - a.min()) < INK_RANGE


def mean_log_prob(pred: Prediction) -> float:
    """Mean log-probability of a prediction's tokens (an empty reading: log 1e-9): how much
    sense the recogniser makes of an image, whatever the formula's length."""
    return float(np.mean(np.log(np.clip(pred.token_probs or [1e-9], 1e-9, 1.0))))


def sequence_scores(token_probs: Sequence[float], eos_prob: float) -> dict[str, float]:
    """The candidate formula scores: probability of the whole output, least certain step,
    geometric mean of the steps."""
    with np.errstate(divide="ignore"):  # a step of probability 0 (a cut-off <eos>) gives 0
        logs = np.log(np.clip([*token_probs, eos_prob], 0.0, 1.0))
    return {"product": float(np.exp(logs.sum())), "min": float(np.exp(logs.min())),
            "geo_mean": float(np.exp(logs.mean()))}


@dataclass
class Calibration:
    score: str = "product"  # a key of sequence_scores
    a: float = 1.0
    b: float = 0.0
    fitted: bool = False  # False: the raw score, sigmoid is not applied

    def __call__(self, token_probs: Sequence[float], eos_prob: float) -> float:
        score = sequence_scores(token_probs, eos_prob)[self.score]
        if not self.fitted:
            return score
        p = min(max(score, 1e-6), 1 - 1e-6)
        z = self.a * float(np.log(p / (1 - p))) + self.b
        return float(1.0 / (1.0 + np.exp(-z)))

    @classmethod
    def find(cls, checkpoint: Path) -> Calibration:
        """``NAME.calibration.json`` next to the checkpoint (``calibration.json`` in an
        ONNX export directory), if there is one."""
        f = (checkpoint / "calibration.json" if checkpoint.is_dir()
             else checkpoint.with_suffix(".calibration.json"))
        if not f.is_file():
            return cls()
        try:
            d = json.loads(f.read_text())
            calib = cls(str(d["score"]), float(d["a"]), float(d["b"]), True)
            sequence_scores([], 1.0)[calib.score]
            return calib
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{f}: not a calibration file ({e})") from None


ImageInput = str | Path | bytes | np.ndarray

if TYPE_CHECKING:
    from texlens.orientation import Orienter


class Recognizer:
    """One model, or an ensemble of several that share a vocabulary and input size.

    ``onnx``, when given, runs greedy decoding and beam search on onnxruntime
    (texlens/onnx_backend.py); ensembles, rescoring and test-time views stay on the
    PyTorch ``models``. ``orienter``, when given, turns every image upright before
    preprocessing (an :class:`Orienter`).
    """

    def __init__(self, models: torch.nn.Module | Sequence[torch.nn.Module], cfg, vocab,
                 name: str = "", calibration: Calibration | None = None, onnx=None,
                 orienter: Orienter | None = None, tta: Sequence[float] | None = None):
        self.models = [models] if isinstance(models, torch.nn.Module) else list(models)
        self.model = self.models[0] if self.models else None
        self.cfg, self.vocab, self.name = cfg, vocab, name
        self.calibration = calibration or Calibration()
        self.onnx = onnx
        self.orienter = orienter
        self._shipped_orienter: Orienter | None = None  # loaded by auto_rotate=True
        self.tta: tuple[float, ...] | None = None
        # Beam search ranks finished readings by log-probability / length**alpha; 1.0 was
        # best on printed-base's validation among 0.6, 1.0 and 1.4 (benchmarks/beam_alpha.py).
        self.beam_alpha = 1.0
        self.set_tta(tta)
        # Images of several text lines are read line by line, and wide lines it cannot read
        # whole in pieces (texlens/lines.py), by a model that can write the aligned block
        # lines are joined into; test-time views read each line, but whole lines only.
        self.read_lines = all(t in vocab.stoi for t in LINE_TOKENS)
        self.piece_width, self.piece_confidence = PIECE_WIDTH, PIECE_CONFIDENCE
        # Packed digests of the formulas the model(s) trained on (texlens.data.splits);
        # None when a checkpoint did not record them.
        self.train_formulas: bytes | None = None

    @property
    def backend(self) -> str:
        """Where decoding runs: torch, onnx or onnx-int8."""
        if self.onnx is None:
            return "torch"
        return "onnx-int8" if self.onnx.int8 else "onnx"

    def set_tta(self, scales: Sequence[float] | None) -> None:
        """Read every image at these multiples of the input size (``TTA_SCALES``) and keep
        the reading all of them score best; None: one view. Needs one PyTorch model (the
        views' readings are scored by teacher forcing)."""
        if scales is None:
            self.tta = None
            return
        if len(self.models) != 1:
            raise ValueError(f"{self.name}: test-time views need one model with its PyTorch "
                             "weights, not an ensemble or an ONNX directory")
        for f in scales:
            view_config(self.cfg.data, f)  # a bad factor fails here, not mid-run
        self.tta = tuple(float(f) for f in scales)

    @classmethod
    def load(cls, name_or_path: str | Path | Sequence[str | Path] = DEFAULT_MODEL,
             backend: str = AUTO, auto_rotate: bool | str | Path = False,
             tta: bool | Sequence[float] = False) -> Recognizer:
        """A shipped name or checkpoint (a list: an ensemble), on ``backend`` auto, torch,
        onnx or onnx-int8 (:data:`AUTO`: onnx for one model, else torch; ``$TEXLENS_BACKEND``
        replaces auto). For ONNX, a
        checkpoint is exported once into the cache (``$TEXLENS_CACHE``, default
        ~/.cache/texlens); its PyTorch weights stay loaded for rescoring and test-time
        views. A directory written by ``texlens export --onnx`` loads on its own (greedy
        decoding and beam search).
        ``auto_rotate``: True (the shipped ``orientation-small``) or an orientation model's
        name or path turns every image upright first. ``tta``: True (``TTA_SCALES``) or
        size factors reads each image at several sizes (:meth:`set_tta`)."""
        if backend == AUTO:  # $TEXLENS_BACKEND may set another default (torch, onnx-int8)
            backend = os.environ.get("TEXLENS_BACKEND") or AUTO
        if backend == AUTO and tta is not False:  # test-time views read with PyTorch
            backend = "torch"
        rec = cls._load(name_or_path, backend)
        if tta is not False:
            rec.set_tta(TTA_SCALES if tta is True else tta)
        if auto_rotate is not False:
            from texlens.orientation import DEFAULT_ORIENTER, Orienter
            rec.orienter = Orienter.load(DEFAULT_ORIENTER if auto_rotate is True
                                         else auto_rotate)
        return rec

    @classmethod
    def _load(cls, name_or_path: str | Path | Sequence[str | Path],
              backend: str) -> Recognizer:
        if backend not in (AUTO, *BACKENDS):
            raise ValueError(f"backend must be one of {AUTO}, {', '.join(BACKENDS)}, "
                             f"not {backend!r}")
        names = [name_or_path] if isinstance(name_or_path, (str, Path)) else list(name_or_path)
        auto = backend == AUTO
        if auto:
            backend = "onnx" if len(names) == 1 else "torch"
        if backend != "torch" and len(names) > 1:
            raise ValueError(f"backend {backend}: ensembles run on torch only")
        int8 = backend == "onnx-int8"
        if backend != "torch" and Path(names[0]).is_dir():
            from texlens.onnx_backend import OnnxModel
            onnx = OnnxModel(names[0], int8=int8)
            rec = cls([], onnx.cfg, onnx.vocab, f"{names[0]} ({backend})",
                      Calibration.find(Path(names[0])), onnx)
            rec.train_formulas = onnx.train_formulas
            return rec
        paths = [resolve_model(n) for n in names]
        raw_loaded = [load_model_raw(p) for p in paths]
        loaded = [(m, c, v) for m, c, v, _ in raw_loaded]
        _, cfg, vocab = loaded[0]
        for n, (_, c, v) in zip(names[1:], loaded[1:], strict=True):
            if v != vocab:
                raise CheckpointError(f"{n}: its vocabulary differs from {names[0]}'s; "
                                      "an ensemble needs one vocabulary")
            if input_settings(c.data) != input_settings(cfg.data):
                raise CheckpointError(f"{n}: its input size differs from {names[0]}'s")
        # An ensemble's log-probabilities are averaged: no one model's mapping fits it.
        calib = Calibration.find(paths[0]) if len(paths) == 1 else Calibration()
        onnx = None
        if backend != "torch":
            try:
                from texlens.onnx_backend import OnnxModel, export_cached
                onnx = OnnxModel(export_cached(paths[0], loaded[0], int8), int8=int8)
            except (ImportError, ValueError, OSError, RuntimeError) as e:
                if not auto:
                    raise
                print(f"{names[0]}: no ONNX export ({e}); decoding with PyTorch",
                      file=sys.stderr)
                backend = "torch"
        name = " + ".join(map(str, names)) + ("" if backend == "torch" else f" ({backend})")
        rec = cls([m for m, _, _ in loaded], cfg, vocab, name, calib, onnx)
        formulas = [raw.get(TRAIN_FORMULAS) for _, _, _, raw in raw_loaded]
        if all(f is not None for f in formulas):  # an ensemble has seen what any member has
            rec.train_formulas = formulas[0] if len(formulas) == 1 else pack_formulas(
                (), b"".join(formulas))
        return rec

    def _orienter(self, auto_rotate: bool | None) -> Orienter | None:
        """None: the recogniser's own setting; True: its orienter, else the shipped one."""
        if auto_rotate is None or auto_rotate is False:
            return self.orienter if auto_rotate is None else None
        if self.orienter is not None:
            return self.orienter
        if self._shipped_orienter is None:
            from texlens.orientation import Orienter
            self._shipped_orienter = Orienter.load()
        return self._shipped_orienter

    def prepare(self, image: ImageInput, name: str | None = None,
                auto_rotate: bool | None = None) -> np.ndarray | Views | Lines:
        """Load and preprocess one image to the model's float input (1, H, W); turned
        upright first when ``auto_rotate`` (default: as loaded) says so. With test-time
        views (``tta``), one input per view stacked in a ``Views``; an image of several
        text lines, with ``read_lines``, one input (or ``Views``) per line in a ``Lines``."""
        gray = load_image(image, name)
        orienter = self._orienter(auto_rotate)
        if orienter is not None:
            gray = rotate(gray, -self.upright_angle(gray, orienter))
        lines = cut_lines(gray) if self.read_lines else [gray]
        if self.tta is not None:
            inputs = [self._views(x) for x in lines]
        else:
            inputs = [to_tensor_array(preprocess(x, self.cfg.data)) for x in lines]
        return Lines(inputs) if len(inputs) > 1 else inputs[0]

    def _views(self, gray: np.ndarray) -> Views:
        views = Views(to_tensor_array(preprocess(gray, view_config(self.cfg.data, f)))
                      for f in self.tta)  # type: ignore[union-attr]
        views.main = int(np.argmin([abs(f - 1) for f in self.tta]))  # type: ignore[union-attr]
        return views

    def upright_angle(self, gray: np.ndarray, orienter: Orienter) -> int:
        """The angle (0/90/180/270) ``gray`` is turned by, by ``orienter``'s decision rule:
        its classifier, and when that is unsure, this recogniser's reading of its likeliest
        angles (texlens/orientation.py, ``reread``)."""
        from texlens.data.orientation import ANGLES
        if gray.max() == gray.min():
            return 0  # no ink: nothing to turn
        probs = orienter.angle_probs([gray])[0]
        cands = orienter.candidates(probs)
        if len(cands) == 1:
            return ANGLES[cands[0]]
        arrays = [to_tensor_array(preprocess(rotate(gray, -ANGLES[c]), self.cfg.data))
                  for c in cands]
        reading = np.zeros(len(ANGLES))
        # Read whole, as the rule was chosen (texlens/lines.py's pieces would change it).
        for c, p in zip(cands, self._decode(arrays, len(arrays), None, 1, None), strict=True):
            reading[c] = mean_log_prob(p)
        return ANGLES[orienter.choose(probs, reading)]

    @torch.no_grad()
    def predict_arrays(self, arrays: Sequence[np.ndarray], batch_size: int = 16,
                       max_len: int | None = None, beam: int = 1,
                       rescore: str | None = None) -> list[Prediction]:
        """Preprocessed inputs -> predictions, batched by width to limit padding.

        beam=1 with one model is greedy decoding (key/value cache); otherwise batched beam
        search, averaging the models' log-probabilities for an ensemble. Both run on
        onnxruntime when loaded so. An input without ink (its values span less than
        ``INK_RANGE``: a blank page) is not decoded: it reads as an empty formula
        with confidence 0. One that is not ink on paper (more than ``MIDTONE_MAX`` of
        mid-tones: noise, a gradient, a photograph) is decoded, but its confidence is 0.
        ``rescore="r2l"`` (beam > 1, bidirectional models) reranks the beam's n-best by
        left-to-right plus right-to-left log-probability (texlens.decoding.combine_r2l).
        """
        if any(isinstance(a, Lines) for a in arrays):
            return self._predict_lines(arrays, batch_size, max_len, beam, rescore)
        if arrays and isinstance(arrays[0], Views):
            if beam != 1 or rescore is not None:
                raise ValueError("test-time views (tta) read greedily: no beam or rescore")
            return self._predict_views(arrays, batch_size, max_len)  # type: ignore[arg-type]
        check_rescore(self.models, beam, rescore)
        out = self._decode(arrays, batch_size, max_len, beam, rescore)
        if self.read_lines:
            self._read_pieces(arrays, out, batch_size, max_len, beam, rescore)
        for i, a in enumerate(arrays):
            if not looks_blank(a) and midtone_share(a) > MIDTONE_MAX:
                out[i].confidence = 0.0
        return out

    def _read_pieces(self, arrays: Sequence[np.ndarray], out: list[Prediction],
                     batch_size: int, max_len: int | None, beam: int, rescore: str | None
                     ) -> None:
        """Lines wider than ``piece_width`` read with a confidence under
        ``piece_confidence`` read again in pieces (texlens/lines.py), their readings
        joined; ``out`` is updated in place."""
        jobs = [(i, pieces) for i, a in enumerate(arrays)
                if a.shape[-1] > self.piece_width and out[i].confidence < self.piece_confidence
                and not looks_blank(a) and len(pieces := cut_pieces(a, self.piece_width)) > 1]
        if not jobs:
            return
        preds = iter(self._decode([p for _, pieces in jobs for p in pieces], batch_size,
                                  max_len, beam, rescore))
        for i, pieces in jobs:
            parts = [next(preds) for _ in pieces]
            out[i] = joined(parts, [t for p in parts for t in p.tokens],
                            [q for p in parts for q in probs_of(p)])

    @torch.no_grad()
    def _decode(self, arrays: Sequence[np.ndarray], batch_size: int, max_len: int | None,
                beam: int, rescore: str | None) -> list[Prediction]:
        """Each input read whole: greedy or beam search, on PyTorch or onnxruntime."""
        out: list[Prediction | None] = [None] * len(arrays)
        inked = []
        for i, a in enumerate(arrays):
            if looks_blank(a):
                out[i] = Prediction("", [], 0.0, token_probs=[])
            else:
                inked.append(i)
        order = sorted(inked, key=lambda i: arrays[i].shape[-1])
        max_len = max_len or self.cfg.data.max_tokens
        greedy = beam == 1 and (len(self.models) == 1 or self.onnx is not None)
        if rescore is not None and not self.models:
            raise ValueError(f"{self.name}: rescoring runs on PyTorch; load the checkpoint "
                             "with backend='torch'")
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = collate([{"image": arrays[i], "ids": [0], "index": i} for i in idx])
            if greedy:
                if self.onnx is not None:
                    ids, probs = self.onnx.greedy(batch["images"].numpy(),
                                                  batch["mask"].numpy(), max_len)
                else:
                    ids, _, probs = greedy_decode(self.model, batch["images"], batch["mask"],
                                                  max_len, return_probs=True)
                    ids, probs = ids.numpy(), probs.numpy()
                for row, i in enumerate(idx):
                    out[i] = self._prediction(ids[row].tolist(), probs[row].tolist())
                continue
            if self.onnx is not None and rescore is None:
                hyps = self.onnx.beam(batch["images"].numpy(), batch["mask"].numpy(), beam,
                                      max_len, self.beam_alpha)
            else:
                hyps = beam_search(self.models, batch["images"], batch["mask"], beam, max_len,
                                   self.beam_alpha, rescore=rescore)
            for row, i in enumerate(idx):
                best = hyps[row][0]  # a cut-off one without <eos>: trimmed, as greedy
                out[i] = self._prediction([*best.ids] if best.cut_off else
                                          [*best.ids, Vocab.eos_id],
                                          best.probs[:-1] if best.cut_off else best.probs)
                out[i].nbest = []
                for h in hyps[row]:  # in the canonical form, like the best reading
                    toks = self.vocab.decode(trim_runaway(h.ids) if h.cut_off else h.ids)
                    out[i].nbest.append((join(self._canonical(toks, [0.0] * len(toks))[0]),
                                         h.score))
        return out  # type: ignore[return-value]

    def _predict_lines(self, inputs: Sequence[np.ndarray | Lines], batch_size: int,
                       max_len: int | None, beam: int, rescore: str | None
                       ) -> list[Prediction]:
        """Every line of every image read in one batched pass; an image's lines joined as
        one aligned block, whose confidence is the product of its lines'."""
        flat: list[np.ndarray] = []
        spans = []
        for a in inputs:
            parts = list(a) if isinstance(a, Lines) else [a]
            spans.append((len(flat), len(parts), isinstance(a, Lines)))
            flat += parts
        preds = self.predict_arrays(flat, batch_size, max_len, beam, rescore)
        out = []
        for start, n, is_lines in spans:
            if not is_lines:
                out.append(preds[start])
                continue
            parts = preds[start:start + n]
            out.append(joined(parts, *join_lines([(p.tokens, probs_of(p)) for p in parts])))
        return out

    @torch.no_grad()
    def _predict_views(self, inputs: Sequence[Views], batch_size: int,
                       max_len: int | None) -> list[Prediction]:
        """Each view read greedily; each image's distinct readings scored by every view,
        the best summed log-probability kept. Its token probabilities are the views'
        geometric means; ``nbest`` lists the readings by mean score."""
        n_views = len(inputs[0])
        # Whole (no pieces): a reading longer than the decoder's length could not be scored.
        readings = [self._decode([v[j] for v in inputs], batch_size, max_len, 1, None)
                    for j in range(n_views)]
        out = []
        for i, views in enumerate(inputs):
            if looks_blank(views[0]):
                out.append(readings[0][i])
                continue
            cands = list(dict.fromkeys(tuple(r[i].tokens) for r in readings))
            ids = [[self.vocab.stoi[t] for t in c] for c in cands]
            per_token = [torch.zeros(len(q) + 1) for q in ids]
            for view in views:
                batch = collate([{"image": view, "ids": [0], "index": 0}] * len(ids))
                for acc, lp in zip(per_token, sequence_logprobs(
                        self.model, batch["images"], batch["mask"], ids), strict=True):
                    acc += lp
            totals = [float(t.sum()) / n_views for t in per_token]
            order = sorted(range(len(cands)), key=lambda c: -totals[c])
            best = order[0]
            pred = self._prediction([*ids[best], Vocab.eos_id],
                                    (per_token[best] / n_views).exp().tolist())
            pred.nbest = [(join(list(cands[c])), totals[c]) for c in order]
            if midtone_share(views[0]) > MIDTONE_MAX:
                pred.confidence = 0.0
            out.append(pred)
        return out

    def _prediction(self, ids: list[int], probs: list[float]) -> Prediction:
        """Output ids (through <eos>, if it came) and the probability of each -> Prediction.
        An output cut off by the length budget never chose to stop: its <eos> counts as
        probability 0."""
        kept, token_probs, eos = [], [], None
        for i, p in zip(ids, probs, strict=True):
            if i == Vocab.eos_id:
                eos = p
                break
            if i not in (Vocab.pad_id, Vocab.sos_id):
                kept.append(i)
                token_probs.append(float(p))
        if eos is None:  # cut off: the loop it ran into is kept once
            kept = trim_runaway(kept)
            token_probs = token_probs[:len(kept)]
        toks = [self.vocab.itos[i] for i in kept]
        toks, token_probs = self._canonical(toks, token_probs)
        conf = self.calibration(token_probs, eos or 0.0)
        return Prediction(join(toks), toks, conf, token_probs=token_probs)

    def _canonical(self, toks: list[str], probs: list[float]) -> tuple[list[str], list[float]]:
        """A full-LaTeX model's output in the canonical form (texlens/latex.py): braces
        that change nothing dropped, one spelling of each glyph (a model trained on an
        older form may still write them). A kept token keeps its probability; tokens
        that replace others share the product of theirs (``\\not =`` -> ``\\neq``), so
        the reading's probability stays what the model gave it. An output that does not
        parse stays as written."""
        if self.cfg.data.style != "latex" or not toks:
            return toks, probs
        try:
            canon = normalizer("latex")(join(toks))
        except ValueError:
            return toks, probs
        if canon == toks:
            return toks, probs
        out: list[float] = []
        match = difflib.SequenceMatcher(None, toks, canon, autojunk=False)
        for op, i1, i2, j1, j2 in match.get_opcodes():
            if op == "equal":
                out += probs[i1:i2]
            elif op in ("replace", "insert"):  # an insert is written with certainty
                share = math.prod(probs[i1:i2]) ** (1 / (j2 - j1))
                out += [share] * (j2 - j1)
        return canon, out

    def predict(self, images: Iterable[ImageInput], batch_size: int = 16,
                beam: int = 1, auto_rotate: bool | None = None,
                rescore: str | None = None) -> list[Prediction]:
        """Images (paths, bytes or arrays) -> predictions in the same order.

        ``auto_rotate=True`` turns each image upright first (the orienter given to
        :meth:`load`, else the shipped ``orientation-small``); None: as loaded.
        Raises ImageError (naming the file) on the first unreadable image; the CLI
        loads images one by one instead, to report bad files and go on.
        """
        return self.predict_arrays([self.prepare(im, auto_rotate=auto_rotate)
                                    for im in images], batch_size, beam=beam, rescore=rescore)

"""ONNX export and an onnxruntime backend for greedy decoding.

Two graphs, written by :func:`export`:

* ``encoder.onnx``: images (B, 1, H, W) float and their pixel mask (B, H, W) bool ->
  the memory's key mask (B, N) bool and, for every decoder layer, the cross-attention
  keys and values (B, heads, N, dk). The decoder's ``start`` (projecting the memory once)
  is folded in, so the step graph never sees the memory itself.
* ``decoder_step.onnx``: one token per row (B, 1), its position (1,), the key mask, the
  cross keys/values and the self-attention cache of earlier steps (B, heads, T, dk) ->
  logits (B, V) and the cache grown to T + 1. The cache is an explicit input and output,
  so the runtime loop below owns it, as ``DecoderCache`` does in PyTorch.

Batch, height, width, memory length and cache length are dynamic axes. Only the SATRN
architecture with the transformer decoder is exported (both shipped models); beam search
and ensembles stay on PyTorch. A bidirectional model exports its left-to-right direction:
its direction vector is folded into the step graph as a constant. ``int8=True`` adds
``*.int8.onnx`` files made by onnxruntime's dynamic quantisation (weights int8,
activations quantised per call).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from texlens.config import config_from_dict, config_to_dict
from texlens.models.decoder import L2R
from texlens.tokens import Vocab

ENCODER, STEP, META = "encoder.onnx", "decoder_step.onnx", "texlens.json"
OPSET = 17


class _Encoder(nn.Module):
    """images, mask -> key mask (B, N), then (k, v) of every decoder layer's cross-attention."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        memory, mem_mask = self.model.encode(images, mask)
        out = [mem_mask.flatten(1)]
        for layer in self.model.decoder.layers:
            out += list(layer.cross_attn.project_kv(memory))
        return tuple(out)


class _Step(nn.Module):
    """TransformerDecoder.step with the position and the cache as tensors (traceable)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.dec = model.decoder

    def forward(self, token: torch.Tensor, position: torch.Tensor, mem_mask: torch.Tensor,
                *kv: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dec, n = self.dec, len(self.dec.layers)
        cross, past = kv[:2 * n], kv[2 * n:]
        x = dec.embed(token) * dec.scale + dec.pos.index_select(0, position)[None]
        bias = dec.direction_bias(L2R)  # a bidirectional model: its L2R vector, a constant
        if bias is not None:
            x = x + bias
        mask = mem_mask[:, None, None, :]
        new = []
        for i, layer in enumerate(dec.layers):
            k, v = layer.self_attn.project_kv(layer.norm1(x))
            k = torch.cat([past[2 * i], k], 2)
            v = torch.cat([past[2 * i + 1], v], 2)
            new += [k, v]
            x = layer(x, (k, v), (cross[2 * i], cross[2 * i + 1]), mask, causal=False)
        return (dec.head(dec.norm(x[:, -1])), *new)


def _names(n_layers: int, prefix: str) -> list[str]:
    return [f"{prefix}_{kind}{i}" for i in range(n_layers) for kind in "kv"]


def export(model: nn.Module, cfg, vocab: Vocab, out_dir: str | Path, int8: bool = False
           ) -> list[Path]:
    """Write encoder.onnx, decoder_step.onnx (and their int8 versions) and texlens.json
    (vocabulary, data settings, model config) into ``out_dir``; returns the files."""
    import copy

    if getattr(model, "vit", None) is not None or not hasattr(model, "decoder") or \
            not hasattr(model.decoder, "layers"):
        raise ValueError("ONNX export supports the SATRN architecture with the CNN encoder "
                         f"(model.arch {cfg.model.arch!r}, encoder {cfg.model.encoder!r})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # A copy: the exporter restores the wrappers' training flag (True for a new module)
    # onto the model afterwards, which would leave the caller's BatchNorm updating.
    model = copy.deepcopy(model).float().eval()
    wrappers = _Encoder(model).eval(), _Step(model).eval()
    n = len(model.decoder.layers)
    # Trace with a padded batch so the graph holds the masked path; a single image then
    # passes an all-true mask, which changes nothing (masks only zero padded cells).
    images = torch.zeros(2, 1, 64, 96)
    mask = torch.ones(2, 64, 96, dtype=torch.bool)
    mask[1, 32:] = False
    mask[1, :, 48:] = False
    enc_out = ["mem_mask", *_names(n, "cross")]
    dyn = {"images": {0: "batch", 2: "height", 3: "width"},
           "mask": {0: "batch", 1: "height", 2: "width"},
           "mem_mask": {0: "batch", 1: "cells"},
           **{k: {0: "batch", 2: "cells"} for k in _names(n, "cross")}}
    with torch.no_grad(), warnings.catch_warnings():
        # Expected: the tracer notes that encode's "nothing padded" shortcut is fixed to the
        # masked path, and that this exporter (TorchScript; the dynamo one cannot trace that
        # data-dependent branch) is deprecated.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(wrappers[0], (images, mask), str(out / ENCODER),
                          input_names=["images", "mask"], output_names=enc_out,
                          dynamic_axes=dyn, opset_version=OPSET, dynamo=False)
        enc = wrappers[0](images, mask)
        heads, dk = enc[1].shape[1], enc[1].shape[3]
        past = [torch.zeros(2, heads, 3, dk) for _ in range(2 * n)]
        args = (torch.tensor([[Vocab.sos_id], [5]]), torch.tensor([3]), *enc, *past)
        step_in = ["token", "position", "mem_mask", *_names(n, "cross"), *_names(n, "past")]
        dyn = {"token": {0: "batch"}, "mem_mask": {0: "batch", 1: "cells"},
               "logits": {0: "batch"},
               **{k: {0: "batch", 2: "cells"} for k in _names(n, "cross")},
               **{k: {0: "batch", 2: "steps"} for k in _names(n, "past")},
               **{k: {0: "batch", 2: "steps_plus_1"} for k in _names(n, "present")}}
        torch.onnx.export(wrappers[1], args, str(out / STEP), input_names=step_in,
                          output_names=["logits", *_names(n, "present")], dynamic_axes=dyn,
                          opset_version=OPSET, dynamo=False)
    files = [out / ENCODER, out / STEP]
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        for f in list(files):
            q = f.with_name(_int8(f.name))
            # Matrix products only: int8 convolutions (ConvInteger) are slower than float
            # ones in onnxruntime's CPU kernels, and the CNN is a small share of the weights.
            quantize_dynamic(f, q, op_types_to_quantize=["MatMul", "Gemm"],
                             weight_type=QuantType.QInt8)
            files.append(q)
    meta = {"tokens": vocab.itos, "layers": n, "max_len": model.decoder.max_len,
            "config": config_to_dict(cfg)}
    (out / META).write_text(json.dumps(meta, indent=1))
    return [*files, out / META]


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, int8: bool = False,
                      loaded: tuple | None = None) -> list[Path]:
    """Export a checkpoint file (and its confidence calibration, when it has one)."""
    from texlens.checkpoint import load_model

    checkpoint = Path(checkpoint)
    model, cfg, vocab = loaded or load_model(checkpoint)
    files = export(model, cfg, vocab, out_dir, int8)
    calib = checkpoint.with_suffix(".calibration.json")
    if calib.is_file():
        files.append(Path(out_dir) / "calibration.json")
        shutil.copyfile(calib, files[-1])
    return files


def cache_dir(checkpoint: Path) -> Path:
    """Where a checkpoint's export is kept: named by the file's content, so a retrained
    file gets a fresh export."""
    root = Path(os.environ.get("TEXLENS_CACHE") or Path.home() / ".cache" / "texlens")
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]
    return root / "onnx" / f"{checkpoint.stem}-{digest}"


def export_cached(checkpoint: Path, loaded: tuple | None = None, int8: bool = False) -> Path:
    """The cached export of ``checkpoint``, written first if missing."""
    d = cache_dir(checkpoint)
    need = [d / META, d / ENCODER, d / STEP] + ([d / _int8(ENCODER), d / _int8(STEP)]
                                               if int8 else [])
    if not all(f.is_file() for f in need):
        # Written beside and renamed into place, so a reader never sees half an export.
        tmp = d.with_name(f"{d.name}.tmp{os.getpid()}")
        export_checkpoint(checkpoint, tmp, int8, loaded)
        if d.exists():
            shutil.rmtree(d)
        tmp.rename(d)
    return d


def _int8(name: str) -> str:
    return name.replace(".onnx", ".int8.onnx")


class OnnxModel:
    """encoder.onnx + decoder_step.onnx on onnxruntime's CPU provider."""

    def __init__(self, directory: str | Path, int8: bool = False, threads: int = 0):
        import onnxruntime as ort

        d = Path(directory)
        files = [d / _int8(ENCODER), d / _int8(STEP)] if int8 else [d / ENCODER, d / STEP]
        files.append(d / META)
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"{f}: missing; write it with `texlens export MODEL "
                                        f"--onnx {d}{' --int8' if int8 else ''}`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.encoder = ort.InferenceSession(str(files[0]), opts, ["CPUExecutionProvider"])
        self.step = ort.InferenceSession(str(files[1]), opts, ["CPUExecutionProvider"])
        self.meta = json.loads(files[2].read_text())
        try:
            self.cfg = config_from_dict(self.meta["config"])
            self.vocab = Vocab(self.meta["tokens"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"{files[2]}: not a texlens export ({e})") from None
        self.layers, self.max_len = self.meta["layers"], self.meta["max_len"]
        self.cross_names = _names(self.layers, "cross")
        self.past_names = _names(self.layers, "past")
        kv = self.encoder.get_outputs()[1].shape  # (batch, heads, cells, dk)
        self.heads, self.dk = int(kv[1]), int(kv[3])

    def greedy(self, images: np.ndarray, mask: np.ndarray, max_len: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """Like texlens.decoding.greedy_decode: ids (B, T) after <sos>, <pad> after <eos>,
        and each chosen token's probability (B, T), 0 on padding."""
        mem_mask, *cross = self.encoder.run(None, {"images": images.astype(np.float32),
                                                   "mask": mask.astype(bool)})
        b = images.shape[0]
        feed = {"mem_mask": mem_mask, **dict(zip(self.cross_names, cross, strict=True))}
        for name in self.past_names:
            feed[name] = np.zeros((b, self.heads, 0, self.dk), np.float32)
        token = np.full((b, 1), Vocab.sos_id, np.int64)
        done = np.zeros(b, bool)
        ids, probs = [], []
        for t in range(min(max_len, self.max_len - 1)):
            feed["token"], feed["position"] = token, np.array([t], np.int64)
            logits, *present = self.step.run(None, feed)
            feed.update(zip(self.past_names, present, strict=True))
            nxt, p = _argmax_prob(logits)
            nxt = np.where(done, Vocab.pad_id, nxt)
            ids.append(nxt)
            probs.append(np.where(done, 0.0, p))
            done |= nxt == Vocab.eos_id
            token = nxt[:, None].astype(np.int64)
            if done.all():
                break
        return np.stack(ids, 1), np.stack(probs, 1)


def _argmax_prob(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy choice and its softmax probability, per row."""
    logits = logits.astype(np.float64)
    best = logits.argmax(-1)
    top = logits[np.arange(len(best)), best]
    return best, 1.0 / np.exp(logits - top[:, None]).sum(-1)

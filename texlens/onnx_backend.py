"""ONNX export and an onnxruntime backend for greedy decoding.

Three graphs, written by :func:`export`:

* ``encoder.onnx``: images (B, 1, H, W) float and their pixel mask (B, H, W) bool ->
  the memory's key mask as an additive bias (B, 1, 1, N) (0, or -inf on padding) and, for
  every decoder layer, the cross-attention keys, transposed (B, heads, dk, N), and values
  (B, heads, N, dk). The decoder's ``start`` (projecting the memory once) is folded in,
  so the step graph never sees the memory itself.
* ``encoder_unpadded.onnx``: images only -> the same, for a batch without padding (one
  image, or images of one size), traced on encode's unmasked path: no masking operators.
* ``decoder_step.onnx``: one token per row (B, 1), its position (1,), the mask bias, the
  cross keys/values and the self-attention cache of earlier steps (keys (B, heads, dk, T),
  values (B, heads, T, dk)) -> the greedy token (B, 1), its probability (B,) and the cache
  grown to T + 1. The cache is an explicit input and output, so the runtime loop below
  owns it, as ``DecoderCache`` does in PyTorch. The step is :class:`_Step`,
  TransformerDecoder.step rewritten for few operators.

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
ENCODER_UNPADDED = "encoder_unpadded.onnx"
OPSET = 17
# The graphs' interface; an export of another format is refused (export it again).
# 2: the mask as an additive bias, keys transposed, the unpadded encoder.
FORMAT = 2


class _Encoder(nn.Module):
    """images, mask -> the cross-attention mask as an additive bias (B, 1, 1, N) and, for
    every decoder layer, the cross keys transposed (B, heads, dk, N) and values
    (B, heads, N, dk): the layouts the step multiplies by directly.

    ``padded=False`` traces encode's unpadded path (no masking ops at all), the graph a
    single image or an unpadded batch runs; ``padded=True`` the masked one."""

    def __init__(self, model: nn.Module, padded: bool):
        super().__init__()
        self.model, self.padded = model, padded

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, ...]:
        memory, mem_mask = self.model.encode(images, mask if self.padded else None)
        if mem_mask is None:
            bias = memory.new_zeros(memory.shape[0], 1, 1, memory.shape[1])
        else:
            bias = torch.zeros(mem_mask.shape, dtype=memory.dtype).masked_fill(
                ~mem_mask, float("-inf"))
        out = [bias]
        for layer in self.model.decoder.layers:
            k, v = layer.cross_attn.project_kv(memory)
            out += [k.transpose(2, 3), v]
        return tuple(out)


class _Step(nn.Module):
    """One greedy step of TransformerDecoder, rewritten for a small graph.

    A batch-1 step is under a million multiply-adds spread over many small operators, so
    their count weighs on its time: traced from TransformerDecoder.step it was 141
    operators after onnxruntime's optimisation, most of them shape arithmetic, and 0.4 ms
    (62 operators and 0.15-0.25 ms now, benchmarks/onnx_breakdown.py). The same function
    with fewer operators: the self-attention's q, k, v as one matrix product; 1/sqrt(dk) folded
    into the query weights; the token embedding's sqrt(d) (and a bidirectional model's
    left-to-right vector) folded into the tables; keys kept transposed, (B, heads, dk, T), so
    no step transposes; and, with one new token per row, every head split and merge a
    reshape with a constant shape (no Shape/Gather chains).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        dec = model.decoder
        attn = dec.layers[0].self_attn
        self.h, self.dk = attn.h, attn.dk
        scale = self.dk ** -0.5
        with torch.no_grad():
            self.embed = nn.Parameter(dec.embed.weight * dec.scale)
            bias = dec.direction_bias(L2R)  # a bidirectional model: its L2R vector
            self.pos = nn.Parameter(dec.pos if bias is None else dec.pos + bias)
            self.qkv = nn.ModuleList()
            self.cross_q = nn.ModuleList()
            for layer in dec.layers:
                sa, ca = layer.self_attn, layer.cross_attn
                qkv = nn.Linear(sa.q.in_features, 3 * sa.h * sa.dk)
                qkv.weight.copy_(torch.cat([sa.q.weight * scale, sa.k.weight, sa.v.weight]))
                qkv.bias.copy_(torch.cat([sa.q.bias * scale, sa.k.bias, sa.v.bias]))
                self.qkv.append(qkv)
                q = nn.Linear(ca.q.in_features, ca.h * ca.dk)
                q.weight.copy_(ca.q.weight * scale)
                q.bias.copy_(ca.q.bias * scale)
                self.cross_q.append(q)
        self.layers, self.norm, self.head = dec.layers, dec.norm, dec.head

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, self.h, 1, self.dk)  # (B, h*dk) -> (B, h, 1, dk)

    def _attend(self, q: torch.Tensor, kt: torch.Tensor, v: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        logits = q @ kt  # (B, h, 1, T)
        if bias is not None:
            logits = logits + bias
        return (logits.softmax(-1) @ v).reshape(-1, self.h * self.dk)

    def forward(self, token: torch.Tensor, position: torch.Tensor, mem_bias: torch.Tensor,
                *kv: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(self.layers)
        cross, past = kv[:2 * n], kv[2 * n:]
        # Rows of (B, d), not (B, 1, d): a linear layer on a matrix is one Gemm with its
        # bias, on a 3-D tensor a MatMul and an Add.
        x = self.embed[token.reshape(-1)] + self.pos[position]
        new = []
        for i, layer in enumerate(self.layers):
            q, k, v = self.qkv[i](layer.norm1(x)).reshape(-1, 3 * self.h, 1, self.dk).split(
                self.h, 1)
            kt = torch.cat([past[2 * i], k.reshape(-1, self.h, self.dk, 1)], 3)
            v = torch.cat([past[2 * i + 1], v], 2)
            new += [kt, v]
            x = x + layer.self_attn.out(self._attend(q, kt, v))
            q = self._heads(self.cross_q[i](layer.norm2(x)))
            x = x + layer.cross_attn.out(self._attend(q, cross[2 * i], cross[2 * i + 1],
                                                      mem_bias))
            x = x + layer.ffn(layer.norm3(x))
        # The greedy choice and its probability in the graph: the runtime feeds the token
        # straight back without a trip through numpy.
        prob, best = self.head(self.norm(x)).softmax(-1).max(-1)
        return (best.reshape(-1, 1), prob, *new)


def _names(n_layers: int, prefix: str) -> list[str]:
    return [f"{prefix}_{kind}{i}" for i in range(n_layers) for kind in "kv"]


def _axes(n_layers: int, prefix: str, length: str) -> dict[str, dict[int, str]]:
    """Dynamic axes of the key/value tensors: keys (B, h, dk, T), values (B, h, T, dk)."""
    return {name: {0: "batch", 3 if name[len(prefix) + 1] == "k" else 2: length}
            for name in _names(n_layers, prefix)}


def export(model: nn.Module, cfg, vocab: Vocab, out_dir: str | Path, int8: bool = False
           ) -> list[Path]:
    """Write encoder.onnx, encoder_unpadded.onnx, decoder_step.onnx (and their int8
    versions) and texlens.json (vocabulary, data settings, model config) into ``out_dir``;
    returns the files."""
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
    n = len(model.decoder.layers)
    # Trace with a padded batch so the padded graph holds the masked path.
    images = torch.zeros(2, 1, 64, 96)
    mask = torch.ones(2, 64, 96, dtype=torch.bool)
    mask[1, 32:] = False
    mask[1, :, 48:] = False
    enc_out = ["mem_bias", *_names(n, "cross")]
    dyn = {"images": {0: "batch", 2: "height", 3: "width"},
           "mask": {0: "batch", 1: "height", 2: "width"},
           "mem_bias": {0: "batch", 3: "cells"}, **_axes(n, "cross", "cells")}
    step = _Step(model).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # Expected: the tracer notes that encode's "nothing padded" shortcut is fixed to the
        # path it took, and that this exporter (TorchScript; the dynamo one cannot trace
        # that data-dependent branch) is deprecated.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        for name, padded in ((ENCODER, True), (ENCODER_UNPADDED, False)):
            inputs = ["images", "mask"] if padded else ["images"]
            torch.onnx.export(_Encoder(model, padded).eval(),
                              (images, mask) if padded else (images,), str(out / name),
                              input_names=inputs, output_names=enc_out,
                              dynamic_axes={k: v for k, v in dyn.items() if k != "mask" or
                                            padded}, opset_version=OPSET, dynamo=False)
        enc = _Encoder(model, True)(images, mask)
        heads, dk = enc[2].shape[1], enc[2].shape[3]
        past = [torch.zeros(2, heads, dk, 3) if i % 2 == 0 else torch.zeros(2, heads, 3, dk)
                for i in range(2 * n)]
        args = (torch.tensor([[Vocab.sos_id], [5]]), torch.tensor([3]), *enc, *past)
        step_in = ["token", "position", "mem_bias", *_names(n, "cross"), *_names(n, "past")]
        dyn = {"token": {0: "batch"}, "mem_bias": {0: "batch", 3: "cells"},
               "next_token": {0: "batch"}, "prob": {0: "batch"}, **_axes(n, "cross", "cells"),
               **_axes(n, "past", "steps"), **_axes(n, "present", "steps_plus_1")}
        torch.onnx.export(step, args, str(out / STEP), input_names=step_in,
                          output_names=["next_token", "prob", *_names(n, "present")],
                          dynamic_axes=dyn, opset_version=OPSET, dynamo=False)
    files = [out / ENCODER, out / ENCODER_UNPADDED, out / STEP]
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        for f in list(files):
            q = f.with_name(_int8(f.name))
            # Matrix products only: int8 convolutions (ConvInteger) are slower than float
            # ones in onnxruntime's CPU kernels, and the CNN is a small share of the weights.
            quantize_dynamic(f, q, op_types_to_quantize=["MatMul", "Gemm"],
                             weight_type=QuantType.QInt8)
            files.append(q)
    meta = {"format": FORMAT, "tokens": vocab.itos, "layers": n,
            "max_len": model.decoder.max_len, "config": config_to_dict(cfg)}
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
    """Where a checkpoint's export is kept: named by the file's content and the export
    format, so a retrained file or a newer texlens gets a fresh export."""
    root = Path(os.environ.get("TEXLENS_CACHE") or Path.home() / ".cache" / "texlens")
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]
    return root / "onnx" / f"{checkpoint.stem}-{digest}-v{FORMAT}"


def _graphs(d: Path, int8: bool) -> list[Path]:
    names = [ENCODER, ENCODER_UNPADDED, STEP]
    return [d / (_int8(n) if int8 else n) for n in names]


def export_cached(checkpoint: Path, loaded: tuple | None = None, int8: bool = False) -> Path:
    """The cached export of ``checkpoint``, written first if missing."""
    d = cache_dir(checkpoint)
    need = [d / META, *_graphs(d, False), *(_graphs(d, True) if int8 else [])]
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
    """The encoders and the decoder step on onnxruntime's CPU provider.

    ``threads`` (default: torch's count) runs the encoders; the step runs on one thread:
    its operators are too small to share, and two sessions of two threads each made the
    pools contend (batch 1 with 2 threads: 40-60 ms before, 9-17 ms after, 2026-12-03,
    docs/RESULTS.md).
    """

    def __init__(self, directory: str | Path, int8: bool = False, threads: int = 0):
        import onnxruntime as ort

        d = Path(directory)
        files = [*_graphs(d, int8), d / META]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"{f}: missing; write it with `texlens export MODEL "
                                        f"--onnx {d}{' --int8' if int8 else ''}`")
        self.meta = json.loads(files[-1].read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{files[-1]}: exported in format {self.meta.get('format', 1)} "
                             f"by another texlens version; this one reads format {FORMAT}: "
                             f"export it again (`texlens export MODEL --onnx {d}`)")
        try:
            self.cfg = config_from_dict(self.meta["config"])
            self.vocab = Vocab(self.meta["tokens"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"{files[-1]}: not a texlens export ({e})") from None

        def session(path: Path, n_threads: int):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = n_threads, 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            return ort.InferenceSession(str(path), opts, ["CPUExecutionProvider"])

        threads = threads or torch.get_num_threads()
        self.encoder, self.encoder_unpadded = session(files[0], threads), session(files[1],
                                                                                   threads)
        self.step = session(files[2], 1)
        self.layers, self.max_len = self.meta["layers"], self.meta["max_len"]
        self.cross_names = _names(self.layers, "cross")
        self.past_names = _names(self.layers, "past")
        kv = self.encoder.get_outputs()[2].shape  # values: (batch, heads, cells, dk)
        self.heads, self.dk = int(kv[1]), int(kv[3])

    def greedy(self, images: np.ndarray, mask: np.ndarray, max_len: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """Like texlens.decoding.greedy_decode: ids (B, T) after <sos>, <pad> after <eos>,
        and each chosen token's probability (B, T), 0 on padding."""
        mask = mask.astype(bool)
        feed = {"images": images.astype(np.float32)}
        # Nothing padded (one image, or images of one size): the graph without masking,
        # as PyTorch's encode takes the same shortcut.
        if mask.all():
            mem_bias, *cross = self.encoder_unpadded.run(None, feed)
        else:
            mem_bias, *cross = self.encoder.run(None, {**feed, "mask": mask})
        b = images.shape[0]
        feed = {"mem_bias": mem_bias, **dict(zip(self.cross_names, cross, strict=True))}
        for i, name in enumerate(self.past_names):
            shape = (b, self.heads, self.dk, 0) if i % 2 == 0 else (b, self.heads, 0, self.dk)
            feed[name] = np.zeros(shape, np.float32)
        # (numpy in and out: onnxruntime's run_with_ort_values, which would keep the cache
        # as OrtValues, measured slower per step.)
        feed["token"] = np.full((b, 1), Vocab.sos_id, np.int64)
        done = np.zeros(b, bool)
        ids, probs = [], []
        for t in range(min(max_len, self.max_len - 1)):
            feed["position"] = np.array([t], np.int64)
            token, prob, *present = self.step.run(None, feed)
            feed["token"] = token  # a finished row's choice is fed too: rows are independent
            feed.update(zip(self.past_names, present, strict=True))
            nxt = token[:, 0]
            ids.append(np.where(done, Vocab.pad_id, nxt))
            probs.append(np.where(done, 0.0, prob))
            done |= nxt == Vocab.eos_id
            if done.all():
                break
        return np.stack(ids, 1), np.stack(probs, 1)

"""ONNX export and an onnxruntime backend for greedy decoding and beam search.

Five graphs, written by :func:`export`:

* ``encoder.onnx``: images (B, 1, H, W) float and their pixel mask (B, H, W) bool ->
  the memory's key mask as an additive bias (B, 1, 1, N) (0, or -inf on padding) and, for
  every decoder layer, the cross-attention keys and values (B, heads, N, dk). The
  decoder's ``start`` (projecting the memory once) is folded in, so the step graph never
  sees the memory itself.
* ``encoder_unpadded.onnx``: images only -> the same, for a batch without padding (one
  image, or images of one size): :class:`_LeanEncoder`, the encoder rewritten for few
  operators, as the step is.
* ``decoder_step.onnx``: one token per row (B, 1), its position (1,), the mask bias, the
  cross keys/values and the self-attention cache of earlier steps (keys and values
  (B, heads, T, dk)) -> the greedy token (B, 1), its probability (B,) and the cache
  grown to T + 1. The step is :class:`_Step`, TransformerDecoder.step rewritten for few
  operators.
* ``decoder_logprobs.onnx``: the same step with the log-probabilities of every token
  (B, V) instead of the greedy choice, for beam search (:class:`OnnxSteps`, which runs
  texlens.decoding.beam_search, the one beam search, on these graphs).
* ``greedy.onnx``: the whole greedy loop, the step graph as the body of an ONNX ``Loop``
  that stops when every row has written <eos> (:func:`_loop_graph`). One call per batch
  instead of one per token: a batch-1 step is a tenth of a millisecond of small
  operators, and a call from Python per step cost about as much again.

Attention runs as onnxruntime's fused ``com.microsoft.MultiHeadAttention`` operator
(:class:`_Attention`), so the graphs need onnxruntime, not just any ONNX runtime. Batch,
height, width, memory length and cache length are dynamic axes. Only the SATRN
architecture with the transformer decoder is exported (the shipped recognisers);
ensembles, right-to-left rescoring and test-time views stay on PyTorch. A bidirectional
model exports its left-to-right direction: its direction vector is folded into the step
graph as a constant. ``int8=True`` adds ``*.int8.onnx`` files made by onnxruntime's
dynamic quantisation (weights int8, activations quantised per call).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from texlens.config import config_from_dict, config_to_dict
from texlens.decoding import Hypothesis, Stepper, beam_search
from texlens.models.decoder import L2R
from texlens.models.posenc import Sine2D, sinusoid
from texlens.tokens import Vocab

ENCODER, STEP, META = "encoder.onnx", "decoder_step.onnx", "texlens.json"
FORMULAS = "train_formulas.bin"  # the checkpoint's record of its training formulas, if any
ENCODER_UNPADDED, GREEDY = "encoder_unpadded.onnx", "greedy.onnx"
LOGPROBS = "decoder_logprobs.onnx"
OPSET = 17
CONTRIB = {"com.microsoft": 1}  # onnxruntime's operators (MultiHeadAttention)
# The graphs' interface; an export of another format is refused (export it again).
# 2: the mask as an additive bias, keys transposed, the unpadded encoder.
# 3: the greedy loop as one graph, the lean unpadded encoder.
# 4: the step graph with every token's log-probability, for beam search.
FORMAT = 4
# onnxruntime's MultiHeadAttention materialises each encoder layer's attention maps (batch
# x heads x cells^2 floats, where PyTorch's fused attention does not), so a batch of 16
# wide formulas took 24 GB and was killed. Batches are encoded in row chunks whose maps
# stay under this many bytes (docs/RESULTS.md, "ONNX memory").
ATTENTION_BYTES = 256 * 2**20


class _Attention(torch.autograd.Function):
    """onnxruntime's ``com.microsoft.MultiHeadAttention`` in an exported graph; the same
    computation in PyTorch, for tracing and for tests.

    One fused operator for what was a dozen small ones (head split, products, softmax,
    cache concatenation, head merge): at batch 1 an operator costs about as much for being
    run as for its arithmetic. ``q``, and ``k``, ``v`` when 3-D, are (B, L, heads * dk);
    4-D ``k``, ``v`` are already split into heads, (B, heads, L, dk) (the cross-attention
    keys and values the encoder precomputes). ``bias`` is added to the logits; ``past_k``,
    ``past_v`` (B, heads, T, dk) are a self-attention cache, and then the cache grown by
    this step's keys and values is returned too. No scaling: the query weights carry
    1/sqrt(dk)."""

    @staticmethod
    def forward(ctx, heads: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                bias: torch.Tensor | None = None, past_k: torch.Tensor | None = None,
                past_v: torch.Tensor | None = None):
        b, n, d = q.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x if x.dim() == 4 else x.reshape(b, -1, heads, d // heads).transpose(1, 2)

        k, v = split(k), split(v)
        if past_k is not None:
            k, v = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2)
        logits = split(q) @ k.transpose(2, 3)
        if bias is not None:
            logits = logits + bias
        out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
        return (out, k, v) if past_k is not None else out

    @staticmethod
    def symbolic(g, heads, q, k, v, bias=None, past_k=None, past_v=None):
        # The operator's optional inputs are positional; the exporter cannot leave a gap
        # (a None input crashes it), so the positions travel in an attribute and
        # _fill_gaps writes the empty names after export.
        given = [(slot, x) for slot, x in enumerate([q, k, v, None, None, bias, past_k, past_v])
                 if x is not None]
        out = g.op("com.microsoft::MultiHeadAttention", *[x for _, x in given],
                   num_heads_i=heads, scale_f=1.0, texlens_slots_i=[s for s, _ in given],
                   outputs=3 if past_k is not None else 1)
        # Output types for the exporter's shape inference (it knows no contrib operator).
        outs = out if past_k is not None else [out]
        for o, like in zip(outs, [q, past_k, past_v][:len(outs)], strict=True):
            o.setType(like.type().with_sizes([None] * like.type().dim()))
        return out


def _fill_gaps(path: Path) -> None:
    """Rewrite each exported MultiHeadAttention's inputs at their positions, '' between."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        slots = [a for a in node.attribute if a.name == "texlens_slots"]
        if slots:
            names = [""] * (max(slots[0].ints) + 1)
            for slot, name in zip(slots[0].ints, node.input, strict=True):
                names[slot] = name
            node.attribute.remove(slots[0])
            del node.input[:]
            node.input.extend(names)
    onnx.save(model, str(path))


class _Encoder(nn.Module):
    """images, mask -> the cross-attention mask as an additive bias (B, 1, 1, N) and, for
    every decoder layer, the cross keys and values split into heads (B, heads, N, dk).

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
            out += layer.cross_attn.project_kv(memory)
        return tuple(out)


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0])
    lin.weight.copy_(weight)
    lin.bias.copy_(bias)
    return lin


def _fused_qkv(attn: nn.Module, scale: float) -> nn.Linear:
    """An attention's q, k, v projections as one, the query's pre-multiplied by ``scale``."""
    return _linear(torch.cat([attn.q.weight * scale, attn.k.weight, attn.v.weight]),
                   torch.cat([attn.q.bias * scale, attn.k.bias, attn.v.bias]))


class _LeanEncoder(nn.Module):
    """images -> what :class:`_Encoder` gives on the unpadded path, with fewer operators.

    Traced as written, encode was 308 operators after onnxruntime's optimisation, many of
    them shape arithmetic: the 2-D sinusoids computed from the map's size on every call
    (Range, Sin, Cos, ScatterND), heads split and merged through Shape/Gather chains. Here:
    the sinusoid tables precomputed and sliced, each layer's q, k, v as one matrix product
    with 1/sqrt(dk) folded into the query weights and its attention one fused operator, and
    every decoder layer's cross keys and values as one product (118 operators before the
    fused attention; timings in docs/RESULTS.md, 2026-12-03 night 2). Only for the SATRN
    encoder with positions added to the features (both shipped models); :meth:`supports`
    says when.
    """

    # Rows and columns of the sinusoid tables: a feature map of up to 1024 cells a side
    # (8192 pixels at stride 8), beyond any input the size policies produce.
    MAX_CELLS = 1024

    def __init__(self, model: nn.Module):
        super().__init__()
        enc = model.encoder
        self.cnn, self.bridge, self.layers, self.norm = (model.cnn, model.bridge, enc.layers,
                                                         enc.norm)
        attn = enc.layers[0].attn
        self.h, self.dk = attn.h, attn.dk
        half = enc.norm.weight.shape[0] // 2
        self.register_buffer("table", sinusoid(self.MAX_CELLS, half), persistent=False)
        scale = self.dk ** -0.5
        cross = [layer.cross_attn for layer in model.decoder.layers]
        self.ch, self.cdk = cross[0].h, cross[0].dk
        with torch.no_grad():
            self.qkv = nn.ModuleList(_fused_qkv(layer.attn, scale) for layer in enc.layers)
            self.kv = _linear(torch.cat([w for c in cross for w in (c.k.weight, c.v.weight)]),
                              torch.cat([b for c in cross for b in (c.k.bias, c.v.bias)]))

    @staticmethod
    def supports(model: nn.Module) -> bool:
        return isinstance(getattr(model, "pe", None), Sine2D) and model.untied is None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feat = self.cnn(images, None)
        b, d, h, w = feat.shape
        half = d // 2
        # Sine2D's map: the first half of the channels encodes the row, the second the column.
        pos = torch.cat([self.table[:h, None, :].expand(h, w, half),
                         self.table[None, :w, :].expand(h, w, half)], -1).reshape(h * w, d)
        x = feat.flatten(2).transpose(1, 2) + pos  # (B, N, d)
        for i, layer in enumerate(self.layers):
            if layer.channel is not None:
                x = layer.channel(x, None)
            q, k, v = self.qkv[i](layer.norm1(x)).split(self.h * self.dk, -1)
            x = x + layer.attn.out(_Attention.apply(self.h, q, k, v))
            x = x + layer.ffn(layer.norm2(x), (h, w), None)
        memory = self.norm(x)
        if self.bridge is not None:
            memory = self.bridge(memory)
        n = self.kv.out_features // (2 * self.ch * self.cdk)
        kv = self.kv(memory).reshape(b, -1, 2 * n * self.ch, self.cdk).transpose(1, 2)
        # the mask bias (nothing is padded), then keys, values, keys, ... by layer
        return (memory.new_zeros(b, 1, 1, h * w), *kv.split(self.ch, 1))


class _Step(nn.Module):
    """One greedy step of TransformerDecoder, rewritten for a small graph.

    A batch-1 step is under a million multiply-adds spread over many small operators, so
    their count weighs on its time: traced from TransformerDecoder.step it was 141
    operators after onnxruntime's optimisation, most of them shape arithmetic, and 0.4 ms
    (56 operators now, benchmarks/onnx_breakdown.py). The same function with fewer
    operators: the self-attention's q, k, v as one matrix product; 1/sqrt(dk) folded into
    the query weights; the token embedding's sqrt(d) (and a bidirectional model's
    left-to-right vector) folded into the tables; each attention, cache growth included,
    one fused operator (:class:`_Attention`); and, with one new token per row, every
    reshape to a constant shape (no Shape/Gather chains).
    """

    def __init__(self, model: nn.Module, logprobs: bool = False):
        super().__init__()
        self.logprobs = logprobs  # every token's log-probability (beam search), not the best
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
                ca = layer.cross_attn
                self.qkv.append(_fused_qkv(layer.self_attn, scale))
                self.cross_q.append(_linear(ca.q.weight * scale, ca.q.bias * scale))
        self.layers, self.norm, self.head = dec.layers, dec.norm, dec.head

    def forward(self, token: torch.Tensor, position: torch.Tensor, mem_bias: torch.Tensor,
                *kv: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(self.layers)
        cross, past = kv[:2 * n], kv[2 * n:]
        # Rows of (B, d), not (B, 1, d): a linear layer on a matrix is one Gemm with its
        # bias, on a 3-D tensor a MatMul and an Add. The attention takes (B, 1, d).
        x = self.embed[token.reshape(-1)] + self.pos[position]
        new = []
        b, inner = x.shape[0], self.h * self.dk
        # Beam search (the log-probability graph) feeds each image's cross keys and values
        # once, G rows, and its B = G x K hypotheses image by image: the K rows of an image
        # attend to its memory as K queries of one row. Reading the same memory once, not K
        # times, made a beam-4 step of a wide formula about 3 times faster than K copies.
        rows = cross[0].shape[0] if self.logprobs else b
        cross_bias = None
        for i, layer in enumerate(self.layers):
            q, k, v = self.qkv[i](layer.norm1(x)).reshape(b, 1, 3 * inner).split(inner, -1)
            y, k, v = _Attention.apply(self.h, q, k, v, None, past[2 * i], past[2 * i + 1])
            new += [k, v]
            x = x + layer.self_attn.out(y.reshape(b, inner))
            q = self.cross_q[i](layer.norm2(x)).reshape(rows, -1, inner)
            if cross_bias is None:  # the operator takes a bias row per query
                cross_bias = mem_bias if not self.logprobs else \
                    mem_bias.expand(-1, -1, q.shape[1], -1)
            y = _Attention.apply(self.h, q, cross[2 * i], cross[2 * i + 1], cross_bias)
            x = x + layer.cross_attn.out(y.reshape(b, inner))
            x = x + layer.ffn(layer.norm3(x))
        if self.logprobs:
            return (self.head(self.norm(x)).float().log_softmax(-1), *new)
        # The greedy choice and its probability in the graph: the runtime feeds the token
        # straight back without a trip through numpy.
        prob, best = self.head(self.norm(x)).softmax(-1).max(-1)
        return (best.reshape(-1, 1), prob, *new)


def _names(n_layers: int, prefix: str) -> list[str]:
    return [f"{prefix}_{kind}{i}" for i in range(n_layers) for kind in "kv"]


def _axes(n_layers: int, prefix: str, length: str) -> dict[str, dict[int, str]]:
    """Dynamic axes of the key/value tensors, all (B, heads, length, dk)."""
    return {name: {0: "batch", 2: length} for name in _names(n_layers, prefix)}


def _loop_graph(step_file: Path, out_file: Path) -> None:
    """Write greedy.onnx: ``step_file``'s graph as the body of a Loop.

    Inputs: ``steps`` (the most tokens to write), ``start`` (B, 1) <sos> ids, ``start_done``
    (B,) bool, the encoder's outputs under their step-graph names, and the empty caches as
    ``start_past_*``. Outputs: ``tokens`` and ``probs`` (T, B), one row per step; the loop
    stops after the step in which the last row wrote <eos>. The body reads ``mem_bias`` and
    the cross keys/values from the outer graph, and carries the token, the rows' done flags
    and the cache from one iteration to the next."""
    import onnx
    from onnx import TensorProto, helper

    step = onnx.load(str(step_file))
    g = step.graph
    info = {v.name: v for v in [*g.input, *g.output]}  # typed, with their dynamic axes
    past = [i.name for i in g.input if i.name.startswith("past_")]
    present = [o.name for o in g.output if o.name.startswith("present_")]
    outer = [i for i in g.input if i.name == "mem_bias" or i.name.startswith("cross_")]

    def value(name: str, kind: int, shape: list) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, kind, shape)

    def renamed(name: str, new: str) -> onnx.ValueInfoProto:
        v = onnx.ValueInfoProto()
        v.CopyFrom(info[name])
        v.name = new
        return v

    def const(name: str, kind: int, dims: list[int], vals: list) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name],
                                value=helper.make_tensor(name, kind, dims, vals))

    i64, b = TensorProto.INT64, TensorProto.BOOL
    nodes = [const("one_d", i64, [1], [1]),
             helper.make_node("Reshape", ["iteration", "one_d"], ["position"]),
             *g.node,
             const("eos_id", i64, [], [Vocab.eos_id]),
             helper.make_node("Squeeze", ["next_token", "one_d"], ["chosen"]),
             helper.make_node("Equal", ["chosen", "eos_id"], ["wrote_eos"]),
             helper.make_node("Or", ["done", "wrote_eos"], ["done_now"]),
             # Loop wants a bool "go on": not all rows done (ReduceMin of 0/1 over rows).
             helper.make_node("Cast", ["done_now"], ["done_int"], to=TensorProto.INT32),
             helper.make_node("ReduceMin", ["done_int"], ["all_int"], keepdims=0),
             helper.make_node("Cast", ["all_int"], ["all_done"], to=b),
             helper.make_node("Not", ["all_done"], ["go_on"])]
    body = helper.make_graph(
        nodes, "greedy_step",
        [value("iteration", i64, []), value("go", b, []), info["token"],
         value("done", b, ["batch"]), *[info[n] for n in past]],
        [value("go_on", b, []), info["next_token"], value("done_now", b, ["batch"]),
         *[info[n] for n in present], value("chosen", i64, ["batch"]), info["prob"]],
        initializer=list(g.initializer))
    loop = helper.make_node("Loop", ["steps", "true", "start", "start_done",
                                     *[f"start_{n}" for n in past]],
                            ["last_token", "last_done", *[f"last_{n}" for n in present],
                             "tokens", "probs"], body=body)
    graph = helper.make_graph(
        [const("true", b, [], [True]), loop], "greedy",
        [value("steps", i64, []), renamed("token", "start"),
         value("start_done", b, ["batch"]), *outer,
         *[renamed(n, f"start_{n}") for n in past]],
        [value("tokens", i64, ["steps", "batch"]),
         value("probs", TensorProto.FLOAT, ["steps", "batch"])])
    model = helper.make_model(graph, opset_imports=step.opset_import)
    model.ir_version = step.ir_version
    onnx.checker.check_model(model)
    onnx.save(model, str(out_file))


def export(model: nn.Module, cfg, vocab: Vocab, out_dir: str | Path, int8: bool = False
           ) -> list[Path]:
    """Write encoder.onnx, encoder_unpadded.onnx, decoder_step.onnx, decoder_logprobs.onnx,
    greedy.onnx (and their int8 versions) and texlens.json (vocabulary, data settings,
    model config) into ``out_dir``; returns the files."""
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
            lean = not padded and _LeanEncoder.supports(model)
            wrapper = _LeanEncoder(model) if lean else _Encoder(model, padded)
            # Only the lean encoder uses onnxruntime's operator: declaring its domain for a
            # graph without one makes the exporter warn on every first use.
            torch.onnx.export(wrapper.eval(),
                              (images, mask) if padded else (images,), str(out / name),
                              input_names=inputs, output_names=enc_out,
                              dynamic_axes={k: v for k, v in dyn.items() if k != "mask" or
                                            padded}, opset_version=OPSET, dynamo=False,
                              custom_opsets=CONTRIB if lean else None)
        enc = _Encoder(model, True)(images, mask)
        heads, dk = enc[2].shape[1], enc[2].shape[3]
        past = [torch.zeros(2, heads, 3, dk) for _ in range(2 * n)]
        args = (torch.tensor([[Vocab.sos_id], [5]]), torch.tensor([3]), *enc, *past)
        step_in = ["token", "position", "mem_bias", *_names(n, "cross"), *_names(n, "past")]
        dyn = {"token": {0: "batch"}, "mem_bias": {0: "batch", 3: "cells"},
               "next_token": {0: "batch"}, "prob": {0: "batch"}, **_axes(n, "cross", "cells"),
               **_axes(n, "past", "steps"), **_axes(n, "present", "steps_plus_1")}
        torch.onnx.export(step, args, str(out / STEP), input_names=step_in,
                          output_names=["next_token", "prob", *_names(n, "present")],
                          dynamic_axes=dyn, opset_version=OPSET, dynamo=False,
                          custom_opsets=CONTRIB)
        # The memory is one row per image here, the tokens one per hypothesis.
        dyn = {**{k: v for k, v in dyn.items() if k not in ("next_token", "prob")},
               "logprobs": {0: "batch"}, "mem_bias": {0: "images", 3: "cells"},
               **{name: {0: "images", 2: "cells"} for name in _names(n, "cross")}}
        torch.onnx.export(_Step(model, logprobs=True).eval(), args, str(out / LOGPROBS),
                          input_names=step_in, output_names=["logprobs", *_names(n, "present")],
                          dynamic_axes=dyn, opset_version=OPSET, dynamo=False,
                          custom_opsets=CONTRIB)
    files = [out / ENCODER, out / ENCODER_UNPADDED, out / STEP, out / LOGPROBS]
    for f in files:
        _fill_gaps(f)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        for f in list(files):
            q = f.with_name(_int8(f.name))
            # Matrix products only: int8 convolutions (ConvInteger) are slower than float
            # ones in onnxruntime's CPU kernels, and the CNN is a small share of the weights.
            quantize_dynamic(f, q, op_types_to_quantize=["MatMul", "Gemm"],
                             weight_type=QuantType.QInt8)
            files.append(q)
    for step_file in [f for f in files if f.name.startswith("decoder_step")]:
        files.append(out / step_file.name.replace("decoder_step", "greedy"))
        _loop_graph(step_file, files[-1])
    meta = {"format": FORMAT, "tokens": vocab.itos, "layers": n,
            "max_len": model.decoder.max_len, "config": config_to_dict(cfg)}
    (out / META).write_text(json.dumps(meta, indent=1))
    return [*files, out / META]


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, int8: bool = False,
                      loaded: tuple | None = None) -> list[Path]:
    """Export a checkpoint file (and its confidence calibration and its record of training
    formulas, when it has them)."""
    from texlens.checkpoint import TRAIN_FORMULAS, load_model, read_checkpoint

    checkpoint = Path(checkpoint)
    model, cfg, vocab = loaded or load_model(checkpoint)
    files = export(model, cfg, vocab, out_dir, int8)
    formulas = read_checkpoint(checkpoint)[3].get(TRAIN_FORMULAS)
    if formulas is not None:
        files.append(Path(out_dir) / FORMULAS)
        files[-1].write_bytes(formulas)
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
    """The graphs a backend runs (the step graph is exported too, as greedy.onnx's body)."""
    names = [ENCODER, ENCODER_UNPADDED, GREEDY, LOGPROBS]
    return [d / (_int8(n) if int8 else n) for n in names]


def export_cached(checkpoint: Path, loaded: tuple | None = None, int8: bool = False) -> Path:
    """The cached export of ``checkpoint``, written first if missing."""
    d = cache_dir(checkpoint)
    need = [d / META, *_graphs(d, False), *(_graphs(d, True) if int8 else [])]
    if not all(f.is_file() for f in need):
        # Once per model and texlens version: say why this first call takes seconds.
        print(f"exporting {checkpoint.name} to ONNX once, into {d}", file=sys.stderr)
        # Written beside and renamed into place, so a reader never sees half an export.
        tmp = d.with_name(f"{d.name}.tmp{os.getpid()}")
        export_checkpoint(checkpoint, tmp, int8, loaded)
        if d.exists():
            shutil.rmtree(d)
        tmp.rename(d)
        # The same file's exports in older formats are never read again.
        for old in d.parent.glob(f"{d.name.rsplit('-v', 1)[0]}-v*"):
            if old != d and old.is_dir() and not old.name.partition(".tmp")[1]:
                shutil.rmtree(old, ignore_errors=True)
    return d


def _int8(name: str) -> str:
    return name.replace(".onnx", ".int8.onnx")


class OnnxModel:
    """The encoders and the greedy loop on onnxruntime's CPU provider.

    ``threads`` (default: torch's count) runs the encoders; the loop runs on one thread:
    its operators are too small to share, and two sessions of
    two threads each made the pools contend (batch 1 with 2 threads: 40-60 ms before, 9-17
    ms after, 2026-12-03, docs/RESULTS.md).
    """

    def __init__(self, directory: str | Path, int8: bool = False, threads: int = 0):
        import onnxruntime as ort

        d = Path(directory)
        self.int8 = int8
        files = [*_graphs(d, int8), d / META]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"{f}: missing; write it with `texlens export MODEL "
                                        f"--onnx {d}{' --int8' if int8 else ''}`")
        self.meta = json.loads(files[-1].read_text())
        record = d / FORMULAS
        self.train_formulas = record.read_bytes() if record.is_file() else None
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
        self.decode_session = session(files[2], 1)
        # Beam search's step graph, opened on first use: greedy callers never pay for it.
        self._logprobs_file, self._logprobs = files[3], None
        self._session = session
        self.layers, self.max_len = self.meta["layers"], self.meta["max_len"]
        self.cross_names = _names(self.layers, "cross")
        self.past_names = _names(self.layers, "past")
        kv = self.encoder.get_outputs()[2].shape  # values: (batch, heads, cells, dk)
        self.heads, self.dk = int(kv[1]), int(kv[3])

    def encode(self, images: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        """The mask bias and the cross keys/values of a batch (B, 1, H, W)."""
        mask = mask.astype(bool)
        feed = {"images": images.astype(np.float32)}
        # Nothing padded (one image, or images of one size): the graph without masking,
        # as PyTorch's encode takes the same shortcut.
        if mask.all():
            return self.encoder_unpadded.run(None, feed)
        return self.encoder.run(None, {**feed, "mask": mask})

    def decode(self, encoded: list[np.ndarray], max_len: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """The greedy loop on :meth:`encode`'s outputs: ids (B, T), probabilities (B, T)."""
        mem_bias, *cross = encoded
        b = mem_bias.shape[0]
        steps = min(max_len, self.max_len - 1)
        if steps <= 0:
            return np.zeros((b, 0), np.int64), np.zeros((b, 0), np.float32)
        feed = {"steps": np.array(steps, np.int64),
                "start": np.full((b, 1), Vocab.sos_id, np.int64),
                "start_done": np.zeros(b, bool), "mem_bias": mem_bias,
                **dict(zip(self.cross_names, cross, strict=True))}
        for name in self.past_names:
            feed[f"start_{name}"] = np.zeros((b, self.heads, 0, self.dk), np.float32)
        tokens, probs = self.decode_session.run(None, feed)
        ids, probs = tokens.T, probs.T
        # A finished row went on being fed its own choices (rows are independent): blank
        # what follows its first <eos>.
        eos = ids == Vocab.eos_id
        after = np.cumsum(eos, 1) - eos > 0
        return np.where(after, Vocab.pad_id, ids), np.where(after, 0.0, probs)

    def greedy(self, images: np.ndarray, mask: np.ndarray, max_len: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """Like texlens.decoding.greedy_decode: ids (B, T) after <sos>, <pad> after <eos>,
        and each chosen token's probability (B, T), 0 on padding."""
        rows = self.chunk_rows(images.shape)
        if rows >= len(images):
            return self.decode(self.encode(images, mask), max_len)
        parts = [self.decode(self.encode(images[i:i + rows], mask[i:i + rows]), max_len)
                 for i in range(0, len(images), rows)]
        width = max(ids.shape[1] for ids, _ in parts)  # each chunk stops when it is done
        return (np.concatenate([np.pad(ids, ((0, 0), (0, width - ids.shape[1])),
                                       constant_values=Vocab.pad_id) for ids, _ in parts]),
                np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]))) for _, p in parts]))

    def beam(self, images: np.ndarray, mask: np.ndarray, beam: int, max_len: int,
             alpha: float = 1.0) -> list[list[Hypothesis]]:
        """texlens.decoding.beam_search on these graphs: each image's hypotheses, best
        first (encoded in row chunks, as :meth:`greedy`)."""
        rows = self.chunk_rows(images.shape)
        out: list[list[Hypothesis]] = []
        for i in range(0, len(images), rows):
            out += beam_search(OnnxSteps(self), torch.from_numpy(images[i:i + rows]),
                               torch.from_numpy(mask[i:i + rows]), beam, max_len, alpha)
        return out

    @property
    def logprobs_session(self):
        """The log-probability step graph's session, opened on first use."""
        if self._logprobs is None:
            self._logprobs = self._session(self._logprobs_file, 1)
        return self._logprobs

    def chunk_rows(self, shape: tuple[int, ...]) -> int:
        """How many rows of a (B, 1, H, W) batch to encode at once (ATTENTION_BYTES)."""
        down = getattr(self.cfg.model, "downsample", 8)
        cells = max(1, shape[-2] // down) * max(1, shape[-1] // down)
        return max(1, ATTENTION_BYTES // (self.heads * cells * cells * 4))


@dataclass
class _Cache:
    """Beam search's rows on onnxruntime: the encoder's outputs stay one row per image
    (``base``) and each row points at its image (``rows``); the self-attention cache is
    one row per hypothesis. The step graph reads an image's cross keys and values once for
    all its rows, so they are gathered again only when the set of images changes (an image
    leaves the search)."""

    base: list[np.ndarray]  # mask bias and cross keys/values, one row per image
    rows: np.ndarray  # the image of each row
    past: list[np.ndarray]  # self-attention keys/values, (N, heads, t, dk)
    t: int = 0  # tokens fed so far (the next one's position)
    gathered: tuple[np.ndarray, list[np.ndarray]] | None = None  # (images, base at images)


class OnnxSteps(Stepper):
    """:class:`texlens.decoding.Stepper` over an :class:`OnnxModel`'s encoder and
    log-probability step graph: beam search on onnxruntime is the same search as on
    PyTorch. Rows must come image by image, the same number for each (as beam search
    keeps them)."""

    def __init__(self, model: OnnxModel):
        self.model = model
        self.max_len = model.max_len - 1

    def start(self, images: torch.Tensor, mask: torch.Tensor | None) -> _Cache:
        m, b = self.model, images.shape[0]
        mask_np = np.ones((b, *images.shape[2:]), bool) if mask is None else mask.numpy()
        base = m.encode(images.numpy(), mask_np)
        empty = np.zeros((b, m.heads, 0, m.dk), np.float32)
        return _Cache(base, np.arange(b), [empty] * (2 * m.layers))

    def select(self, caches: _Cache, index: torch.Tensor) -> _Cache:
        idx = index.numpy()
        return _Cache(caches.base, caches.rows[idx], [p[idx] for p in caches.past], caches.t,
                      caches.gathered)

    def step(self, tokens: torch.Tensor, caches: _Cache) -> torch.Tensor:
        m, rows = self.model, caches.rows
        images = rows[np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])]
        if not np.array_equal(np.repeat(images, len(rows) // len(images)), rows):
            raise ValueError("OnnxSteps: rows must come image by image, the same number each")
        if caches.gathered is None or not np.array_equal(caches.gathered[0], images):
            whole = np.array_equal(images, np.arange(len(caches.base[0])))
            caches.gathered = (images, caches.base if whole else
                               [a[images] for a in caches.base])
        mem_bias, *cross = caches.gathered[1]
        feed = {"token": tokens.numpy().astype(np.int64),
                "position": np.array([caches.t], np.int64), "mem_bias": mem_bias,
                **dict(zip(m.cross_names, cross, strict=True)),
                **dict(zip(m.past_names, caches.past, strict=True))}
        logp, *caches.past = m.logprobs_session.run(None, feed)
        caches.t += 1
        return torch.from_numpy(logp)

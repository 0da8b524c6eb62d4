"""Typed experiment configuration: dataclasses loaded from YAML.

Unknown keys and wrong types are errors that name the offending field
(``train.lr: expected float, got 'fast'``), so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names the field."""


@dataclass
class ModelConfig:
    arch: str = "satrn"  # satrn | aster
    backbone: str = "shallow"  # shallow | densenet | resnet18 | resnet34
    encoder: str = "satrn"  # satrn (CNN + 2-D PE + transformer) | vit (patches, no CNN)
    patch: int = 8  # vit: patch size
    vit_grid: tuple[int, int] = (8, 128)  # vit: patch grid of the stored position embedding
    drop_path: float = 0.0  # vit: stochastic depth rate of the last block (linear ramp)
    d_model: int = 192
    n_heads: int = 4
    enc_layers: int = 3
    enc_ff: int = 576
    dec_layers: int = 2
    dec_ff: int = 576
    dec_d_model: int | None = None  # decoder width if unlike the encoder's (memory projected)
    dec_heads: int | None = None  # decoder heads; None = n_heads
    dropout: float = 0.1
    cnn_width: int = 32
    downsample: int = 8
    ffn: str = "linear"  # linear | conv (SATRN's locality-aware feed-forward)
    pe: str = "sine2d"  # sine2d | adaptive2d | learned
    pe_mode: str = "add"  # add (positions added to features) | untied (TUPE)
    pe_dropout: float = 0.0
    pe_dropout_mode: str = "element"  # element | position (drop whole positional vectors)
    channel_attention: bool = False  # CBAM channel gate before each encoder self-attention
    # BTTR: one decoder also trained right to left (a learned direction embedding); the
    # loss is the mean of both directions, and beam search may rescore its n-best with R2L.
    bidirectional: bool = False
    max_len: int = 200


@dataclass
class AugmentConfig:
    enabled: bool = True
    p_affine: float = 0.5
    rotate_deg: float = 2.0
    scale: tuple[float, float] = (0.9, 1.1)
    shear_deg: float = 3.0
    p_blur: float = 0.15
    p_noise: float = 0.2
    p_morph: float = 0.2  # thinner / thicker strokes
    # Screenshot and scan looks, applied to the image as loaded (before polarity, ink
    # normalisation and resizing; texlens.data.transforms.build_page_augment). Off by
    # default: the configs of printed-small and handwritten-small predate them.
    p_margin: float = 0.0  # extra paper around the formula, 0-max_margin px a side
    max_margin: int = 24
    p_tint: float = 0.0  # paper and ink tones moved toward grey, a lighting gradient
    p_downscale: float = 0.0  # down-and-up scaling: a low-resolution screenshot
    p_jpeg: float = 0.0  # JPEG artefacts


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    # height: fixed height, kept aspect; fixed: resize to height x width; scale: resize by
    # `scale` (symbols keep their size whatever the layout), height then caps the result.
    size_mode: str = "height"
    height: int = 64
    scale: float = 0.5
    # scale mode: typical symbol height (px, before `scale`) of the training images. An
    # input whose ink is more than `ink_tolerance` x larger or smaller (a photo, a scan at
    # another resolution) is first resized to it. 0: off. With the default 2.0, training
    # renderings of a size-normalising renderer (CROHME ink) are never touched; 1.0
    # resizes every image, for data drawn at random sizes (printed renderings).
    ink_height: float = 0.0
    ink_tolerance: float = 2.0
    # Blank paper around the formula, in symbol heights (texlens.data.transforms.crop_margins):
    # a side with more than `margin_limit` is cut to `margin_keep`, the margin the training
    # images have. TeX renderings: about 1 (95% within 2.5, none of the validation
    # images over 5.7, so the default leaves them all as they are); CROHME's rendered ink:
    # about 0.4 (95% within 0.6). A screenshot or photo often has far more.
    margin_limit: float = 6.0
    margin_keep: float = 1.0
    width: int = 256  # the fixed width, or the padded batch width cap in height mode
    max_width: int = 1024
    batch_size: int = 32
    num_workers: int = 0
    # Round each batch's padded height and width up to a multiple of this (0: off). On a
    # GPU every new input shape costs cuDNN a fresh convolution plan, paid on the CPU
    # while the GPU waits; a few hundred shapes instead of one per batch bound that cost.
    pad_multiple: int = 0
    on_error: str = "skip"  # skip bad samples with a report, or stop before training
    max_tokens: int = 150
    val_limit: int = 0  # 0 = whole validation set; else a fixed random subset
    vocab: str | None = None  # dictionary file; None = build from the training captions
    # Caption style the model reads and writes (texlens.tokens.normalizer): "crohme"
    # (CROHME's symbols, no \left/\right or fonts; printed-small, handwritten-small) or
    # "latex" (the canonical form of any LaTeX math, texlens/latex.py; printed-base).
    # Truth captions are normalised with it before scoring, so raw LaTeX works too.
    style: str = "crohme"
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrainConfig:
    max_epochs: int = 10
    max_steps: int = -1
    max_time_min: float = 0.0  # 0 = no limit; stops cleanly and checkpoints
    optimizer: str = "adamw"  # adamw | adam (the competition baseline's)
    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    scheduler: str = "onecycle"  # onecycle | cosine | step | plateau | none
    warmup: float = 0.05  # fraction of the steps spent warming up (onecycle, cosine)
    step_every: float = 0.3  # step: multiply the LR by step_gamma every this fraction of steps
    step_gamma: float = 0.1
    plateau_patience: int = 2  # plateau: validations without improvement before LR x0.5
    grad_clip: float = 2.0
    accumulate: int = 1  # gradient accumulation: batches per optimizer step
    ignore_pad: bool = True
    label_smoothing: float = 0.0
    # Teacher forcing: the chance of feeding the gold previous token, moving from
    # teacher_forcing to teacher_forcing_end over training along the schedule.
    teacher_forcing: float = 1.0
    teacher_forcing_end: float | None = None  # None = constant
    tf_schedule: str = "constant"  # constant | linear | cosine | arctan
    tf_mode: str = "parallel"  # parallel (two-pass scheduled sampling) | batch (one coin)
    # Transfer learning (texlens/train/transfer.py): start from a checkpoint or shipped
    # model; hold parameters whose names start with a freeze prefix fixed for freeze_steps
    # optimizer steps (0 = the whole run).
    init_from: str | None = None
    freeze: list[str] = field(default_factory=list)
    freeze_steps: int = 0
    early_stop_patience: int = 0  # validations without improvement before stopping; 0 = off
    # Also keep the checkpoints of the last N validations (checkpoints/step<S>.ckpt), for
    # checkpoint averaging (texlens average, texlens ablate); 0 = best and last only.
    keep_checkpoints: int = 0
    ema_decay: float = 0.0  # exponential moving average of weights; 0 = off
    precision: str = "32-true"  # or bf16-mixed
    seed: int = 0
    threads: int = 2
    # Lightning's profiler ("simple": time in each hook, waiting for data apart from the
    # step; "advanced": per function), written to <out_dir>/fit-profile.txt; "" = off.
    profiler: str = ""
    log_every: int = 50
    val_every_steps: int = 0  # 0 = once per epoch
    out_dir: str = "runs/default"


@dataclass
class Config:
    name: str = "default"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class OrientationModelConfig:
    arch: str = "resnet"  # resnet (written here) | stem (a recogniser's CNN stem + new head)
    # The whole image is fit, aspect kept, into a canvas x canvas square: a multiple of 8.
    canvas: int = 128
    widths: list[int] = field(default_factory=lambda: [24, 32, 64, 128])  # resnet: stem, stages
    stem_width: int = 32  # stem: the recogniser's model.cnn_width
    stem_d_model: int = 160  # stem: the recogniser's model.d_model
    dropout: float = 0.1


@dataclass
class OrientationDataConfig:
    printed: list[str] = field(default_factory=list)  # dataset directories (upright images)
    handwritten: list[str] = field(default_factory=list)
    n_printed: int = 5000  # images drawn from the printed directories; 0 = all
    n_handwritten: int = 4000
    # Caption files (test sets) whose expressions are never trained or validated on.
    exclude: list[str] = field(default_factory=list)
    # Real-use shares of 0/90/180/270 degrees: most inputs are upright.
    prior: list[float] = field(default_factory=lambda: [0.85, 0.05, 0.05, 0.05])
    margin: float = 0.1  # random extra paper on each side, up to this share of the longer side


@dataclass
class OrientationTrainConfig:
    # stem: a recogniser (checkpoint or shipped name) whose CNN stem starts the model;
    # resnet: an orientation model of the same shape (file or shipped name) to fine-tune.
    init_from: str | None = None
    freeze: int = 0  # stem: leading stem layers held fixed, BatchNorm statistics included
    # Imbalance: sampler (the four angles drawn equally often) or loss (drawn with
    # data.prior, cross-entropy weighted by its inverse); texlens/train/orientation.py.
    balance: str = "sampler"
    # Train on squares of this many pixels around random ink of the canvas (0: the whole
    # canvas). The model pools over ink cells, so it still reads whole canvases.
    crop: int = 64
    # Zoom each crop by up to this much either way (log-uniform; 0: none), so that the
    # model reads symbols a little off the size the canvas brought them to.
    scale: float = 0.0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    max_epochs: int = 30
    patience: int = 3  # early stopping: epochs without a lower validation loss
    max_time_min: float = 0.0  # 0 = no limit
    seed: int = 0
    threads: int = 1


@dataclass
class OrientationConfig:
    name: str = "orientation"
    model: OrientationModelConfig = field(default_factory=OrientationModelConfig)
    data: OrientationDataConfig = field(default_factory=OrientationDataConfig)
    train: OrientationTrainConfig = field(default_factory=OrientationTrainConfig)


_EXP_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _check(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        return _check(value, next(a for a in args if a is not type(None)), where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            pairs = enumerate(zip(value, args, strict=True))
            return tuple(_check(v, a, f"{where}[{i}]") for i, (v, a) in pairs)
        return [_check(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _EXP_FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 (PyYAML) reads 1e-3, without a dot, as a string
    if tp in (int, float, str, bool) and (not isinstance(value, tp) or
                                          (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _from_dict(cls: type, data: Any, where: str = "") -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key {'.'.join(filter(None, [where, unknown[0]]))!r} "
                          f"(known: {', '.join(sorted(names))})")
    kwargs = {k: _check(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _apply_override(data: dict, item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        if node.get(p) is None:  # absent, or an empty section ("train:" in the YAML)
            node[p] = {}
        node = node[p]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {p!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def with_overrides(cfg: Config, overrides: typing.Sequence[str]) -> Config:
    """A copy of ``cfg`` with ``key.sub=value`` overrides applied (and checked)."""
    data = config_to_dict(cfg)
    for item in overrides:
        _apply_override(data, item)
    return config_from_dict(data)


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Read a YAML config (or the defaults) and apply ``key.sub=value`` overrides."""
    return config_from_dict(_read_yaml(path, overrides))


def load_orientation_config(path: str | Path | None = None,
                            overrides: typing.Sequence[str] = ()) -> OrientationConfig:
    """The same for the orientation classifier's config (texlens/orientation.py)."""
    return _from_dict(OrientationConfig, _read_yaml(path, overrides))


def orientation_model_from_dict(data: dict) -> OrientationModelConfig:
    """The model section stored in an orientation checkpoint."""
    return _from_dict(OrientationModelConfig, data, "model")


def _read_yaml(path: str | Path | None, overrides: typing.Sequence[str]) -> dict:
    data: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read config: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    for item in overrides:
        _apply_override(data, item)
    return data


def config_from_dict(data: dict) -> Config:
    return _from_dict(Config, data)


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)

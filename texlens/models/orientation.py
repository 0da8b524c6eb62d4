"""Orientation classifiers: a square canvas holding a whole formula image -> which of
0, 90, 180 or 270 degrees it was turned by.

Two models, chosen by ``orientation.model.arch``:

``resnet``  a small ResNet written here: a strided stem, then one residual block per
            stage, each halving the resolution. About 0.3 M parameters.
``stem``    the recogniser's own CNN stem (:class:`texlens.models.cnn.ShallowCNN`) with a
            new head, so its leading stages can start from a shipped recogniser and stay
            frozen (transfer learning; ``orientation.train.init_from`` / ``freeze``).

Both are fully convolutional and average their last feature map over the cells that
hold ink (:func:`ink_mean_pool`), so the answer is a vote of local evidence: turned
glyphs, scripts on the wrong side of their base. That is what lets them train on small
crops around the ink (many cheap samples; ``orientation.train.crop``) and still read a
whole canvas: a cell's features depend on the strokes near it, not on how much blank
paper surrounds the formula. (A first version pooled mean and max over the whole canvas
and trained on whole canvases; on one CPU core it learned too slowly, see
texlens/train/orientation.py.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from texlens.config import ConfigError, ModelConfig, OrientationModelConfig
from texlens.models.cnn import ShallowCNN, conv_bn_relu
from texlens.models.satrn import SATRN

N_ANGLES = 4  # 0, 90, 180, 270 degrees
INK = 0.25  # input value (inputs are ink-bright in [0, 1]) above which a pixel is ink


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (a strided 1x1 conv when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def ink_mean_pool(features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) features of (B, 1, H, W) images -> (B, C): the mean over the cells whose
    window of the image holds ink (over all cells for an image without ink)."""
    h, w = features.shape[-2:]
    stride = (-(-image.shape[-2] // h), -(-image.shape[-1] // w))  # ceil: every pixel in a cell
    m = F.max_pool2d((image > INK).to(features.dtype), stride, stride, ceil_mode=True)
    m = m[..., :h, :w]
    n = m.sum((2, 3))
    inked = (features * m).sum((2, 3)) / n.clamp(min=1)
    return torch.where(n > 0, inked, features.mean((2, 3)))


class OrientationNet(nn.Module):
    """Ink-bright (B, 1, H, W) images in [0, 1] -> (B, 4) logits of 0/90/180/270 degrees."""

    def __init__(self, widths: list[int] | tuple[int, ...] = (24, 32, 64, 128),
                 dropout: float = 0.1):
        super().__init__()
        if len(widths) < 2 or min(widths) < 1:
            raise ConfigError(f"orientation model.widths: a stem width and at least one "
                              f"stage width, all positive; got {list(widths)}")
        self.stem = conv_bn_relu(1, widths[0], stride=2)  # S/2
        self.stages = nn.Sequential(*(BasicBlock(a, b, stride=2)  # S/4, S/8, ...
                                      for a, b in zip(widths[:-1], widths[1:], strict=True)))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(widths[-1], N_ANGLES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W), any size (a canvas or a crop of one) -> (B, 4)."""
        return self.head(ink_mean_pool(self.stages(self.stem(x)), x))


class StemOrientationNet(nn.Module):
    """The recogniser's CNN stem (same parameter names, ``cnn.body.*``) + a new head."""

    def __init__(self, width: int = 32, d_model: int = 160, dropout: float = 0.1):
        super().__init__()
        self.cnn = ShallowCNN(1, d_model, downsample=8, width=width)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, N_ANGLES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(ink_mean_pool(self.cnn(x), x))


class EncoderScorer(nn.Module):
    """A recogniser's encoder, frozen, and a small head: how upright does one quarter turn
    of an image look? (texlens/orientation.py combines it with the classifier.)

    The recogniser has read many writers' symbols upright at its own scale; a turned
    formula gives its encoder features it never saw in training. The head reads them pooled
    over positions (mean, max and standard deviation: the layout is gone, which symbols and
    how unusual they look stays) and scores each turn; the four turns of an image compete
    in a softmax. Only the head trains; ``mu``/``sd`` standardise its input with the
    training features' statistics. Inputs are the recogniser's preprocessing of one image
    (batch 1: nothing is padded, so pooling needs no mask).
    """

    def __init__(self, model_cfg: ModelConfig, hidden: int = 64, dropout: float = 0.2):
        super().__init__()
        self.recogniser = SATRN(model_cfg, vocab_size=1)
        self.recogniser.decoder = nn.Identity()  # not needed: the file keeps the encoder only
        self.recogniser.requires_grad_(False)
        d = 3 * model_cfg.d_model
        self.register_buffer("mu", torch.zeros(d))
        self.register_buffer("sd", torch.ones(d))
        self.head = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, 1))

    @torch.no_grad()
    def pooled(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 1, H, W) recogniser input -> (3 d,) pooled encoder features."""
        memory, _ = self.recogniser.encode(image, None)
        m = memory[0]
        return torch.cat([m.mean(0), m.amax(0), m.std(0, correction=0)])

    def score(self, pooled: torch.Tensor) -> torch.Tensor:
        """(..., 3 d) pooled features -> (...) upright scores (logits)."""
        return self.head((pooled - self.mu) / self.sd).squeeze(-1)


ARCHS = ("resnet", "stem")


def build_orientation_model(cfg: OrientationModelConfig) -> nn.Module:
    if cfg.arch == "resnet":
        return OrientationNet(cfg.widths, cfg.dropout)
    if cfg.arch == "stem":
        return StemOrientationNet(cfg.stem_width, cfg.stem_d_model, cfg.dropout)
    raise ConfigError(f"orientation model.arch must be one of {', '.join(ARCHS)}, "
                      f"not {cfg.arch!r}")

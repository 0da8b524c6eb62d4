"""Plain ViT encoder for formula images: patchify, add a learned 2-D position embedding,
then pre-norm transformer blocks with stochastic depth.

The position embedding is stored for a base patch grid and resized (bicubic) when an
input's grid differs, and when a checkpoint trained on another base grid is loaded, so
a model trained at one resolution can be fine-tuned at a larger one.

Two ways to fit the embedding to a grid (``pos_mode``):

* ``interpolate`` (default): stretch the whole base embedding onto the input's grid.
  Right for fixed-size inputs; but with padded batches a patch's embedding then
  depends on the widest image in its batch.
* ``crop``: take the top-left ``gh x gw`` of the base embedding (interpolating only
  along a dimension where the grid outgrows the base grid). A patch's embedding then
  depends only on its position, so padding + mask reproduces the unpadded output
  as long as the padded grid fits the base grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from texlens.models.attention import MultiHeadAttention

POS_MODES = ("interpolate", "crop")


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples with probability ``p``.

    Survivors are scaled by ``1 / (1 - p)`` so the expected output matches eval mode,
    where the module is the identity.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), not {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class Mlp(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class ViTBlock(nn.Module):
    """Pre-norm block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0,
                 drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.attn_drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = Mlp(d_model, d_ff, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.drop_path(self.attn_drop(self.attn(y, y, mask)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def resize_pos_embed(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Bicubically resize a (1, d, gh, gw) position embedding to ``grid``; no-op if equal."""
    if tuple(pos.shape[-2:]) == tuple(grid):
        return pos
    # Interpolate in float32: bicubic on bf16/fp16 is unsupported on some backends.
    out = F.interpolate(pos.float(), size=grid, mode="bicubic", align_corners=False)
    return out.to(pos.dtype)


class ViTEncoder(nn.Module):
    """images (B, C, H, W) -> memory (B, gh*gw, d) with gh, gw = ceil(H/patch), ceil(W/patch).

    ``base_grid`` is the patch grid the position embedding is stored for (e.g. (6, 32)
    = 48x256 images at patch 8). Stochastic depth rises linearly from 0 at the first
    block to ``drop_path`` at the last.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, n_layers: int, patch: int = 8,
                 in_channels: int = 1, base_grid: tuple[int, int] = (6, 32),
                 dropout: float = 0.1, drop_path: float = 0.1, pos_mode: str = "interpolate"):
        super().__init__()
        if pos_mode not in POS_MODES:
            raise ValueError(f"unknown pos_mode {pos_mode!r}; choose from {list(POS_MODES)}")
        self.patch = patch
        self.stride = patch
        self.base_grid = (int(base_grid[0]), int(base_grid[1]))
        self.pos_mode = pos_mode
        self.patch_embed = nn.Conv2d(in_channels, d_model, patch, stride=patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, d_model, *self.base_grid))
        self.pos_drop = nn.Dropout(dropout)
        # A single block gets rate 0: linspace(0, r, 1) == [0].
        rates = torch.linspace(0.0, drop_path, n_layers).tolist()
        self.blocks = nn.ModuleList(
            ViTBlock(d_model, n_heads, d_ff, dropout, rate) for rate in rates)
        self.norm = nn.LayerNorm(d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The usual ViT initialisation: small truncated-normal weights keep the residual
        # stream close to the patch embeddings early in training.
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """The (1, d, gh, gw) position embedding for a patch grid (see ``pos_mode``)."""
        if self.pos_mode == "interpolate":
            return resize_pos_embed(self.pos_embed, grid)
        gh, gw = grid
        bh, bw = self.base_grid
        pos = resize_pos_embed(self.pos_embed, (max(gh, bh), max(gw, bw)))
        return pos[:, :, :gh, :gw]

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # A checkpoint trained on another base grid: resize its embedding to ours so the
        # strict shape check passes (load_state_dict hands us its own copy of the dict).
        key = prefix + "pos_embed"
        pos = state_dict.get(key)
        if pos is not None and pos.ndim == 4 and pos.shape[:2] == self.pos_embed.shape[:2]:
            state_dict[key] = resize_pos_embed(pos, self.base_grid)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """images (B, C, H, W); mask (B, H, W) bool, True on real pixels, or None.

        Returns memory (B, N, d) and its key mask (B, 1, 1, N), True on patches that hold
        any real pixel, or None when there is no padding.
        """
        p = self.patch
        h, w = images.shape[-2:]
        pad_h, pad_w = -h % p, -w % p
        if mask is not None:
            # Blank the padding (zero = paper) so what the collate put there cannot leak
            # into a patch that is partly real.
            images = images.masked_fill(~mask[:, None], 0.0)
        if pad_h or pad_w:
            # Pad to whole patches rather than drop the last partial row/column of pixels.
            images = F.pad(images, (0, pad_w, 0, pad_h))
            if mask is not None:
                mask = F.pad(mask, (0, pad_w, 0, pad_h), value=False)

        x = self.patch_embed(images)
        gh, gw = x.shape[-2:]
        x = x + self.pos_embed_for((gh, gw)).to(x.dtype)
        x = self.pos_drop(x.flatten(2).transpose(1, 2))

        mem_mask = None
        if mask is not None:
            valid = F.max_pool2d(mask[:, None].float(), p, p) > 0
            # Padding only to whole patches leaves every patch partly real: no key mask.
            if not bool(valid.all()):
                mem_mask = valid.flatten(1)[:, None, None, :]
        for block in self.blocks:
            x = block(x, mem_mask)
        return self.norm(x), mem_mask

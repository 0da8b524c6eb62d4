"""Tests for texlens.models.vit. Tiny encoders (d=16, 2 layers) on 32x64 images."""

import pytest
import torch
import torch.nn.functional as F

from texlens.models.vit import DropPath, ViTEncoder, resize_pos_embed

torch.set_num_threads(1)

D, HEADS, FF, LAYERS, PATCH = 16, 2, 32, 2, 8


def make(**kw) -> ViTEncoder:
    args = dict(d_model=D, n_heads=HEADS, d_ff=FF, n_layers=LAYERS, patch=PATCH,
                base_grid=(4, 8))
    args.update(kw)
    return ViTEncoder(**args)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- shapes ------------------------------------------------------------------------------


def test_shapes_and_stride():
    m = make().eval()
    assert m.stride == PATCH
    mem, mem_mask = m(torch.rand(2, 1, 32, 64))
    assert mem.shape == (2, 4 * 8, D)
    assert mem_mask is None


def test_sizes_that_do_not_divide_the_patch_round_up():
    m = make().eval()
    mem, mem_mask = m(torch.rand(2, 1, 35, 70), torch.ones(2, 35, 70, dtype=torch.bool))
    assert mem.shape == (2, 5 * 9, D)
    # Every patch holds real pixels, so no key mask is needed.
    assert mem_mask is None


def test_new_input_size_runs_and_trains():
    m = make().train()
    mem, _ = m(torch.rand(2, 1, 48, 256))  # grid (6, 32) vs base (4, 8)
    assert mem.shape == (2, 6 * 32, D)
    mem.square().mean().backward()
    assert m.pos_embed.grad is not None and m.pos_embed.grad.abs().sum() > 0


# --- position embedding ------------------------------------------------------------------


def test_pos_embed_is_untouched_on_the_base_grid():
    m = make()
    assert m.pos_embed_for((4, 8)) is m.pos_embed


def test_pos_embed_is_resized_to_other_grids():
    m = make()
    pos = m.pos_embed_for((5, 12))
    assert pos.shape == (1, D, 5, 12)
    expected = F.interpolate(m.pos_embed, size=(5, 12), mode="bicubic", align_corners=False)
    torch.testing.assert_close(pos, expected)


def test_crop_mode_takes_the_top_left_of_the_base_embedding():
    m = make(pos_mode="crop")
    torch.testing.assert_close(m.pos_embed_for((4, 8)), m.pos_embed)
    torch.testing.assert_close(m.pos_embed_for((3, 5)), m.pos_embed[:, :, :3, :5])
    # Outgrowing the base width stretches along the width only, then crops the height.
    wide = m.pos_embed_for((2, 12))
    full = F.interpolate(m.pos_embed, size=(4, 12), mode="bicubic", align_corners=False)
    torch.testing.assert_close(wide, full[:, :, :2])


def test_unknown_pos_mode_raises():
    with pytest.raises(ValueError, match="pos_mode"):
        make(pos_mode="sine")


def test_resize_pos_embed_is_a_no_op_on_the_same_grid():
    pos = torch.randn(1, D, 4, 8)
    assert resize_pos_embed(pos, (4, 8)) is pos


def test_loading_a_checkpoint_from_a_smaller_base_grid():
    src = make(base_grid=(4, 16))
    dst = make(base_grid=(6, 32))
    state = src.state_dict()
    dst.load_state_dict(state)
    expected = F.interpolate(src.pos_embed.detach(), size=(6, 32), mode="bicubic",
                             align_corners=False)
    torch.testing.assert_close(dst.pos_embed.detach(), expected)
    assert dst.pos_embed.shape == (1, D, 6, 32)
    # Every other tensor is copied as is, and the caller's dict is left alone.
    for k, v in dst.state_dict().items():
        if k != "pos_embed":
            torch.testing.assert_close(v, state[k])
    assert state["pos_embed"].shape == (1, D, 4, 16)


def test_loading_works_inside_a_parent_module():
    # The prefix matters: the encoder is a submodule of the full model.
    src = torch.nn.Sequential(make(base_grid=(4, 16)))
    dst = torch.nn.Sequential(make(base_grid=(6, 32)))
    dst.load_state_dict(src.state_dict())
    assert dst[0].pos_embed.shape == (1, D, 6, 32)
    mem, _ = dst[0].eval()(torch.rand(1, 1, 48, 256))
    assert mem.shape == (1, 6 * 32, D)


def test_loading_the_same_grid_is_exact():
    src, dst = make(), make()
    dst.load_state_dict(src.state_dict())
    assert dst.pos_embed.equal(src.pos_embed)


# --- DropPath ----------------------------------------------------------------------------


def test_drop_path_is_identity_in_eval():
    dp = DropPath(0.5).eval()
    x = torch.randn(8, 5, 3)
    assert dp(x) is x


def test_drop_path_drops_whole_samples_and_keeps_the_expectation():
    p = 0.3
    dp = DropPath(p).train()
    x = torch.ones(20000, 4, 3)
    y = dp(x)
    per_sample = y.flatten(1)
    # Each sample is either all zero or all 1 / keep_prob.
    zero = (per_sample == 0).all(1)
    scaled = torch.isclose(per_sample, torch.full_like(per_sample, 1 / (1 - p))).all(1)
    assert bool((zero | scaled).all())
    assert abs(zero.float().mean().item() - p) < 0.02
    assert abs(y.mean().item() - 1.0) < 0.03


def test_drop_path_rates_rise_linearly():
    m = make(n_layers=5, drop_path=0.2)
    rates = [b.drop_path.p for b in m.blocks]
    assert rates[0] == 0.0
    assert rates[-1] == pytest.approx(0.2)
    steps = [b - a for a, b in zip(rates, rates[1:], strict=False)]
    assert steps == pytest.approx([0.05] * 4)
    assert [b.drop_path.p for b in make(n_layers=1).blocks] == [0.0]


def test_drop_path_rejects_bad_rates():
    with pytest.raises(ValueError):
        DropPath(1.0)


# --- padding mask ------------------------------------------------------------------------


def _pad(images: torch.Tensor, h: int, w: int, fill: torch.Tensor | None = None):
    """Place images top-left on an (h, w) canvas; return canvas and its pixel mask."""
    b, c, ih, iw = images.shape
    canvas = torch.zeros(b, c, h, w) if fill is None else fill.clone()
    canvas[:, :, :ih, :iw] = images
    mask = torch.zeros(b, h, w, dtype=torch.bool)
    mask[:, :ih, :iw] = True
    return canvas, mask


def _valid(mem: torch.Tensor, grid: tuple[int, int], valid: tuple[int, int]) -> torch.Tensor:
    b, _, d = mem.shape
    return mem.view(b, *grid, d)[:, :valid[0], :valid[1]]


def test_mem_mask_marks_patches_with_real_pixels():
    m = make().eval()
    images, mask = _pad(torch.rand(1, 1, 20, 44), 32, 64)
    _, mem_mask = m(images, mask)
    assert mem_mask.shape == (1, 1, 1, 4 * 8)
    expected = torch.zeros(4, 8, dtype=torch.bool)
    expected[:3, :6] = True  # ceil(20 / 8) rows, ceil(44 / 8) columns
    assert mem_mask.view(4, 8).equal(expected)


@pytest.mark.parametrize("pos_mode", ["interpolate", "crop"])
def test_padding_content_does_not_matter(pos_mode):
    m = make(pos_mode=pos_mode).eval()
    x = torch.rand(2, 1, 28, 44)  # partial patches at the border too
    zeros, mask = _pad(x, 32, 96)
    noisy, _ = _pad(x, 32, 96, fill=torch.rand(2, 1, 32, 96))
    with torch.no_grad():
        a, ma = m(zeros, mask)
        b, mb = m(noisy, mask)
    assert ma.equal(mb)
    torch.testing.assert_close(_valid(a, (4, 12), (4, 6)), _valid(b, (4, 12), (4, 6)),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", [(32, 64), (27, 60)])
def test_crop_mode_padded_batch_matches_unpadded_image(size):
    # With crop, a patch's position embedding depends only on where it is, and masked
    # keys contribute nothing, so extra blank patches change no real patch's output.
    m = make(pos_mode="crop", base_grid=(6, 16)).eval()
    x = torch.rand(1, 1, *size)
    padded, mask = _pad(x, 48, 128)
    with torch.no_grad():
        alone, alone_mask = m(x)
        batch, _ = m(padded, mask)
    gh, gw = -(-size[0] // PATCH), -(-size[1] // PATCH)
    assert alone_mask is None
    torch.testing.assert_close(_valid(batch, (6, 16), (gh, gw)), alone.view(1, gh, gw, D),
                               atol=1e-5, rtol=0)


def test_interpolate_mode_padding_changes_the_position_embedding():
    # Documented limitation: the embedding is stretched to the padded grid, so the same
    # image gives different memory alone and in a wider batch. Use crop for that case.
    m = make(pos_mode="interpolate", base_grid=(4, 8)).eval()
    x = torch.rand(1, 1, 32, 64)
    padded, mask = _pad(x, 32, 96)
    with torch.no_grad():
        alone, _ = m(x)
        batch, _ = m(padded, mask)
    assert not torch.allclose(_valid(batch, (4, 12), (4, 8)), alone.view(1, 4, 8, D),
                              atol=1e-3)

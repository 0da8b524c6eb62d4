"""SATRN model, masks and padding, cached decoding, loss, schedules, model checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import randomize_norms, tiny_model_config

from texlens.checkpoint import CheckpointError, load_model, read_checkpoint, save_model
from texlens.config import Config, TrainConfig
from texlens.decoding import greedy_decode
from texlens.models.decoder import TransformerDecoder
from texlens.models.encoder import TransformerEncoder
from texlens.models.posenc import Sine2D, sinusoid
from texlens.models.satrn import SATRN, build_model
from texlens.recognizer import Recognizer
from texlens.tokens import Vocab
from texlens.train.module import sequence_loss
from texlens.train.schedules import build_scheduler, warmup_cosine

V = 30  # vocabulary size for random models
EXAMPLES = Path(__file__).parents[1] / "examples"


def tiny_model(seed: int = 0, **overrides) -> SATRN:
    torch.manual_seed(seed)
    return build_model(tiny_model_config(**overrides), V).eval()


def ragged_batch(seed: int, widths=(96, 40, 64), height: int = 32):
    """Random ink images of different widths, zero-padded to the widest, with their mask."""
    g = torch.Generator().manual_seed(seed)
    w = max(widths)
    images = torch.zeros(len(widths), 1, height, w)
    mask = torch.zeros(len(widths), height, w, dtype=torch.bool)
    for i, wi in enumerate(widths):
        images[i, :, :, :wi] = torch.rand(1, height, wi, generator=g)
        mask[i, :, :wi] = True
    return images, mask


# -- shapes and construction -------------------------------------------------------

@pytest.mark.parametrize(("downsample", "ffn"), [(8, "linear"), (4, "conv")])
def test_shapes(downsample, ffn):
    model = tiny_model(downsample=downsample, ffn=ffn)
    images, mask = ragged_batch(0)
    memory, mem_mask = model.encode(images, mask)
    h, w = 32 // downsample, 96 // downsample
    assert memory.shape == (3, h * w, 32)
    assert mem_mask.shape == (3, 1, 1, h * w) and mem_mask.dtype == torch.bool
    # Sample 1 is 40 pixels wide: its first 40/s columns are real, the rest padding.
    cols = mem_mask[1, 0, 0].view(h, w)
    assert cols[:, : math.ceil(40 / downsample)].all()
    assert not cols[:, math.ceil(40 / downsample):].any()
    assert mem_mask[0].all()
    tgt = torch.randint(0, V, (3, 7))
    assert model(images, mask, tgt).shape == (3, 7, V)
    # A full mask (no padding) needs no key mask at all.
    assert model.encode(images, torch.ones_like(mask))[1] is None
    assert model.encode(images, None)[1] is None


def test_bad_model_configs_raise():
    with pytest.raises(ValueError, match="arch"):
        build_model(tiny_model_config(arch="crnn"), V)
    with pytest.raises(ValueError, match="pe"):
        build_model(tiny_model_config(pe="nope"), V)
    with pytest.raises(ValueError, match="ffn"):
        build_model(tiny_model_config(ffn="mlp"), V)
    with pytest.raises(ValueError, match="exceeds"):
        build_model(tiny_model_config(n_heads=64), V)
    with pytest.raises(ValueError, match="downsample"):
        build_model(tiny_model_config(downsample=16), V)


def test_positional_encodings():
    table = sinusoid(10, 8)
    assert table.shape == (10, 8)
    assert torch.allclose(table[0, 0::2], torch.zeros(4)) and torch.allclose(
        table[0, 1::2], torch.ones(4))
    # A position's code does not depend on the table length (needed for ragged batches).
    assert torch.equal(sinusoid(30, 8)[:10], table)
    pe = Sine2D(16)(torch.zeros(2, 16, 3, 5))
    assert pe.shape == (2, 16, 3, 5)
    assert torch.equal(pe[0, :8, :, 0], pe[0, :8, :, 4])  # row half constant along width
    assert torch.equal(pe[0, 8:, 0, :], pe[0, 8:, 2, :])  # column half constant along height
    with pytest.raises(ValueError):
        Sine2D(18)


# -- masks ------------------------------------------------------------------------

@pytest.mark.parametrize("ffn", ["linear"])
def test_encoder_ignores_masked_positions(ffn):
    torch.manual_seed(0)
    enc = TransformerEncoder(32, 2, 64, 2, 0.0, ffn).eval()
    h, w = 2, 6
    x = torch.randn(1, h * w, 32)
    valid = torch.zeros(h, w, dtype=torch.bool)
    valid[:, :4] = True
    mask = valid.flatten()[None, None, None]
    y = x.clone()
    y[:, ~valid.flatten()] = torch.randn(1, int((~valid).sum()), 32) * 5
    out_x, out_y = enc(x, mask, (h, w)), enc(y, mask, (h, w))
    sel = valid.flatten()
    assert torch.allclose(out_x[:, sel], out_y[:, sel], atol=1e-5)
    # Without the mask the padding content does reach the real positions.
    assert not torch.allclose(enc(x, None, (h, w))[:, sel], enc(y, None, (h, w))[:, sel],
                              atol=1e-3)


def test_decoder_ignores_masked_memory():
    torch.manual_seed(0)
    dec = TransformerDecoder(V, 32, 2, 64, 2, 0.0, 32).eval()
    memory = torch.randn(2, 10, 32)
    mem_mask = torch.ones(2, 1, 1, 10, dtype=torch.bool)
    mem_mask[0, ..., 6:] = False
    other = memory.clone()
    other[0, 6:] = torch.randn(4, 32) * 5
    tokens = torch.randint(0, V, (2, 5))
    a, b = dec(tokens, memory, mem_mask), dec(tokens, other, mem_mask)
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(dec(tokens, memory, None)[0], dec(tokens, other, None)[0],
                              atol=1e-3)


def test_decoder_is_causal():
    torch.manual_seed(0)
    dec = TransformerDecoder(V, 32, 2, 64, 1, 0.0, 32).eval()
    memory = torch.randn(1, 6, 32)
    t = torch.randint(0, V, (1, 6))
    u = t.clone()
    u[0, 4:] = (u[0, 4:] + 1) % V
    a, b = dec(t, memory, None), dec(u, memory, None)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6)
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-3)
    with pytest.raises(ValueError, match="max_len"):
        dec(torch.zeros(1, 33, dtype=torch.long), memory, None)


def padded_pair(seed: int, hw=(40, 52), padded_hw=(64, 112)):
    """One random image alone, and the same image top-left in a larger blank canvas with
    its mask (as ``collate`` pads): padded in height and width, neither a stride multiple."""
    image, _ = ragged_batch(seed, widths=(hw[1],), height=hw[0])
    padded = torch.zeros(1, 1, *padded_hw)
    padded[..., :hw[0], :hw[1]] = image
    mask = torch.zeros(1, *padded_hw, dtype=torch.bool)
    mask[:, :hw[0], :hw[1]] = True
    return image, padded, mask


ENCODERS = [dict(backbone=b, downsample=s, ffn=f)
            for b, s in [("shallow", 8), ("shallow", 4), ("densenet", 8), ("densenet", 16),
                         ("resnet18", 8), ("resnet34", 16)]
            for f in ("linear", "conv")]
ENCODERS += [dict(ffn="conv", channel_attention=True, pe="adaptive2d"),
             dict(backbone="resnet18", downsample=8, ffn="conv", pe_mode="untied"),
             dict(pe="learned"), dict(encoder="vit", patch=8)]


@pytest.mark.parametrize("overrides", ENCODERS, ids=lambda o: "-".join(map(str, o.values())))
def test_encode_ignores_padding(overrides):
    # The memory of an image padded in a batch (with its mask) equals, at its real
    # positions, the memory of the image alone: every backbone, ffn, pooling variant.
    model = tiny_model(seed=1, enc_layers=2, **overrides)
    randomize_norms(model)
    image, padded, mask = padded_pair(3)
    alone, none = model.encode(image, None)
    assert none is None
    in_pad, mem_mask = model.encode(padded, mask)
    s = model.vit.stride if model.vit is not None else model.cnn.stride
    sh, sw = (s, s) if isinstance(s, int) else s
    h, w = math.ceil(64 / sh), math.ceil(112 / sw)
    ha, wa = math.ceil(40 / sh), math.ceil(52 / sw)
    real = in_pad.view(1, h, w, -1)[:, :ha, :wa].reshape(1, ha * wa, -1)
    assert torch.allclose(alone, real, atol=1e-5), (alone - real).abs().max()
    assert mem_mask.view(h, w)[:ha, :wa].all() and mem_mask.sum() == ha * wa
    # The decoder then reads the same logits from either memory.
    tgt = torch.randint(4, V, (1, 6))
    assert torch.allclose(model(image, None, tgt), model(padded, mask, tgt), atol=1e-4)


def test_aster_encode_ignores_height_padding():
    # ASTER pools the height away; rows of padding below a short image must not count.
    model = tiny_model(seed=2, arch="aster", downsample=4, enc_layers=1)
    randomize_norms(model)
    image, padded, mask = padded_pair(4)
    alone, _ = model.encode(image, None)
    in_pad, mem_mask = model.encode(padded, mask)
    n = math.ceil(52 / 4)
    assert torch.allclose(alone[0], in_pad[0, :n], atol=1e-5)
    assert mem_mask[0, 0, 0].sum() == n


def test_unmasked_path_is_unchanged_by_an_all_true_mask():
    # A single image (mask None) and a batch without padding take the same path.
    model = tiny_model(seed=3, backbone="densenet", ffn="conv")
    randomize_norms(model)
    images, mask = ragged_batch(2, widths=(64, 64))
    a, _ = model.encode(images, None)
    b, m = model.encode(images, mask)
    assert m is None and torch.equal(a, b)


def test_masking_matters_for_a_blank_sensitive_model():
    # Guard for the tests above: without the mask the padding does change the memory.
    model = tiny_model(seed=1, ffn="conv")
    randomize_norms(model)
    image, padded, _ = padded_pair(3)
    alone, _ = model.encode(image, None)
    unmasked = model.encode(padded, None)[0].view(1, 8, 14, -1)[:, :5, :7].reshape(1, 35, -1)
    assert not torch.allclose(alone, unmasked, atol=1e-3)


@pytest.mark.parametrize(("name", "folder", "beam"), [
    ("printed-small", "printed", 1), ("handwritten-small", "handwritten", 1),
    ("handwritten-small", "handwritten", 3)])
def test_batched_predict_equals_one_image_at_a_time(name, folder, beam):
    rec = Recognizer.load(name)
    paths = sorted((EXAMPLES / folder / "images").glob("*.png"))
    arrays = [rec.prepare(p) for p in paths]
    assert len({a.shape for a in arrays}) > len(arrays) // 2  # mostly different sizes: padding
    together = rec.predict(paths, batch_size=len(paths), beam=beam)
    for path, batched in zip(paths, together, strict=True):
        alone = rec.predict([path], beam=beam)[0]
        assert batched.tokens == alone.tokens, path.name
        assert batched.confidence == pytest.approx(alone.confidence, abs=1e-4), path.name
        if beam > 1:
            assert [t for t, _ in batched.nbest] == [t for t, _ in alone.nbest], path.name


# -- decoding ---------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("ffn", ["linear", "conv"])
def test_cached_greedy_equals_uncached(seed, ffn):
    model = tiny_model(seed=seed, ffn=ffn, dec_layers=2)
    images, mask = ragged_batch(seed, widths=(96, 40, 64, 24))
    cached, s1 = greedy_decode(model, images, mask, max_len=25, use_cache=True)
    plain, s2 = greedy_decode(model, images, mask, max_len=25, use_cache=False)
    assert torch.equal(cached, plain)
    assert torch.allclose(s1, s2, atol=1e-5)
    assert cached.shape[0] == 4 and cached.shape[1] <= 25


def test_step_logits_match_teacher_forced_logits():
    model = tiny_model(seed=5, dec_layers=2)
    images, mask = ragged_batch(5)
    memory, mem_mask = model.encode(images, mask)
    tokens = torch.randint(4, V, (3, 9))
    full = model.decoder(tokens, memory, mem_mask)
    cache = model.start(memory, mem_mask)
    for t in range(tokens.shape[1]):
        step = model.step(tokens[:, t:t + 1], cache)
        assert torch.allclose(step, full[:, t], atol=1e-5), t
    assert cache.length == 9
    # select() keeps the chosen rows of the cache (beam search reorders hypotheses).
    sub = cache.select(torch.tensor([2, 0]))
    assert sub.length == 9 and sub.mem_mask.shape[0] == 2
    assert torch.equal(sub.self_kv[0][0], cache.self_kv[0][0][[2, 0]])


def test_greedy_stops_at_eos_and_pads_after():
    model = tiny_model(seed=0)
    images, mask = ragged_batch(0)
    with torch.no_grad():
        model.decoder.head.bias.fill_(0.0)
        model.decoder.head.bias[Vocab.eos_id] = 1e4
    ids, score = greedy_decode(model, images, mask, max_len=20)
    assert ids.tolist() == [[Vocab.eos_id]] * 3
    assert torch.allclose(score, torch.zeros(3), atol=1e-4)


def test_greedy_respects_max_len_and_scores_are_log_probs():
    model = tiny_model(seed=0)
    images, mask = ragged_batch(0)
    with torch.no_grad():
        model.decoder.head.bias.fill_(0.0)
        model.decoder.head.bias[7] = 50.0
    ids, score = greedy_decode(model, images, mask, max_len=12)
    assert ids.shape == (3, 12) and (ids == 7).all()
    assert (score <= 0).all() and (score > -1e-3).all()
    # Never longer than the decoder's position table allows (max_len 64 incl. <sos>).
    ids, _ = greedy_decode(model, images, mask, max_len=500)
    assert ids.shape[1] == 63


def counting_logits(n: torch.Tensor, t: int) -> torch.Tensor:
    """Step ``t`` of rows that emit token 5 ``n`` times, then <eos>; the chosen token and
    token 6 share the probability, so every chosen token has log-probability -log 2."""
    logits = torch.full((n.shape[0], V), -1e9)
    logits[torch.arange(n.shape[0]), torch.where(t < n, 5, Vocab.eos_id)] = 0.0
    logits[:, 6] = 0.0
    return logits


class CountingDecoder(torch.nn.Module):
    max_len = 100

    def forward(self, seq, memory, mem_mask):
        return counting_logits(memory, seq.shape[1] - 1)[:, None].expand(-1, seq.shape[1], -1)


class CountingModel(torch.nn.Module):
    """Stand-in model for greedy_decode; row i's count is its image's first pixel."""

    def __init__(self):
        super().__init__()
        self.decoder = CountingDecoder()

    def encode(self, images, mask):
        return images[:, 0, 0, 0].long(), None

    def start(self, memory, mem_mask):
        return {"n": memory, "t": 0}

    def step(self, tokens, cache):
        cache["t"] += 1
        return counting_logits(cache["n"], cache["t"] - 1)


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_pads_finished_rows_and_averages_real_tokens(use_cache):
    lengths = [3, 0, 6, 1]
    images = torch.tensor(lengths, dtype=torch.float32)[:, None, None, None].expand(-1, 1, 4, 4)
    ids, score = greedy_decode(CountingModel(), images, None, max_len=20, use_cache=use_cache)
    assert ids.shape == (4, 7)  # stops once every row has its <eos>
    for row, n in enumerate(lengths):
        assert ids[row].tolist() == [5] * n + [Vocab.eos_id] + [Vocab.pad_id] * (6 - n)
    # Mean over each row's own tokens (its <eos> included, the padding excluded).
    assert torch.allclose(score, torch.full((4,), -math.log(2)), atol=1e-6)
    ids, score = greedy_decode(CountingModel(), images, None, max_len=2, use_cache=use_cache)
    assert ids.tolist() == [[5, 5], [Vocab.eos_id, Vocab.pad_id], [5, 5], [5, Vocab.eos_id]]


# -- training pieces --------------------------------------------------------------------

def test_a_few_steps_overfit_a_tiny_batch():
    model = tiny_model(seed=0).train()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 1, 32, 64, generator=g)
    ids = torch.randint(4, V, (4, 10), generator=g)
    ids[:, 0] = Vocab.sos_id
    ids[:, -1] = Vocab.eos_id
    ids[2, 5], ids[2, 6:] = Vocab.eos_id, Vocab.pad_id
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = sequence_loss(model(images, None, ids[:, :-1]), ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(V), rel=0.3)  # chance level at the start
    assert losses[-1] < 0.5 * losses[0]


def test_sequence_loss_ignore_pad():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, V)
    target = torch.tensor([[5, 6, 7, Vocab.eos_id, Vocab.pad_id],
                           [5, Vocab.eos_id, Vocab.pad_id, Vocab.pad_id, Vocab.pad_id]])
    changed = logits.clone()
    changed[target == Vocab.pad_id] = torch.randn(int((target == 0).sum()), V) * 10
    assert torch.equal(sequence_loss(logits, target, True), sequence_loss(changed, target, True))
    assert not torch.allclose(sequence_loss(logits, target, False),
                              sequence_loss(changed, target, False))
    # ignore_pad=True is the mean over the real positions only.
    real = target != Vocab.pad_id
    expected = torch.nn.functional.cross_entropy(logits[real], target[real])
    assert torch.allclose(sequence_loss(logits, target, True), expected)
    smoothed = sequence_loss(logits, target, True, label_smoothing=0.1)
    assert not torch.allclose(smoothed, expected)


def test_warmup_cosine_shape():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.505, abs=1e-3)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.01)
    assert warmup_cosine(500, 100, 10) == pytest.approx(0.01)


@pytest.mark.parametrize("total", [1, 3, 50])
@pytest.mark.parametrize("kind", ["onecycle", "cosine"])
def test_schedulers_run_for_their_total_steps(kind, total):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = build_scheduler(opt, TrainConfig(scheduler=kind, lr=1e-3, warmup=0.1), total)
    lrs = []
    for _ in range(total):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert max(lrs) <= 1e-3 + 1e-12
    if total >= 50:
        assert lrs[-1] < 0.1 * max(lrs)


def test_cosine_follows_the_clock_when_time_runs_out_first():
    """A run stopped by train.max_time_min ends annealed: with half the time spent after
    a tenth of the steps, the rate is the one of the schedule's midpoint."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    spent = [0.0]
    sched = build_scheduler(opt, TrainConfig(scheduler="cosine", lr=1e-3, warmup=0.0), 1000,
                            time_spent=lambda: spent[0])
    for _ in range(100):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * warmup_cosine(100, 1000, 0))
    spent[0] = 0.5
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * warmup_cosine(500, 1000, 0))
    spent[0] = 1.0
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)


def test_scheduler_none_and_unknown():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert build_scheduler(opt, TrainConfig(scheduler="none"), 10) is None
    with pytest.raises(ValueError, match="scheduler"):
        build_scheduler(opt, TrainConfig(scheduler="bogus"), 10)


# -- model checkpoints ---------------------------------------------------------------

@pytest.mark.parametrize("half", [False, True])
def test_save_and_load_model(tmp_path, half):
    cfg = Config(model=tiny_model_config())
    vocab = Vocab([f"t{i}" for i in range(V - 4)])
    model = tiny_model(seed=4)
    save_model(tmp_path / "m.pt", model, cfg, vocab, extra={"note": 1}, half=half)
    loaded, cfg2, vocab2 = load_model(tmp_path / "m.pt")
    assert cfg2 == cfg and vocab2 == vocab and not loaded.training
    _, _, state, raw = read_checkpoint(tmp_path / "m.pt")
    assert raw["note"] == 1
    dtype = state["decoder.head.weight"].dtype
    assert dtype == (torch.float16 if half else torch.float32)
    images, mask = ragged_batch(1)
    a, b = model(images, mask, torch.ones(3, 4, dtype=torch.long)), loaded(
        images, mask, torch.ones(3, 4, dtype=torch.long))
    if half:
        assert torch.allclose(a, b, atol=0.05)
    else:
        assert torch.equal(a, b)


def test_weights_that_do_not_fit_the_config(tmp_path):
    cfg = Config(model=tiny_model_config())
    vocab = Vocab([f"t{i}" for i in range(V - 4)])
    save_model(tmp_path / "m.pt", tiny_model(), cfg, vocab)
    raw = torch.load(tmp_path / "m.pt", weights_only=False)
    raw["texlens"]["config"]["model"]["d_model"] = 64
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "bad.pt")
    raw["texlens"]["config"]["model"]["d_model"] = "big"
    torch.save(raw, tmp_path / "bad2.pt")
    with pytest.raises(CheckpointError, match="model.d_model"):
        load_model(tmp_path / "bad2.pt")

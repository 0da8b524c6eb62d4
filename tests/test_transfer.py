"""Transfer learning: init_from carries weights token by token, freeze holds parts fixed."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import tiny_model_config

from texlens.checkpoint import CheckpointError, load_model, save_model
from texlens.config import ConfigError
from texlens.models.satrn import build_model
from texlens.tokens import Vocab
from texlens.train.run import train
from texlens.train.transfer import extend_vocab, frozen_parameters, load_pretrained


def test_extend_vocab_keeps_ids_and_appends_new_tokens():
    base = Vocab(["x", "y", "\\frac"])
    ext = extend_vocab(base, [["y", "z"], ["\\alpha", "x"]])
    assert ext.itos[: len(base)] == base.itos
    assert ext.itos[len(base):] == ["\\alpha", "z"]
    assert extend_vocab(base, [["x"]]) is base


def test_load_pretrained_maps_token_rows_by_name():
    torch.manual_seed(0)
    src_vocab = Vocab(["a", "b", "c"])
    dst_vocab = Vocab(["c", "d", "a"])  # different order, one token dropped, one new
    src = build_model(tiny_model_config(), len(src_vocab))
    dst = build_model(tiny_model_config(), len(dst_vocab))
    fresh_d = dst.decoder.embed.weight[dst_vocab.stoi["d"]].clone()
    carried = load_pretrained(dst, src.state_dict(), src_vocab, dst_vocab)
    assert carried == 4 + 2  # the specials, a and c
    for tok in ("a", "c", "<eos>"):
        i, j = dst_vocab.stoi[tok], src_vocab.stoi[tok]
        assert torch.equal(dst.decoder.embed.weight[i], src.decoder.embed.weight[j])
        assert torch.equal(dst.decoder.head.weight[i], src.decoder.head.weight[j])
        assert torch.equal(dst.decoder.head.bias[i], src.decoder.head.bias[j])
    assert torch.equal(dst.decoder.embed.weight[dst_vocab.stoi["d"]], fresh_d)
    for (name, p), q in zip(dst.encoder.named_parameters(), src.encoder.parameters(),
                            strict=True):
        assert torch.equal(p, q), name


def test_load_pretrained_rejects_another_architecture():
    vocab = Vocab(["a"])
    src = build_model(tiny_model_config(d_model=48), len(vocab))
    dst = build_model(tiny_model_config(), len(vocab))
    with pytest.raises(CheckpointError, match="is model"):
        load_pretrained(dst, src.state_dict(), vocab, vocab)


def test_conv_ffn_starts_from_a_linear_one():
    torch.manual_seed(0)
    vocab = Vocab(["a", "b"])
    src = build_model(tiny_model_config(dropout=0.0), len(vocab)).eval()
    dst = build_model(tiny_model_config(dropout=0.0, ffn="conv"), len(vocab)).eval()
    fresh = build_model(tiny_model_config(dropout=0.0, ffn="conv"), len(vocab)).eval()
    load_pretrained(dst, src.state_dict(), vocab, vocab)
    lin, conv = src.encoder.layers[0].ffn.net[0], dst.encoder.layers[0].ffn
    assert torch.equal(conv.expand.weight[..., 0, 0], lin.weight)
    centre = torch.zeros(3, 3)
    centre[1, 1] = 1.0
    assert torch.equal(conv.depthwise.weight[:, 0], centre.expand_as(conv.depthwise.weight[:, 0]))
    images = torch.rand(2, 1, 32, 96)
    with torch.no_grad():
        ref = src.encode(images)[0]
        gap = (dst.encode(images)[0] - ref).abs().mean()
        fresh_gap = (fresh.encode(images)[0] - ref).abs().mean()
    assert gap < 0.2 * fresh_gap  # it computes nearly what the linear encoder did


def test_bad_freeze_prefix_names_the_parts():
    model = build_model(tiny_model_config(), 8)
    assert len(frozen_parameters(model, ["encoder"])) == len(list(model.encoder.parameters()))
    with pytest.raises(ConfigError, match="'encodr'.*decoder, encoder"):
        frozen_parameters(model, ["encodr"])


def _fine_tune(tiny_cfg, tmp_path, data: str, init: str, **overrides):
    cfg = dataclasses.replace(
        tiny_cfg, data=dataclasses.replace(tiny_cfg.data, train=[data], val=[data]),
        train=dataclasses.replace(tiny_cfg.train, init_from=init, max_steps=4, lr=5e-3,
                                  out_dir=str(tmp_path / "ft"), **overrides))
    return load_model(train(cfg))[0]


@pytest.mark.parametrize("freeze_steps", [0, 2])
def test_fine_tune_with_frozen_encoder(tiny_cfg, tmp_path, synth_master, freeze_steps):
    from texlens.train.run import build_vocab

    cfg = dataclasses.replace(tiny_cfg, data=dataclasses.replace(
        tiny_cfg.data, train=[str(synth_master)]))
    vocab = build_vocab(cfg)
    torch.manual_seed(1)
    base = build_model(cfg.model, len(vocab))
    init = tmp_path / "base.pt"
    save_model(init, base, cfg, vocab)
    tuned = _fine_tune(tiny_cfg, tmp_path, str(synth_master), str(init),
                       freeze=["encoder"], freeze_steps=freeze_steps)
    same_encoder = all(torch.equal(p, q) for p, q in
                       zip(tuned.encoder.parameters(), base.encoder.parameters(), strict=True))
    assert same_encoder == (freeze_steps == 0)
    assert not torch.equal(tuned.decoder.head.weight, base.decoder.head.weight)


def test_a_trained_model_records_its_formulas_and_its_ancestors(tiny_cfg, tmp_path,
                                                                 synth_master):
    from texlens.checkpoint import TRAIN_FORMULAS, read_checkpoint
    from texlens.data.datasets import read_layout
    from texlens.data.splits import pack_formulas, seen_formulas
    from texlens.train.run import build_vocab

    cfg = dataclasses.replace(tiny_cfg, data=dataclasses.replace(
        tiny_cfg.data, train=[str(synth_master)]))
    vocab = build_vocab(cfg)
    base = build_model(cfg.model, len(vocab))
    unknown, known = tmp_path / "unknown.pt", tmp_path / "known.pt"
    save_model(unknown, base, cfg, vocab)
    save_model(known, base, cfg, vocab, extra={TRAIN_FORMULAS: pack_formulas(["q + q"])})
    captions = [" ".join(s.tokens) for s in read_layout(synth_master)[0]]

    _fine_tune(tiny_cfg, tmp_path, str(synth_master), str(known))
    formulas = read_checkpoint(tmp_path / "ft" / "model.pt")[3][TRAIN_FORMULAS]
    assert seen_formulas(formulas, ["q  +  q", *captions]).all()
    assert not seen_formulas(formulas, ["q + q + q"]).any()
    # The run's checkpoints carry the record too: `evaluate --held-out` works mid-run.
    assert read_checkpoint(tmp_path / "ft" / "checkpoints" / "last.ckpt")[3][TRAIN_FORMULAS] \
        == formulas
    # An ancestor that did not record its formulas leaves them unknown, not too few.
    _fine_tune(tiny_cfg, tmp_path, str(synth_master), str(unknown))
    assert read_checkpoint(tmp_path / "ft" / "model.pt")[3][TRAIN_FORMULAS] is None
    assert TRAIN_FORMULAS not in read_checkpoint(tmp_path / "ft" / "checkpoints" / "last.ckpt")[3]

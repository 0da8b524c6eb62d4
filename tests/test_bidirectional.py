"""Bidirectional training and right-to-left rescoring (BTTR, model.bidirectional).

One tiny model is trained for a few hundred steps on four fixed random images (about
ten seconds on one core) and shared by the module; the rest are constructed cases.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import pytest
import torch
from conftest import tiny_model_config
from typer.testing import CliRunner

from texlens.checkpoint import load_model, save_model
from texlens.cli import app
from texlens.config import Config, DataConfig, TrainConfig
from texlens.decoding import Hypothesis, beam_search, combine_r2l, greedy_decode
from texlens.models.decoder import L2R, R2L, reverse_sequences
from texlens.models.satrn import build_model
from texlens.recognizer import Recognizer
from texlens.tokens import Vocab
from texlens.train.module import Recognizer as Module
from texlens.train.module import sequence_loss
from texlens.train.transfer import load_pretrained

EXAMPLES = Path(__file__).parents[1] / "examples"
VOCAB = Vocab([f"t{i}" for i in range(8)])  # ids 4..11
# Not palindromes, different lengths: the last is padded in the batch.
TRUTHS = [[4, 5, 6, 7, 8, 9], [10, 11, 4, 4, 5, 6], [7, 6, 9, 11, 10, 8], [5, 10, 8]]


def config(bidirectional: bool = True) -> Config:
    return Config(model=tiny_model_config(bidirectional=bidirectional),
                  data=DataConfig(height=32, max_tokens=20),
                  train=TrainConfig(lr=3e-3))


def batch() -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.full((len(TRUTHS), max(map(len, TRUTHS)) + 2), Vocab.pad_id)
    for i, t in enumerate(TRUTHS):
        ids[i, :len(t) + 2] = torch.tensor([Vocab.sos_id, *t, Vocab.eos_id])
    return {"images": torch.rand(len(TRUTHS), 1, 32, 64, generator=g),
            "mask": torch.ones(len(TRUTHS), 32, 64, dtype=torch.bool), "ids": ids}


def training_step(module: Module, b: dict) -> torch.Tensor:
    with warnings.catch_warnings():  # self.log without a Trainer: a warning, nothing logged
        warnings.simplefilter("ignore")
        return module.training_step(b, 0)


@pytest.fixture(scope="module")
def trained() -> Module:
    torch.manual_seed(0)
    module = Module(config(), VOCAB)
    opt = torch.optim.AdamW(module.parameters(), lr=3e-3)
    b = batch()
    for _ in range(300):
        loss = training_step(module, b)
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    return module


def logprob(model: torch.nn.Module, b: dict, seqs: torch.Tensor, direction: int) -> torch.Tensor:
    """Teacher-forced log-probability of each row of seqs (<sos> ... <eos> <pad>...)."""
    with torch.no_grad():
        logp = model(b["images"], b["mask"], seqs[:, :-1], direction).log_softmax(-1)
    target = seqs[:, 1:]
    return (logp.gather(-1, target[..., None])[..., 0] * (target != Vocab.pad_id)).sum(1)


# -- the flag ------------------------------------------------------------------------

def test_flag_off_leaves_the_parameters_as_they_were():
    torch.manual_seed(0)
    default = build_model(tiny_model_config(), 12)
    torch.manual_seed(0)
    off = build_model(tiny_model_config(bidirectional=False), 12)
    on = build_model(tiny_model_config(bidirectional=True), 12)
    assert list(off.state_dict()) == list(default.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(off.state_dict().values(),
                                                default.state_dict().values(), strict=True))
    extra = set(on.state_dict()) - set(off.state_dict())
    assert extra == {"decoder.direction_embed.weight"}
    assert set(off.state_dict()) <= set(on.state_dict())
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(on) - n(off) == 2 * 32


def test_shipped_models_stay_one_way():
    model, cfg, _ = load_model("texlens/weights/handwritten-small.pt")
    assert cfg.model.bidirectional is False
    assert not any("direction" in k for k in model.state_dict())
    with pytest.raises(ValueError, match="left to right only"):
        model.decoder.start(*model.encode(torch.rand(1, 1, 64, 64)), R2L)


def test_aster_refuses_the_flag():
    with pytest.raises(ValueError, match="bidirectional"):
        build_model(tiny_model_config(arch="aster", bidirectional=True), 12)


# -- training --------------------------------------------------------------------------

def test_reverse_sequences_keeps_sos_eos_and_padding_in_place():
    s, e, p = Vocab.sos_id, Vocab.eos_id, Vocab.pad_id
    ids = torch.tensor([[s, 4, 5, 6, e, p, p],
                        [s, 7, 8, 9, 10, 11, e],
                        [s, 4, e, p, p, p, p],
                        [s, e, p, p, p, p, p]])
    assert reverse_sequences(ids).tolist() == [[s, 6, 5, 4, e, p, p],
                                               [s, 11, 10, 9, 8, 7, e],
                                               [s, 4, e, p, p, p, p],
                                               [s, e, p, p, p, p, p]]
    assert torch.equal(reverse_sequences(reverse_sequences(ids)), ids)


@pytest.mark.parametrize("ignore_pad", [True, False])
def test_loss_is_the_mean_of_both_directions(ignore_pad):
    torch.manual_seed(0)
    cfg = config()
    cfg.train.ignore_pad = ignore_pad
    cfg.train.label_smoothing = 0.1
    module = Module(cfg, VOCAB)
    b = batch()
    rev = reverse_sequences(b["ids"])
    m = module.model
    l2r = sequence_loss(m(b["images"], b["mask"], b["ids"][:, :-1]), b["ids"][:, 1:],
                        ignore_pad, 0.1)
    r2l = sequence_loss(m(b["images"], b["mask"], rev[:, :-1], R2L), rev[:, 1:], ignore_pad, 0.1)
    assert not torch.allclose(l2r, r2l)
    assert torch.allclose(training_step(module, b), (l2r + r2l) / 2)
    cfg.model.bidirectional = False  # the same module with the flag off: L2R alone
    assert torch.allclose(training_step(module, b), l2r)


def test_trained_model_reads_both_ways(trained):
    model, b = trained.model, batch()
    ids, _ = greedy_decode(model, b["images"], b["mask"], max_len=12)
    assert [VOCAB.decode(r) for r in ids.tolist()] == [VOCAB.decode(t) for t in TRUTHS]
    # Greedy right to left through the key/value cache gives the reversed truths.
    memory, mem_mask = model.encode(b["images"], b["mask"])
    cache = model.start(memory, mem_mask, R2L)
    seq = torch.full((len(TRUTHS), 1), Vocab.sos_id)
    with torch.no_grad():
        for _ in range(8):
            seq = torch.cat([seq, model.step(seq[:, -1:], cache).argmax(-1, keepdim=True)], 1)
    for row, t in zip(seq.tolist(), TRUTHS, strict=True):
        assert row[1:len(t) + 2] == [*reversed(t), Vocab.eos_id]
    # The R2L direction prefers the reversed truth to the truth read forwards and to a
    # shuffle of it; L2R prefers the truth.
    rev = reverse_sequences(b["ids"])
    shuffled = b["ids"].clone()
    shuffled[:, 1:4] = shuffled[:, [2, 3, 1]]
    right = logprob(model, b, rev, R2L)
    assert (right > logprob(model, b, b["ids"], R2L)).all()
    assert (right > logprob(model, b, shuffled, R2L)).all()
    assert (logprob(model, b, b["ids"], L2R) > logprob(model, b, rev, L2R)).all()


def test_one_way_checkpoint_starts_a_bidirectional_model_reading_as_it_did():
    torch.manual_seed(0)
    one_way = build_model(tiny_model_config(), len(VOCAB)).eval()
    two_way = build_model(tiny_model_config(bidirectional=True), len(VOCAB)).eval()
    load_pretrained(two_way, one_way.state_dict(), VOCAB, VOCAB)
    b = batch()
    assert torch.allclose(logprob(one_way, b, b["ids"], L2R), logprob(two_way, b, b["ids"], L2R))
    assert two_way.decoder.direction_embed.weight[R2L].abs().sum() > 0


# -- rescoring -----------------------------------------------------------------------

def test_combine_r2l_picks_the_best_sum_from_the_nbest():
    hyps = [Hypothesis([4, 5], -1.0 / 3, -1.0), Hypothesis([4], -1.2 / 2, -1.2),
            Hypothesis([4, 5, 6], -1.6 / 4, -1.6)]
    r2l = [-3.0, -0.5, -1.0]  # sums -4.0, -1.7, -2.6
    for alpha, best in ((0.0, [4]), (1.0, [4, 5, 6])):  # per step: -1.33, -0.85, -0.65
        out = combine_r2l(hyps, r2l, alpha)
        assert sorted(h.ids for h in out) == sorted(h.ids for h in hyps)
        assert out[0].ids == best
        sums = {tuple(h.ids): (h.logprob + r) / (len(h.ids) + 1) ** alpha
                for h, r in zip(hyps, r2l, strict=True)}
        assert out[0].ids == list(max(sums, key=sums.get))
        for h in out:  # the score is half the normalised sum; the L2R fields are kept
            assert h.score == pytest.approx(sums[tuple(h.ids)] / 2)
            assert h.r2l_logprob == r2l[[tuple(x.ids) for x in hyps].index(tuple(h.ids))]
        assert [h.score for h in out] == sorted((h.score for h in out), reverse=True)


def test_beam_search_rescores_its_own_nbest(trained):
    model, b = trained.model, batch()
    # Noisier images: the beam then holds hypotheses the directions disagree on.
    x = b["images"] + 0.5 * torch.rand(b["images"].shape, generator=torch.Generator()
                                       .manual_seed(1))
    plain = beam_search(model, x, b["mask"], beam=4, max_len=12)
    rescored = beam_search(model, x, b["mask"], beam=4, max_len=12, rescore="r2l")
    for p, r in zip(plain, rescored, strict=True):
        assert sorted(h.ids for h in r) == sorted(h.ids for h in p)
        assert [h.score for h in r] == sorted((h.score for h in r), reverse=True)
    assert any(p[0].ids != r[0].ids for p, r in zip(plain, rescored, strict=True))  # not a no-op
    # Each R2L score is the teacher-forced log-probability of the reversed hypothesis.
    for i, hyps in enumerate(rescored):
        for h in hyps:
            seq = torch.tensor([[Vocab.sos_id, *reversed(h.ids), Vocab.eos_id]])
            one = {"images": x[i:i + 1], "mask": b["mask"][i:i + 1]}
            assert h.r2l_logprob == pytest.approx(logprob(model, one, seq, R2L).item(), abs=1e-4)
            assert h.score == pytest.approx((h.logprob + h.r2l_logprob) / 2 / (len(h.ids) + 1))


def test_rescore_is_refused_where_it_cannot_run(trained):
    b = batch()
    one_way = build_model(tiny_model_config(), len(VOCAB)).eval()
    for models, beam, rescore, msg in ((one_way, 3, "r2l", "bidirectional"),
                                       (trained.model, 1, "r2l", "beam width"),
                                       (trained.model, 3, "l2r", "one of")):
        with pytest.raises(ValueError, match=msg):
            beam_search(models, b["images"], b["mask"], beam=beam, max_len=5, rescore=rescore)


# -- ONNX, Recognizer, CLI -----------------------------------------------------------------

def test_onnx_exports_the_left_to_right_direction(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from texlens.onnx_backend import OnnxModel, export

    b = batch()
    export(trained.model, config(), VOCAB, tmp_path)
    ids, probs = OnnxModel(tmp_path).greedy(b["images"].numpy(), b["mask"].numpy(), 12)
    want, _, want_probs = greedy_decode(trained.model, b["images"], b["mask"], 12,
                                        return_probs=True)
    assert ids.tolist() == want[:, :ids.shape[1]].tolist()
    assert torch.allclose(torch.from_numpy(probs).float(), want_probs[:, :ids.shape[1]],
                          atol=1e-4)


@pytest.fixture(scope="module")
def checkpoint(trained, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bidi") / "bidi.pt"
    save_model(path, trained.model, config(), VOCAB)
    return path


def test_recognizer_rescores_and_keeps_the_plain_beam(checkpoint):
    rec = Recognizer.load(checkpoint)
    arrays = list(batch()["images"].numpy())
    plain = rec.predict_arrays(arrays, beam=3)
    rescored = rec.predict_arrays(arrays, beam=3, rescore="r2l")
    for p, r in zip(plain, rescored, strict=True):
        assert r.latex in [latex for latex, _ in p.nbest]
        assert sorted(latex for latex, _ in r.nbest) == sorted(latex for latex, _ in p.nbest)
        assert 0.0 <= r.confidence <= 1.0
    assert [p.latex for p in rescored] == [" ".join(VOCAB.decode(t)) for t in TRUTHS]
    with pytest.raises(ValueError, match="beam width"):
        rec.predict_arrays(arrays, beam=1, rescore="r2l")
    with pytest.raises(ValueError, match="bidirectional"):
        Recognizer.load("printed-small").predict_arrays(arrays[:1], beam=2, rescore="r2l")


def test_cli_rescore(checkpoint, tmp_path):
    runner = CliRunner()
    image = str(next((EXAMPLES / "printed" / "images").glob("*.png")))
    ok = runner.invoke(app, ["predict", image, "--model", str(checkpoint), "--beam", "2",
                             "--rescore", "r2l"])
    assert ok.exit_code == 0, ok.output
    for args, msg in ((["--beam", "2"], "bidirectional"), (["--beam", "1", "--model",
                                                           str(checkpoint)], "beam width")):
        bad = runner.invoke(app, ["predict", image, "--rescore", "r2l", *args])
        assert bad.exit_code == 2 and msg in bad.output and "Traceback" not in bad.output
    out = tmp_path / "m.json"
    ev = runner.invoke(app, ["evaluate", "--data", str(EXAMPLES / "printed"), "--limit", "2",
                             "--model", str(checkpoint), "--beam", "2", "--rescore", "r2l",
                             "--no-render", "--json", str(out)])
    assert ev.exit_code == 0, ev.output
    metrics = json.loads(out.read_text())
    assert metrics["rescore"] == "r2l" and metrics["n"] == 2


def test_cli_trains_both_directions_from_a_one_way_model(tmp_path):
    """Two steps through `texlens train`, started from a one-way checkpoint: both losses
    and the R2L validation loss are logged, and the exported model is bidirectional."""
    start = tmp_path / "one-way.pt"
    cfg = config(bidirectional=False)
    torch.manual_seed(0)
    save_model(start, build_model(cfg.model, len(VOCAB)), cfg, VOCAB)
    data = str(EXAMPLES / "printed")
    out = tmp_path / "run"
    args = ["model.bidirectional=true", f"data.train=[{data}]", f"data.val=[{data}]",
            "data.val_limit=2", "data.batch_size=4", "data.max_tokens=60",
            "data.augment.enabled=false", "model.max_len=64", "train.max_steps=2",
            "train.threads=1", "train.log_every=1", f"train.out_dir={out}",
            f"train.init_from={start}"]
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(json.dumps({"model": dataclasses.asdict(cfg.model)}))
    result = CliRunner().invoke(app, ["train", str(config_file),
                                      *[a for s in args for a in ("--set", s)]])
    assert result.exit_code == 0, result.output
    metrics = next(out.glob("logs/version_*/metrics.csv")).read_text()
    for name in ("train/loss_l2r", "train/loss_r2l", "val/loss_r2l"):
        assert name in metrics
    model, trained_cfg, _ = load_model(out / "model.pt")
    assert trained_cfg.model.bidirectional and model.decoder.direction_embed is not None

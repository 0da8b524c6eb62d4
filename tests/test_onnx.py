"""ONNX export and the onnxruntime backend: the same tokens as PyTorch on the examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pytest.importorskip("onnx", reason="onnx is not installed")

import torch  # noqa: E402
from conftest import make_tiny_config, randomize_norms, tiny_model_config  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from texlens.cli import app  # noqa: E402
from texlens.evaluate import evaluate  # noqa: E402
from texlens.onnx_backend import (  # noqa: E402
    ENCODER,
    GREEDY,
    META,
    STEP,
    OnnxModel,
    cache_dir,
    export,
)
from texlens.recognizer import Recognizer, resolve_model  # noqa: E402
from texlens.tokens import Vocab  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CASES = [("printed-small", "printed"), ("handwritten-small", "handwritten")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """Each shipped model exported once (float and int8) through the CLI."""
    out = {}
    for name, _ in CASES:
        d = tmp_path_factory.mktemp("onnx") / name
        res = CliRunner().invoke(app, ["export", name, "--onnx", str(d), "--int8"])
        assert res.exit_code == 0, res.output
        out[name] = d
    return out


def test_export_writes_both_graphs_and_the_vocabulary(exported):
    d = exported["printed-small"]
    names = {f.name for f in d.iterdir()}
    assert {ENCODER, STEP, GREEDY, META, "encoder.int8.onnx", "greedy.int8.onnx"} <= names
    meta = json.loads((d / META).read_text())
    assert meta["tokens"] == Recognizer.load("printed-small").vocab.itos
    # int8 weights are about a quarter of float ones
    assert (d / "decoder_step.int8.onnx").stat().st_size < 0.5 * (d / STEP).stat().st_size
    # The record of training formulas travels too: an ONNX reader can say what is held out.
    onnx_rec = Recognizer.load(d, backend="onnx")
    assert onnx_rec.train_formulas == Recognizer.load("printed-small").train_formulas
    assert onnx_rec.train_formulas  # the shipped file records its formulas


@pytest.mark.parametrize(("name", "folder"), CASES)
@pytest.mark.parametrize("batch_size", [1, 16])
def test_onnx_gives_the_same_tokens_as_pytorch(exported, name, folder, batch_size):
    torch_rec = Recognizer.load(name, backend="torch")
    onnx_rec = Recognizer.load(exported[name], backend="onnx")
    arrays = [torch_rec.prepare(p) for p in sorted((EXAMPLES / folder / "images").glob("*.png"))]
    want = torch_rec.predict_arrays(arrays, batch_size)
    got = onnx_rec.predict_arrays(arrays, batch_size)
    for w, g in zip(want, got, strict=True):
        assert g.tokens == w.tokens
        assert g.token_probs == pytest.approx(w.token_probs, abs=1e-3)
        assert g.confidence == pytest.approx(w.confidence, abs=1e-3)


@pytest.mark.parametrize(("name", "folder"), CASES)
def test_int8_stays_close_on_the_examples(exported, name, folder):
    # The 0.5-point bound is measured on test sets (benchmarks/bench_backends.py); on a
    # handful of examples one formula is already several points, hence a looser bound.
    full = evaluate(Recognizer.load(name, backend="torch"),
                    EXAMPLES / folder)["metrics"]["sentence_acc"]
    int8 = evaluate(Recognizer.load(exported[name], backend="onnx-int8"),
                    EXAMPLES / folder)["metrics"]["sentence_acc"]
    assert int8 >= full - 0.2


@pytest.mark.parametrize(("name", "folder"), CASES)
def test_beam_search_on_onnx_finds_pytorch_s_hypotheses(exported, name, folder):
    # One beam search (texlens.decoding.beam_search) stepping through either runtime: the
    # same n-best lists, scores and token probabilities, alone and in a padded batch.
    torch_rec = Recognizer.load(name, backend="torch")
    onnx_rec = Recognizer.load(exported[name], backend="onnx")  # the export alone
    assert not onnx_rec.models
    arrays = [torch_rec.prepare(p)
              for p in sorted((EXAMPLES / folder / "images").glob("*.png"))[:8]]
    want = torch_rec.predict_arrays(arrays, 8, beam=3)
    for batch_size in (1, 8):
        got = onnx_rec.predict_arrays(arrays, batch_size, beam=3)
        for w, g in zip(want, got, strict=True):
            assert g.tokens == w.tokens
            assert [t for t, _ in g.nbest] == [t for t, _ in w.nbest]
            assert [s for _, s in g.nbest] == pytest.approx([s for _, s in w.nbest], abs=1e-4)
            assert g.token_probs == pytest.approx(w.token_probs, abs=1e-3)
    with pytest.raises(ValueError, match="rescoring runs on PyTorch"):
        onnx_rec.predict_arrays(arrays[:1], beam=3, rescore="r2l")


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_beam_alpha_sets_the_length_normalisation(exported, backend):
    # Finished readings are ranked by log P / (tokens + 1)**alpha (the +1: <eos>).
    rec = Recognizer.load("printed-small" if backend == "torch" else exported["printed-small"],
                          backend=backend)
    image = rec.prepare(sorted((EXAMPLES / "printed" / "images").glob("*.png"))[0])
    for alpha in (0.0, 1.0, 2.0):
        rec.beam_alpha = alpha
        p = rec.predict_arrays([image], beam=2)[0]
        logp = float(np.log(p.token_probs).sum())  # <eos> is near-certain here
        assert p.nbest[0][1] == pytest.approx(logp / (len(p.tokens) + 1) ** alpha, abs=1e-3)


def test_onnx_beam_of_width_one_is_onnx_greedy(exported):
    rec = Recognizer.load(exported["handwritten-small"], backend="onnx")
    arrays = [rec.prepare(p)
              for p in sorted((EXAMPLES / "handwritten" / "images").glob("*.png"))[:6]]
    hyps = rec.onnx.beam(*_batch(arrays), 1, 150)
    greedy_ids, _ = rec.onnx.greedy(*_batch(arrays), 150)
    for h, row in zip(hyps, greedy_ids.tolist(), strict=True):
        assert Vocab.eos_id in row  # each formula finished: no length limit in play
        assert h[0].ids == row[:row.index(Vocab.eos_id)]


def _batch(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from texlens.data.datasets import collate
    batch = collate([{"image": a, "ids": [0], "index": i} for i, a in enumerate(arrays)])
    return batch["images"].numpy(), batch["mask"].numpy()


def test_checkpoint_on_onnx_exports_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXLENS_CACHE", str(tmp_path))
    d = cache_dir(resolve_model("printed-small"))
    older = d.with_name(d.name.rsplit("-v", 1)[0] + "-v1")  # an earlier texlens's export
    (older / "encoder.onnx").parent.mkdir(parents=True)
    (older / "encoder.onnx").write_bytes(b"old")
    rec = Recognizer.load("printed-small", backend="onnx")
    assert d.parent.parent == tmp_path and (d / ENCODER).is_file()
    assert not older.exists()  # replaced, not left to pile up
    stamp = (d / ENCODER).stat().st_mtime_ns
    again = Recognizer.load("printed-small", backend="onnx")
    assert (d / ENCODER).stat().st_mtime_ns == stamp
    image = rec.prepare(sorted((EXAMPLES / "printed" / "images").glob("*.png"))[1])
    assert again.predict_arrays([image])[0].tokens == rec.predict_arrays([image])[0].tokens
    assert rec.predict_arrays([image], beam=2)[0].nbest  # beam search on the graphs too


def test_cli_predict_with_onnx_backend(exported):
    images = str(EXAMPLES / "printed" / "images")
    torch_out = CliRunner().invoke(app, ["predict", images, "--json", "--model", "printed-small",
                                         "--backend", "torch"])
    onnx_out = CliRunner().invoke(app, ["predict", images, "--json", "--backend", "onnx",
                                        "--model", str(exported["printed-small"])])
    assert torch_out.exit_code == 0 and onnx_out.exit_code == 0, onnx_out.output
    rows = lambda out: [json.loads(line) for line in out.stdout.splitlines()]  # noqa: E731
    assert [r["tokens"] for r in rows(onnx_out)] == [r["tokens"] for r in rows(torch_out)]
    assert all(len(r["token_probs"]) == len(r["tokens"]) for r in rows(onnx_out))
    beam = CliRunner().invoke(app, ["predict", images, "--json", "--backend", "onnx", "--beam",
                                    "2", "--model", str(exported["printed-small"])])
    assert beam.exit_code == 0, beam.output
    assert all(r["nbest"] for r in rows(beam))
    bad = CliRunner().invoke(app, ["predict", images, "--backend", "tensorrt"])
    assert bad.exit_code == 2 and "backend must be one of" in bad.output


def test_export_needs_a_target_and_a_model(tmp_path):
    res = CliRunner().invoke(app, ["export", "printed-small"])
    assert res.exit_code == 2 and "--onnx" in res.output
    res = CliRunner().invoke(app, ["export", "no-such-model", "--onnx", str(tmp_path)])
    assert res.exit_code == 2 and "no-such-model" in res.output
    assert not np.any([f.suffix == ".onnx" for f in tmp_path.iterdir()])


def test_an_export_of_another_format_is_refused_with_the_fix(exported, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(exported["printed-small"], old)
    meta = json.loads((old / META).read_text())
    del meta["format"]  # as written before the interface changed
    (old / META).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format 1.*export it again"):
        Recognizer.load(old, backend="onnx")


def test_the_unpadded_encoder_gives_the_padded_one_s_answer(exported):
    # One image runs encoder_unpadded.onnx; the same image beside a wider one runs the
    # masked encoder.onnx. Its answer must not depend on which graph read it.
    rec = Recognizer.load(exported["handwritten-small"], backend="onnx")
    files = sorted((EXAMPLES / "handwritten" / "images").glob("*.png"))
    arrays = [rec.prepare(f) for f in files]
    narrow = min(range(len(arrays)), key=lambda i: arrays[i].shape[-1])
    wide = max(range(len(arrays)), key=lambda i: arrays[i].shape[-1])
    assert arrays[narrow].shape != arrays[wide].shape
    alone = rec.predict_arrays([arrays[narrow]], 1)[0]
    padded = rec.predict_arrays([arrays[narrow], arrays[wide]], 2)[0]
    assert alone.tokens == padded.tokens
    assert alone.token_probs == pytest.approx(padded.token_probs, abs=1e-4)


@pytest.mark.parametrize("variant", [
    {},  # the lean unpadded encoder
    {"ffn": "conv", "channel_attention": True},  # lean, calling the layers' own blocks
    {"pe": "adaptive2d"},  # the traced encoder (the lean one supports sine2d only)
    {"pe_mode": "untied"},
])
def test_exported_variants_decode_as_pytorch_alone_and_padded(variant, tmp_path):
    from texlens.decoding import greedy_decode
    from texlens.models.satrn import build_model

    torch.manual_seed(0)
    cfg = make_tiny_config(tmp_path / "run")
    cfg.model = tiny_model_config(**variant)
    vocab = Vocab([f"t{i}" for i in range(26)])
    model = build_model(cfg.model, len(vocab)).eval()
    randomize_norms(model)
    export(model, cfg, vocab, tmp_path / "onnx")
    onnx = OnnxModel(tmp_path / "onnx", threads=1)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(3, 1, 32, 96, generator=g)
    mask = torch.ones(3, 32, 96, dtype=torch.bool)
    mask[1, :, 40:] = False  # a narrower image beside the others: the masked graph
    images[1, :, :, 40:] = 0
    for batch, m in ((images[:1], mask[:1]), (images, mask)):
        with torch.no_grad():
            want, _, want_p = greedy_decode(model, batch, m, 20, return_probs=True)
        got, got_p = onnx.greedy(batch.numpy(), m.numpy(), 20)
        assert np.array_equal(got, want.numpy())
        assert np.allclose(got_p, want_p.numpy(), atol=1e-4)


def test_a_batch_encoded_in_chunks_reads_as_the_whole_batch(exported, monkeypatch):
    # onnxruntime materialises the encoder's attention maps, so a batch is encoded in row
    # chunks under ATTENTION_BYTES (a batch of wide formulas took 24 GB). Rows of one
    # padded batch must read the same whichever chunk they are in.
    from texlens import onnx_backend
    rec = Recognizer.load(exported["printed-small"], backend="onnx")
    arrays = [rec.prepare(p) for p in sorted((EXAMPLES / "printed" / "images").glob("*.png"))[:6]]
    whole = rec.predict_arrays(arrays, 16)
    monkeypatch.setattr(onnx_backend, "ATTENTION_BYTES", 1)
    assert rec.onnx.chunk_rows((6, 1, 48, 400)) == 1
    chunked = rec.predict_arrays(arrays, 16)
    assert [p.tokens for p in chunked] == [p.tokens for p in whole]
    for a, b in zip(chunked, whole, strict=True):
        assert np.allclose(a.token_probs, b.token_probs, atol=1e-5)


def test_auto_backend_is_onnx_for_one_model_and_torch_otherwise(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXLENS_CACHE", str(tmp_path))
    monkeypatch.delenv("TEXLENS_BACKEND")  # conftest's default for the other tests
    rec = Recognizer.load("printed-small")  # the default backend: auto
    assert rec.backend == "onnx" and rec.models  # PyTorch weights stay for test-time views
    assert (cache_dir(resolve_model("printed-small")) / GREEDY).is_file()
    ref = Recognizer.load("printed-small", backend="torch")
    assert ref.backend == "torch" and ref.onnx is None
    arrays = [ref.prepare(p) for p in sorted((EXAMPLES / "printed" / "images").glob("*.png"))]
    assert [p.tokens for p in rec.predict_arrays(arrays)] == \
        [p.tokens for p in ref.predict_arrays(arrays)]
    ensemble = Recognizer.load(["printed-small", "printed-small"])
    assert ensemble.backend == "torch"
    assert Recognizer.load("printed-small", tta=True).backend == "torch"
    monkeypatch.setenv("TEXLENS_BACKEND", "torch")  # a user's own default
    assert Recognizer.load("printed-small").backend == "torch"


def test_auto_backend_falls_back_to_torch_where_no_export_can_be_cached(
        tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TEXLENS_CACHE", str(blocker))  # the cache cannot be made here
    monkeypatch.delenv("TEXLENS_BACKEND")
    rec = Recognizer.load("printed-small")
    assert rec.backend == "torch"
    assert "no ONNX export" in capsys.readouterr().err
    image = rec.prepare(sorted((EXAMPLES / "printed" / "images").glob("*.png"))[0])
    assert rec.predict_arrays([image])[0].tokens
    with pytest.raises(OSError):  # asked for by name, the failure is the caller's to see
        Recognizer.load("printed-small", backend="onnx")

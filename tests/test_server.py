"""The HTTP API (FastAPI TestClient): answers, bad input (4xx, never 5xx), the batcher."""

from __future__ import annotations

import base64
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the server needs fastapi (pip install -e .)")
pytest.importorskip("multipart", reason="multipart uploads need python-multipart")

from fastapi.testclient import TestClient  # noqa: E402
from inkml_samples import X_PLUS_1  # noqa: E402
from test_image import blank_bitmap_png, png_bytes  # noqa: E402

from texlens.data.strokes import render_strokes  # noqa: E402
from texlens.recognizer import Recognizer  # noqa: E402
from texlens.server.app import INK_MODE, Limits, create_app  # noqa: E402
from texlens.server.batcher import Batcher  # noqa: E402

EXAMPLES = sorted((Path(__file__).parents[1] / "examples/printed/images").glob("*.png"))
LIMITS = Limits(max_request_bytes=2_000_000, max_images=4, max_strokes=50, max_points=2000)
INK = [[[x * 100, y * 100] for x, y in s] for s in X_PLUS_1["strokes"]]


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(max_batch=8, batch_wait_ms=20, limits=LIMITS)) as c:
        yield c


@pytest.fixture(scope="module")
def gray() -> np.ndarray:
    return np.asarray(Image.open(EXAMPLES[0]).convert("L"))


@pytest.fixture(scope="module")
def alone(client) -> str:
    """What the server says for the first example on its own."""
    return post_image(client, EXAMPLES[0].read_bytes()).json()["results"][0]["latex"]


def post_image(client, data: bytes, name: str = "f.png", **params):
    return client.post("/v1/predict", files=[("file", (name, data, "image/png"))],
                       params=params)


def assert_still_serving(client, alone: str) -> None:
    r = post_image(client, EXAMPLES[0].read_bytes())
    assert r.status_code == 200 and r.json()["results"][0]["latex"] == alone


# -- good requests --------------------------------------------------------------------

def test_health_models_docs_page(client):
    assert client.get("/health").json()["status"] == "ok"
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["printed-base"]["default_for"] == ["image"]
    assert models["printed-small"]["default_for"] == []
    assert models["handwritten-small"]["default_for"] == ["ink"]
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/predict", "/v1/predict/ink", "/v1/models", "/health"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and 'id="pad"' in page.text
    assert client.get("/static/vendor/katex/katex.min.js").status_code == 200
    docs = client.get("/docs").text  # the API docs page, its scripts served here (offline)
    assert "/static/swagger/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/static/swagger/swagger-ui-bundle.js").status_code == 200


def test_predict_matches_the_python_api(client):
    rec = Recognizer.load()  # the default model, which the server uses for images
    want = [p.latex for p in rec.predict(EXAMPLES[:3])]
    r = client.post("/v1/predict", files=[("file", (p.name, p.read_bytes(), "image/png"))
                                          for p in EXAMPLES[:3]])
    assert r.status_code == 200
    got = r.json()["results"]
    assert [g["name"] for g in got] == [p.name for p in EXAMPLES[:3]]
    assert [g["latex"] for g in got] == want
    assert all(g["tokens"] == g["latex"].split() and 0 < g["confidence"] <= 1 for g in got)
    # The same images as base64 JSON (one as a data URL, as a browser writes it).
    b64 = [base64.b64encode(p.read_bytes()).decode() for p in EXAMPLES[:3]]
    b64[1] = "data:image/png;base64," + b64[1]
    r = client.post("/v1/predict", json={"images": b64})
    assert [g["latex"] for g in r.json()["results"]] == want


def test_formats_and_nbest(client, alone):
    r = post_image(client, EXAMPLES[0].read_bytes(), beam=3, format="display").json()
    res = r["results"][0]
    assert res["output"] == f"$${res['latex']}$$"
    assert res["nbest"][0]["latex"] == res["latex"] and len(res["nbest"]) == 3
    mathml = post_image(client, EXAMPLES[0].read_bytes(), format="mathml").json()
    assert mathml["results"][0]["output"].startswith("<math")


def test_ink_is_rendered_like_training_ink(client):
    r = client.post("/v1/predict/ink", json={"strokes": INK})
    assert r.status_code == 200
    res = r.json()["results"][0]
    rec = Recognizer.load("handwritten-small")
    image = render_strokes([np.array(s, float) for s in INK], mode=INK_MODE)
    assert res["latex"] == rec.predict([image])[0].latex
    assert r.json()["image_size"] == [image.shape[1], image.shape[0]]
    # Extra values per point (time, pressure) are allowed and ignored.
    timed = [[[x, y, 5.0 * i] for i, (x, y) in enumerate(s)] for s in INK]
    assert client.post("/v1/predict/ink", json={"strokes": timed}).json()[
        "results"][0]["latex"] == res["latex"]


def test_concurrent_requests_get_their_own_answers(client):
    want = {p.name: post_image(client, p.read_bytes()).json()["results"][0]["latex"]
            for p in EXAMPLES[:6]}

    def one(p: Path) -> tuple[str, str]:
        r = post_image(client, p.read_bytes(), name=p.name)
        return p.name, r.json()["results"][0]["latex"]

    with ThreadPoolExecutor(6) as pool:
        got = dict(pool.map(one, EXAMPLES[:6] * 2))
    assert got == want


# -- convertible images: 200, and the same answer as the plain 8-bit file -----------------

def _variants(gray: np.ndarray) -> dict[str, bytes]:
    noise = np.random.default_rng(0).integers(0, 255, gray.shape, dtype=np.uint8)
    cmyk = Image.merge("CMYK", [Image.new("L", gray.shape[::-1], 0)] * 3
                       + [Image.fromarray(255 - gray)])
    return {
        "16-bit": png_bytes(Image.fromarray(gray.astype(np.uint16) * 257)),
        "alpha": png_bytes(Image.fromarray(np.dstack([np.zeros_like(gray)] * 3 + [255 - gray]),
                                           "RGBA")),
        "cmyk": png_bytes(cmyk, format="TIFF"),
        "palette": png_bytes(Image.fromarray(gray).convert("P", palette=Image.ADAPTIVE)),
        "animated-gif": png_bytes(Image.fromarray(gray).convert("P", palette=Image.ADAPTIVE),
                                  format="GIF", save_all=True, duration=100,
                                  append_images=[Image.fromarray(noise).convert("P")]),
    }


@pytest.mark.parametrize("kind", ["16-bit", "alpha", "cmyk", "palette", "animated-gif"])
def test_convertible_images(client, gray, alone, kind):
    r = post_image(client, _variants(gray)[kind], name=f"{kind}.img")
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["latex"] == alone


# -- bad input: a 4xx with a message, and the server goes on --------------------------------

def _png(arr: np.ndarray) -> bytes:
    return png_bytes(Image.fromarray(arr))


def _truncated() -> bytes:
    data = EXAMPLES[0].read_bytes()
    return data[: len(data) // 2]


BAD = [
    # (case, endpoint, request kwargs, status, message pattern)
    ("not an image", "/v1/predict", {"files": [("file", ("notes.png", b"\\frac12", "image/png"))]},
     415, r"notes\.png: not a readable image"),
    ("truncated PNG", "/v1/predict", {"files": [("file", ("cut.png", _truncated(), "image/png"))]},
     400, r"cut\.png: not a readable image \(truncated"),
    ("0 bytes", "/v1/predict", {"files": [("file", ("zero.png", b"", "image/png"))]},
     400, r"zero\.png: empty file \(0 bytes\)"),
    ("decompression bomb", "/v1/predict",
     {"files": [("file", ("bomb.png", blank_bitmap_png(30000, 30000), "image/png"))]},
     413, r"bomb\.png: image too large: 900\.0 Mpx, over the limit of 40 Mpx"),
    ("huge aspect ratio", "/v1/predict",
     {"files": [("file", ("strip.png", _png(np.full((3, 3000), 255, np.uint8)), "image/png"))]},
     422, r"strip\.png: aspect ratio 1000:1"),
    ("wrong content type", "/v1/predict",
     {"content": b"x", "headers": {"content-type": "text/plain"}},
     415, r"unsupported content type 'text/plain'"),
    ("no file field", "/v1/predict", {"files": [("image", ("a.png", b"x", "image/png"))]},
     422, r"no images: send them in the multipart field 'file'"),
    ("too many images", "/v1/predict",
     {"files": [("file", (f"{i}.png", b"x", "image/png")) for i in range(5)]},
     413, r"5 images, over the limit of 4"),
    ("body too large", "/v1/predict",
     {"files": [("file", ("big.png", b"\0" * 2_100_000, "image/png"))]},
     413, r"request body over the limit of 2000000 bytes"),
    ("bad base64", "/v1/predict", {"json": {"images": ["not base64!"]}},
     400, r"images\[0\]: not valid base64"),
    ("images not a list", "/v1/predict", {"json": {"images": "abc"}},
     422, r'expected a JSON object \{"images"'),
    ("unknown model", "/v1/predict?model=nope",
     {"files": [("file", ("a.png", b"x", "image/png"))]}, 422, r"model 'nope' is not served"),
    ("beam out of range", "/v1/predict?beam=99",
     {"files": [("file", ("a.png", b"x", "image/png"))]}, 422, r"beam 99 is outside 1\.\.10"),
    ("unknown format", "/v1/predict?format=pdf",
     {"files": [("file", ("a.png", b"x", "image/png"))]}, 422, r"format 'pdf' is unknown"),
    ("stroke list too long", "/v1/predict/ink", {"json": {"strokes": [[[0, 0], [1, 1]]] * 51}},
     413, r"51 strokes, over the limit of 50"),
    ("too many points", "/v1/predict/ink",
     {"json": {"strokes": [[[i, i] for i in range(2001)]]}}, 413, r"2001 points, over the limit"),
    ("malformed stroke JSON", "/v1/predict/ink",
     {"content": b'{"strokes": [[[0, 0], [1', "headers": {"content-type": "application/json"}},
     400, r"request body is not valid JSON"),
    ("stroke point not numbers", "/v1/predict/ink", {"json": {"strokes": [[[0, 0], ["a", 1]]]}},
     422, r"strokes\[0\]\[1\]: expected \[x, y\] numbers"),
    ("strokes missing", "/v1/predict/ink", {"json": {"lines": []}},
     422, r'expected a JSON object \{"strokes"'),
    ("empty stroke", "/v1/predict/ink", {"json": {"strokes": [[[0, 0], [1, 2]], []]}},
     422, r"strokes\[1\]: expected a non-empty list"),
    ("NaN coordinate", "/v1/predict/ink",
     {"content": b'{"strokes": [[[0, NaN]]]}', "headers": {"content-type": "application/json"}},
     422, r"strokes\[0\]\[0\]: coordinates must be finite"),
    ("ink as multipart", "/v1/predict/ink", {"files": [("file", ("a.png", b"x", "image/png"))]},
     415, r"send application/json"),
]


@pytest.mark.parametrize("case,url,kwargs,status,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_and_the_server_goes_on(client, alone, case, url, kwargs, status,
                                                   pattern):
    r = client.post(url, **kwargs)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and re.search(pattern, detail), detail
    assert_still_serving(client, alone)


def test_single_stroke_dot_and_dash_are_drawn(client):
    # Degenerate but legitimate drawings: a dot, a horizontal dash. No error.
    for strokes in ([[[5, 5]]], [[[0, 10], [40, 10]]]):
        r = client.post("/v1/predict/ink", json={"strokes": strokes})
        assert r.status_code == 200, r.text


# -- the batcher ----------------------------------------------------------------------------

def test_batcher_answers_each_item_in_order():
    seen: list[tuple[str, list[int]]] = []

    def run(key, payloads):
        seen.append((key, list(payloads)))
        return [(key, p * 10) for p in payloads]

    b = Batcher(run, max_batch=5, wait_ms=30).start()
    go = threading.Barrier(8)

    def client(c: int) -> list:
        go.wait()
        futs = [(b.submit("ab"[(c + i) % 2], c * 100 + i), c * 100 + i) for i in range(25)]
        return [(f.result(timeout=10), "ab"[(c + i) % 2], p) for i, (f, p) in enumerate(futs)]

    with ThreadPoolExecutor(8) as pool:
        rows = [row for res in pool.map(client, range(8)) for row in res]
    b.stop()
    assert len(rows) == 200
    assert all(res == (key, p * 10) for res, key, p in rows)
    assert all(len(items) <= 5 for _, items in seen)
    # Every item ran exactly once, under its own key; several ran together.
    ran = sorted(p for _, items in seen for p in items)
    assert ran == sorted(p for _, _, p in rows)
    assert all((p // 100 + p % 100) % 2 == "ab".index(key) for key, items in seen for p in items)
    assert max(b.batch_sizes) > 1


def test_batcher_error_reaches_the_callers_and_it_goes_on():
    def run(key, payloads):
        if -1 in payloads:
            raise RuntimeError("model failed")
        return payloads

    b = Batcher(run, max_batch=4, wait_ms=0).start()
    with pytest.raises(RuntimeError, match="model failed"):
        b.submit("k", -1).result(timeout=5)
    assert b.submit("k", 7).result(timeout=5) == 7
    b.stop()
    with pytest.raises(RuntimeError, match="not running"):
        b.submit("k", 1)



def test_onnx_backend_serves_the_same_answers(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    monkeypatch.setenv("TEXLENS_CACHE", str(tmp_path))  # the export goes here, once
    want = [p.latex for p in Recognizer.load("printed-small", backend="torch")
            .predict(EXAMPLES[:3])]
    with TestClient(create_app(["printed-small"], limits=LIMITS, backend="onnx")) as c:
        assert c.get("/v1/models").json()["models"][0]["backend"] == "onnx"
        r = c.post("/v1/predict", files=[("file", (p.name, p.read_bytes(), "image/png"))
                                         for p in EXAMPLES[:3]])
        assert r.status_code == 200
        assert [g["latex"] for g in r.json()["results"]] == want
        # beam search runs on the graphs too, with PyTorch's n-best
        want = Recognizer.load("printed-small", backend="torch").predict(EXAMPLES[:1], beam=2)
        r = c.post("/v1/predict?beam=2", files=[("file", (EXAMPLES[0].name,
                                                          EXAMPLES[0].read_bytes(),
                                                          "image/png"))])
        assert r.status_code == 200
        assert [n["latex"] for n in r.json()["results"][0]["nbest"]] == \
            [t for t, _ in want[0].nbest]


def test_serve_refuses_an_unknown_backend():
    from typer.testing import CliRunner

    from texlens.cli import app
    res = CliRunner().invoke(app, ["serve", "--backend", "tensorrt", "--port", "0"])
    assert res.exit_code == 2 and "backend must be one of" in res.output

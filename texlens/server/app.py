"""HTTP API and web page: ``texlens serve`` runs ``create_app`` under uvicorn.

Requests are decoded and preprocessed on a few threads (the same ``load_image`` ->
``Recognizer.prepare`` path as the CLI), then the images of all concurrent
requests are recognised together on one worker thread (``batcher.py``). Bad input
is a 4xx with a JSON ``detail`` naming the image or stroke; nothing a client sends
should give a 5xx or stop the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from swagger_ui_bundle import swagger_ui_path

from texlens.data.image import MAX_PIXELS, ImageError, load_image
from texlens.data.strokes import render_strokes
from texlens.formats import FORMATS, FormatError, to_json, to_text
from texlens.recognizer import AUTO, DEFAULT_MODEL, Recognizer
from texlens.server.batcher import Batcher

STATIC = Path(__file__).parent / "static"
DEFAULT_MODELS = (DEFAULT_MODEL, "printed-small", "handwritten-small")
# Drawn ink is rendered exactly as the handwriting model's training ink was: the
# "crohme" style (binary white strokes on black, RMS stroke height 27.6 px) and canvas
# bound of `texlens data crohme` / `data synth-hand` (texlens/data/crohme.py).
INK_MODE = "crohme"
INK_MAX_SIDE = 2000
# ImageError.reason -> HTTP status. 415: not an image format we read; 413: too many
# pixels; 422: an image, but not one a formula model can use.
IMAGE_STATUS = {"not_image": 415, "too_large": 413, "aspect": 422, "shape": 422}


@dataclass
class Limits:
    max_request_bytes: int = 20 * 1024 * 1024
    max_images: int = 32  # per request
    max_pixels: int = MAX_PIXELS  # per image, checked from its header before decoding
    max_strokes: int = 1000
    max_points: int = 50_000  # all strokes together
    max_beam: int = 10
    max_coordinate: float = 1e6  # |x|, |y| of a stroke point


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is a 413 before anything parses it.

    Content-Length is checked first; a body sent without one (chunked) is counted as it
    arrives, so a client cannot stream an endless upload into the form parser.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        too_big = JSONResponse({"detail": f"request body over the limit of "
                                          f"{self.max_bytes} bytes"}, status_code=413)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await JSONResponse({"detail": "bad Content-Length header"},
                                   status_code=400)(scope, receive, send)
                return
            if declared > self.max_bytes:
                await too_big(scope, receive, send)
                return
        chunks, total = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def parse_strokes(obj: Any, limits: Limits) -> list[np.ndarray]:
    """``{"strokes": [[[x, y], ...], ...]}`` -> arrays (N, 2); HTTPException naming the
    first bad stroke or point. A point may carry more values (time, pressure): only
    x and y are used."""
    if not isinstance(obj, dict) or "strokes" not in obj:
        raise HTTPException(422, 'expected a JSON object {"strokes": [[[x, y], ...], ...]}')
    strokes = obj["strokes"]
    if not isinstance(strokes, list) or not strokes:
        raise HTTPException(422, "strokes: expected a non-empty list of strokes")
    if len(strokes) > limits.max_strokes:
        raise HTTPException(413, f"strokes: {len(strokes)} strokes, over the limit of "
                                 f"{limits.max_strokes}")
    total = sum(len(s) if isinstance(s, list) else 0 for s in strokes)
    if total > limits.max_points:
        raise HTTPException(413, f"strokes: {total} points, over the limit of "
                                 f"{limits.max_points}")
    out = []
    for i, stroke in enumerate(strokes):
        if not isinstance(stroke, list) or not stroke:
            raise HTTPException(422, f"strokes[{i}]: expected a non-empty list of [x, y] points")
        for j, pt in enumerate(stroke):
            ok = (isinstance(pt, list) and len(pt) >= 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in pt[:2]))
            if not ok:
                raise HTTPException(422, f"strokes[{i}][{j}]: expected [x, y] numbers, "
                                         f"got {json.dumps(pt)[:60]}")
            if not all(math.isfinite(v) and abs(v) <= limits.max_coordinate for v in pt[:2]):
                raise HTTPException(422, f"strokes[{i}][{j}]: coordinates must be finite and "
                                         f"within +-{limits.max_coordinate:g}")
        out.append(np.array([pt[:2] for pt in stroke], np.float64))
    return out


def _decode_base64(text: Any, label: str) -> bytes:
    if not isinstance(text, str):
        raise HTTPException(422, f"{label}: expected a base64 string")
    if text.startswith("data:") and "," in text:  # a data URL, as browsers make them
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise HTTPException(400, f"{label}: not valid base64 ({e})") from None


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HTTPException(400, f"request body is not valid JSON ({e})") from None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_images(request: Request, limits: Limits) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image of a multipart or JSON request."""
    kind = _media_type(request)
    if kind == "multipart/form-data":
        form = await request.form()  # over 1000 parts: Starlette's own 400
        parts = form.getlist("file")
        items = []
        for i, part in enumerate(parts):
            if not isinstance(part, UploadFile):
                raise HTTPException(422, f"file[{i}]: expected a file upload, got a text field")
            items.append((part.filename or f"file[{i}]", await part.read()))
        if not items:
            raise HTTPException(422, "no images: send them in the multipart field 'file'")
    elif kind == "application/json":
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("images"), list):
            raise HTTPException(422, 'expected a JSON object {"images": [base64, ...]}')
        if not body["images"]:
            raise HTTPException(422, "images: the list is empty")
        if len(body["images"]) > limits.max_images:  # before decoding any of them
            raise HTTPException(413, f"{len(body['images'])} images, over the limit of "
                                     f"{limits.max_images} per request")
        items = [(f"images[{i}]", _decode_base64(t, f"images[{i}]"))
                 for i, t in enumerate(body["images"])]
    else:
        raise HTTPException(415, f"unsupported content type {kind or '(none)'!r}: send "
                                 "multipart/form-data (field 'file') or application/json "
                                 '({"images": [base64, ...]})')
    if len(items) > limits.max_images:
        raise HTTPException(413, f"{len(items)} images, over the limit of "
                                 f"{limits.max_images} per request")
    return items


ModelQ = Annotated[str | None, Query(description="a served model (GET /v1/models); "
                                   f"default {DEFAULT_MODEL} for images, handwritten-small "
                                   "for ink")]
BeamQ = Annotated[int, Query(description="beam width; more than 1 gives n-best")]
FormatQ = Annotated[str, Query(description="the output field: " + " | ".join(FORMATS))]

_IMAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "array",
                                    "items": {"type": "string", "format": "binary"}}}}},
        "application/json": {"schema": {
            "type": "object", "required": ["images"],
            "properties": {"images": {"type": "array", "items": {
                "type": "string", "description": "base64 image bytes or a data: URL"}}}}},
    },
}
_INK_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["strokes"],
        "properties": {"strokes": {"type": "array", "description": "strokes of [x, y] points "
                                   "(screen coordinates, y down, any unit)",
                                   "items": {"type": "array", "items": {
                                       "type": "array", "items": {"type": "number"}}}}}}}},
}


class Server:
    """The loaded models, the batcher and the request handlers of one app."""

    def __init__(self, models: Sequence[str], max_batch: int, batch_wait_ms: float,
                 limits: Limits, backend: str = AUTO):
        if not models:
            raise ValueError("no models to serve")
        # Loaded once, at start-up: a bad name fails here, not on the first request.
        self.models = {str(m): Recognizer.load(m, backend=backend) for m in models}
        for rec in self.models.values():
            for m in rec.models:
                m.eval()
        names = list(self.models)
        self.image_model = DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]
        self.ink_model = "handwritten-small" if "handwritten-small" in names else names[0]
        self.limits, self.max_batch = limits, max_batch
        self.batcher = Batcher(self._run, max_batch, batch_wait_ms)
        self.decode_limiter: anyio.CapacityLimiter | None = None

    def _run(self, key: tuple[str, int], arrays: Sequence[np.ndarray]) -> list:
        name, beam = key
        return self.models[name].predict_arrays(list(arrays), self.max_batch, beam=beam)

    def check(self, model: str | None, beam: int, fmt: str, default: str
              ) -> tuple[str, Recognizer]:
        name = model or default
        if not 1 <= beam <= self.limits.max_beam:
            raise HTTPException(422, f"beam {beam} is outside 1..{self.limits.max_beam}")
        if name not in self.models:
            raise HTTPException(422, f"model {name!r} is not served; served: "
                                     f"{', '.join(self.models)}")
        if fmt not in FORMATS:
            raise HTTPException(422, f"format {fmt!r} is unknown; choose one of "
                                     f"{', '.join(FORMATS)}")
        return name, self.models[name]

    def prepare(self, rec: Recognizer, name: str, data: bytes | np.ndarray) -> np.ndarray:
        try:
            return rec.prepare(load_image(data, name, self.limits.max_pixels), name)
        except ImageError as e:
            raise HTTPException(IMAGE_STATUS.get(e.reason, 400), str(e)) from None

    async def recognise(self, name: str, rec: Recognizer, beam: int, fmt: str,
                        items: Sequence[tuple[str, bytes | np.ndarray]]) -> dict:
        t0 = time.perf_counter()
        arrays = []
        for label, data in items:  # one by one: the first bad image names itself
            arrays.append(await anyio.to_thread.run_sync(
                self.prepare, rec, label, data, limiter=self.decode_limiter))
        futures = [self.batcher.submit((name, beam), a) for a in arrays]
        preds = [await asyncio.wrap_future(f) for f in futures]
        results = []
        for (label, _), p in zip(items, preds, strict=True):
            row = {"name": label, **to_json(p)}
            if fmt != "json":
                try:
                    row["output"] = to_text(p, fmt)
                except FormatError as e:  # the model wrote LaTeX latex2mathml cannot read
                    row["output"], row["output_error"] = None, str(e)
            results.append(row)
        return {"model": name, "beam": beam, "format": fmt, "results": results,
                "ms": round((time.perf_counter() - t0) * 1000, 1)}


def create_app(models: Sequence[str] = DEFAULT_MODELS, max_batch: int = 16,
               batch_wait_ms: float = 10.0, limits: Limits | None = None,
               backend: str = AUTO) -> FastAPI:
    """The FastAPI app; the models load now, the batcher starts with the app. ``backend``
    (auto, torch, onnx or onnx-int8, as in ``Recognizer.load``) runs decoding."""
    limits = limits or Limits()
    srv = Server(models, max_batch, batch_wait_ms, limits, backend)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        # Decoding a 40 Mpx image takes ~100 MB: a few at a time, whatever the clients do.
        srv.decode_limiter = anyio.CapacityLimiter(4)
        srv.batcher.start()
        yield
        srv.batcher.stop()

    # FastAPI's own /docs and /redoc pages load their scripts from a CDN; this one serves
    # Swagger UI from the swagger-ui-bundle package, so the API docs work offline too.
    app = FastAPI(title="texlens", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None,
                  description="Images of formulas (or pen strokes) in, LaTeX out.")
    app.state.server = srv
    app.add_middleware(BodyLimit, max_bytes=limits.max_request_bytes)
    # The more specific mount first: routes match in order.
    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_path), name="swagger")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json",
                                   title="texlens API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger/favicon-32x32.png")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health")
    def health() -> dict:
        sizes = list(srv.batcher.batch_sizes)
        return {"status": "ok", "models": list(srv.models), "batches": len(sizes),
                "mean_batch": round(sum(sizes) / len(sizes), 2) if sizes else None}

    @app.get("/v1/models")
    def list_models() -> dict:
        return {"models": [{"name": n, "default_for": [k for k, d in
                                                      (("image", srv.image_model),
                                                       ("ink", srv.ink_model)) if d == n],
                            "vocab_size": len(r.vocab), "backend": r.backend}
                           for n, r in srv.models.items()],
                "formats": list(FORMATS), "limits": asdict(limits)}

    @app.post("/v1/predict", openapi_extra={"requestBody": _IMAGE_BODY})
    async def predict(request: Request, model: ModelQ = None, beam: BeamQ = 1,
                      format: FormatQ = "latex") -> dict:
        """Images (multipart field ``file``, repeatable; or JSON ``{"images": [b64]}``)."""
        name, rec = srv.check(model, beam, format, srv.image_model)
        items = await _read_images(request, limits)
        return await srv.recognise(name, rec, beam, format, items)

    @app.post("/v1/predict/ink", openapi_extra={"requestBody": _INK_BODY})
    async def predict_ink(request: Request, model: ModelQ = None, beam: BeamQ = 1,
                          format: FormatQ = "latex") -> dict:
        """Pen strokes, rendered like the handwriting model's training ink."""
        name, rec = srv.check(model, beam, format, srv.ink_model)
        if _media_type(request) != "application/json":
            raise HTTPException(415, 'send application/json {"strokes": [[[x, y], ...], ...]}')
        strokes = parse_strokes(await _json_body(request), limits)
        image = await anyio.to_thread.run_sync(_render, strokes)
        out = await srv.recognise(name, rec, beam, format, [("ink", image)])
        out["image_size"] = list(image.shape[::-1])
        return out

    return app


def _render(strokes: list[np.ndarray]) -> np.ndarray:
    # A lone dot or dash hits a scale bound and is drawn at a bounded size (a warning
    # in the log): fine for a drawing; only impossible input is an error.
    try:
        return render_strokes(strokes, mode=INK_MODE, max_side=INK_MAX_SIDE)
    except ValueError as e:
        raise HTTPException(422, f"strokes: cannot render them ({e})") from None

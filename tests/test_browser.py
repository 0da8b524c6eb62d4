"""The web page in a real browser (Debian's chromium, driven by Playwright).

Starts the server on a free loopback port, uploads an example image, draws a
formula on the canvas with pointer events, and checks the LaTeX shown on the
page against the API. Skips, saying why, without chromium or playwright
(`make browser` installs chromium).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).parents[1]
EXAMPLE = sorted((ROOT / "examples/printed/images").glob("*.png"))[2]
SCREENSHOT = ROOT / "outputs" / "web-page.png"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

if not CHROMIUM.exists():
    pytest.skip("no /usr/bin/chromium (make browser: apt-get install -y chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -e '.[dev]')")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed")

from inkml_samples import X_PLUS_1  # noqa: E402

from texlens.server.app import create_app  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url():
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):  # model loading happened above; this is the socket coming up
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def page(base_url):
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 900, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base_url + "/")
        page.wait_for_function("document.querySelectorAll('#model-ink option').length > 0")
        yield page
        assert not errors, f"JavaScript errors on the page: {errors}"
        browser.close()


def answers(page) -> int:
    return page.evaluate("window.texlens.answers")


def shown_latex(page, before: int) -> str:
    """The LaTeX on the page once an answer after the first ``before`` is shown."""
    page.wait_for_function("n => window.texlens.answers > n && !window.texlens.busy",
                           arg=before, timeout=60_000)
    return page.text_content("#latex")


def test_upload_shows_latex_and_preview(page, base_url):
    import httpx
    want = httpx.post(f"{base_url}/v1/predict", params={"beam": 3},
                      files={"file": (EXAMPLE.name, EXAMPLE.read_bytes(), "image/png")},
                      timeout=60).json()["results"][0]
    before = answers(page)
    page.set_input_files("#file", str(EXAMPLE))
    assert shown_latex(page, before) == want["latex"]
    assert page.locator("#rendered .katex").count() == 1  # KaTeX, served by the app
    assert page.locator("#rendered .katex-error").count() == 0
    assert page.locator("#nbest li").count() == len(want["nbest"]) - 1
    assert page.locator("#tokens span").count() == len(want["tokens"])
    probs = want.get("token_probs")  # highlighted below 0.6 (app.js LOW_PROB)
    if probs is not None:
        assert page.locator("#tokens span.low").count() == sum(p < 0.6 for p in probs)


def test_drawn_strokes_are_recognised(page, base_url):
    import httpx
    page.click("#tab-draw")
    box = page.locator("#pad").bounding_box()

    def draw(stroke, scale=60.0, x0=120.0, y0=80.0):
        pts = [(box["x"] + x0 + x * scale, box["y"] + y0 + y * scale) for x, y in stroke]
        page.mouse.move(*pts[0])
        page.mouse.down()
        for x, y in pts[1:]:
            page.mouse.move(x, y, steps=4)  # intermediate points, as a hand makes them
        page.mouse.up()

    draw([(0, 0), (3, 1)])  # a stray stroke, then undo it
    assert page.evaluate("window.texlens.strokes.length") == 1
    page.click("#undo")
    for stroke in X_PLUS_1["strokes"]:
        draw(stroke)
    strokes = page.evaluate("window.texlens.strokes")
    assert len(strokes) == len(X_PLUS_1["strokes"])
    assert page.text_content("#stroke-count") == f"{len(strokes)} strokes"
    before = answers(page)
    page.click("#recognise")
    latex = shown_latex(page, before)
    assert latex
    # What the page sent is what the API reads from these strokes.
    want = httpx.post(f"{base_url}/v1/predict/ink", params={"beam": 3},
                      json={"strokes": strokes}, timeout=60).json()["results"][0]
    assert latex == want["latex"]
    assert page.evaluate("window.texlens.last.model") == "handwritten-small"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000


def test_bad_file_shows_an_error(page, tmp_path):
    page.click("#tab-image")
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.set_input_files("#file", str(bad))
    page.wait_for_function("document.querySelector('#status').classList.contains('error')")
    assert "notes.png: not a readable image" in page.text_content("#status")


def test_clear_empties_the_canvas(page):
    page.click("#tab-draw")
    page.click("#clear")
    assert page.evaluate("window.texlens.strokes.length") == 0
    assert page.text_content("#stroke-count") == "0 strokes"

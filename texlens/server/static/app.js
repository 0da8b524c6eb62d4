// texlens web page: images (file picker, paste, drag and drop) go to /v1/predict, strokes
// drawn on the canvas go to /v1/predict/ink. Plain browser JavaScript, no build step.
"use strict";

const LOW_PROB = 0.6; // tokens the model gave less than this are highlighted
const $ = (id) => document.getElementById(id);

// State the browser test reads too (tests/test_browser.py).
const state = { strokes: [], last: null, busy: false, answers: 0 };
window.texlens = state;

// ---- tabs -------------------------------------------------------------------------
function showTab(name) {
  for (const t of ["image", "draw"]) {
    $("tab-" + t).setAttribute("aria-selected", String(t === name));
    $("panel-" + t).hidden = t !== name;
  }
  if (name === "draw") resizePad();
}
$("tab-image").addEventListener("click", () => showTab("image"));
$("tab-draw").addEventListener("click", () => showTab("draw"));

// ---- models -----------------------------------------------------------------------
async function loadModels() {
  const res = await fetch("/v1/models");
  const info = await res.json();
  for (const [select, kind] of [[$("model-image"), "image"], [$("model-ink"), "ink"]]) {
    for (const m of info.models) {
      const opt = new Option(m.name, m.name, false, m.default_for.includes(kind));
      select.add(opt);
    }
  }
}

// ---- results ----------------------------------------------------------------------
function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function renderMath(el, latex, displayMode = true) {
  if (window.katex) {
    katex.render(latex, el, { throwOnError: false, displayMode });
  } else {
    el.textContent = latex; // KaTeX failed to load: still show the LaTeX
  }
}

function showResult(data) {
  state.last = data;
  state.answers += 1;
  const r = data.results[0];
  $("answer").hidden = false;
  $("latex").textContent = r.latex;
  renderMath($("rendered"), r.latex);
  const tokens = $("tokens");
  tokens.replaceChildren();
  r.tokens.forEach((tok, i) => {
    const span = document.createElement("span");
    span.textContent = tok;
    if (r.token_probs) {
      const p = r.token_probs[i];
      span.title = `p = ${p.toFixed(2)}`;
      if (p < LOW_PROB) span.classList.add("low");
    }
    tokens.append(span);
  });
  const list = $("nbest");
  list.replaceChildren();
  const alts = (r.nbest || []).slice(1);
  for (const alt of alts) {
    const li = document.createElement("li");
    const math = document.createElement("span");
    math.className = "alt-math";
    renderMath(math, alt.latex, false);
    const code = document.createElement("code");
    code.textContent = alt.latex;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `log p ${alt.score.toFixed(2)}`;
    li.append(math, code, score);
    li.title = "Use this one";
    li.addEventListener("click", () => {
      $("latex").textContent = alt.latex;
      renderMath($("rendered"), alt.latex);
    });
    list.append(li);
  }
  $("nbest-box").hidden = alts.length === 0;
  setStatus(`${data.model}: confidence ${(r.confidence * 100).toFixed(0)}%, ${data.ms} ms`);
}

async function send(url, init) {
  state.busy = true;
  setStatus("Recognising…");
  try {
    const res = await fetch(url, init);
    const data = await res.json().catch(() => ({ detail: res.statusText }));
    if (!res.ok) {
      const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
      setStatus(`Error ${res.status}: ${detail}`, true);
      return;
    }
    showResult(data);
  } catch (err) {
    setStatus(`Cannot reach the server: ${err}`, true);
  } finally {
    state.busy = false;
  }
}

function query(kind) {
  const q = new URLSearchParams({ model: $("model-" + kind).value, beam: $("beam-" + kind).value });
  return q.toString();
}

$("copy").addEventListener("click", async () => {
  const text = $("latex").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Without clipboard permission (plain http on another host): select it for Ctrl+C.
    const range = document.createRange();
    range.selectNodeContents($("latex"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
  }
  $("copy").textContent = "Copied";
  setTimeout(() => ($("copy").textContent = "Copy"), 1200);
});

// ---- images: picker, paste, drag and drop -----------------------------------------
function sendImage(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    setStatus(`${file.name}: not an image (${file.type})`, true);
    return;
  }
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  const form = new FormData();
  form.append("file", file, file.name || "pasted.png");
  send("/v1/predict?" + query("image"), { method: "POST", body: form });
}

$("file").addEventListener("change", (e) => sendImage(e.target.files[0]));
document.addEventListener("paste", (e) => {
  const item = [...(e.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
  if (item) {
    showTab("image");
    sendImage(item.getAsFile());
  }
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  sendImage(e.dataTransfer.files[0]);
});

// ---- drawing: pointer events (mouse, touch, pen) -----------------------------------
const pad = $("pad");
const ctx = pad.getContext("2d");
let current = null; // the stroke being drawn: [[x, y], ...] in CSS pixels

function resizePad() {
  const r = pad.getBoundingClientRect();
  if (!r.width) return; // hidden
  const dpr = window.devicePixelRatio || 1;
  pad.width = Math.round(r.width * dpr);
  pad.height = Math.round(r.height * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  redraw();
}

function drawStroke(s) {
  ctx.beginPath();
  ctx.moveTo(s[0][0], s[0][1]);
  if (s.length === 1) ctx.lineTo(s[0][0] + 0.1, s[0][1]); // a dot still shows
  for (const [x, y] of s.slice(1)) ctx.lineTo(x, y);
  ctx.stroke();
}

function redraw() {
  ctx.clearRect(0, 0, pad.width, pad.height);
  ctx.lineWidth = 3;
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.strokeStyle = "#1d2330";
  for (const s of state.strokes) drawStroke(s);
  $("stroke-count").textContent = `${state.strokes.length} stroke${state.strokes.length === 1 ? "" : "s"}`;
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return [Math.round((e.clientX - r.left) * 10) / 10, Math.round((e.clientY - r.top) * 10) / 10];
}

pad.addEventListener("pointerdown", (e) => {
  if (e.button !== 0 && e.pointerType === "mouse") return;
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  current = [point(e)];
  state.strokes.push(current);
  redraw();
});
pad.addEventListener("pointermove", (e) => {
  if (!current) return;
  // Coalesced events keep fast pen and touch strokes smooth.
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of events.length ? events : [e]) current.push(point(ev));
  redraw();
});
function endStroke() { current = null; }
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

$("undo").addEventListener("click", () => { state.strokes.pop(); redraw(); });
$("clear").addEventListener("click", () => { state.strokes = []; redraw(); });
$("recognise").addEventListener("click", () => {
  if (!state.strokes.length) {
    setStatus("Draw a formula first.", true);
    return;
  }
  send("/v1/predict/ink?" + query("ink"), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ strokes: state.strokes }),
  });
});
window.addEventListener("resize", resizePad);

loadModels().catch((err) => setStatus(`Cannot load the model list: ${err}`, true));

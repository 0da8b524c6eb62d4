// texlens MathJax renderer: LaTeX -> MathJax v4 SVG -> resvg raster -> ink coverage.
//
// Protocol (one process renders a whole batch, so node start-up is paid once):
//   stdin:  one JSON object per line: {"tex": str, "font": str, "display": bool, "em": px}
//   stdout: one JSON object per input line, in order:
//           {"w": int, "h": int, "ink": base64 of w*h uint8 alpha (255 = ink)}
//        or {"error": "message"}
// `node render.mjs --fonts` prints the supported font names as a JSON list and exits.

import readline from 'node:readline';

import { mathjax } from '@mathjax/src/js/mathjax.js';
import '@mathjax/src/js/util/asyncLoad/esm.js';
import { TeX } from '@mathjax/src/js/input/tex.js';
import { SVG } from '@mathjax/src/js/output/svg.js';
import { liteAdaptor } from '@mathjax/src/js/adaptors/liteAdaptor.js';
import { RegisterHTMLHandler } from '@mathjax/src/js/handlers/html.js';

// Only what printed formulas use (amsmath, amssymb, mathtools, bm, \mathscr, ...).
// `noundefined` and `noerrors` are left out on purpose: with them an unknown macro is drawn
// as red text, and we want it reported as an error instead.
import '@mathjax/src/js/input/tex/base/BaseConfiguration.js';
import '@mathjax/src/js/input/tex/ams/AmsConfiguration.js';
import '@mathjax/src/js/input/tex/amscd/AmsCdConfiguration.js';
import '@mathjax/src/js/input/tex/newcommand/NewcommandConfiguration.js';
import '@mathjax/src/js/input/tex/configmacros/ConfigMacrosConfiguration.js';
import '@mathjax/src/js/input/tex/boldsymbol/BoldsymbolConfiguration.js';
import '@mathjax/src/js/input/tex/mathtools/MathtoolsConfiguration.js';
import '@mathjax/src/js/input/tex/cancel/CancelConfiguration.js';
import '@mathjax/src/js/input/tex/color/ColorConfiguration.js';
import '@mathjax/src/js/input/tex/bbox/BboxConfiguration.js';
import '@mathjax/src/js/input/tex/braket/BraketConfiguration.js';
import '@mathjax/src/js/input/tex/textmacros/TextMacrosConfiguration.js';
import '@mathjax/src/js/input/tex/textcomp/TextcompConfiguration.js';
import '@mathjax/src/js/input/tex/upgreek/UpgreekConfiguration.js';
import '@mathjax/src/js/input/tex/gensymb/GensymbConfiguration.js';
import '@mathjax/src/js/input/tex/extpfeil/ExtpfeilConfiguration.js';
import '@mathjax/src/js/input/tex/centernot/CenternotConfiguration.js';
import '@mathjax/src/js/input/tex/cases/CasesConfiguration.js';
import '@mathjax/src/js/input/tex/dsfont/DsfontConfiguration.js';
import '@mathjax/src/js/input/tex/enclose/EncloseConfiguration.js';

import { Resvg } from '@resvg/resvg-js';

// Font name -> npm package. A font's glyph tables are imported on first use only: loading
// all five would double node's start-up, paid once per call.
const FONTS = {
  newcm: '@mathjax/mathjax-newcm-font',
  modern: '@mathjax/mathjax-modern-font',
  stix2: '@mathjax/mathjax-stix2-font',
  termes: '@mathjax/mathjax-termes-font',
  tex: '@mathjax/mathjax-tex-font',
};

const PACKAGES = [
  'base', 'ams', 'amscd', 'newcommand', 'configmacros', 'boldsymbol', 'mathtools', 'cancel',
  'color', 'bbox', 'braket', 'textmacros', 'textcomp', 'upgreek', 'gensymb', 'extpfeil',
  'centernot', 'cases', 'dsfont', 'enclose',
];

// Macros of LaTeX packages that MathJax has no package for, mapped to their MathJax equivalent.
const MACROS = {
  bm: ['\\boldsymbol{#1}', 1],
  vcentcolon: '\\mathrel{\\vcenter{:}}', // mathtools' centred colon (for \\vcentcolon\\equiv)
  '/': '', // TeX's italic correction: a hair of space, nothing to draw
};

// Table rules and frames take their stroke from MathJax's page stylesheet, which a
// stand-alone SVG lacks: without these (MathJax's values) \hline and {c|c} would vanish.
const TABLE_CSS = '<style>'
  + 'line[data-line], rect[data-frame] { stroke-width: 70px; fill: none; }'
  + ' .mjx-dashed { stroke-dasharray: 140; }'
  + ' .mjx-dotted { stroke-linecap: round; stroke-dasharray: 0,140; }'
  + ' svg { overflow: visible; }'
  + '</style>';

if (process.argv.includes('--fonts')) {
  process.stdout.write(JSON.stringify(Object.keys(FONTS)) + '\n');
  process.exit(0);
}

const adaptor = liteAdaptor();
RegisterHTMLHandler(adaptor);

// One MathDocument per font, made on first use: each holds its own TeX and SVG jax.
const docs = {};

async function documentFor(font) {
  if (!(font in FONTS)) {
    throw new Error(`unknown MathJax font '${font}' (known: ${Object.keys(FONTS).join(', ')})`);
  }
  if (!docs[font]) {
    const module = await import(`${FONTS[font]}/js/svg.js`);
    // Each package exports one class, MathJax<Name>Font.
    const fontData = Object.values(module).find((v) => typeof v === 'function' && v.NAME);
    if (!fontData) throw new Error(`${FONTS[font]} exports no MathJax font class`);
    const tex = new TeX({
      packages: PACKAGES,
      macros: MACROS,
      // Throw the TeX error instead of typesetting it as a red merror node.
      formatError: (_jax, err) => { throw err; },
    });
    const svg = new SVG({
      fontData,
      // Glyphs outside the core ranges live in files loaded on demand (convertPromise).
      dynamicPrefix: `${FONTS[font]}/js/svg/dynamic`,
      fontCache: 'none', // self-contained paths: no <use> references into a shared cache
      // v4 splits inline math at breakpoints into several <svg>s; we want one image.
      linebreaks: { inline: false },
    });
    docs[font] = mathjax.document('', { InputJax: tex, OutputJax: svg });
  }
  return docs[font];
}

// The <svg> element MathJax returns carries width/height in ex and a viewBox in units of
// 1/1000 em; we rewrite width/height in pixels so that 1 em = `em` px.
function sizeSvg(svgText, em) {
  const head = svgText.slice(0, svgText.indexOf('>') + 1); // nested <svg>s have their own
  const m = head.match(/ viewBox="([-\d.e]+) ([-\d.e]+) ([-\d.e]+) ([-\d.e]+)"/);
  if (!m) {
    // MathJax sets an equation tag at full line width (width="100%"): no size of its own.
    throw new Error('MathJax laid the formula out at full line width (\\tag is not supported)');
  }
  const w = Math.max(1, Math.ceil((parseFloat(m[3]) * em) / 1000));
  const h = Math.max(1, Math.ceil((parseFloat(m[4]) * em) / 1000));
  const sizedHead = head
    .replace(/ width="[^"]*"/, ` width="${w}"`)
    .replace(/ height="[^"]*"/, ` height="${h}"`);
  const sized = sizedHead + TABLE_CSS + svgText.slice(head.length);
  return [sized, w];
}

async function renderOne(req) {
  const doc = await documentFor(req.font);
  const node = await doc.convertPromise(req.tex, { display: req.display !== false });
  const children = adaptor.childNodes(node); // mjx-container > svg
  if (children.length !== 1) {
    throw new Error(`MathJax split the formula into ${children.length} pieces`);
  }
  const svgNode = children[0];
  const svgText = adaptor.serializeXML(svgNode); // XML: escapes < in data-latex="..."
  // Errors that do not throw (e.g. inside some environments) still leave an merror node.
  if (svgText.includes('data-mml-node="merror"')) {
    const title = svgText.match(/<title>([^<]*)<\/title>/);
    throw new Error(title ? title[1] : 'MathJax produced an error node');
  }
  // A character the font lacks becomes <text>, which would need a system font: with none
  // loaded it would vanish from the image, so the formula fails instead.
  const text = svgText.match(/<text[^>]*>([^<]*)<\/text>/);
  if (text) throw new Error(`characters not in MathJax font '${req.font}': ${text[1]}`);
  const [sized, width] = sizeSvg(svgText, req.em);
  const png = new Resvg(sized, {
    fitTo: { mode: 'width', value: width },
    font: { loadSystemFonts: false }, // glyphs are paths; text never needs a system font
    shapeRendering: 2, // geometricPrecision: anti-aliased edges
  }).render();
  const rgba = png.pixels;
  const alpha = Buffer.alloc(png.width * png.height);
  for (let i = 0, j = 3; i < alpha.length; i++, j += 4) alpha[i] = rgba[j];
  return { w: png.width, h: png.height, ink: alpha.toString('base64') };
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let out;
  try {
    out = await renderOne(JSON.parse(line));
  } catch (err) {
    out = { error: String(err && err.message ? err.message : err) };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

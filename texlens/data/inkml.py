"""Read InkML pen-stroke files (the CROHME handwritten-formula format).

What the reader accepts, checked against the six CROHME 2016 training sources
(HAMEX, KAIST, MathBrush, MfrDB, expressmatch, extension) and the 2014 test set:

* the InkML namespace ``http://www.w3.org/2003/InkML`` or none (any prefix);
* points ``x y`` or ``x y t`` (or any extra channels), integer or decimal,
  separated by commas; only x and y are kept;
* the expression's LaTeX in the ink-level ``<annotation type="truth">``, often
  wrapped in ``$...$`` (the dollars are removed), possibly absent;
* symbols as ``traceGroup`` elements, nested in an outer "Segmentation" group,
  each with its label in ``<annotation type="truth">`` and its strokes in
  ``<traceView traceDataRef="id"/>``;
* files that are not valid UTF-8 and say no encoding (one MfrDB file has a bare
  Latin-1 middle dot in its MathML): read as Windows-1252 instead.

InkML's difference encoding (values prefixed with ``'`` or ``"``) occurs in none of
those files; it is refused with a clear message rather than read wrongly.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class InkmlError(ValueError):
    """An InkML file cannot be read; the message names the file (and the trace)."""


@dataclass
class Symbol:
    """One segmented symbol: its label and the strokes that draw it."""

    label: str  # "" when the group has no truth annotation
    trace_ids: list[str]
    href: str | None = None  # the MathML node it belongs to (annotationXML href)
    xml_id: str | None = None  # the traceGroup's own xml:id


@dataclass
class Ink:
    key: str
    truth_latex: str | None
    traces: dict[str, np.ndarray]  # id -> float64 (n_points, 2) x, y
    trace_order: list[str]
    symbols: list[Symbol] = field(default_factory=list)
    mathml: str | None = None


_XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
_MATHML_RE = re.compile(
    r"<(?:[\w.-]+:)?annotationXML\b[^>]*?(?<!/)>(.*?)</(?:[\w.-]+:)?annotationXML\s*>", re.S)
_DIFF_MARKS = ("'", '"', "!")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _annotation(el: ET.Element, kind: str = "truth") -> str | None:
    for a in _children(el, "annotation"):
        if a.get("type") == kind:
            return (a.text or "").strip()
    return None


def read_writer(data: bytes, name: str = "<inkml bytes>") -> str | None:
    """The file's ``<annotation type="writer">`` (None when it has none); the XML is
    parsed, the traces are not. Raises InkmlError on a file that is not XML."""
    try:
        root = ET.fromstring(_decode(data))
    except (ET.ParseError, LookupError, UnicodeDecodeError) as e:
        raise InkmlError(f"{name}: not well-formed XML ({e})") from None
    return _annotation(root, "writer") or None


def _decode(data: bytes) -> str:
    """Bytes to text: the declared (or UTF-8) encoding, else Windows-1252."""
    head = data[:200].decode("ascii", "replace")
    m = re.match(r"\s*<\?xml[^>]*encoding=[\"']([\w.-]+)[\"']", head)
    if m:
        return data.decode(m.group(1), "strict")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Undeclared 8-bit text: CROHME's only case is a Latin-1 symbol in the MathML.
        return data.decode("cp1252", "replace")


def parse_points(text: str | None, where: str) -> np.ndarray:
    """``"x y, x y, ..."`` (2 or more values a point) -> float64 (n, 2)."""
    body = (text or "").strip().rstrip(",")
    if not body:
        raise InkmlError(f"{where}: empty trace")
    if any(m in body for m in _DIFF_MARKS):
        raise InkmlError(f"{where}: difference-encoded values (' \" !) are not supported")
    values = body.replace(",", " ").split()
    n_points = body.count(",") + 1
    per_point = len(values) // n_points
    if per_point < 2 or per_point * n_points != len(values):
        raise InkmlError(f"{where}: {len(values)} values in {n_points} points; expected the "
                         "same number (2 or more) in every point")
    try:
        arr = np.array(values, dtype=np.float64).reshape(n_points, per_point)[:, :2]
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise InkmlError(f"{where}: not a number: {bad!r}") from None
    if not np.isfinite(arr).all():
        raise InkmlError(f"{where}: non-finite coordinate")
    return np.ascontiguousarray(arr)


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _symbols(group: ET.Element, traces: dict[str, np.ndarray], label: str,
             out: list[Symbol]) -> None:
    """Depth first: every group that references strokes itself is one symbol."""
    refs = []
    for tv in _children(group, "traceView"):
        ref = (tv.get("traceDataRef") or "").lstrip("#")
        if ref not in traces:
            raise InkmlError(f"{label}: traceGroup {group.get(_XML_ID)!r} refers to unknown "
                             f"trace {ref!r}")
        refs.append(ref)
    refs += [t.get("id") or t.get(_XML_ID) or "" for t in _children(group, "trace")]
    if refs:
        href = next((a.get("href") for a in _children(group, "annotationXML")), None)
        out.append(Symbol(_annotation(group) or "", refs, href, group.get(_XML_ID)))
    for sub in _children(group, "traceGroup"):
        _symbols(sub, traces, label, out)


def _key(name: str) -> str:
    base = Path(name).name
    return base[: -len(".inkml")] if base.lower().endswith(".inkml") else Path(base).stem


def read_inkml(src: str | Path | bytes, name: str | None = None) -> Ink:
    """Parse one InkML file (a path, or its bytes with ``name`` for messages and the key).

    Raises InkmlError naming the file, and the trace when one is bad.
    """
    if isinstance(src, bytes):
        label, data = name or "<inkml bytes>", src
    else:
        label = name or str(src)
        try:
            data = Path(src).read_bytes()
        except OSError as e:
            raise InkmlError(f"{label}: cannot read ({e.strerror or e})") from None
    if not data.strip():
        raise InkmlError(f"{label}: empty file")
    try:
        text = _decode(data)
        root = ET.fromstring(text)
    except (ET.ParseError, LookupError, UnicodeDecodeError) as e:
        raise InkmlError(f"{label}: not well-formed XML ({e})") from None
    if _local(root.tag) != "ink":
        raise InkmlError(f"{label}: root element is <{_local(root.tag)}>, not <ink>")

    traces: dict[str, np.ndarray] = {}
    for i, el in enumerate(t for t in root.iter() if _local(t.tag) == "trace"):
        tid = el.get("id") or el.get(_XML_ID) or str(i)
        if tid in traces:
            raise InkmlError(f"{label}: duplicate trace id {tid!r}")
        traces[tid] = parse_points(el.text, f"{label}: trace {tid!r}")
    if not traces:
        raise InkmlError(f"{label}: no <trace> elements")

    symbols: list[Symbol] = []
    for group in _children(root, "traceGroup"):
        _symbols(group, traces, label, symbols)

    truth = _annotation(root)
    if truth is not None:
        truth = truth.strip()
        if len(truth) >= 2 and truth[0] == "$" and truth[-1] == "$":
            truth = truth[1:-1].strip()
    mathml = None
    if _children(root, "annotationXML"):
        m = _MATHML_RE.search(text)
        mathml = m.group(1).strip() if m and m.group(1).strip() else None
    return Ink(key=_key(name or (str(src) if not isinstance(src, bytes) else "")),
               truth_latex=truth or None, traces=traces, trace_order=list(traces),
               symbols=symbols, mathml=mathml)

"""Render CROHME InkML into train/val image datasets (``texlens data crohme``).

Input: a directory tree of ``*.inkml`` files, or a tar(.gz) of them read in place
(nothing is extracted). Output, in the standard layout::

    OUT/train/caption.txt   key<TAB>tokens      OUT/train/images/key.png
    OUT/val/caption.txt                         OUT/val/images/key.png
    OUT/val-writers/...     with ``val_writers``: every file of some writers

Keys are the InkML file names without ``.inkml``. The validation keys are those whose
expression ranks below ``val_fraction`` by the split rule of :mod:`texlens.data.splits`,
so the split depends only on the captions (not on file order, a seed or the number of
workers), and agrees with the printed datasets made from the same captions. Captions
come from a caption file, or from the files' truth LaTeX
(:func:`texlens.data.crohme_truth.truth_tokens`). Files that cannot be used (malformed,
no truth, untokenisable truth, no caption, scale or size bound hit) are reported with
the reason and skipped.

``copies`` adds, for every training key, that many renderings of randomly distorted
strokes (:mod:`texlens.data.stroke_augment`: rotation, slant, stretch, smooth jitter,
pen width; optionally a local elastic warp) as ``key_augN``. Real expressions are few
(8,835); distorting the pen points gives new, still natural handwriting where image
augmentation would only warp pixels. Validation keys are never copied. Each copy's
randomness is seeded by (seed, key, N): the same bytes whatever the number of workers.
"""

from __future__ import annotations

import hashlib
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from texlens.data.crohme_truth import truth_tokens
from texlens.data.inkml import InkmlError, read_inkml, read_writer
from texlens.data.splits import NOT_TRAIN_SHARE, expression_rank
from texlens.data.stroke_augment import StrokeAugment, augment_strokes, pick_line_width
from texlens.data.strokes import MODES, RenderBoundError, render_strokes
from texlens.data.synth.dataset import read_caption_file
from texlens.tokens import TokenizeError

SPLITS = ("train", "val")
WRITERS_SPLIT = "val-writers"  # held out by writer (build_crohme's val_writers)
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def _is_tar(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_TAR_SUFFIXES)


def inkml_names(source: str | Path) -> list[str]:
    """Names of the .inkml files in a directory tree (relative, sorted) or a tarball."""
    source = Path(source)
    if _is_tar(source):
        with tarfile.open(source, "r:*") as tar:
            return sorted(m.name for m in tar if m.isfile() and m.name.endswith(".inkml"))
    if source.is_dir():
        return sorted(str(p.relative_to(source)) for p in source.rglob("*.inkml")
                      if p.is_file())
    raise FileNotFoundError(f"{source}: not a directory or a .tar/.tar.gz/.tgz file")


def iter_inkml(source: str | Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every .inkml file, in name order for a directory, archive order
    for a tarball (read sequentially, so a .tar.gz is decompressed once)."""
    source = Path(source)
    if _is_tar(source):
        with tarfile.open(source, "r|*") as tar:
            for m in tar:
                if m.isfile() and m.name.endswith(".inkml"):
                    f = tar.extractfile(m)
                    yield m.name, f.read() if f else b""
        return
    for name in inkml_names(source):
        yield name, (source / name).read_bytes()


def key_of(name: str) -> str:
    return Path(name).name[: -len(".inkml")]


def assign_splits(keys: list[str], val_fraction: float = NOT_TRAIN_SHARE,
                  groups: Mapping[str, str] | None = None,
                  writers: Mapping[str, str] | None = None, writer_fraction: float = 0.0
                  ) -> dict[str, str]:
    """key -> "train" or "val" by texlens's one split rule: val when the rank of the key's
    expression (``groups``: key -> caption; a key without one is ranked by its name) is
    below ``val_fraction`` (:func:`texlens.data.splits.expression_rank`). With
    ``writer_fraction``, first "val-writers" for every key whose writer (``writers``: key
    -> writer id) ranks below it, so that no file of those writers is trained on; keys
    of no known writer are never held out so.

    So every writer of an expression lands on one side (split by key, 47% of the
    validation expressions were also training expressions, docs/RESULTS.md), and with the
    default share the training side holds exactly the expressions that
    :func:`~texlens.data.splits.expression_split` trains on: printed renderings of the same
    captions, split by ``texlens data synth --split``, never put a validation formula of
    one set into the training data of the other."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    if not 0.0 <= writer_fraction < 1.0:
        raise ValueError(f"writer_fraction must be in [0, 1), not {writer_fraction}")
    groups, writers = groups or {}, writers or {}

    def held_writer(k: str) -> bool:
        return k in writers and expression_rank(f"writer\0{writers[k]}") < writer_fraction

    return {k: WRITERS_SPLIT if held_writer(k)
            else "val" if expression_rank(groups.get(k, f"key\0{k}")) < val_fraction
            else "train" for k in keys}


def writer_id(name: str, writer: str) -> str:
    """A writer across sources: the file's folder (its source, e.g. KAIST) and the name
    the file gives (writer numbers restart in each source)."""
    return f"{Path(name).parent.name}/{writer}"


@dataclass
class _Job:
    name: str
    data: bytes
    dest: str | None  # image path to write; None: parse only (no caption, say)
    mode: str
    max_side: int
    want_truth: bool
    copies: int = 0  # distorted extra renderings, written as <dest stem>_augN.png
    seed: int = 0
    augment: StrokeAugment = field(default_factory=StrokeAugment)  # how copies are distorted


@dataclass
class _Result:
    name: str
    truth: list[str] | None = None
    truth_error: str | None = None  # why there are no truth tokens (when wanted)
    error: tuple[str, str] | None = None  # (reason category, message): not written
    copies: list[int] = field(default_factory=list)  # N of each key_augN written
    copy_errors: list[str] = field(default_factory=list)


def _work(job: _Job) -> _Result:
    res = _Result(job.name)
    try:
        ink = read_inkml(job.data, job.name)
    except InkmlError as e:
        res.error = ("malformed", str(e))
        return res
    if job.want_truth:
        if ink.truth_latex is None:
            res.truth_error = "no truth annotation"
        else:
            try:
                res.truth = truth_tokens(ink.truth_latex)
            except TokenizeError as e:
                res.truth_error = f"cannot tokenise truth {ink.truth_latex!r}: {e}"
    if job.dest is None or (job.want_truth and res.truth is None):
        return res  # nothing to write: no caption for this key
    try:
        img = render_strokes(ink.traces, mode=job.mode, max_side=job.max_side, strict=True)
    except RenderBoundError as e:
        res.error = ("render bound", f"{job.name}: {e}")
        return res
    if not cv2.imwrite(job.dest, img):
        res.error = ("write", f"{job.dest}: cannot write the image")
        return res
    stem = job.dest[: -len(".png")]
    for n in range(job.copies):
        rng = np.random.default_rng([job.seed, _stable_int(key_of(job.name)), n])
        try:
            img = render_strokes(augment_strokes(ink.traces, rng, job.augment), mode=job.mode,
                                 line_width=pick_line_width(rng), max_side=job.max_side,
                                 strict=True)
        except RenderBoundError as e:
            res.copy_errors.append(f"{job.name} copy {n}: {e}")
            continue
        if cv2.imwrite(f"{stem}_aug{n}.png", img):
            res.copies.append(n)
        else:
            res.copy_errors.append(f"{stem}_aug{n}.png: cannot write the image")
    return res


def _stable_int(key: str) -> int:
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "little")


@dataclass
class CrohmeReport:
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    held_writers: int = 0  # writers whose files all went to val-writers
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (reason, message)
    copies: int = 0  # augmented copies written (in train)
    compared: int = 0  # keys in both the truth and the --compare file
    agreed: int = 0
    disagreements: list[tuple[str, str, str]] = field(default_factory=list)  # key, ours, theirs
    seconds: float = 0.0

    @property
    def skip_counts(self) -> Counter:
        return Counter(reason for reason, _ in self.skipped)


def _caption_map(path: str | Path | None) -> dict[str, list[str]] | None:
    return None if path is None else dict(read_caption_file(path))


def build_crohme(inkml: str | Path, out: str | Path, captions: str | Path | None = None,
                 val_fraction: float = NOT_TRAIN_SHARE, seed: int = 0, workers: int = 2,
                 mode: str = "crohme", compare: str | Path | None = None,
                 max_side: int = 2000, copies: int = 0,
                 progress: Callable[[int], None] | None = None,
                 augment: StrokeAugment | None = None, val_writers: float = 0.0
                 ) -> CrohmeReport:
    """Render every InkML file under ``inkml`` into ``out/train`` and ``out/val``.

    ``val_writers``: the share of writers (``<annotation type="writer">``, by a hash of
    source and name) whose files all go to ``out/val-writers`` and none to training: a
    validation set of new writers (their formulas may be training formulas; ``evaluate
    --held-out`` leaves those out).
    ``captions``: key<TAB>tokens file to take the captions from (else the truth
    LaTeX is tokenised). ``compare``: with no ``captions``, a caption file to
    measure the truth tokenisation against (exact token-sequence match).
    ``copies``: distorted extra renderings of every training key (module docstring),
    distorted as ``augment`` says (default: :class:`StrokeAugment`'s defaults).
    """
    if copies < 0:
        raise ValueError(f"copies must be >= 0, not {copies}")
    t0 = time.perf_counter()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    out = Path(out)
    given = _caption_map(captions)
    reference = _caption_map(compare) if given is None else None
    names = inkml_names(inkml)
    report = CrohmeReport()
    first: dict[str, str] = {}
    for name in names:
        if key_of(name) in first:
            report.skipped.append(("duplicate key", f"{name}: key {key_of(name)!r} already "
                                   f"used by {first[key_of(name)]}"))
        else:
            first[key_of(name)] = name
    # Group by expression so no validation expression is also a training one: the
    # captions given, else each file's truth tokens (a parse-only first pass).
    if given is not None:
        groups = {k: " ".join(given[k]) for k in first if k in given}
    else:
        parsed = map(_work, (_Job(n, d, None, mode, max_side, want_truth=True)
                             for n, d in iter_inkml(inkml) if first.get(key_of(n)) == n))
        groups = {key_of(r.name): " ".join(r.truth) for r in parsed if r.truth is not None}
    writers: dict[str, str] = {}
    if val_writers > 0:
        for name, data in iter_inkml(inkml):
            if first.get(key_of(name)) == name:
                with suppress(InkmlError):  # a broken file is reported when rendered
                    if (w := read_writer(data, name)) is not None:
                        writers[key_of(name)] = writer_id(name, w)
    split = assign_splits(list(first), val_fraction, groups, writers, val_writers)
    splits = (*SPLITS, WRITERS_SPLIT) if val_writers > 0 else SPLITS
    report.written = dict.fromkeys(splits, 0)
    report.held_writers = len({writers[k] for k in writers if split[k] == WRITERS_SPLIT})
    for s in splits:
        (out / s / "images").mkdir(parents=True, exist_ok=True)

    def jobs() -> Iterator[_Job]:
        for name, data in iter_inkml(inkml):
            key = key_of(name)
            if first.get(key) != name:
                continue
            has_caption = given is None or key in given
            dest = str(out / split[key] / "images" / f"{key}.png") if has_caption else None
            yield _Job(name, data, dest, mode, max_side, want_truth=given is None,
                       copies=copies if split[key] == "train" else 0, seed=seed,
                       augment=augment or StrokeAugment())

    lines: dict[str, list[str]] = {s: [] for s in splits}
    with get_context("fork").Pool(workers) if workers > 1 else nullcontext() as pool:
        results = pool.imap(_work, jobs(), chunksize=16) if pool else map(_work, jobs())
        for res in results:
            key = key_of(res.name)
            if reference is not None and key in reference:
                report.compared += 1
                if res.truth == reference[key]:
                    report.agreed += 1
                else:
                    why = res.truth_error or (res.error[1] if res.error else "")
                    ours = " ".join(res.truth) if res.truth is not None else f"<{why}>"
                    report.disagreements.append((key, ours, " ".join(reference[key])))
            tokens = res.truth if given is None else given.get(key)
            if res.error is not None:
                report.skipped.append(res.error)
            elif given is not None and tokens is None:
                report.skipped.append(("no caption", f"{res.name}: key {key!r} not in "
                                                     f"{captions}"))
            elif tokens is None:
                reason = "no truth" if res.truth_error == "no truth annotation" else "tokenise"
                report.skipped.append((reason, f"{res.name}: {res.truth_error}"))
            else:
                lines[split[key]].append(f"{key}\t{' '.join(tokens)}\n")
                report.written[split[key]] += 1
                lines["train"] += [f"{key}_aug{n}\t{' '.join(tokens)}\n" for n in res.copies]
                report.copies += len(res.copies)
                report.skipped += [("copy render bound", m) for m in res.copy_errors]
            if progress:
                progress(1)
    for s in splits:
        (out / s / "caption.txt").write_text("".join(sorted(lines[s])), encoding="utf-8")
    report.seconds = time.perf_counter() - t0
    return report


def write_disagreements(path: str | Path, rows: list[tuple[str, str, str]]) -> None:
    """key<TAB>truth tokens<TAB>reference tokens, one disagreement a line."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("key\ttruth_tokens\treference_tokens\n")
        f.writelines(f"{k}\t{a}\t{b}\n" for k, a, b in rows)

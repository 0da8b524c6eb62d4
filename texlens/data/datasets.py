"""Formula datasets on disk: the two supported layouts, checking, batching.

Standard layout (texlens, CROHME)::

    DIR/caption.txt          key<TAB>space separated tokens, one sample a line
    DIR/key.png|jpg|bmp      or DIR/key_0.bmp (CROHME offline), or under DIR/images/

Competition layout::

    DIR/gt.txt               file<TAB>tokens   (file relative to DIR or DIR/images/)
    DIR/tokens.txt           the vocabulary, one token a line (optional)
    DIR/source.txt           file<TAB>0|1, 0 printed, 1 handwritten (optional)
    DIR/level.txt            file<TAB>difficulty level (optional)

``scan_dataset`` checks every sample before training (missing or unreadable image,
empty caption, token outside the vocabulary) and reports each problem with its
file and line; bad samples are skipped with a count or stop the run, as configured.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_all_start_methods
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from texlens.config import DataConfig
from texlens.data.image import IMAGE_SUFFIXES, ImageError, image_size, load_image
from texlens.data.transforms import (
    build_augment,
    build_page_augment,
    normalises_ink,
    preprocess,
    target_size,
    to_tensor_array,
)
from texlens.data.writer import ordered_map
from texlens.tokens import Vocab


class DatasetError(ValueError):
    """A dataset directory or one of its lines is wrong; the message says where."""


@dataclass
class Sample:
    key: str
    image: Path
    tokens: list[str]
    where: str  # "caption.txt:12", for error messages
    source: int | None = None  # 0 printed, 1 handwritten (competition layout)
    level: int | None = None
    width: int = 0  # original pixel size, filled by scan_dataset
    height: int = 0


@dataclass
class ScanReport:
    samples: list[Sample]
    problems: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.problems)


def _find_image(root: Path, key: str, listing: dict[Path, set[str]]) -> Path | None:
    """The image file of ``key``; ``listing`` caches each folder's names, so that a
    dataset of 100k samples costs two directory listings, not 700k failed stat calls."""
    for folder in (root, root / "images"):
        if folder not in listing:
            listing[folder] = set(os.listdir(folder)) if folder.is_dir() else set()
        names = listing[folder]
        for name in [key] + [key + s for s in IMAGE_SUFFIXES] + [key + "_0.bmp"]:
            # A key with a folder in it (competition layout) is looked up on disk.
            if (name in names or "/" in name) and (folder / name).is_file():
                return folder / name
    return None


def read_pairs(path: Path) -> list[tuple[int, str, str]]:
    """(line number, key, value) of every non-blank ``key<TAB>value`` line; value is "" when
    the line has no tab."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            key, _, value = line.partition("\t")
            rows.append((lineno, key.strip(), value))
    return rows


def _read_meta(path: Path) -> dict[str, int]:
    if not path.is_file():
        return {}
    out = {}
    for lineno, key, value in read_pairs(path):
        try:
            out[key] = int(value.strip())
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: expected 'file<TAB>integer', "
                               f"got {value!r}") from None
    return out


def read_layout(root: str | Path) -> tuple[list[Sample], list[str]]:
    """Samples listed by a dataset directory, and the problems found while listing."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    if (root / "caption.txt").is_file():
        index, competition = root / "caption.txt", False
    elif (root / "gt.txt").is_file():
        index, competition = root / "gt.txt", True
    else:
        raise DatasetError(f"{root}: no caption.txt (standard layout) or gt.txt "
                           "(competition layout)")
    source = _read_meta(root / "source.txt") if competition else {}
    level = _read_meta(root / "level.txt") if competition else {}
    samples, problems = [], []
    listing: dict[Path, set[str]] = {}
    for lineno, key, caption in read_pairs(index):
        where = f"{index}:{lineno}"
        if not caption.strip():
            problems.append(f"{where}: empty caption for {key!r}")
            continue
        image = _find_image(root, key, listing)
        if image is None:
            problems.append(f"{where}: image for {key!r} not found in {root}")
            continue
        samples.append(Sample(key, image, caption.split(), where, source.get(key),
                              level.get(key)))
    return samples, problems


def _image_shape(path: Path, decode: bool) -> tuple[int, int] | str:
    """(height, width) of an image file, or the reason it cannot be read."""
    try:
        if decode:
            return load_image(path).shape
        width, height = image_size(path)
        return height, width
    except ImageError as e:
        return str(e)


def _input_size(path: Path, cfg: DataConfig) -> tuple[int, int]:
    """The model-input (height, width) of an image file; a square for a bad file (it is
    reported and skipped when its batch loads it)."""
    try:
        return preprocess(load_image(path), cfg).shape
    except ImageError:
        return cfg.height, cfg.height


T = TypeVar("T")


def map_images(fn: Callable[[Path], T], paths: Sequence[Path]) -> list[T]:
    """``fn`` over many image files, in forked processes when there are many: decoding
    holds the GIL (threads did not help), and 120k images take a minute on one core."""
    procs = min(8, os.cpu_count() or 1, len(paths) // 2000)
    with ordered_map(fn, paths, procs if "fork" in get_all_start_methods() else 1, 512) as out:
        return list(out)


def scan_dataset(roots: Sequence[str | Path], vocab: Vocab | None = None,
                 max_tokens: int = 0, decode_images: bool = True) -> ScanReport:
    """List and check every sample; problems name the file and line."""
    candidates, problems = [], []
    for root in roots:
        found, bad = read_layout(root)
        problems += bad
        for s in found:
            if vocab is not None and (unk := vocab.unknown(s.tokens)):
                problems.append(f"{s.where}: tokens outside the vocabulary: "
                                f"{' '.join(sorted(set(unk)))}")
                continue
            if max_tokens and len(s.tokens) > max_tokens:
                problems.append(f"{s.where}: {len(s.tokens)} tokens, more than "
                                f"max_tokens={max_tokens}")
                continue
            candidates.append(s)

    sizes = map_images(partial(_image_shape, decode=decode_images),
                       [s.image for s in candidates])
    samples = []
    for s, hw in zip(candidates, sizes, strict=True):
        if isinstance(hw, str):
            problems.append(f"{s.where}: {hw}")
        else:
            s.height, s.width = hw
            samples.append(s)
    return ScanReport(samples, problems)


class FormulaDataset(Dataset):
    """Samples -> (image float32 (1, H, W), token ids with <sos>/<eos>, index)."""

    def __init__(self, samples: Sequence[Sample], vocab: Vocab, cfg: DataConfig,
                 train: bool = False):
        self.samples = list(samples)
        self.vocab = vocab
        self.cfg = cfg
        self.augment = build_augment(cfg.augment) if train else None
        self.page_augment = build_page_augment(cfg.augment) if train else None

    def __len__(self) -> int:
        return len(self.samples)

    def input_sizes(self) -> list[tuple[int, int]]:
        """Model-input (height, width) of every sample, for size-bucketed batching.

        From the scanned image sizes; but when preprocessing resizes by the measured
        symbol height, every image is decoded and preprocessed once, else batches would be
        cut from sizes the model never sees.
        """
        if not normalises_ink(self.cfg):
            return [target_size(s.height or self.cfg.height, s.width or self.cfg.height,
                                self.cfg) for s in self.samples]

        return map_images(partial(_input_size, cfg=self.cfg), [s.image for s in self.samples])

    def __getitem__(self, i: int) -> dict | None:
        s = self.samples[i]
        try:
            img = load_image(s.image)
            if self.page_augment is not None:
                img = self.page_augment(image=img)["image"]
            img = preprocess(img, self.cfg)
        except ImageError as e:
            # The file changed since the scan: report and drop it from the batch.
            print(f"warning: {s.where}: {e}; sample skipped")
            return None
        if self.augment is not None:
            img = self.augment(image=img)["image"]
        return {"image": to_tensor_array(img), "ids": self.vocab.encode(s.tokens), "index": i}


def collate(items: Sequence[dict | None], pad_id: int = Vocab.pad_id,
            multiple: int = 0) -> dict:
    """Pad images to the widest (zeros = blank paper) and ids to the longest sequence;
    with ``multiple``, image height and width round up to a multiple of it."""
    items = [it for it in items if it is not None]
    if not items:
        return {"images": torch.zeros(0, 1, 1, 1),
                "mask": torch.zeros(0, 1, 1, dtype=torch.bool),
                "ids": torch.zeros(0, 2, dtype=torch.long),
                "index": torch.zeros(0, dtype=torch.long)}
    h = max(it["image"].shape[1] for it in items)
    w = max(it["image"].shape[2] for it in items)
    t = max(len(it["ids"]) for it in items)
    if multiple > 0:
        h, w = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    images = np.zeros((len(items), 1, h, w), np.float32)
    mask = np.zeros((len(items), h, w), bool)
    ids = np.full((len(items), t), pad_id, np.int64)
    for k, it in enumerate(items):
        _, ih, iw = it["image"].shape
        images[k, :, :ih, :iw] = it["image"]
        mask[k, :ih, :iw] = True
        ids[k, :len(it["ids"])] = it["ids"]
    return {"images": torch.from_numpy(images), "mask": torch.from_numpy(mask),
            "ids": torch.from_numpy(ids),
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long)}


class SizeBucketSampler(Sampler[list[int]]):
    """Batches of similar input size (less padding = less wasted compute), shuffled per
    epoch.

    Sorting by height, then by width with a little noise, and cutting into batches keeps
    batches tight while still varying their composition from epoch to epoch. Heights
    matter under ``size_mode: scale``, where they vary: sorting by width alone padded
    a 24-px formula to the 96 px of its batch neighbour and cost a third of the speed
    (docs/RESULTS.md, handwriting throughput).
    """

    def __init__(self, widths: Sequence[int], batch_size: int, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1,
                 heights: Sequence[int] | None = None):
        self.widths = list(widths)
        self.heights = list(heights) if heights is not None else [0] * len(self.widths)
        if len(self.heights) != len(self.widths):
            raise ValueError(f"{len(self.heights)} heights for {len(self.widths)} widths")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        noise = [rng.uniform(-8, 8) if self.shuffle else 0.0 for _ in self.widths]
        order = sorted(range(len(self.widths)),
                       key=lambda i: (self.heights[i], self.widths[i] + noise[i]))
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        # Each process takes every world_size-th batch: different data per rank.
        n = len(batches) // self.world_size * self.world_size if self.world_size > 1 else None
        return batches[:n][self.rank::self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        n = -(-len(self.widths) // self.batch_size)
        return n // self.world_size if self.world_size > 1 else n

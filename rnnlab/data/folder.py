"""Text classification data from a ``root/<class>/*.txt`` tree.

The semantics of ``keras.utils.text_dataset_from_directory``:

- every sub-folder of ``root`` is a class; classes are sorted by name and the
  i-th class gets label i (so IMDB's ``neg`` = 0, ``pos`` = 1);
- every ``*.txt`` file below a class folder (sub-folders included) is one sample,
  read in sorted path order;
- ``class_names`` picks (and orders) the classes explicitly;
- a seeded validation split (here stratified: the same fraction of every class,
  see `stratified_split`).

Files are decoded as UTF-8; bytes that are not valid UTF-8 are replaced by
U+FFFD and counted in `TextSamples.n_replaced_files` (a warning says how many),
so one bad file never stops a run.

    >>> samples = read_text_folder("reviews/train")       # doctest: +SKIP
    >>> samples.class_names, len(samples), samples.labels[:3]
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

HOW_TO_GET_FOLDER_DATA = (
    "Get the data one of two ways: (1) point the data module at a folder laid out as "
    "root/<class>/*.txt (one sub-folder per class, at least two classes), or "
    "(2) use the IMDB data module, which downloads the official archive or reads a local one "
    "(data.archive=PATH or env RNNLAB_IMDB_ARCHIVE)."
)


@dataclass
class TextSamples:
    """Texts with integer labels, in a fixed (sorted) order.

    Attributes:
        texts: decoded texts.
        labels: int64 array (N,), index into `class_names`.
        class_names: class folder names, sorted (label i = class_names[i]).
        paths: file paths relative to the root, e.g. ``pos/123_9.txt``.
        n_replaced_files: how many files had bytes that were not valid UTF-8.
    """

    texts: list[str]
    labels: np.ndarray
    class_names: list[str]
    paths: list[str] = field(default_factory=list)
    n_replaced_files: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, index: np.ndarray) -> "TextSamples":
        """The samples at `index` (int array), in that order."""
        return TextSamples(
            texts=[self.texts[i] for i in index],
            labels=self.labels[index],
            class_names=self.class_names,
            paths=[self.paths[i] for i in index] if self.paths else [],
            n_replaced_files=self.n_replaced_files,
        )


def decode(data: bytes) -> tuple[str, bool]:
    """UTF-8 text of `data` and whether invalid bytes had to be replaced by U+FFFD."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), True


def list_classes(root: Path) -> list[str]:
    """Sorted names of the sub-folders of `root` (hidden ones skipped)."""
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def _txt_files(folder: Path) -> list[str]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        files.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".txt"))
    return files


def has_txt(folder: Path) -> bool:
    """Whether `folder` (sub-folders included) holds a ``.txt`` file; stops at the first one."""
    for _, _, filenames in os.walk(folder, followlinks=True):
        if any(f.endswith(".txt") for f in filenames):
            return True
    return False


def read_text_folder(root, class_names: Sequence[str] | None = None) -> TextSamples:
    """Read every ``root/<class>/**/*.txt`` file; labels follow sorted class names.

    Raises:
        FileNotFoundError: `root` does not exist (the message says how to get data).
        ValueError: fewer than two classes, a missing class folder, or a class folder
            without any ``.txt`` file.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"text folder not found: {root}. {HOW_TO_GET_FOLDER_DATA}")
    found = list_classes(root)
    if class_names is None:
        class_names = found
    class_names = list(class_names)
    missing = [c for c in class_names if c not in found]
    if missing:
        raise ValueError(f"class folders {missing} not found in {root}: expected {class_names}, got {found}")
    if len(class_names) < 2:
        raise ValueError(
            f"{root} must hold at least two class folders (root/<class>/*.txt): expected >= 2, "
            f"got {len(class_names)} ({class_names}). A classifier needs two classes; add the other class folder."
        )
    texts, labels, paths = [], [], []
    n_replaced = 0
    for label, cls in enumerate(class_names):
        files = _txt_files(root / cls)
        if not files:
            raise ValueError(f"class folder {root / cls} holds no .txt file: expected at least 1, got 0")
        skip = len(str(root)) + 1
        for f in files:
            with open(f, "rb") as fh:
                data = fh.read()
            try:
                texts.append(data.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(data.decode("utf-8", errors="replace"))
                n_replaced += 1
            paths.append(f[skip:])  # relative to root, e.g. "pos/123_9.txt"
        labels.extend([label] * len(files))
    if n_replaced:
        log.warning("%d of %d files under %s were not valid UTF-8; invalid bytes replaced by U+FFFD", n_replaced, len(texts), root)
    return TextSamples(texts, np.asarray(labels, dtype=np.int64), class_names, paths, n_replaced)


def _quotas(counts: np.ndarray, total: int) -> np.ndarray:
    """Split `total` over classes in proportion to `counts` (largest remainder, ties to the lower label)."""
    exact = counts * (total / counts.sum())
    quota = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: total - quota.sum()]] += 1
    return quota


def stratified_split(labels: np.ndarray, fraction: float, seed: int,
                     groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of indices into (keep, held_out) with ``round(fraction * N)`` held out.

    Every class gives the same share of its samples (largest-remainder rounding), so
    label proportions are kept; both index arrays are sorted, and the split depends
    only on (labels, fraction, seed, groups). ``fraction=0`` holds nothing out.
    With ``groups`` (N,) ints, each class holds out whole groups in a seeded order (the last one
    cut to the quota), so samples that belong together (the reviews of one movie) fall on one side.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1): expected e.g. 0.2, got {fraction}")
    return _split_count(labels, int(round(fraction * len(labels))), seed, groups)


def file_blocks(paths: list[str], size: int) -> np.ndarray:
    """Group of each file: the leading number of its name (``123_9.txt`` -> 123, else its position) // ``size``.

    IMDB numbers the reviews of one movie consecutively (docs/imdb.md), so a block of 100 numbers holds whole movies
    but at its two ends.
    """
    numbers = [re.match(r"\d*", os.path.basename(p)).group() for p in paths]
    return np.array([int(n) if n else i for i, n in enumerate(numbers)], dtype=np.int64) // size


def _split_count(labels: np.ndarray, total: int, seed: int,
                 groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    held = [np.zeros(0, dtype=np.int64)]
    for c, q in zip(classes, _quotas(counts, total) if total else np.zeros_like(counts)):
        idx = np.flatnonzero(labels == c)
        if groups is None:
            held.append(rng.permutation(idx)[:q])
            continue
        order = rng.permutation(np.unique(groups[idx]))  # the class's groups in a seeded order
        rank = np.empty(order.max() + 1 if len(order) else 0, dtype=np.int64)
        rank[order] = np.arange(len(order))
        held.append(idx[np.argsort(rank[groups[idx]], kind="stable")][:q])  # whole groups first, in that order
    held = np.sort(np.concatenate(held))
    keep = np.setdiff1d(np.arange(len(labels)), held)
    return keep, held


def stratified_subset(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded, stratified subset of exactly ``min(n, N)`` samples (all if n is None)."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    if n < 1:
        raise ValueError(f"subset must be a positive number of samples or None: got {n}")
    return _split_count(labels, int(n), seed)[1]

"""The IMDB Large Movie Review Dataset (Maas et al., ACL 2011): fetch, cache, read.

Where the data comes from, in this order:

1. a local archive: the ``archive`` argument (config ``data.archive``), else env
   ``RNNLAB_IMDB_ARCHIVE``. It has the official layout but not the official
   checksum (e.g. the labeled-only copy in ``shared/data``), so its *structure*
   is verified instead: ``aclImdb/{train,test}/{neg,pos}/*.txt``, none empty.
2. else the official archive, downloaded with pooch from `IMDB_URL` and checked
   against `IMDB_HASH` (a mismatch raises `ChecksumError`; pooch deletes the bad
   download and leaves the rest of the cache alone; no network raises
   `DownloadError`, with both ways to get the data).

The cache root is the ``root`` argument (config ``data.root``), else env
``RNNLAB_DATA``, else ``~/.cache/rnnlab``. An archive is extracted once, to
``<root>/imdb/<hash>/aclImdb``: into a temporary folder first, renamed into place
only when complete and verified, so an interrupted run never leaves a half
dataset that a later run would trust.

Labels come from the folder (``neg`` = 0, ``pos`` = 1); the rating (1-4 or 7-10)
from the file name ``ID_RATING.txt``. ``train/unsup`` is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .folder import TextSamples, read_text_folder

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_HASH = "md5:7c2ac02c03563afcf9b574c7e56c153a"
ARCHIVE_NAME = "aclImdb_v1.tar.gz"
TOP = "aclImdb"
SPLITS = ("train", "test")
CLASSES = ("neg", "pos")
ENV_ROOT = "RNNLAB_DATA"
ENV_ARCHIVE = "RNNLAB_IMDB_ARCHIVE"
_MEMBER = re.compile(rf"^(?:\./)?{TOP}/(train|test)/(neg|pos)/([^/]+\.txt)$")
_COMPLETE = ".rnnlab-complete"


class ChecksumError(ValueError):
    """A downloaded archive does not match its known hash."""


class LayoutError(ValueError):
    """An archive or folder does not have the IMDB layout."""


class ArchiveError(ValueError):
    """A local archive cannot be read: a directory, an empty or truncated file, or not a tar.gz."""


class DownloadError(ConnectionError):
    """The archive could not be fetched: no network, a proxy, or an HTTP error."""


def how_to_get(root: Path) -> str:
    return (
        "Get the data one of two ways: (1) download the official archive: leave data.archive and "
        f"RNNLAB_IMDB_ARCHIVE unset and rnnlab fetches {IMDB_URL} into {root} (needs internet); "
        "(2) use a local copy in the official layout: data.archive=PATH or env RNNLAB_IMDB_ARCHIVE=PATH."
    )


def data_root(root=None) -> Path:
    """The cache folder: `root`, else env RNNLAB_DATA, else ~/.cache/rnnlab."""
    root = root or os.environ.get(ENV_ROOT) or "~/.cache/rnnlab"
    return Path(root).expanduser()


def local_archive(archive=None) -> Path | None:
    """The local archive to use: `archive`, else env RNNLAB_IMDB_ARCHIVE, else None (download)."""
    archive = archive or os.environ.get(ENV_ARCHIVE)
    return Path(archive).expanduser() if archive else None


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(root=None, url: str = IMDB_URL, known_hash: str = IMDB_HASH, progressbar: bool = True) -> Path:
    """Download `url` into `root` with pooch (skipped when a file with `known_hash` is there).

    Raises:
        ChecksumError: the download does not match `known_hash` (the bad file is deleted).
        DownloadError: the server could not be reached or answered with an error (nothing is written).
    """
    import pooch
    import requests

    root = data_root(root)
    try:
        path = pooch.retrieve(url, known_hash=known_hash, fname=ARCHIVE_NAME, path=root, progressbar=progressbar)
    except requests.exceptions.RequestException as e:
        status = getattr(e.response, "status_code", None)  # pooch uses requests; its errors carry the response
        what = f"the server answered HTTP {status}" if status else f"{type(e).__name__}: no network, or a proxy"
        raise DownloadError(f"could not download {url} ({what}); nothing was written. {how_to_get(root)}") from e
    except ValueError as e:  # pooch reports a hash mismatch as ValueError, after deleting its temporary file
        if "hash" not in str(e).lower():
            raise
        raise ChecksumError(
            f"download of {url} failed its checksum: expected {known_hash}, got another file (corrupt or "
            f"truncated download; it was deleted, nothing else in {root} was touched). Retry. {how_to_get(root)}"
        ) from e
    return Path(path)


def extract(archive: Path, dest: Path) -> Path:
    """Extract the reviews of `archive` to ``dest/aclImdb`` atomically and return that folder.

    Only ``aclImdb/{train,test}/{neg,pos}/*.txt`` are written (not ``train/unsup``
    or the bag-of-words files). The tree is built in a temporary sibling folder,
    verified, then renamed into place; a folder without the completion marker is
    never trusted.

    Raises:
        ArchiveError: the archive is empty, truncated or not a tar.gz (nothing is extracted).
        LayoutError: the archive lacks a split or a class, or a class folder is empty.
    """
    final = dest / TOP
    if (final / _COMPLETE).exists():
        return final
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        counts = {(s, c): 0 for s in SPLITS for c in CLASSES}
        seen = set()
        try:
            _extract_reviews(archive, tmp, counts, seen)
        except (tarfile.TarError, EOFError, zlib.error) as e:  # not OSError: a full disk is not the archive's fault
            raise ArchiveError(unreadable(archive, e)) from None
        problems = [f"{TOP}/{s}/{c}/ has no .txt file" for (s, c), n in counts.items() if n == 0]
        if problems:
            raise LayoutError(
                f"{archive} does not have the IMDB layout: expected {TOP}/{{train,test}}/{{neg,pos}}/*.txt, "
                f"none empty; {'; '.join(problems)} (top-level entries: {sorted(seen)[:10]})"
            )
        (tmp / TOP / _COMPLETE).write_text(json.dumps({"archive": str(archive), "counts": {f"{s}/{c}": n for (s, c), n in counts.items()}}))
        try:
            os.rename(tmp / TOP, final)
        except OSError:  # another process finished first; keep its copy if complete
            if not (final / _COMPLETE).exists():
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp / TOP, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _extract_reviews(archive: Path, tmp: Path, counts: dict, seen: set) -> None:
    """Write the review files of `archive` under ``tmp/aclImdb``, counting them per (split, class)."""
    made = set()
    with tarfile.open(archive, "r|*") as tar:  # one streaming pass over the gzip
        for m in tar:
            seen.add(m.name.lstrip("./").split("/")[0])
            match = _MEMBER.match(m.name)
            if not (match and m.isfile()):
                continue
            split, cls, name = match.groups()
            folder = tmp / TOP / split / cls
            if folder not in made:
                folder.mkdir(parents=True, exist_ok=True)
                made.add(folder)
            with open(folder / name, "wb") as out:
                shutil.copyfileobj(tar.extractfile(m), out)
            counts[split, cls] += 1


def unreadable(archive: Path, error: Exception) -> str:
    """What is wrong with an archive that tarfile could not read, and what to do."""
    size = archive.stat().st_size
    with open(archive, "rb") as f:
        head = f.read(8)
    if size == 0:
        what = "it is empty (0 bytes)"
    elif head[:2] != b"\x1f\x8b" and not isinstance(error, (EOFError, zlib.error)):
        what = f"it is not a gzip-compressed tar archive (it starts with {head!r})"
    elif "unexpected end" in str(error) or isinstance(error, EOFError):
        what = f"it ends before the archive does ({size:,} bytes): truncated, e.g. an interrupted download or copy"
    else:
        what = f"it is corrupt ({size:,} bytes; {type(error).__name__}: {error})"
    return (f"IMDB archive {archive} cannot be read: {what}. Expected the official {ARCHIVE_NAME} (about 84 MB) "
            f"or a tar.gz in its layout; get a complete copy again. Nothing was extracted or cached from it.")


@dataclass
class Prepared:
    """Where the extracted data is and a fingerprint of its source (for cache keys)."""

    folder: Path
    fingerprint: str


def prepare(root=None, archive=None, url: str = IMDB_URL, known_hash: str = IMDB_HASH, progressbar: bool = True) -> Prepared:
    """Make sure an extracted, verified copy of IMDB exists in the cache; return where.

    Raises:
        FileNotFoundError: the local archive does not exist (the message says how to get the data).
        ArchiveError: the local archive is a directory, or a file that is not a complete tar.gz.
        ChecksumError: the download does not match `known_hash`.
        LayoutError: the archive does not have the IMDB layout.
    """
    root = data_root(root)
    local = local_archive(archive)
    if local is not None:
        if local.is_dir():
            raise ArchiveError(f"IMDB archive {local} is a directory: expected the .tar.gz file itself (the official "
                               f"{ARCHIVE_NAME} or a copy in its layout). {how_to_get(root)}")
        if not local.is_file():
            raise FileNotFoundError(f"IMDB archive not found: {local}. {how_to_get(root)}")
        fingerprint = "sha256-" + file_hash(local)[:20]
    else:
        local = download(root, url, known_hash, progressbar)
        fingerprint = known_hash.replace(":", "-")[:27]
    return Prepared(extract(local, root / "imdb" / fingerprint), fingerprint)


@dataclass
class Reviews(TextSamples):
    """`TextSamples` with each review's IMDB rating (from ``ID_RATING.txt``; -1 if the name has none)."""

    ratings: np.ndarray = None

    def select(self, index: np.ndarray) -> "Reviews":
        s = super().select(index)
        return Reviews(s.texts, s.labels, s.class_names, s.paths, s.n_replaced_files, self.ratings[index])


def read_split(folder, split: str) -> Reviews:
    """Read ``folder/<split>/{neg,pos}/*.txt``: texts, labels (neg=0, pos=1), ratings."""
    folder = Path(folder)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}: got {split!r}")
    s = read_text_folder(folder / split, class_names=CLASSES)
    ratings = np.array([_rating(p) for p in s.paths], dtype=np.int64)
    return Reviews(s.texts, s.labels, s.class_names, s.paths, s.n_replaced_files, ratings)


def _rating(path: str) -> int:
    stem = os.path.basename(path)[:-4]
    _, _, rating = stem.rpartition("_")
    return int(rating) if rating.isdigit() else -1

"""Tiny datasets for tests, in the layouts rnnlab.data reads.

`make_imdb_archive` writes a tar.gz in the layout of the official
``aclImdb_v1.tar.gz`` (``aclImdb/{train,test}/{neg,pos}/ID_RATING.txt``), small
enough to build in milliseconds, with switches for the broken variants the
loaders must reject. `make_text_folder` writes a ``root/<class>/*.txt`` tree.

Generated reviews are learnable: positive ones carry words such as "great",
negative ones "awful", mixed with shared filler words, IMDB's ``<br />`` tags
and punctuation, with lengths that vary so that bucketing has work to do.

    >>> from helpers import make_imdb_archive  # tests/ is on sys.path under pytest
    >>> path = make_imdb_archive(tmp_path / "imdb.tar.gz", n_per_class=8)

`command_line` composes the train config as ``python -m rnnlab.train OVERRIDES`` hands it to its task, with Hydra's
job config set.
"""

from __future__ import annotations

import io
import random
import tarfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Mapping, Sequence

POSITIVE_WORDS = ["great", "wonderful", "loved", "best", "brilliant", "moving"]
NEGATIVE_WORDS = ["awful", "boring", "worst", "waste", "terrible", "dull"]
FILLER_WORDS = ["the", "movie", "film", "plot", "actors", "was", "a", "and", "it", "story", "scene", "of"]

Text = str | bytes


def make_review(label: int, rng: random.Random, min_words: int = 4, max_words: int = 40) -> str:
    """One synthetic review: filler words plus words of its class (label 1 = positive)."""
    n = rng.randint(min_words, max_words)
    cue = POSITIVE_WORDS if label == 1 else NEGATIVE_WORDS
    words = [rng.choice(cue) if rng.random() < 0.3 else rng.choice(FILLER_WORDS) for _ in range(n)]
    words[0] = words[0].capitalize()
    text = " ".join(words)
    if n > 8:  # IMDB-style line breaks and punctuation, which the vectorizer must strip
        cut = n // 2
        text = " ".join(words[:cut]) + ".<br /><br />" + " ".join(words[cut:])
    return text + rng.choice([".", "!", "...", "?"])


def _texts_for(texts, split: str, cls: str, label: int, n: int, rng: random.Random) -> list[Text]:
    if texts is None:
        return [make_review(label, rng) for _ in range(n)]
    if isinstance(texts, Mapping):
        return list(texts.get((split, cls), texts.get(cls, [])))
    texts = list(texts)
    return [texts[i % len(texts)] for i in range(n)]


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def make_imdb_archive(
    path,
    n_per_class: int = 8,
    texts: Sequence[Text] | Mapping | None = None,
    *,
    splits: Iterable[str] = ("train", "test"),
    classes: Iterable[str] = ("neg", "pos"),
    empty: Iterable[tuple[str, str]] = (),
    top: str = "aclImdb",
    unsup: int = 0,
    extra_files: Mapping[str, Text] | None = None,
    seed: int = 0,
) -> Path:
    """Write a tiny IMDB archive in the official layout and return its path.

    Args:
        path: where to write the ``.tar.gz``.
        n_per_class: reviews per (split, class).
        texts: None for generated reviews; a sequence of str/bytes cycled into every
            (split, class); or a mapping ``{(split, cls): [...]}`` / ``{cls: [...]}``
            (bytes are written as they are, e.g. to test non-UTF-8 input).
        splits, classes: which split and class folders exist (drop one for a broken layout).
        empty: (split, class) folders created with no review in them.
        top: the top-level folder name ("" puts the splits at the archive root: wrong layout).
        unsup: number of unlabeled reviews in ``train/unsup`` (the official archive has 50,000).
        extra_files: more members, ``{relative name: content}`` under ``top``.
        seed: seeds the generated reviews and ratings.

    File names are ``ID_RATING.txt`` with ratings 7-10 for pos and 1-4 for neg, as in IMDB.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    prefix = f"{top}/" if top else ""
    empty = set(empty)
    with tarfile.open(path, "w:gz") as tar:
        if top:
            _add_dir(tar, top)
            _add_file(tar, prefix + "README", b"tiny IMDB-like archive for tests\n")
            _add_file(tar, prefix + "imdb.vocab", b"the\nmovie\n")
        for split in splits:
            _add_dir(tar, prefix + split)
            for cls in classes:
                folder = f"{prefix}{split}/{cls}"
                _add_dir(tar, folder)
                if (split, cls) in empty:
                    continue
                label = 1 if cls == "pos" else 0
                for i, text in enumerate(_texts_for(texts, split, cls, label, n_per_class, rng)):
                    rating = rng.randint(7, 10) if label == 1 else rng.randint(1, 4)
                    data = text if isinstance(text, bytes) else text.encode("utf-8")
                    _add_file(tar, f"{folder}/{i}_{rating}.txt", data)
        if unsup and "train" in splits:
            _add_dir(tar, prefix + "train/unsup")
            for i in range(unsup):
                _add_file(tar, f"{prefix}train/unsup/{i}_0.txt", make_review(i % 2, rng).encode())
        for name, content in (extra_files or {}).items():
            _add_file(tar, prefix + name, content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def make_text_folder(root, class_texts: Mapping[str, Sequence[Text]] | None = None, n_per_class: int = 6, seed: int = 0) -> Path:
    """Write ``root/<class>/<i>.txt`` files and return root.

    ``class_texts`` maps class name -> texts (str or bytes); None writes generated
    reviews for classes "neg" and "pos".
    """
    root = Path(root)
    rng = random.Random(seed)
    if class_texts is None:
        class_texts = {cls: [make_review(label, rng) for _ in range(n_per_class)] for label, cls in enumerate(["neg", "pos"])}
    for cls, texts in class_texts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(texts):
            data = text if isinstance(text, bytes) else text.encode("utf-8")
            (root / cls / f"{i}.txt").write_bytes(data)
    return root


def compose_train(*overrides: str):
    """The train config of ``overrides``, composed in-process (no Hydra job: ``rnnlab.train`` takes every setting as
    given)."""
    from hydra import compose, initialize_config_module

    import rnnlab.conf  # noqa: F401  (the schema)

    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


def tiny_text(archive, out, cache, **data) -> list[str]:
    """Overrides that shrink an IMDB config to a CPU run of seconds on ``archive`` (a `make_imdb_archive`), its cache
    in ``cache``, writing under ``out``: batches of 8, a vocabulary of 200 words, 40 tokens per review, no progress
    bar, a log line every step. ``data``: other ``data.*`` settings (they replace these). The run's length
    (``trainer.max_epochs``) is the caller's."""
    data = {"batch_size": 8, "max_tokens": 200, "max_length": 40, **data}
    return [f"data.archive={archive}", f"data.root={cache}", *(f"data.{k}={v}" for k, v in data.items()),
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "trainer.log_every_n_steps=1",
            f"output_dir={out}"]


def cli(cwd, module, *args, env: Mapping | None = None):
    """``python -m MODULE ARGS`` in a subprocess in ``cwd``, one OpenMP thread, ``HYDRA_FULL_ERROR`` unset unless
    ``env`` sets it (so a user error is one ``error:`` line); returns the finished process, its output captured."""
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          env={**base, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=300)


def tiny_synthetic(out, experiment: str = "adding") -> list[str]:
    """Overrides that shrink a synthetic-task experiment to a CPU run of well under a second, writing under ``out``:
    T = 6, 40 training sequences in batches of 10, 4 units, 4 steps, no progress bar, diagnostics every 50 steps."""
    return [f"+experiment={experiment}", "data.length=6", "data.train_size=40", "data.val_size=10", "data.test_size=10",
            "data.batch_size=10", "model.hidden_size=4", "trainer.max_steps=4", "trainer.enable_progress_bar=false",
            "diagnostics.every_n_steps=50", f"output_dir={out}"]


def covering_product(rows: Sequence, columns: Sequence, row_id, column_ids: Sequence[str]) -> list:
    """The product ``rows x columns`` as ``pytest.param((row, *column))``, every pair outside the diagonal marked slow.

    The fast suite runs row ``i`` with column ``i mod len(columns)`` (every row, and every column when there are at
    least as many rows); ``make test-all`` runs the whole product. For grids whose every case costs seconds (the
    Triton kernels under the CPU interpreter)."""
    import pytest

    return [pytest.param(row, *column, id=f"{row_id(row)}-{column_ids[j]}",
                         marks=() if j == i % len(columns) else pytest.mark.slow)
            for i, row in enumerate(rows) for j, column in enumerate(columns)]


@contextmanager
def command_line(*overrides: str):
    """The config of ``python -m rnnlab.train OVERRIDES`` inside the block: with Hydra's job config set, rnnlab.train
    knows which settings the command line gives (a config composed in-process gives them all). ``hydra.mode=MULTIRUN``
    and ``hydra.runtime.output_dir=...`` make it a job of a multirun."""
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        with open_dict(cfg):
            del cfg["hydra"]  # as Hydra hands the config to its task
        yield cfg
    finally:
        HydraConfig.instance().cfg = None

"""Pretrained word vectors (GloVe / word2vec text format) for a vocabulary.

The text format is one word per line followed by its D floats, separated by
spaces; word2vec files start with a header line ``<count> <D>`` (detected and
skipped). Only lines whose word is in the vocabulary are parsed, so a 400k-word
GloVe file loads in about a second.

Rows of words without a vector, and row 0 (padding ``''``), are zeros; row 1
(``'[UNK]'``) too unless the file has that token. Coverage counts the real
tokens (index >= 2) that got a vector.

    >>> weights, coverage = load_embeddings("glove.6B.100d.txt", vectorizer.get_vocabulary())  # doctest: +SKIP
    >>> coverage["fraction"]
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)


def vectors_dim(path) -> int:
    """D, the number of values per word of a GloVe / word2vec text file, from its first line (a word2vec header
    ``<count> <D>`` or a vector), without reading the rest.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is empty.
    """
    path = _existing(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        line = f.readline()
    word, _, rest = line.rstrip("\n").rstrip().partition(" ")
    if not line.strip():
        raise ValueError(f"embeddings file {path} is empty: expected lines 'word v1 ... vD'")
    return int(rest) if word.isdigit() and rest.strip().isdigit() else len(rest.split())


def _existing(path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"embeddings file not found: {path} (a GloVe or word2vec text file: 'word v1 ... vD' per line)")
    return path


def load_embeddings(path, vocabulary: Sequence[str]) -> tuple[torch.Tensor, dict]:
    """Embedding matrix FloatTensor (V, D) for `vocabulary` and a coverage report.

    Returns:
        (weights, coverage) with coverage ``{"found", "total", "fraction", "dim", "missing_examples"}``
        where total = V - 2 (padding and OOV not counted).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: a line has a different number of values than the first (expected D, got ...).
    """
    path = _existing(path)
    index = {w: i for i, w in enumerate(vocabulary)}
    rows: dict[int, np.ndarray] = {}
    dim = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            word, _, rest = line.rstrip("\n").rstrip().partition(" ")
            if lineno == 1 and word.isdigit() and rest.strip().isdigit():
                dim = int(rest)  # word2vec header "<count> <dim>"
                continue
            if dim is None:
                dim = len(rest.split())
            i = index.get(word)
            if i is None or i == 0 or i in rows:
                continue
            vec = np.array(rest.split(), dtype=np.float32)
            if vec.shape[0] != dim:
                raise ValueError(f"{path}:{lineno}: vector for {word!r} must have {dim} values like the first line: expected {dim}, got {vec.shape[0]}")
            rows[i] = vec
    if dim is None:
        raise ValueError(f"embeddings file {path} is empty: expected lines 'word v1 ... vD'")
    weights = torch.zeros(len(vocabulary), dim)
    if rows:
        idx = torch.tensor(list(rows))
        weights[idx] = torch.from_numpy(np.stack(list(rows.values())))
    total = max(len(vocabulary) - 2, 0)
    found = sum(1 for i in rows if i >= 2)
    missing = [w for i, w in enumerate(vocabulary) if i >= 2 and i not in rows][:10]
    coverage = {"found": found, "total": total, "fraction": found / total if total else 0.0, "dim": dim, "missing_examples": missing}
    log.info("embeddings %s: %d of %d vocabulary tokens found (%.1f%%), dim %d", path.name, found, total, 100 * coverage["fraction"], dim)
    return weights, coverage

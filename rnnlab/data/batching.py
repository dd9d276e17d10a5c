"""Variable-length sequences, length-bucketed batches, dynamic padding.

A `RaggedDataset` stores N token-id sequences as one flat int32 array plus offsets
(IMDB's 25,000 train reviews: ~23 MB). `BucketBatchSampler` groups sequences of
similar length so that padding each batch to its own longest sequence
(`collate`) wastes little:

1. it shuffles all indices (training: seeded by ``seed + epoch``, a new order every
   epoch; evaluation: seeded by ``seed``, one order for every epoch),
2. cuts them into chunks of ``bucket_batches * batch_size`` (~50 batches) and sorts
   each chunk by length,
3. cuts each chunk into batches and shuffles the order of all batches.

Batches stay random (a sequence's neighbours change every epoch) yet nearly
uniform in length. Evaluation batches are shuffled too, so that any prefix of them
(``limit_val_batches``, an interrupted pass) is a fair sample of the classes and the
lengths, and not the first files of one class; the full pass sees every sequence once,
so its metrics do not depend on the order.

`collate` returns ``(ids (B, L) int64, lengths (B,) int64, labels (B,))`` with L = the
batch's longest sequence, rounded up to a multiple of ``multiple`` (at most ``cap``):
with ``multiple=32`` and reviews cut at 600 tokens a run sees at most 19 distinct batch
lengths instead of up to 600, so oneDNN, which builds and caches kernels per shape, and
the allocator, which keeps blocks per size, reuse what they made (docs/data.md has the
memory this saves). Models that read lengths (the default) give the same outputs for any
padding; a model that reads the padding (``use_lengths=False``) sees a few more pad tokens.

Empty sequences (a review that standardizes to nothing) are kept: they get
length 1 and a single padding token (id 0), so every length is >= 1, as the
recurrent cells require, and the model sees "nothing" rather than crashing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class RaggedDataset(Dataset):
    """N sequences ``flat[offsets[i]:offsets[i + 1]]`` with labels; items are (ids, label)."""

    def __init__(self, flat: np.ndarray, lengths: np.ndarray, labels: np.ndarray, label_dtype: torch.dtype = torch.float32):
        if len(lengths) != len(labels):
            raise ValueError(f"lengths and labels must have the same size: got {len(lengths)} and {len(labels)}")
        if int(np.sum(lengths)) != len(flat):
            raise ValueError(f"sum(lengths) must equal len(flat): expected {len(flat)}, got {int(np.sum(lengths))}")
        self.flat = torch.from_numpy(np.ascontiguousarray(flat, dtype=np.int64))
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.labels = torch.as_tensor(np.asarray(labels)).to(label_dtype)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int):
        return self.flat[self.offsets[i]:self.offsets[i + 1]], self.labels[i]


def chop(lengths: np.ndarray, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut each of N sequences into pieces of ``size`` tokens (its last piece shorter), each with its sequence's label.

    Returns ``(lengths, labels)`` of the pieces, in order, so ``flat`` is unchanged; an empty sequence stays one
    empty piece.

    >>> chop(np.array([5, 2, 0]), np.array([1, 0, 1]), 2)
    (array([2, 2, 1, 2, 0]), array([1, 1, 1, 0, 1]))
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    pieces = np.maximum(-(-lengths // size), 1)  # (N,)
    out = np.full(int(pieces.sum()), size, dtype=np.int64)
    last = np.cumsum(pieces) - 1
    out[last] = lengths - size * (pieces - 1)
    return out, np.repeat(np.asarray(labels), pieces)


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    """The fold (0 ... folds - 1) of each of n sequences: a seeded permutation cut into ``folds`` near-equal parts.

    >>> fold_ids(5, 2, seed=0)
    array([1, 1, 0, 0, 0])
    """
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=np.int64)
    for k, part in enumerate(np.array_split(order, folds)):
        out[part] = k
    return out


def select(flat: np.ndarray, lengths: np.ndarray, labels: np.ndarray, keep: np.ndarray):
    """``(flat, lengths, labels)`` of the sequences where the boolean mask ``keep`` is true, in order."""
    lengths = np.asarray(lengths)
    return np.asarray(flat)[np.repeat(keep, lengths)], lengths[keep], np.asarray(labels)[keep]


def collate(batch, pad_to: int | None = None, multiple: int = 1, cap: int | None = None):
    """Pad a list of (ids, label) to the longest sequence rounded up to `multiple` (at most `cap`), or to `pad_to`.

    Returns ``(ids (B, L) int64, lengths (B,) int64, labels (B,))``; an empty
    sequence gets length 1 and one padding token (id 0).
    """
    seqs, labels = zip(*batch)
    lengths = torch.tensor([max(len(s), 1) for s in seqs], dtype=torch.long)  # (B,)
    if pad_to is None:
        L = -(-int(lengths.max()) // multiple) * multiple  # ceil to a multiple
        L = L if cap is None else max(min(L, cap), int(lengths.max()))
    else:
        L = pad_to
    ids = torch.zeros(len(seqs), L, dtype=torch.long)  # (B, L)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = s[:L]
    return ids, lengths.clamp_(max=L), torch.stack(labels)


class Collate:
    """`collate` with fixed arguments, for a DataLoader: ``Collate(pad_to=600)`` pads every batch to 600
    (Keras-style inputs); ``Collate(multiple=32, cap=600)`` pads each batch to its longest sequence rounded up."""

    def __init__(self, pad_to: int | None = None, multiple: int = 1, cap: int | None = None):
        if not (isinstance(multiple, int) and multiple >= 1):
            raise ValueError(f"multiple must be an int >= 1 (batch lengths are rounded up to it): got {multiple!r}")
        self.pad_to, self.multiple, self.cap = pad_to, multiple, cap

    def __call__(self, batch):
        return collate(batch, self.pad_to, self.multiple, self.cap)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices with similar lengths: shuffle, sort within chunks, shuffle batches.

    Args:
        lengths: sequence lengths (N,).
        batch_size: sequences per batch.
        shuffle: True (training): a new seeded order every epoch. False (evaluation): one seeded order, the
            same every epoch, shuffled like a training epoch so that any prefix of it is a fair sample.
        bucket_batches: batches per sorted chunk. Default: 50.
        drop_last: drop each epoch's last incomplete batch.
        seed: base seed; epoch e uses ``seed + e`` (`set_epoch`, else an internal counter).
        num_replicas, rank: for distributed training, every rank draws the same batch order
            and keeps batches ``rank, rank + num_replicas, ...``. Lightning cannot inject its sampler
            into this one: with DDP use ``Trainer(use_distributed_sampler=False)``; the data modules
            then pass the ranks.
        even: with several ranks, every rank gets ``len(self)`` batches and the last few batches of
            the epoch are left out (training: DDP steps all ranks together). ``False``: every batch is
            used once and some ranks get one batch more (evaluation: every review counted once).
        labels: the class of each sequence (N,), or None. Given, every chunk is ordered by each sequence's
            rank of length *within its class* (as a fraction of the class), so that every batch holds the
            classes in proportion, each at nearly one length (`stratified`).
    """

    def __init__(self, lengths, batch_size: int, shuffle: bool = True, bucket_batches: int = 50, drop_last: bool = False, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, even: bool = True, labels=None):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas): got rank={rank}, num_replicas={num_replicas}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1: got {batch_size}")
        self.lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 1)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.bucket_batches = bucket_batches
        self.drop_last = drop_last
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.even = even
        self.labels = None if labels is None else np.asarray(labels)
        if self.labels is not None and len(self.labels) != len(self.lengths):
            raise ValueError(f"labels must have one entry per sequence: expected {len(self.lengths)}, got {len(self.labels)}")
        self.epoch = 0
        self._epoch_set = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._epoch_set = True

    def _num_batches(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        if self.even:
            return self._num_batches() // self.num_replicas
        return len(range(self.rank, self._num_batches(), self.num_replicas))

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The batches of `epoch` (a pure function of seed and epoch; of seed alone without shuffle)."""
        rng = np.random.default_rng(self.seed + epoch if self.shuffle else self.seed)
        n = len(self.lengths)
        order = rng.permutation(n)
        chunk = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, n, chunk):
            idx = order[start:start + chunk]
            if self.labels is None:
                idx = idx[np.argsort(self.lengths[idx], kind="stable")]
            else:
                idx = stratified(idx, self.lengths[idx], self.labels[idx])
            batches += [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.num_replicas > 1:
            batches = batches[self.rank::self.num_replicas][: len(self)]  # len(self): equal counts when even
        return batches

    def __iter__(self):
        batches = self.batches(self.epoch)
        if not self._epoch_set:
            self.epoch += 1
        return iter([b.tolist() for b in batches])


def stratified(idx: np.ndarray, key: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`idx` reordered so that the classes come in proportion at every point, each class in order of `key`.

    Each index gets its rank within its class (sorted by `key`, stably) as a fraction of the class's size,
    ``(rank + 1/2) / size``; sorting by that fraction interleaves the classes: any run of k consecutive
    indices holds about ``k * size_c / len(idx)`` of class c, with keys at the same quantile of each class.
    """
    frac = np.empty(len(idx))
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(key[members], kind="stable")]
        frac[members] = (np.arange(len(members)) + 0.5) / len(members)
    return idx[np.argsort(frac, kind="stable")]


def padding_stats(lengths, batches) -> dict:
    """Real tokens vs padded cells for `batches` (lists of indices) padded to each batch's max."""
    lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 1)
    cells = sum(len(b) * int(lengths[b].max()) for b in batches)
    real = int(sum(int(lengths[b].sum()) for b in batches))
    return {"tokens": real, "cells": cells, "padding": cells - real, "padding_fraction": (cells - real) / cells}

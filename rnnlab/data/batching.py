"""Variable-length sequences, length-bucketed batches, dynamic padding.

A `RaggedDataset` stores N token-id sequences as one flat int32 array plus offsets
(IMDB's 25,000 train reviews: ~23 MB). `BucketBatchSampler` groups sequences of
similar length so that padding each batch to its own longest sequence
(`collate`) wastes little: every epoch it

1. shuffles all indices (seeded by ``seed + epoch``),
2. cuts them into chunks of ``bucket_batches * batch_size`` (~50 batches) and sorts
   each chunk by length,
3. cuts each chunk into batches and shuffles the order of all batches.

Batches stay random (a sequence's neighbours change every epoch) yet nearly
uniform in length. `collate` returns ``(ids (B, L) int64, lengths (B,) int64,
labels (B,))`` with L = the batch's longest sequence.

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


def collate(batch, pad_to: int | None = None):
    """Pad a list of (ids, label) to the longest sequence (or `pad_to`).

    Returns ``(ids (B, L) int64, lengths (B,) int64, labels (B,))``; an empty
    sequence gets length 1 and one padding token (id 0).
    """
    seqs, labels = zip(*batch)
    lengths = torch.tensor([max(len(s), 1) for s in seqs], dtype=torch.long)  # (B,)
    L = int(lengths.max()) if pad_to is None else pad_to
    ids = torch.zeros(len(seqs), L, dtype=torch.long)  # (B, L)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = s[:L]
    return ids, lengths.clamp_(max=L), torch.stack(labels)


class FixedLengthCollate:
    """`collate` padding every batch to one fixed length (Keras-style inputs)."""

    def __init__(self, length: int):
        self.length = length

    def __call__(self, batch):
        return collate(batch, pad_to=self.length)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices with similar lengths: shuffle, sort within chunks, shuffle batches.

    Args:
        lengths: sequence lengths (N,).
        batch_size: sequences per batch.
        shuffle: False gives a fixed order (chunks in index order, sorted by length inside).
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
    """

    def __init__(self, lengths, batch_size: int, shuffle: bool = True, bucket_batches: int = 50, drop_last: bool = False, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, even: bool = True):
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
        """The batches of `epoch` (a pure function of seed and epoch)."""
        rng = np.random.default_rng(self.seed + epoch)
        n = len(self.lengths)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        chunk = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, n, chunk):
            idx = order[start:start + chunk]
            idx = idx[np.argsort(self.lengths[idx], kind="stable")]
            batches += [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.num_replicas > 1:
            batches = batches[self.rank::self.num_replicas][: len(self)]  # len(self): equal counts when even
        return batches

    def __iter__(self):
        batches = self.batches(self.epoch)
        if not self._epoch_set:
            self.epoch += 1
        return iter([b.tolist() for b in batches])


def padding_stats(lengths, batches) -> dict:
    """Real tokens vs padded cells for `batches` (lists of indices) padded to each batch's max."""
    lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 1)
    cells = sum(len(b) * int(lengths[b].max()) for b in batches)
    real = int(sum(int(lengths[b].sum()) for b in batches))
    return {"tokens": real, "cells": cells, "padding": cells - real, "padding_fraction": (cells - real) / cells}

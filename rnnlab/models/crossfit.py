"""Cross-fitted token scores: the data of a model stacked on bags (``+experiment=imdb_crossfit``).

Stage 1 trains K bags, one Hydra multirun job per fold (``python -m rnnlab.train -m +experiment=imdb_bags``): bag k
is a model without a recurrent layer whose logit is a sum of one score per token
(:func:`rnnlab.models.classifier.score_tables`),

.. math::
    z = \\sum_{t<L} c_t / \\sqrt{L}, \\qquad c_t = u_{x_t} + v_{b_t} + b / \\sqrt{L},

trained, its Naive Bayes ratios included, on the training split without fold k (``data.folds``, ``data.fold``).

Stage 2 (:class:`CrossFitDataModule`, ``data.bags`` = the multirun's folder) gives every training review the scores
c_t of the one bag that did not see its label (out of fold), and every validation and test review the mean of the
K bags' scores. Its batches are ``(ids (B, L), lengths (B,), labels (B,), scores (B, L))``, scores 0 at padding;
:class:`rnnlab.models.stacking.ScoreReaderModule` reads them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from rnnlab.models.classifier import pair_rows, previous_ids, score_tables
from rnnlab.models.module import load_module

from rnnlab.data.batching import Collate, RaggedDataset, collate, fold_ids
from rnnlab.data.datamodule import IMDBDataModule

# Data settings that make the splits: every bag must share them, and the vocabulary, with the stage that reads it.
SHARED = ("seed", "val_fraction", "val_block", "max_tokens", "max_length", "subset")


class ScoredDataset(RaggedDataset):
    """A `RaggedDataset` with one float score per token (``scores`` laid out as ``flat``); items are
    (ids, label, scores)."""

    def __init__(self, data: RaggedDataset, scores: torch.Tensor):
        if len(scores) != len(data.flat):
            raise ValueError(f"scores must have one entry per token: expected {len(data.flat)}, got {len(scores)}")
        self.flat, self.lengths, self.offsets, self.labels = data.flat, data.lengths, data.offsets, data.labels
        self.scores = scores

    def __getitem__(self, i: int):
        span = slice(self.offsets[i], self.offsets[i + 1])
        return self.flat[span], self.labels[i], self.scores[span]


class CollateScored(Collate):
    """`Collate` for a `ScoredDataset`: ``(ids, lengths, labels, scores (B, L))``, scores padded with 0."""

    def __call__(self, batch):
        ids, lengths, labels = collate([(x, y) for x, y, _ in batch], self.pad_to, self.multiple, self.cap)
        scores = torch.zeros(ids.shape)
        for b, (_, _, c) in enumerate(batch):
            scores[b, :len(c)] = c[:ids.size(1)]
        return ids, lengths, labels, scores


def token_scores(tables, flat: torch.Tensor, lengths) -> torch.Tensor:
    """c_t of every token of sequences laid end to end (``flat`` cut by ``lengths``) under one bag's score tables
    ``(u, v, b)``."""
    u, v, b = tables
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    c = u[flat]
    if v is not None:
        c = c + v[pair_rows(previous_ids(flat, lengths), flat, len(v))]
    return c + torch.repeat_interleave(b / lengths.clamp(min=1).double().sqrt(), lengths).float()


def bag_runs(folder: Path) -> list[Path]:
    """The run folders of a stage-1 multirun (the subfolders that hold a ``config.yaml``), or ``[folder]``."""
    if (folder / "config.yaml").exists():
        return [folder]
    return sorted((p for p in folder.iterdir() if (p / "config.yaml").exists()), key=lambda p: p.name)


class CrossFitDataModule(IMDBDataModule):
    """IMDB with the cross-fitted scores of the bags in ``bags`` (see the module docstring).

    Args:
        bags: the folder of stage 1's multirun (``hydra.sweep.dir``): one finished run per fold, each trained with
            this module's data settings (:data:`SHARED`, the vocabulary) and ``data.folds=K data.fold=k``.
        **options: as :class:`~rnnlab.data.datamodule.IMDBDataModule` (``folds``/``fold`` excepted).

    Attributes after ``setup``: those of `IMDBDataModule`, ``datasets`` holding `ScoredDataset` splits, and
    ``bag_tables``: the K bags' ``(u, v, b)``, by fold.
    """

    def __init__(self, bags, **options):
        if options.get("folds") is not None or options.get("fold") is not None:
            raise ValueError("data.folds / data.fold choose the training reviews of one bag (stage 1); stage 2 reads "
                             "every fold's bag from data.bags: set data.folds=null data.fold=null")
        if options.get("train_segment") is not None:
            raise ValueError("data.train_segment cuts the training reviews into pieces, which the bags' folds do not "
                             "know: set data.train_segment=null")
        super().__init__(**options)
        self.bags = Path(bags).expanduser()
        self.bag_tables: list | None = None

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.bag_tables is None:
            self.bag_tables = self._load_bags()
        K = len(self.bag_tables)
        for split, data in list(self.datasets.items()):
            if isinstance(data, ScoredDataset):
                continue
            if split == "train":  # each review scored by the bag that did not train on it
                fold = np.repeat(fold_ids(len(data), K, self.seed), data.lengths)
                scores = torch.empty(len(data.flat))
                for k, tables in enumerate(self.bag_tables):
                    scores[fold == k] = token_scores(tables, data.flat, data.lengths)[fold == k]
            else:
                scores = sum(token_scores(t, data.flat, data.lengths) for t in self.bag_tables) / K
            self.datasets[split] = ScoredDataset(data, scores)

    def _collate(self) -> Collate:
        return CollateScored(**vars(super()._collate()))

    def probe_batch(self, n: int):
        """The ``n`` longest validation reviews as one batch with their scores (``diagnostics.probe``)."""
        data = self.datasets["val"]
        return self._collate()([data[i] for i in np.argsort(-data.lengths, kind="stable")[:n]])

    def _load_bags(self) -> list:
        """Every fold's score tables, after checking that the runs in ``bags`` are one finished bag per fold made
        with this module's data."""
        if not self.bags.is_dir():
            raise FileNotFoundError(f"data.bags={self.bags} must be the folder of the bags' multirun: it does not "
                                    f"exist. Train them first: python -m rnnlab.train -m +experiment=imdb_bags "
                                    f"hydra.sweep.dir={self.bags}")
        by_fold = {}
        for run in bag_runs(self.bags):
            metrics = run / "metrics.json"
            if not metrics.exists():
                raise ValueError(f"the bag run {run} has not finished (no metrics.json): rerun it, or remove it from "
                                 f"data.bags={self.bags}")
            best = json.loads(metrics.read_text()).get("best_ckpt")
            if not best:
                raise ValueError(f"the bag run {run} kept no best checkpoint (metrics.json has no best_ckpt): train "
                                 f"it with the checkpoint callback of +experiment=imdb_bags")
            module = load_module(run / "checkpoints" / Path(best).name)
            data = module.data_config or {}
            differ = {k: (data.get(k), getattr(self, k)) for k in SHARED if data.get(k) != getattr(self, k)}
            if differ or module.vocabulary != self.vectorizer.to_json():
                what = "; ".join(f"data.{k}: the bag's {a!r}, here {b!r}" for k, (a, b) in differ.items())
                raise ValueError(f"the bag {run} was trained on other data than this run reads ({what or 'another vocabulary'}"
                                 f"): give both stages the same data settings, or train the bags again with these")
            if data.get("folds") is None or data.get("fold") in by_fold:
                raise ValueError(f"data.bags={self.bags} must hold one bag per fold (runs with data.folds=K and "
                                 f"data.fold=0 ... K-1): {run} has folds={data.get('folds')} fold={data.get('fold')}"
                                 f"{', a fold already seen' if data.get('fold') in by_fold else ''}")
            try:
                by_fold[data["fold"]] = (data["folds"], score_tables(module.model))
            except ValueError as e:
                raise ValueError(f"the run {run} in data.bags={self.bags} is not a bag: {e}") from e
        ks = sorted({folds for folds, _ in by_fold.values()})
        if len(ks) != 1 or sorted(by_fold) != list(range(ks[0])):
            raise ValueError(f"data.bags={self.bags} must hold one finished bag for each fold 0 ... K-1 of one K: got "
                             f"folds {sorted(by_fold)} of K = {ks}. Train the missing ones: python -m "
                             f"rnnlab.train -m +experiment=imdb_bags data.fold=...")
        return [by_fold[k][1] for k in range(len(by_fold))]

"""A recurrent net stacked on cross-fitted bags: it reads each review's token scores and corrects the bags' logit.

.. math::
    (h_1 \\dots h_L) = \\mathrm{BiRNN}([c_t ; E[x_t]]), \\qquad
    z = \\sum_{t<L} (1 + \\tanh(a^\\top h_t))\\, c_t / \\sqrt{L}
        + w^\\top \\mathrm{dropout}([\\mathrm{mean}_t h_t ; \\max_t h_t]) + b

where :math:`c_t` is the token's score under the bags (:mod:`rnnlab.data.crossfit`: out of fold for training
reviews), :math:`E` a small table of word vectors (the ``words`` most frequent words, the others one row),
:math:`1 + \\tanh(a^\\top h_t) \\in (0, 2)` a weight the net gives each token's score in its context, and the last
term the net's own evidence. :math:`a`, :math:`w` and :math:`b` start at zero, so the untrained net is the bags'
logit :math:`\\sum_t c_t / \\sqrt{L}`. With ``recurrent=False`` a per-step layer
:math:`h_t = \\tanh(W [c_t ; E[x_t]])` replaces the RNN (the same inputs read out of order): the control for what
reading the review in order adds.
"""
from __future__ import annotations

import math

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from rnnlab.models.classifier import build_encoder, run_encoder
from rnnlab.models.config import ModelConfig
from rnnlab.models.module import ClassifierModule, data_sizes

ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}


class ScoreReader(nn.Module):
    """The network of the module docstring.

    Args:
        vocab_size: ids the data holds (ids >= ``words`` share row 1, the out-of-vocabulary row).
        cell, hidden_size, init, forget_bias, backend: the bidirectional encoder's, as
            :class:`~rnnlab.models.classifier.SequenceClassifier`'s.
        embedding_dim: D, the width of the word vectors. words: rows of their table (padding and OOV included).
        dropout: before the net's own term. recurrent: False replaces the RNN by a per-step layer.

    Inputs: ``ids`` (B, T) int64, ``scores`` (B, T) float (0 at padding), ``lengths`` (B,) int64. Output: logits (B,).

    >>> net = ScoreReader(100, cell="gru", hidden_size=4, embedding_dim=3, words=50)
    >>> c = torch.randn(2, 5)
    >>> torch.allclose(net(torch.randint(1, 100, (2, 5)), c, torch.tensor([5, 5])), c.sum(1) / math.sqrt(5))
    True
    """

    def __init__(self, vocab_size: int, cell: str = "gru", hidden_size: int = 64, embedding_dim: int = 16,
                 words: int = 5000, dropout: float = 0.5, recurrent: bool = True, init: str = "keras",
                 forget_bias: float = 1.0, backend: str = "auto"):
        super().__init__()
        if not 2 <= words:
            raise ValueError(f"model.words must be >= 2 (rows of the word table, padding and OOV included): got {words!r}")
        config = ModelConfig(cell=cell, hidden_size=hidden_size, bidirectional=True, init=init, forget_bias=forget_bias,
                             backend=backend, embedding_dim=embedding_dim, dropout=dropout)  # checks the values
        self.embedding = nn.Embedding(min(words, vocab_size), embedding_dim, padding_idx=0)
        nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        width = 2 * hidden_size
        if recurrent:
            self.encoder = build_encoder(config, embedding_dim + 1, hidden_size, 1, 0.0)
        else:
            self.encoder = nn.Sequential(nn.Linear(embedding_dim + 1, width), nn.Tanh())
        self.weight = nn.Linear(width, 1)
        self.head = nn.Linear(2 * width, 1)
        for layer in (self.weight, self.head):  # zero: the net starts as the bags
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor, scores: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        words = self.embedding(ids.masked_fill(ids >= self.embedding.num_embeddings, 1))  # (B, T, D)
        x = torch.cat([scores.unsqueeze(-1), words], -1)  # (B, T, D + 1)
        h = self.encoder(x) if isinstance(self.encoder, nn.Sequential) else run_encoder(self.encoder, x, lengths)
        mask = torch.arange(ids.size(1), device=ids.device) < lengths[:, None]  # (B, T)
        weight = 1 + torch.tanh(self.weight(h).squeeze(-1))  # (B, T)
        z = (weight * scores * mask).sum(1) / lengths.to(scores.dtype).sqrt()
        pooled = torch.cat([(h * mask[..., None]).sum(1) / lengths[:, None].to(h.dtype),
                            h.masked_fill(~mask[..., None], -math.inf).amax(1)], 1)  # (B, 4H)
        return z + self.head(self.dropout(pooled)).squeeze(-1)


class ScoreReaderModule(ClassifierModule):
    """Trains a :class:`ScoreReader` on the batches of :class:`rnnlab.data.crossfit.CrossFitDataModule`
    (``(ids, lengths, labels, scores)``); loss, metrics and optimizer as :class:`ClassifierModule`.

    Args:
        vocab_size, num_classes: the data's sizes (two classes: the bags' logit is one number); default: those of
            ``datamodule``, the set-up datamodule of the run (``rnnlab.train`` passes it).
        cell ... backend: :class:`ScoreReader`'s.
        optimizer, scheduler: Hydra configs of a partial optimizer (default Adam, lr 1e-3) and LR scheduler.
        scheduler_interval, step_seed: as :class:`~rnnlab.models.config.ModelConfig`'s.
    """

    def __init__(self, vocab_size: int | None = None, num_classes: int = 2, cell: str = "gru", hidden_size: int = 64,
                 embedding_dim: int = 16, words: int = 5000, dropout: float = 0.5, recurrent: bool = True,
                 init: str = "keras", forget_bias: float = 1.0, backend: str = "auto", optimizer=None, scheduler=None,
                 scheduler_interval: str = "epoch", step_seed: int | None = None, datamodule=None):
        vocab_size, num_classes = data_sizes(type(self), datamodule, vocab_size, num_classes)
        if num_classes != 2:
            raise ValueError(f"the score reader corrects one logit (the bags'): it needs two classes, got {num_classes}")
        super().__init__(num_classes)
        optimizer, scheduler = (OmegaConf.to_container(c, resolve=True) if isinstance(c, DictConfig) else c
                                for c in (optimizer, scheduler))
        optimizer = dict(optimizer or ADAM)
        self.save_hyperparameters(ignore=["datamodule"], logger=False)  # logged once, with the metric keys, by diagnostics.LogHParams
        self.model = ScoreReader(vocab_size, cell, hidden_size, embedding_dim, words, dropout, recurrent, init,
                                 forget_bias, backend)

    def forward(self, ids, scores, lengths):
        return self.model(ids, scores, lengths)

    def logits(self, batch) -> torch.Tensor:
        ids, lengths, _, scores = batch
        return self(ids, scores, lengths)

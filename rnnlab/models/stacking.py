"""A recurrent net stacked on cross-fitted bags: it reads each review's token scores and corrects the bags' logit.

.. math::
    (h_1 \\dots h_L) = \\mathrm{BiRNN}([c_t ; E[x_t]]), \\qquad
    z = \\sum_{t<L} (1 + \\tanh(a^\\top h_t))\\, c_t / \\sqrt{L}
        + w^\\top \\mathrm{dropout}([\\mathrm{mean}_t h_t ; \\max_t h_t]) + b

where :math:`c_t` is the token's score under the bags (:mod:`rnnlab.models.crossfit`: out of fold for training
reviews), :math:`E` a small table of word vectors (the ``words`` most frequent words, the others one row),
:math:`1 + \\tanh(a^\\top h_t) \\in (0, 2)` a weight the net gives each token's score in its context, and the last
term the net's own evidence. :math:`a`, :math:`w` and :math:`b` start at zero, so the untrained net is the bags'
logit :math:`\\sum_t c_t / \\sqrt{L}`. With ``recurrent=False`` a per-step layer
:math:`h_t = \\tanh(W [c_t ; E[x_t]])` replaces the RNN (the same inputs read out of order): the control for what
reading the review in order adds.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from rnnlab.models.config import ReaderConfig
from rnnlab.models.encoder import build_encoder, run_encoder
from rnnlab.models.module import ClassifierModule


class ScoreReader(nn.Module):
    """The network of the module docstring.

    Args:
        vocab_size: ids the data holds (ids >= ``words`` share row 1, the out-of-vocabulary row).
        config: the :class:`~rnnlab.models.config.ReaderConfig` (the encoder, by default bidirectional; D =
            ``embedding_dim``, the width of the word vectors; ``words``, rows of their table, padding and OOV
            included; ``dropout`` before the net's own term; ``recurrent=False`` replaces the RNN by a per-step layer).
        **fields: its fields that replace those of ``config``.

    Inputs: ``ids`` (B, T) int64, ``scores`` (B, T) float (0 at padding), ``lengths`` (B,) int64. Output: logits (B,).

    >>> net = ScoreReader(100, cell="gru", hidden_size=4, embedding_dim=3, words=50)
    >>> c = torch.randn(2, 5)
    >>> torch.allclose(net(torch.randint(1, 100, (2, 5)), c, torch.tensor([5, 5])), c.sum(1) / math.sqrt(5))
    True
    """

    def __init__(self, vocab_size: int, config: ReaderConfig | None = None, **fields):
        super().__init__()
        config = dataclasses.replace(config or ReaderConfig(), **fields)
        D = config.embedding_dim
        self.embedding = nn.Embedding(min(config.words, vocab_size), D, padding_idx=0)
        nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        width = config.hidden_size * config.num_directions
        if config.recurrent:
            self.encoder = build_encoder(config, D + 1)[0]
        else:
            self.encoder = nn.Sequential(nn.Linear(D + 1, width), nn.Tanh())
        self.weight = nn.Linear(width, 1)
        self.head = nn.Linear(2 * width, 1)
        for layer in (self.weight, self.head):  # zero: the net starts as the bags
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.dropout = nn.Dropout(config.dropout)

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
    """Trains a :class:`ScoreReader` of a :class:`~rnnlab.models.config.ReaderConfig` on the batches of
    :class:`rnnlab.models.crossfit.CrossFitDataModule` (``(ids, lengths, labels, scores)``); arguments, loss, metrics
    and optimizer as :class:`~rnnlab.models.module.ClassifierModule`'s (two classes: the bags' logit is one number).
    """

    config_class = ReaderConfig

    def build(self, vocab_size: int, num_classes: int, datamodule) -> nn.Module:
        if num_classes != 2:
            raise ValueError(f"the score reader corrects one logit (the bags'): it needs two classes, got {num_classes}")
        return ScoreReader(vocab_size, self.config)

    def forward(self, ids, scores, lengths):
        return self.model(ids, scores, lengths)

    def logits(self, batch) -> torch.Tensor:
        ids, lengths, _, scores = batch
        return self(ids, scores, lengths)

"""Sequence classifier: Embedding -> recurrent encoder -> pooling -> dropout -> linear.

.. math::
    e_t = m_t (s_{x_t} E[x_t] + s'_{b_t} G[b_t]), \\qquad (h_1 \\dots h_T) = \\mathrm{RNN}(e_1 \\dots e_T), \\qquad
    z = W\\,\\mathrm{dropout}(\\mathrm{pool}(h_1 \\dots h_L)) + b

where :math:`x_t` is the token id at step t (0 is padding), :math:`E` the embedding table, :math:`G[b_t]` the
hashed vector of the word pair :math:`(x_{t-1}, x_t)` (:func:`bigram_ids`; absent unless ``bigram_buckets`` > 0),
:math:`s, s'` the words' and pairs' Naive Bayes log-count ratios with ``nb_scale`` (:func:`nb_log_count_ratios`;
1 without), :math:`m_t` the embedding dropout's mask (in training 0 with probability p, else :math:`1/(1-p)`; 1 in
evaluation),
:math:`L \\le T` the sequence's own length and ``pool`` one of

- ``last``: the state at each sequence's own last token, both directions: the forward
  direction at :math:`t = L-1`, the reverse direction at :math:`t = 0` (where it ends);
- ``mean`` / ``max``: over the real tokens :math:`t < L` only; ``sum_sqrt``: :math:`\\sum_{t<L} h_t / \\sqrt{L}`;
  ``mean_max`` / ``sum_sqrt_max``: that and the max, concatenated.

With ``recurrent=False`` there is no RNN: :math:`h_t = e_t` (a bag of the inputs, the control for what the recurrent
layer adds).

Binary tasks have one logit (``BCEWithLogitsLoss``), K > 2 classes K logits (``CrossEntropyLoss``).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.models.config import REGULARIZERS, ModelConfig
from rnnlab.nn.init import keras_init_, recurrent_init_
from rnnlab.nn.registry import build_cell, cell_spec


BIGRAM_PRIME = 1_000_003


def pair_rows(prev: torch.Tensor, ids: torch.Tensor, buckets: int) -> torch.Tensor:
    """Rows of the hashed bigram table for the pairs (prev, ids): :math:`1 + (x_{t-1} P + x_t) \\bmod (K - 1)`,
    P = 1,000,003; 0 where ``ids`` is padding."""
    return ((prev * BIGRAM_PRIME + ids) % (buckets - 1) + 1).masked_fill(ids == 0, 0)


def bigram_ids(ids: torch.Tensor, buckets: int) -> torch.Tensor:
    """Rows (B, T) of the hashed bigram table: :math:`b_t = 1 + (x_{t-1} P + x_t) \\bmod (K - 1)` with
    :math:`x_{-1} = 0` and P = 1,000,003; 0 where :math:`x_t` is padding.

    >>> bigram_ids(torch.tensor([[5, 7, 0]]), 100)
    tensor([[ 6, 28,  0]])
    """
    return pair_rows(nn.functional.pad(ids[:, :-1], (1, 0)), ids, buckets)  # x_{t-1}; 0 before the first token


def previous_ids(flat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """:math:`x_{t-1}` of every token of sequences laid end to end (``flat`` cut by ``lengths``), 0 at each
    sequence's first token, as :func:`bigram_ids` pads."""
    prev = torch.cat([flat.new_zeros(1), flat[:-1]])
    prev[(torch.cumsum(lengths, 0) - lengths)[lengths > 0]] = 0  # no pair across two sequences
    return prev


def present_features(features: torch.Tensor, lengths: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sequence, feature) of every feature that occurs in a sequence, once each (binarized counts): ``features``
    (one per token, each < ``size``) of sequences laid end to end, cut by ``lengths``."""
    seq = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    present = torch.unique(seq * size + features)
    return present // size, present % size


def log_count_ratio(p: torch.Tensor, q: torch.Tensor, alpha: float) -> torch.Tensor:
    """:math:`\\log \\frac{(\\alpha + p) / \\lVert \\alpha + p \\rVert_1}{(\\alpha + q) / \\lVert \\alpha + q \\rVert_1}` of
    per-feature counts in the positive (p) and negative (q) sequences."""
    p, q = p + alpha, q + alpha
    return torch.log(p / p.sum()) - torch.log(q / q.sum())


def nb_log_count_ratios(flat: torch.Tensor, lengths, labels: torch.Tensor, vocab_size: int, buckets: int = 0,
                        alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Naive Bayes log-count ratios (Wang & Manning, 2012) of every word id and every bigram row, from binary labels.

    .. math::
        r_f = \\log \\frac{(\\alpha + p_f) / \\lVert \\alpha + p \\rVert_1}{(\\alpha + q_f) / \\lVert \\alpha + q \\rVert_1}

    where :math:`p_f` (:math:`q_f`) is the number of positive (negative) sequences in which feature f occurs.
    Sequences are ``flat`` cut by ``lengths`` (a :class:`~rnnlab.data.batching.RaggedDataset`'s fields); features are
    the word ids (< ``vocab_size``) and, with ``buckets`` > 0, the rows of :func:`bigram_ids`.
    Returns (r_words (V,), r_pairs (K,) or None).

    >>> r, _ = nb_log_count_ratios(torch.tensor([2, 3, 2]), [2, 1], torch.tensor([1.0, 0.0]), vocab_size=4)
    >>> [round(v, 3) for v in r.tolist()]
    [-0.182, -0.182, -0.182, 0.511]
    """
    labels = torch.as_tensor(labels)
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError("model.nb_scale needs binary labels (0 or 1): this task has more classes; set "
                         "model.nb_scale=false")
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    positive = labels.double()

    def ratios(features: torch.Tensor, size: int) -> torch.Tensor:
        seq, feature = present_features(features, lengths, size)
        p = torch.bincount(feature, weights=positive[seq], minlength=size)
        q = torch.bincount(feature, weights=1 - positive[seq], minlength=size)
        return log_count_ratio(p, q, alpha).float()

    r_words = ratios(flat, vocab_size)
    if not buckets:
        return r_words, None
    return r_words, ratios(pair_rows(previous_ids(flat, lengths), flat, buckets), buckets)


def build_encoder(config: ModelConfig, input_size: int, hidden_size: int, num_layers: int,
                  dropout: float) -> nn.Module:
    """The recurrent encoder of ``config.cell`` (batch_first=True), from the cell registry :data:`rnnlab.nn.CELLS`."""
    spec = cell_spec(config.cell)
    kwargs = dict(num_layers=num_layers, bidirectional=config.bidirectional, dropout=dropout, batch_first=True)
    if spec.is_torch:
        module = build_cell(config.cell, input_size, hidden_size, **kwargs)
        if config.init == "keras":  # the same law as rnnlab's cells: glorot / orthogonal (whole matrices), forget bias
            keras_init_(module, config.forget_bias)
    else:
        kwargs.update(init=config.init, backend=config.backend)
        if spec.gated_lstm:
            kwargs["forget_bias"] = config.forget_bias
        if spec.nonlinearity:
            kwargs["nonlinearity"] = config.nonlinearity
        kwargs.update({name: getattr(config, name) for name in REGULARIZERS})  # off unless set (rnnlab.nn.regularizers)
        if config.recurrent_max is not None:
            kwargs["recurrent_max"] = config.recurrent_max
        if config.variant != "vanilla" or config.peephole:  # rnnlab.nn.LSTM only (ModelConfig checks)
            kwargs.update(variant=config.variant, peephole=config.peephole)
        module = build_cell(config.cell, input_size, hidden_size, **kwargs)
    if config.recurrent_init is not None:  # W_hh's spectral radius where the user puts it
        recurrent_init_(module, config.recurrent_init, config.recurrent_scale)
    return module


def run_encoder(module: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Outputs (B, T, H * directions) of one encoder on x (B, T, D), zero at padded steps."""
    if isinstance(module, (nn.LSTM, nn.GRU)):
        if lengths is None:
            return module(x)[0]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(module(packed)[0], batch_first=True, total_length=x.size(1))[0]
    return module(x, lengths=lengths)[0]


class StackedEncoder(nn.Module):
    """Layers of different widths (the course's GRU 32-64-64), each a one-layer encoder, run in turn.

    Exposes the per-timestep gradient interface of one rnnlab module: ``record_grad_norms``,
    ``grad_norms`` (keys ``l0``, ``l0_reverse``, ``l1`` ... numbered over the stack) and ``last_lengths``.
    """

    def __init__(self, layers: list[nn.Module], dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, lengths=None):
        for k, layer in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x)
            x = run_encoder(layer, x, lengths)  # (B, T, D_k)
        return x, None

    def record_grad_norms(self, enabled: bool = True):
        for layer in self.layers:
            if hasattr(layer, "record_grad_norms"):  # torch.nn layers record nothing
                layer.record_grad_norms(enabled)

    @property
    def grad_norms(self) -> dict:
        out = {}
        for k, layer in enumerate(self.layers):
            for key, value in (getattr(layer, "grad_norms", None) or {}).items():
                out[key.replace("l0", f"l{k}", 1)] = value
        return out

    @property
    def last_lengths(self):
        return getattr(self.layers[0], "last_lengths", None)


class SequenceClassifier(nn.Module):
    """Embedding (padding index 0) -> recurrent encoder -> pooling -> dropout -> linear head.

    Args:
        config: the :class:`ModelConfig` (cell, widths, pooling, init, ...; its fields are documented there).
        vocab_size: rows of the embedding table (id 0 is padding, 1 usually OOV).
        num_classes: 2 -> one logit; K > 2 -> K logits. Default 2.

    Inputs: ``ids`` (B, T) int64, ``lengths`` (B,) int64 or None (all T).
    Outputs: logits (B,) for binary, (B, K) otherwise.

    Attributes:
        bigrams: ``nn.Embedding`` (K, D) of the hashed word pairs, or None (``bigram_buckets`` = 0).
        embedding: ``nn.Embedding`` (V, D); a forward hook on it sees e_t (DIAG uses it for dJ/dx_t).
        encoder: the recurrent module, or None with ``recurrent=False``.
        head: ``nn.Linear`` (H * directions, or D without a recurrent layer; twice that for ``*_max`` pooling;
            1 or K).

    >>> m = SequenceClassifier(ModelConfig(cell="torch_gru", embedding_dim=8, hidden_size=4), vocab_size=100)
    >>> m(torch.randint(1, 100, (3, 5)), torch.tensor([5, 2, 1])).shape
    torch.Size([3])
    """

    def __init__(self, config: ModelConfig, vocab_size: int, num_classes: int = 2):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2: got {num_classes}")
        self.config = config
        self.cell, self.pooling, self.use_lengths = config.cell, config.pooling, config.use_lengths
        self.fixed_length, self.bidirectional = config.fixed_length, config.bidirectional
        D = config.embedding_dim
        self.embedding = nn.Embedding(vocab_size, D, padding_idx=0 if config.use_lengths else None,
                                      sparse=config.sparse_embeddings)
        if not config.recurrent:
            self.encoder, out_size = None, D
        elif isinstance(config.hidden_size, int):
            self.encoder = build_encoder(config, D, config.hidden_size, config.num_layers, config.rnn_dropout)
            out_size = config.hidden_size * config.num_directions
        else:  # one layer per width, each reading the previous layer's outputs
            sizes = config.hidden_size
            inputs = [D] + [h * config.num_directions for h in sizes[:-1]]
            self.encoder = StackedEncoder([build_encoder(config, i, h, 1, 0.0) for i, h in zip(inputs, sizes)],
                                          config.rnn_dropout)
            out_size = sizes[-1] * config.num_directions
        self.dropout = nn.Dropout(config.dropout)
        features = out_size * (2 if config.pooling.endswith("_max") else 1)
        self.head = nn.Linear(features, 1 if num_classes == 2 else num_classes)
        if config.init == "keras":
            nn.init.uniform_(self.embedding.weight, -0.05, 0.05)  # Keras' Embedding default
            nn.init.xavier_uniform_(self.head.weight)  # Keras' Dense default: glorot uniform, zero bias
            nn.init.zeros_(self.head.bias)
        if config.use_lengths:
            with torch.no_grad():
                self.embedding.weight[0].zero_()
        self.embedding.weight.requires_grad_(not config.freeze_embeddings)
        self.bigrams = None  # built last, so every other weight draws what it draws without it
        if config.bigram_buckets:  # zero rows, no random draw: the model starts as the unigram one
            K = config.bigram_buckets
            self.bigrams = nn.Embedding(K, D, padding_idx=0, sparse=config.sparse_embeddings, _weight=torch.zeros(K, D))
        if config.nb_scale:  # the log-count ratios r of words and pairs, set by load_nb_ratios (saved with the weights)
            self.register_buffer("word_scale", torch.ones(vocab_size))
            self.register_buffer("pair_scale", torch.ones(config.bigram_buckets) if config.bigram_buckets else None)

    def load_pretrained(self, vectors: torch.Tensor, freeze: bool = False) -> None:
        """Copy pretrained vectors (V, D) into the embedding table (row 0, padding, zero unless use_lengths=False)."""
        if tuple(vectors.shape) != tuple(self.embedding.weight.shape):
            raise ValueError(f"pretrained vectors must have the embedding's shape: expected "
                             f"{tuple(self.embedding.weight.shape)}, got {tuple(vectors.shape)}; set "
                             f"model.embedding_dim={vectors.shape[1]} and use the datamodule's vocabulary")
        with torch.no_grad():
            self.embedding.weight.copy_(vectors)
            if self.use_lengths:
                self.embedding.weight[0].zero_()
        self.embedding.weight.requires_grad_(not freeze)

    def load_nb_ratios(self, r_words: torch.Tensor, r_pairs: torch.Tensor | None = None) -> None:
        """Set the scales of ``nb_scale``: the ratios of :func:`nb_log_count_ratios` on the training split."""
        if not self.config.nb_scale:
            raise ValueError("load_nb_ratios needs a model built with model.nb_scale=true")
        for name, r in (("word_scale", r_words), ("pair_scale", r_pairs)):
            buffer = getattr(self, name)
            if buffer is None:
                continue
            if r is None or tuple(r.shape) != tuple(buffer.shape):
                raise ValueError(f"{name} must have {tuple(buffer.shape)} entries (one per row of its table): got "
                                 f"{None if r is None else tuple(r.shape)}")
            buffer.copy_(r)

    def pool(self, out: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Pool encoder outputs (B, T, F) over time -> (B, F) ((B, 2F) for ``*_max``), using real tokens only."""
        B, T, F = out.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=out.device)
        lengths = lengths.to(out.device)
        if self.pooling == "last":
            idx = (lengths - 1).view(B, 1, 1).expand(B, 1, F)
            last = out.gather(1, idx).squeeze(1)  # (B, F): each sequence's own last token
            if not self.bidirectional:
                return last
            H = F // 2  # the reverse direction ends at t = 0
            return torch.cat([last[:, :H], out[:, 0, H:]], dim=1)  # (B, 2H)
        mask = torch.arange(T, device=out.device).view(1, T) < lengths.view(B, 1)  # (B, T)
        pooled = []
        if self.pooling != "max":  # mean or sum / sqrt(L), alone or before the max
            n = lengths.view(B, 1).to(out.dtype)
            pooled.append((out * mask.unsqueeze(-1)).sum(1) / (n if self.pooling.startswith("mean") else n.sqrt()))
        if self.pooling.endswith("max"):
            pooled.append(out.masked_fill(~mask.unsqueeze(-1), -math.inf).amax(1))
        return torch.cat(pooled, dim=1) if len(pooled) > 1 else pooled[0]  # (B, F) or (B, 2F)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if ids.dim() != 2:
            raise ValueError(f"ids must be (B, T) token ids: expected 2 dimensions, got {ids.dim()}")
        if self.fixed_length is not None:  # Keras' pad_sequences(maxlen, padding='post', truncating='post')
            T = self.fixed_length
            ids = ids[:, :T] if ids.size(1) >= T else nn.functional.pad(ids, (0, T - ids.size(1)))
            if lengths is not None:
                lengths = lengths.clamp(max=T)
        if not self.use_lengths:
            lengths = None
        x = self.embedding(ids)  # (B, T, D)
        if self.config.nb_scale:
            x = x * self.word_scale[ids].unsqueeze(-1)
        if self.bigrams is not None:
            rows = bigram_ids(ids, self.bigrams.num_embeddings)
            pairs = self.bigrams(rows)
            x = x + (pairs * self.pair_scale[rows].unsqueeze(-1) if self.config.nb_scale else pairs)
        p = self.config.embedding_dropout
        if self.training and p > 0:  # drop whole token vectors: one mask entry per (sequence, step)
            x = x * x.new_empty(x.shape[:2] + (1,)).bernoulli_(1 - p).div_(1 - p)
        out = x if self.encoder is None else run_encoder(self.encoder, x, lengths)  # (B, T, H * dirs or D)
        z = self.head(self.dropout(self.pool(out, lengths)))  # (B, 1 or K)
        return z.squeeze(-1) if z.size(-1) == 1 else z


@torch.no_grad()
def score_tables(model: SequenceClassifier) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """A bag's logit as a sum of one score per token: ``(u (V,), v (K,) or None, b)`` with

    .. math::
        z = \\sum_{t<L} (u_{x_t} + v_{b_t}) / \\sqrt{L} + b, \\qquad u = s \\odot (E w), \\quad v = s' \\odot (G w),

    for a model without a recurrent layer, ``sum_sqrt`` pooling and one logit (``recurrent=false
    pooling=sum_sqrt``): its head :math:`w` is linear in the token vectors, so a word's and a pair's share of the
    logit are fixed numbers (``s, s'``: the Naive Bayes scales, 1 without ``nb_scale``; dropout is off in evaluation).
    """
    if model.encoder is not None or model.pooling != "sum_sqrt" or model.head.out_features != 1 or not model.use_lengths:
        raise ValueError(f"score tables need a bag: a model with model.recurrent=false, model.pooling=sum_sqrt, "
                         f"model.use_lengths=true and two classes; got recurrent={model.encoder is None and 'false' or 'true'}, "
                         f"pooling={model.pooling}, use_lengths={model.use_lengths}, "
                         f"{model.head.out_features} logit(s)")
    w = model.head.weight[0]
    u = model.embedding.weight @ w
    v = None if model.bigrams is None else model.bigrams.weight @ w
    if model.config.nb_scale:
        u = u * model.word_scale
        v = None if v is None else v * model.pair_scale
    return u, v, float(model.head.bias[0])

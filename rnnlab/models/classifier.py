"""Sequence classifier: Embedding -> recurrent encoder -> pooling -> dropout -> linear.

.. math::
    e_t = E[x_t], \\qquad (h_1 \\dots h_T) = \\mathrm{RNN}(e_1 \\dots e_T), \\qquad
    z = W\\,\\mathrm{dropout}(\\mathrm{pool}(h_1 \\dots h_L)) + b

where :math:`x_t` is the token id at step t (0 is padding), :math:`E` the embedding table,
:math:`L \\le T` the sequence's own length and ``pool`` one of

- ``last``: the state at each sequence's own last token, both directions: the forward
  direction at :math:`t = L-1`, the reverse direction at :math:`t = 0` (where it ends);
- ``mean`` / ``max``: over the real tokens :math:`t < L` only.

Binary tasks have one logit (``BCEWithLogitsLoss``), K > 2 classes K logits (``CrossEntropyLoss``).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab import nn as rnn
from rnnlab.nn.init import keras_init_

CELLS = ("lstm", "cifg", "gru", "rnn", "lstm_noforget", "torch_lstm", "torch_gru")
POOLINGS = ("last", "mean", "max")


def build_encoder(cell: str, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool,
                  dropout: float, init: str, forget_bias: float, nonlinearity: str, backend: str) -> nn.Module:
    """The recurrent encoder named by ``cell`` (batch_first=True)."""
    common = dict(num_layers=num_layers, bidirectional=bidirectional, dropout=dropout, batch_first=True)
    if cell in ("torch_lstm", "torch_gru"):
        module = (nn.LSTM if cell == "torch_lstm" else nn.GRU)(input_size, hidden_size, **common)
        if init == "keras":  # the same law as rnnlab's cells: glorot / orthogonal (whole matrices), forget bias
            keras_init_(module, forget_bias)
        return module

    extra = dict(init=init, backend=backend)
    if cell == "lstm":
        return rnn.LSTM(input_size, hidden_size, forget_bias=forget_bias, **common, **extra)
    if cell == "lstm_noforget":  # Hochreiter & Schmidhuber (1997): no forget gate, c_t = c_{t-1} + i_t ⊙ g_t
        return rnn.LSTM(input_size, hidden_size, forget_gate=False, **common, **extra)
    if cell == "cifg":
        return rnn.CIFGLSTM(input_size, hidden_size, forget_bias=forget_bias, **common, **extra)
    if cell == "gru":
        return rnn.GRU(input_size, hidden_size, **common, **extra)
    if cell == "rnn":
        return rnn.RNN(input_size, hidden_size, nonlinearity=nonlinearity, **common, **extra)
    raise ValueError(f"cell must be one of {CELLS}: got {cell!r}")


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
        vocab_size: rows of the embedding table (id 0 is padding, 1 usually OOV).
        embedding_dim: D, the width of each token vector. Default 256.
        cell: ``lstm``, ``cifg``, ``gru``, ``rnn``, ``lstm_noforget`` (rnnlab.nn) or ``torch_lstm``, ``torch_gru``.
        hidden_size: H per direction, or a list of widths (one layer each) for a stack of different widths.
        num_layers: stacked layers (ignored when ``hidden_size`` is a list). Default 1.
        bidirectional: run a reverse direction too; the head sees 2H features. Default False.
        dropout: dropout before the head. Default 0.5.
        rnn_dropout: dropout between stacked layers. Default 0.
        pooling: ``last``, ``mean`` or ``max`` (see module docstring). Default ``last``.
        num_classes: 2 -> one logit; K > 2 -> K logits.
        init: ``keras`` (embedding U(-0.05, 0.05), glorot-uniform head with zero bias, Keras' cell init) or ``torch``
            (N(0, 1) embedding, torch's Linear and cell init). Default ``keras``: it learns like the Keras reference.
        forget_bias: initial forget-gate bias of LSTM/CIFG cells. Default 1.
        nonlinearity: for ``rnn``: ``tanh``, ``relu`` or ``identity``.
        use_lengths: pass each sequence's length to the encoder and pool over real tokens. False reproduces a
            Keras model without masking: every sequence is read to T, padding included, and the padding id 0 has a
            trained embedding like any token. Default True.
        fixed_length: right-pad (or cut) every batch to this many steps, as Keras' ``pad_sequences(padding='post')``.
        freeze_embeddings: do not train the embedding table (with pretrained vectors).
        backend: rnnlab.nn backend (``auto``, ``loop``, ``fused``, ``triton``).

    Inputs: ``ids`` (B, T) int64, ``lengths`` (B,) int64 or None (all T).
    Outputs: logits (B,) for binary, (B, K) otherwise.

    Attributes:
        embedding: ``nn.Embedding`` (V, D); a forward hook on it sees e_t (DIAG uses it for dJ/dx_t).
        encoder: the recurrent module.
        head: ``nn.Linear`` (H * directions, 1 or K).

    >>> m = SequenceClassifier(100, 8, cell="torch_gru", hidden_size=4)
    >>> m(torch.randint(1, 100, (3, 5)), torch.tensor([5, 2, 1])).shape
    torch.Size([3])
    """

    def __init__(self, vocab_size: int, embedding_dim: int = 256, cell: str = "lstm", hidden_size: int | list = 32,
                 num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.5, rnn_dropout: float = 0.0,
                 pooling: str = "last", num_classes: int = 2, init: str = "keras", forget_bias: float = 1.0,
                 nonlinearity: str = "tanh", use_lengths: bool = True, fixed_length: int | None = None,
                 freeze_embeddings: bool = False, backend: str = "auto"):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}: got {cell!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}: got {pooling!r}")
        if init not in ("keras", "torch"):
            raise ValueError(f"init must be 'keras' or 'torch': got {init!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2: got {num_classes}")
        if embedding_dim < 1:  # else the cell would name its own input_size
            raise ValueError(f"embedding_dim must be >= 1 (the width of each token's vector): got {embedding_dim}")
        self.cell, self.pooling, self.use_lengths, self.fixed_length = cell, pooling, use_lengths, fixed_length
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0 if use_lengths else None)
        enc = dict(bidirectional=bidirectional, init=init, forget_bias=forget_bias, nonlinearity=nonlinearity,
                   backend=backend)
        if isinstance(hidden_size, int):
            self.encoder = build_encoder(cell, embedding_dim, hidden_size, num_layers, dropout=rnn_dropout, **enc)
            out_size = hidden_size
        else:
            sizes, layers = list(hidden_size), []
            for k, h in enumerate(sizes):
                in_size = embedding_dim if k == 0 else sizes[k - 1] * (2 if bidirectional else 1)
                layers.append(build_encoder(cell, in_size, h, 1, dropout=0.0, **enc))
            self.encoder = StackedEncoder(layers, rnn_dropout)
            out_size = sizes[-1]
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(out_size * (2 if bidirectional else 1), 1 if num_classes == 2 else num_classes)
        if init == "keras":
            nn.init.uniform_(self.embedding.weight, -0.05, 0.05)  # Keras' Embedding default
            nn.init.xavier_uniform_(self.head.weight)  # Keras' Dense default: glorot uniform, zero bias
            nn.init.zeros_(self.head.bias)
        if use_lengths:
            with torch.no_grad():
                self.embedding.weight[0].zero_()
        self.embedding.weight.requires_grad_(not freeze_embeddings)

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

    def pool(self, out: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Pool encoder outputs (B, T, F) over time -> (B, F), using real tokens only."""
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
        if self.pooling == "mean":
            return (out * mask.unsqueeze(-1)).sum(1) / lengths.view(B, 1).to(out.dtype)
        return out.masked_fill(~mask.unsqueeze(-1), -math.inf).amax(1)  # max

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
        out = run_encoder(self.encoder, x, lengths)  # (B, T, H * dirs)
        z = self.head(self.dropout(self.pool(out, lengths)))  # (B, 1 or K)
        return z.squeeze(-1) if z.size(-1) == 1 else z

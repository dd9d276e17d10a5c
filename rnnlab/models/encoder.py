"""The recurrent encoder every model shares: one typed description (:class:`EncoderConfig`) and its builder.

Every model's typed config (:class:`~rnnlab.models.config.ModelConfig`, :class:`~rnnlab.models.config.TaskConfig`,
:class:`~rnnlab.models.config.ReaderConfig`) is an :class:`EncoderConfig` with its own fields added, so the encoder's
keys are the same top-level keys in every model (``model.cell``, ``model.hidden_size``, ...) and are described and
checked here, once. :func:`build_encoder` builds the encoder of any of them.

>>> encoder, width = build_encoder(EncoderConfig(cell="gru", hidden_size=[4, 6], bidirectional=True), input_size=3)
>>> width, run_encoder(encoder, torch.rand(2, 5, 3), torch.tensor([5, 2])).shape
(12, torch.Size([2, 5, 12]))
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional

import torch
from omegaconf import ListConfig
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.nn.backends.loop import VARIANTS
from rnnlab.nn.init import RECURRENT_INITS, keras_init_, recurrent_init_
from rnnlab.nn.registry import CELLS, build_cell, cell_spec

# rnnlab's cells, then their variants, then torch's: the order Hydra's "expected one of [...]" lists them in
Cell = Enum("Cell", {c: c for c in sorted(CELLS, key=lambda c: (CELLS[c].is_torch, bool(CELLS[c].kwargs)))}, type=str)
Init = Enum("Init", {i: i for i in ("keras", "torch")}, type=str)
Nonlinearity = Enum("Nonlinearity", {n: n for n in ("tanh", "relu", "identity")}, type=str)
RecurrentInit = Enum("RecurrentInit", {k: k for k in RECURRENT_INITS}, type=str)
Variant = Enum("Variant", {v: v for v in VARIANTS}, type=str)
# The fields passed to rnnlab's cells as they are (rnnlab.nn.regularizers); all off by default
REGULARIZERS = ("zoneout", "zoneout_cell", "weight_dropout", "variational_dropout", "layer_norm")


def positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def plain_choice(config, name: str, choices: type[Enum]) -> None:
    """Set ``config.<name>`` to its plain string (Hydra gives an Enum member), refusing a value not in ``choices``."""
    value = str(getattr(getattr(config, name), "value", getattr(config, name)))
    if value not in choices.__members__:
        raise ValueError(f"model.{name} must be one of {list(choices.__members__)}: got {value!r}")
    setattr(config, name, value)


@dataclass
class EncoderConfig:
    """The recurrent encoder of a model; every model's config has these fields (defaults: the classifier's).

    Args:
        cell: a name of :data:`rnnlab.nn.CELLS`: ``lstm``, ``cifg``, ``gru``, ``rnn``, ``lstm_noforget``
            (rnnlab.nn) or ``torch_lstm``, ``torch_gru`` (torch.nn, packed sequences). Default ``lstm``.
        hidden_size: H per direction, or a list of widths (one layer each, e.g. ``[32, 64, 64]``). Default 32.
        num_layers: stacked layers of width ``hidden_size`` (ignored when it is a list). Default 1.
        bidirectional: run a reverse direction too; the encoder's outputs have 2H features. Default False.
        rnn_dropout: dropout between stacked layers. Default 0.
        init: ``keras`` (Keras' cell init: glorot / orthogonal, forget bias) or ``torch`` (torch's defaults).
            Default ``keras``.
        forget_bias: initial forget-gate bias of the LSTM-like cells. Default 1.
        nonlinearity: of the ``rnn`` cell: ``tanh``, ``relu`` or ``identity``. Default ``tanh``.
        backend: rnnlab.nn backend (``auto``, ``loop``, ``fused``, ``triton``). Default ``auto``.
        recurrent_init: None (keep ``init``'s draw) or ``orthogonal``, ``identity``, ``uniform``: every gate block of
            ``W_hh`` redrawn with spectral radius ``recurrent_scale`` (:func:`rnnlab.nn.init.recurrent_init_`).
        recurrent_scale: that radius: above 1 the gradient can explode, below 1 it vanishes. Default 1.
        variant: of the ``lstm`` cell, Greff et al. (2017)'s variants: ``vanilla``, ``np``, ``nig``, ``nfg``, ``nog``,
            ``niaf``, ``noaf``, ``cifg``, ``fgr`` (equations in :class:`rnnlab.nn.LSTM`). Default ``vanilla``.
        peephole: of the ``lstm`` cell: peephole connections (Greff's vanilla LSTM is ``variant=vanilla
            peephole=true``). Default False.
        zoneout, zoneout_cell, weight_dropout, variational_dropout, layer_norm: the regularizers of rnnlab's cells
            (:mod:`rnnlab.nn.regularizers`, docs/regularizers.md): zoneout's z_h and z_c (null: z_h), DropConnect on
            W_hh, one dropout mask per sequence on each recurrent layer's input and output, layer-normalized
            pre-activations. Off by default (0, null, false); not for ``torch_*`` cells.
        recurrent_max: ``indrnn`` only: the bound on |u|, or null for 2^(1/T). Default null.
    """

    cell: Cell = Cell.lstm
    hidden_size: Any = 32  # an int or a list of ints (Hydra's types cannot say it): checked in __post_init__
    num_layers: int = 1
    bidirectional: bool = False
    rnn_dropout: float = 0.0
    init: Init = Init.keras
    forget_bias: float = 1.0
    nonlinearity: Nonlinearity = Nonlinearity.tanh
    backend: str = "auto"
    recurrent_init: Optional[RecurrentInit] = None
    recurrent_scale: float = 1.0
    variant: Variant = Variant.vanilla
    peephole: bool = False
    zoneout: float = 0.0
    zoneout_cell: Optional[float] = None
    weight_dropout: float = 0.0
    variational_dropout: float = 0.0
    layer_norm: bool = False
    recurrent_max: Optional[float] = None

    def __post_init__(self):
        for name, choices in (("cell", Cell), ("init", Init), ("nonlinearity", Nonlinearity), ("variant", Variant)):
            plain_choice(self, name, choices)
        if (self.variant != "vanilla" or self.peephole) and self.cell != "lstm":
            raise ValueError(f"model.variant and model.peephole must stay vanilla and false unless model.cell=lstm (the "
                             f"options of rnnlab.nn.LSTM): expected model.cell=lstm, got {self.cell} with model.variant="
                             f"{self.variant}, model.peephole={self.peephole} (CIFG is model.cell=lstm model.variant=cifg)")
        if self.variant == "np" and self.peephole:
            raise ValueError("model.peephole must be false with model.variant=np (no peepholes): expected false, got "
                             "true (the vanilla LSTM with peepholes is model.variant=vanilla model.peephole=true)")
        if self.recurrent_init is not None:
            self.recurrent_init = str(getattr(self.recurrent_init, "value", self.recurrent_init))
            if self.recurrent_init not in RECURRENT_INITS:
                raise ValueError(f"model.recurrent_init must be null or one of {list(RECURRENT_INITS)}: got "
                                 f"{self.recurrent_init!r}")
        if not self.recurrent_scale >= 0:
            raise ValueError(f"model.recurrent_scale must be >= 0 (the spectral radius of W_hh): got "
                             f"{self.recurrent_scale!r}")
        size = list(self.hidden_size) if isinstance(self.hidden_size, (list, tuple, ListConfig)) else self.hidden_size
        if not (positive_int(size) or isinstance(size, list) and size and all(positive_int(h) for h in size)):
            raise ValueError(f"model.hidden_size must be a positive int, or a list of them (one width per stacked "
                             f"layer, e.g. [32, 64]): got {self.hidden_size!r}")
        self.hidden_size = size
        if not positive_int(self.num_layers):  # else the cell would name its own argument
            raise ValueError(f"model.num_layers must be >= 1 (stacked layers): got {self.num_layers!r}")
        if not 0 <= self.rnn_dropout <= 1:
            raise ValueError(f"model.rnn_dropout must be a probability in [0, 1]: got {self.rnn_dropout!r}")
        for name in ("zoneout", "zoneout_cell", "weight_dropout", "variational_dropout"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise ValueError(f"model.{name} must be a probability in [0, 1): got {value!r}")
        on = [n for n in REGULARIZERS if getattr(self, n) not in (0, None, False)]
        if on and CELLS[self.cell].is_torch:
            raise ValueError(f"model.{on[0]} needs one of rnnlab's cells: model.cell={self.cell} is torch's, which has "
                             f"no such option; set model.cell={self.cell.removeprefix('torch_')}")
        if self.layer_norm and (self.variant not in ("vanilla", "np", "nfg") or self.peephole):
            raise ValueError(f"model.layer_norm=true is not supported with model.variant={self.variant}, model.peephole="
                             f"{str(self.peephole).lower()}: expected model.variant=vanilla, np or nfg without peepholes,"
                             f" or model.layer_norm=false")
        if self.recurrent_max is not None and (self.cell != "indrnn" or not self.recurrent_max > 0):
            raise ValueError(f"model.recurrent_max must be null, or a number > 0 with model.cell=indrnn (the bound on "
                             f"|u|): got {self.recurrent_max!r} with model.cell={self.cell}")
        if self.cell == "indrnn" and self.recurrent_init is not None:
            raise ValueError(f"model.recurrent_init must be null with model.cell=indrnn (its W_hh is a vector u, "
                             f"drawn from U(0, 1)): got {self.recurrent_init!r}")

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1


def _layers(config: EncoderConfig, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> nn.Module:
    """One encoder module of ``config.cell`` (batch_first=True), ``num_layers`` layers of width ``hidden_size``."""
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
        if config.variant != "vanilla" or config.peephole:  # rnnlab.nn.LSTM only (__post_init__ checks)
            kwargs.update(variant=config.variant, peephole=config.peephole)
        module = build_cell(config.cell, input_size, hidden_size, **kwargs)
    if config.recurrent_init is not None:  # W_hh's spectral radius where the user puts it
        recurrent_init_(module, config.recurrent_init, config.recurrent_scale)
    return module


def build_encoder(config: EncoderConfig, input_size: int) -> tuple[nn.Module, int]:
    """The encoder of ``config`` reading ``input_size`` features per step, and its output width (H * directions):
    one module of ``num_layers`` layers, or a :class:`StackedEncoder` for a list of widths."""
    d = config.num_directions
    if isinstance(config.hidden_size, int):
        return _layers(config, input_size, config.hidden_size, config.num_layers, config.rnn_dropout), config.hidden_size * d
    sizes = config.hidden_size  # one layer per width, each reading the previous layer's outputs
    inputs = [input_size] + [h * d for h in sizes[:-1]]
    layers = [_layers(config, i, h, 1, 0.0) for i, h in zip(inputs, sizes)]
    return StackedEncoder(layers, config.rnn_dropout), sizes[-1] * d


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

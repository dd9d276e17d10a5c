"""The recurrent cells rnnlab builds, by name: one registry for the classifier, the kernel tools and the tests.

Each name is one spelling of one variant; ``lstm_noforget`` is :class:`rnnlab.nn.LSTM` with ``forget_gate=False``.
``torch_lstm`` and ``torch_gru`` are torch's own modules (cuDNN on a GPU), kept for comparison.

>>> sorted(CELLS)
['cifg', 'gru', 'indrnn', 'lstm', 'lstm_noforget', 'rnn', 'torch_gru', 'torch_lstm']
>>> build_cell("lstm_noforget", 4, 3).forget_gate
False
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rnnlab.nn.gru import GRU
from rnnlab.nn.indrnn import IndRNN
from rnnlab.nn.lstm import CIFGLSTM, LSTM
from rnnlab.nn.rnn import RNN


@dataclass(frozen=True)
class CellSpec:
    """A cell variant: the module class, the arguments that make the variant, and what else its class accepts.

    Attributes:
        cls: the module class (an :class:`rnnlab.nn.RNNBase` subclass, or ``torch.nn.LSTM`` / ``torch.nn.GRU``).
        kwargs: the constructor arguments that select the variant (``forget_gate=False`` for ``lstm_noforget``).
        gated_lstm: it has an LSTM's forget gate bias (``forget_bias`` applies).
        nonlinearity: it takes ``nonlinearity`` (the Elman RNN, IndRNN).
        loop_only: its step is written in the ``loop`` backend only (no fused or triton kernels).
    """

    cls: type
    kwargs: dict = field(default_factory=dict)
    gated_lstm: bool = False
    nonlinearity: bool = False
    loop_only: bool = False

    @property
    def is_torch(self) -> bool:
        """A ``torch.nn`` module: no rnnlab ``backend``, ``init`` or per-timestep gradient recording."""
        return self.cls.__module__.startswith("torch.")


CELLS: dict[str, CellSpec] = {
    "lstm": CellSpec(LSTM, gated_lstm=True),
    "lstm_noforget": CellSpec(LSTM, {"forget_gate": False}),  # Hochreiter & Schmidhuber (1997): c_t = c_{t-1} + i ⊙ g
    "cifg": CellSpec(CIFGLSTM, gated_lstm=True),
    "gru": CellSpec(GRU),
    "rnn": CellSpec(RNN, nonlinearity=True),
    "indrnn": CellSpec(IndRNN, nonlinearity=True, loop_only=True),  # Li et al. (2018): h_t = φ(W x_t + u ⊙ h_{t-1} + b)
    "torch_lstm": CellSpec(torch.nn.LSTM, gated_lstm=True),
    "torch_gru": CellSpec(torch.nn.GRU),
}
RNNLAB_CELLS = tuple(name for name, spec in CELLS.items() if not spec.is_torch and not spec.loop_only)  # with kernels


def cell_spec(name: str) -> CellSpec:
    """The :class:`CellSpec` of ``name``; an unknown name is an error listing the known ones."""
    try:
        return CELLS[name]
    except KeyError:
        raise ValueError(f"cell must be one of {tuple(CELLS)}: got {name!r}") from None


def build_cell(name: str, input_size: int, hidden_size: int, **kwargs) -> torch.nn.Module:
    """``CELLS[name].cls(input_size, hidden_size, **variant_kwargs, **kwargs)``."""
    spec = cell_spec(name)
    return spec.cls(input_size, hidden_size, **spec.kwargs, **kwargs)

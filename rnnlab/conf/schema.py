"""Typed schema of the model config group, so a wrong key *or value* is Hydra's error at composition time.

``model.num_layers=two`` fails with "Value 'two' of type 'str' could not be converted to Integer" and
``model.cell=lsmt`` with "Invalid value 'lsmt', expected one of [lstm, cifg, ...]" before anything is built.
Every ``model/*.yaml`` starts from it (``defaults: [/schema/model@_here_]``).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

Cell = Enum("Cell", {c: c for c in ("lstm", "cifg", "gru", "rnn", "lstm_noforget", "torch_lstm", "torch_gru")}, type=str)
Pooling = Enum("Pooling", {p: p for p in ("last", "mean", "max")}, type=str)
Init = Enum("Init", {i: i for i in ("keras", "torch")}, type=str)
Nonlinearity = Enum("Nonlinearity", {n: n for n in ("tanh", "relu", "identity")}, type=str)
Interval = Enum("Interval", {i: i for i in ("epoch", "step")}, type=str)


@dataclass
class ModelSchema:
    _target_: str = "rnnlab.models.module.SequenceClassifierModule"
    cell: Cell = Cell.lstm
    embedding_dim: int = 256
    hidden_size: Any = 32  # an int, or a list of widths
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.5
    rnn_dropout: float = 0.0
    pooling: Pooling = Pooling.last
    init: Init = Init.keras
    forget_bias: float = 1.0
    nonlinearity: Nonlinearity = Nonlinearity.tanh
    use_lengths: bool = True
    fixed_length: Optional[int] = None
    freeze_embeddings: bool = False
    backend: str = "auto"
    step_seed: Optional[int] = None
    optimizer: Any = None
    scheduler: Any = None
    scheduler_interval: Interval = Interval.epoch


def register() -> None:
    ConfigStore.instance().store(group="schema", name="model", node=ModelSchema)

"""The model description: one typed dataclass that is the Hydra schema of the ``model`` config group.

Its defaults are the model's defaults; ``conf/model/<cell>.yaml`` sets only what differs (``cell``) and picks the
optimizer. :class:`SequenceClassifier` reads the network fields, :class:`SequenceClassifierModule` the training
fields, and the module saves all of them as its hyperparameters, so a checkpoint rebuilds its own model.

Choices are Enums, so Hydra rejects ``model.cell=lsmt`` or ``model.num_layers=two`` while it composes the config;
the built object holds plain strings. ``hidden_size`` is an int *or* a list of ints, which Hydra's types cannot say:
:func:`model_config` builds the dataclass from the composed config (its ``__post_init__`` checks every value), and
``rnnlab.train`` calls it before it loads any data.

>>> ModelConfig(cell="gru", hidden_size=[32, 64]).num_directions
1
>>> ModelConfig(hidden_size="abc")
Traceback (most recent call last):
...
ValueError: model.hidden_size must be a positive int, or a list of them (one width per stacked layer, e.g. [32, 64]): got 'abc'
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from rnnlab.nn.backends.loop import VARIANTS
from rnnlab.nn.init import RECURRENT_INITS
from rnnlab.nn.registry import CELLS

# rnnlab's cells, then their variants, then torch's: the order Hydra's "expected one of [...]" lists them in
Cell = Enum("Cell", {c: c for c in sorted(CELLS, key=lambda c: (CELLS[c].is_torch, bool(CELLS[c].kwargs)))}, type=str)
Pooling = Enum("Pooling", {p: p for p in ("last", "mean", "max", "mean_max", "sum_sqrt", "sum_sqrt_max")}, type=str)
Init = Enum("Init", {i: i for i in ("keras", "torch")}, type=str)
Nonlinearity = Enum("Nonlinearity", {n: n for n in ("tanh", "relu", "identity")}, type=str)
Interval = Enum("Interval", {i: i for i in ("epoch", "step")}, type=str)
RecurrentInit = Enum("RecurrentInit", {k: k for k in RECURRENT_INITS}, type=str)
Variant = Enum("Variant", {v: v for v in VARIANTS}, type=str)

# RMSprop as Keras updates (epsilon inside the square root) with Keras' defaults: the optimizer when none is given.
# conf/model/optimizer/rmsprop_keras.yaml is the same choice for the config group.
RMSPROP_KERAS = {"_target_": "rnnlab.models.optim.KerasRMSprop", "_partial_": True, "lr": 1e-3, "rho": 0.9, "eps": 1e-7}


# The fields passed to rnnlab's cells as they are (rnnlab.nn.regularizers); all off by default
REGULARIZERS = ("zoneout", "zoneout_cell", "weight_dropout", "variational_dropout", "layer_norm")

# Optimizers whose step takes the sparse gradients of model.sparse_embeddings (torch's Adam and RMSprop refuse them)
SPARSE_OPTIMIZERS = ("LazyAdam", "SGD", "Adagrad")


def _positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


@dataclass
class ModelConfig:
    """What a model is: the network and how it is trained. Every default of the model is written here, once.

    Network (read by :class:`rnnlab.models.classifier.SequenceClassifier`):
        cell: a name of :data:`rnnlab.nn.CELLS`: ``lstm``, ``cifg``, ``gru``, ``rnn``, ``lstm_noforget``
            (rnnlab.nn) or ``torch_lstm``, ``torch_gru`` (torch.nn, packed sequences). Default ``lstm``.
        embedding_dim: D, the width of each token vector. Default 256.
        hidden_size: H per direction, or a list of widths (one layer each, e.g. ``[32, 64, 64]``). Default 32.
        num_layers: stacked layers of width ``hidden_size`` (ignored when it is a list). Default 1.
        bidirectional: run a reverse direction too; the head sees 2H features. Default False.
        dropout: dropout before the head. Default 0.5.
        bigram_buckets: K > 0 adds to each token's vector the row ``1 + (x_{t-1} P + x_t) mod (K - 1)`` of a second,
            zero-initialised table of K rows (the hashing trick of fastText; ``x_{-1}`` = 0, P = 1,000,003, row 0 at
            padding), so each step also sees the word pair that ends at it. 0: off. Default 0.
        nb_scale: scale each token's vector and its pair's vector by their Naive Bayes log-count ratios on the
            training split (Wang & Manning's NBSVM features, :func:`rnnlab.models.classifier.nb_log_count_ratios`):
            the evidence the labels give for a word or pair sets how far its vector reaches. Binary tasks. Default
            False.
        nb_alpha: the ratios' smoothing count alpha: a larger alpha shrinks the ratios of rarely seen words and pairs
            toward 0. Default 1.
        sparse_embeddings: the embedding tables get sparse gradients (the rows a batch used): an optimizer step then
            costs the rows, not the table; needs an optimizer that takes them (``model/optimizer=lazy_adam``).
            Default False.
        embedding_dropout: in training, the probability of dropping a token's whole vector e_t (the others scaled
            by 1 / (1 - p)), so the model cannot lean on a few words. Default 0.
        rnn_dropout: dropout between stacked layers. Default 0.
        pooling: ``last``, ``mean``, ``max``, ``sum_sqrt`` (the sum over a sequence's L real tokens divided by
            √L, so a long sequence's evidence is not divided by its length) or ``mean_max`` / ``sum_sqrt_max``
            (that and the max, side by side: the head sees twice the features). Default ``last``.
        recurrent: False builds no recurrent layer: the head reads the token vectors e_t themselves, pooled (a bag
            of the inputs, the control that measures what the recurrent layer adds); ``cell`` and the recurrent
            widths are then unused and ``last`` pooling is refused. Default True.
        init: ``keras`` (embedding U(-0.05, 0.05), glorot head with zero bias, Keras' cell init) or ``torch``
            (torch's defaults). Default ``keras``: it learns like the Keras reference.
        forget_bias: initial forget-gate bias of the LSTM-like cells. Default 1.
        nonlinearity: of the ``rnn`` cell: ``tanh``, ``relu`` or ``identity``. Default ``tanh``.
        variant: of the ``lstm`` cell, Greff et al. (2017)'s variants: ``vanilla``, ``np``, ``nig``, ``nfg``, ``nog``,
            ``niaf``, ``noaf``, ``cifg``, ``fgr`` (equations in :class:`rnnlab.nn.LSTM`). Default ``vanilla``.
        peephole: of the ``lstm`` cell: peephole connections (Greff's vanilla LSTM is ``variant=vanilla
            peephole=true``). Default False.
        use_lengths: read each sequence to its own length and pool over real tokens; False reads the padding too,
            as a Keras model without masking. Default True.
        fixed_length: right-pad (or cut) every batch to this many steps (Keras' ``pad_sequences``). Default None.
        freeze_embeddings: do not train the embedding table. Default False.
        backend: rnnlab.nn backend (``auto``, ``loop``, ``fused``, ``triton``). Default ``auto``.
        recurrent_init: None (keep ``init``'s draw) or ``orthogonal``, ``identity``, ``uniform``: every gate block of
            ``W_hh`` redrawn with spectral radius ``recurrent_scale`` (:func:`rnnlab.nn.init.recurrent_init_`).
        recurrent_scale: that radius: above 1 the gradient can explode, below 1 it vanishes. Default 1.
        zoneout, zoneout_cell, weight_dropout, variational_dropout, layer_norm: the regularizers of rnnlab's cells
            (:mod:`rnnlab.nn.regularizers`, docs/regularizers.md): zoneout's z_h and z_c (null: z_h), DropConnect on
            W_hh, one dropout mask per sequence on each recurrent layer's input and output, layer-normalized
            pre-activations. Off by default (0, null, false); not for ``torch_*`` cells.
        recurrent_max: ``indrnn`` only: the bound on |u|, or null for 2^(1/T). Default null.

    Training (read by :class:`rnnlab.models.module.SequenceClassifierModule`):
        optimizer: Hydra config of a partial optimizer; None means :data:`RMSPROP_KERAS`.
        scheduler: Hydra config of a partial LR scheduler, or None.
        scheduler_interval: ``epoch`` or ``step``. Default ``epoch``.
        step_seed: when set, dropout masks depend on (step_seed, step) only, so a resumed run equals an
            uninterrupted one. The config sets it to ``${seed}``.
    """

    _target_: str = field(default="rnnlab.models.module.SequenceClassifierModule", repr=False)
    cell: Cell = Cell.lstm
    embedding_dim: int = 256
    hidden_size: Any = 32  # an int or a list of ints: checked in __post_init__ (see the module docstring)
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.5
    bigram_buckets: int = 0
    nb_scale: bool = False
    nb_alpha: float = 1.0
    sparse_embeddings: bool = False
    embedding_dropout: float = 0.0
    rnn_dropout: float = 0.0
    pooling: Pooling = Pooling.last
    recurrent: bool = True
    init: Init = Init.keras
    forget_bias: float = 1.0
    nonlinearity: Nonlinearity = Nonlinearity.tanh
    variant: Variant = Variant.vanilla
    peephole: bool = False
    use_lengths: bool = True
    fixed_length: Optional[int] = None
    freeze_embeddings: bool = False
    backend: str = "auto"
    recurrent_init: Optional[RecurrentInit] = None
    recurrent_scale: float = 1.0
    zoneout: float = 0.0
    zoneout_cell: Optional[float] = None
    weight_dropout: float = 0.0
    variational_dropout: float = 0.0
    layer_norm: bool = False
    recurrent_max: Optional[float] = None
    optimizer: Any = None
    scheduler: Any = None
    scheduler_interval: Interval = Interval.epoch
    step_seed: Optional[int] = None

    def __post_init__(self):
        for name, choices in (("cell", Cell), ("pooling", Pooling), ("init", Init), ("nonlinearity", Nonlinearity),
                              ("scheduler_interval", Interval), ("variant", Variant)):
            value = str(getattr(getattr(self, name), "value", getattr(self, name)))  # an Enum member from Hydra
            if value not in choices.__members__:
                raise ValueError(f"model.{name} must be one of {list(choices.__members__)}: got {value!r}")
            setattr(self, name, value)
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
        size = self.hidden_size
        if isinstance(size, (list, tuple, ListConfig)):
            size = list(size)
        if not (_positive_int(size) or isinstance(size, list) and size and all(_positive_int(h) for h in size)):
            raise ValueError(f"model.hidden_size must be a positive int, or a list of them (one width per stacked "
                             f"layer, e.g. [32, 64]): got {self.hidden_size!r}")
        self.hidden_size = size
        for name, what in (("embedding_dim", "the width of each token's vector"), ("num_layers", "stacked layers")):
            if not _positive_int(getattr(self, name)):  # else the cell would name its own argument
                raise ValueError(f"model.{name} must be >= 1 ({what}): got {getattr(self, name)!r}")
        if not (_positive_int(self.bigram_buckets) and self.bigram_buckets >= 2 or self.bigram_buckets == 0):
            raise ValueError(f"model.bigram_buckets must be 0 (off) or >= 2 (rows of the hashed bigram table, e.g. "
                             f"500000): got {self.bigram_buckets!r}")
        if not self.nb_alpha > 0:
            raise ValueError(f"model.nb_alpha must be > 0 (the smoothing count of the Naive Bayes ratios, e.g. 50): "
                             f"got {self.nb_alpha!r}")
        if self.fixed_length is not None and not _positive_int(self.fixed_length):
            raise ValueError(f"model.fixed_length must be null or a positive int (steps per padded batch): got "
                             f"{self.fixed_length!r}")
        for name in ("dropout", "embedding_dropout", "rnn_dropout"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"model.{name} must be a probability in [0, 1]: got {getattr(self, name)!r}")
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
        if not self.recurrent and self.pooling == "last":
            raise ValueError("model.recurrent=false pools the token vectors themselves, and the last one is one word: "
                             "set model.pooling to mean, max, sum_sqrt, mean_max or sum_sqrt_max")
        self.optimizer = _plain(self.optimizer) or dict(RMSPROP_KERAS)
        self.scheduler = _plain(self.scheduler)
        optimizer = str(self.optimizer.get("_target_", ""))
        if self.sparse_embeddings and optimizer.rpartition(".")[2] not in SPARSE_OPTIMIZERS:
            raise ValueError(f"model.sparse_embeddings=true needs an optimizer that takes sparse gradients: "
                             f"model/optimizer=lazy_adam (or sgd), got {optimizer}")

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def hparams(self) -> dict:
        """The fields as plain Python values (no ``_target_``): what the LightningModule saves in its checkpoints."""
        out = dataclasses.asdict(self)
        del out["_target_"]
        return out


def _plain(cfg):
    """A DictConfig (or None/dict) as a plain dict, so it pickles into hparams without omegaconf objects."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return None if cfg is None else dict(cfg)


def model_config(node: DictConfig) -> ModelConfig:
    """The :class:`ModelConfig` of a composed ``model`` config node (interpolations resolved), its values checked."""
    return OmegaConf.to_object(node) if OmegaConf.get_type(node) is ModelConfig else ModelConfig(
        **{k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "_target_"})

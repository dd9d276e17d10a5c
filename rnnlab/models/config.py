"""The model descriptions: typed dataclasses that are the Hydra schemas of the ``model`` config group.

:class:`ModelConfig` (the text classifier), :class:`TaskConfig` (the synthetic tasks' model) and
:class:`ReaderConfig` (the score reader) are each an :class:`~rnnlab.models.encoder.EncoderConfig` (the encoder's
fields, described once) and a :class:`TrainingConfig` (optimizer, scheduler, step seed) with their own fields added.
Their defaults are the model's defaults; ``conf/model/<cell>.yaml``, ``task.yaml`` and ``reader.yaml`` set only
what differs and pick the optimizer. The network reads the network fields, the LightningModule the training fields,
and the module saves all of them as its hyperparameters, so a checkpoint rebuilds its own model.

Choices are Enums, so Hydra rejects ``model.cell=lsmt`` or ``model.num_layers=two`` while it composes the config;
the built object holds plain strings. ``hidden_size`` is an int *or* a list of ints, which Hydra's types cannot say:
:func:`model_config` builds the dataclass from the composed config (its ``__post_init__`` checks every value), and
``rnnlab.train`` builds it (:func:`rnnlab.schema.check_values`) before it loads any data.

>>> ModelConfig(cell="gru", hidden_size=[32, 64]).num_directions
1
>>> ModelConfig(hidden_size="abc")
Traceback (most recent call last):
...
ValueError: model.hidden_size must be a positive int, or a list of them (one width per stacked layer, e.g. [32, 64]): got 'abc'
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from rnnlab.models.encoder import Cell, EncoderConfig, plain_choice, positive_int

Pooling = Enum("Pooling", {p: p for p in ("last", "mean", "max", "mean_max", "sum_sqrt", "sum_sqrt_max")}, type=str)
Interval = Enum("Interval", {i: i for i in ("epoch", "step")}, type=str)
Head = Enum("Head", {h: h for h in ("last", "per_step")}, type=str)

# RMSprop as Keras updates (epsilon inside the square root) with Keras' defaults: the optimizer when none is given.
# conf/model/optimizer/rmsprop_keras.yaml is the same choice for the config group.
RMSPROP_KERAS = {"_target_": "rnnlab.models.optim.KerasRMSprop", "_partial_": True, "lr": 1e-3, "rho": 0.9, "eps": 1e-7}
# Adam with torch's defaults: the optimizer of the task and reader models when none is given.
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}


# Optimizers whose step takes the sparse gradients of model.sparse_embeddings (torch's Adam and RMSprop refuse them)
SPARSE_OPTIMIZERS = ("LazyAdam", "SGD", "Adagrad")


@dataclass
class TrainingConfig(EncoderConfig):
    """How a model is trained, after its encoder's fields: the fields every rnnlab LightningModule reads
    (:class:`rnnlab.models.module.RecurrentModule`).

    Args:
        optimizer: Hydra config of a partial optimizer; None means the model's default (:attr:`default_optimizer`).
        scheduler: Hydra config of a partial LR scheduler, or None.
        scheduler_interval: ``epoch`` or ``step``. Default ``epoch``.
        step_seed: when set, dropout masks depend on (step_seed, step) only, so a resumed run equals an
            uninterrupted one. The configs set it to ``${seed}``.
    """

    optimizer: Any = None
    scheduler: Any = None
    scheduler_interval: Interval = Interval.epoch
    step_seed: Optional[int] = None

    default_optimizer = ADAM  # a class attribute, not a field

    def __post_init__(self):
        super().__post_init__()
        plain_choice(self, "scheduler_interval", Interval)
        self.optimizer = _plain(self.optimizer) or dict(self.default_optimizer)
        self.scheduler = _plain(self.scheduler)
        for name in ("dropout", "embedding_dropout"):
            if not 0 <= getattr(self, name, 0) <= 1:
                raise ValueError(f"model.{name} must be a probability in [0, 1]: got {getattr(self, name)!r}")

    def hparams(self) -> dict:
        """The fields as plain Python values (no ``_target_``): what the LightningModule saves in its checkpoints."""
        out = dataclasses.asdict(self)
        del out["_target_"]
        return out


@dataclass
class ModelConfig(TrainingConfig):
    """What a classifier is: the network and how it is trained. Every default of the model is written here, once:
    the encoder's fields (``cell``, ``hidden_size``, ``num_layers``, ``bidirectional``, ``rnn_dropout``, ``init``,
    ``forget_bias``, ``nonlinearity``, ``backend``, ``recurrent_init``, ``recurrent_scale``) in
    :class:`~rnnlab.models.encoder.EncoderConfig`, the training fields (``optimizer``: None means
    :data:`RMSPROP_KERAS`; ``scheduler``, ``scheduler_interval``, ``step_seed``) in :class:`TrainingConfig`.

    Network (read by :class:`rnnlab.models.classifier.SequenceClassifier`):
        embedding_dim: D, the width of each token vector. Default 256.
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
        pooling: ``last``, ``mean``, ``max``, ``sum_sqrt`` (the sum over a sequence's L real tokens divided by
            √L, so a long sequence's evidence is not divided by its length) or ``mean_max`` / ``sum_sqrt_max``
            (that and the max, side by side: the head sees twice the features). Default ``last``.
        recurrent: False builds no recurrent layer: the head reads the token vectors e_t themselves, pooled (a bag
            of the inputs, the control that measures what the recurrent layer adds); ``cell`` and the recurrent
            widths are then unused and ``last`` pooling is refused. Default True.
        init (the encoder's): ``keras`` also draws the embedding U(-0.05, 0.05) and a glorot head with zero bias;
            it learns like the Keras reference.
        use_lengths: read each sequence to its own length and pool over real tokens; False reads the padding too,
            as a Keras model without masking. Default True.
        fixed_length: right-pad (or cut) every batch to this many steps (Keras' ``pad_sequences``). Default None.
        freeze_embeddings: do not train the embedding table. Default False.

    """

    _target_: str = field(default="rnnlab.models.module.SequenceClassifierModule", repr=False)
    embedding_dim: int = 256
    dropout: float = 0.5
    bigram_buckets: int = 0
    nb_scale: bool = False
    nb_alpha: float = 1.0
    sparse_embeddings: bool = False
    embedding_dropout: float = 0.0
    pooling: Pooling = Pooling.last
    recurrent: bool = True
    use_lengths: bool = True
    fixed_length: Optional[int] = None
    freeze_embeddings: bool = False

    default_optimizer = RMSPROP_KERAS

    def __post_init__(self):
        super().__post_init__()
        plain_choice(self, "pooling", Pooling)
        if not positive_int(self.embedding_dim):  # else the cell would name its own argument
            raise ValueError(f"model.embedding_dim must be >= 1 (the width of each token's vector): got "
                             f"{self.embedding_dim!r}")
        if not (positive_int(self.bigram_buckets) and self.bigram_buckets >= 2 or self.bigram_buckets == 0):
            raise ValueError(f"model.bigram_buckets must be 0 (off) or >= 2 (rows of the hashed bigram table, e.g. "
                             f"500000): got {self.bigram_buckets!r}")
        if not self.nb_alpha > 0:
            raise ValueError(f"model.nb_alpha must be > 0 (the smoothing count of the Naive Bayes ratios, e.g. 50): "
                             f"got {self.nb_alpha!r}")
        if self.fixed_length is not None and not positive_int(self.fixed_length):
            raise ValueError(f"model.fixed_length must be null or a positive int (steps per padded batch): got "
                             f"{self.fixed_length!r}")
        if not self.recurrent and self.pooling == "last":
            raise ValueError("model.recurrent=false pools the token vectors themselves, and the last one is one word: "
                             "set model.pooling to mean, max, sum_sqrt, mean_max or sum_sqrt_max")
        optimizer = str(self.optimizer.get("_target_", ""))
        if self.sparse_embeddings and optimizer.rpartition(".")[2] not in SPARSE_OPTIMIZERS:
            raise ValueError(f"model.sparse_embeddings=true needs an optimizer that takes sparse gradients: "
                             f"model/optimizer=lazy_adam (or sgd), got {optimizer}")

    def check_trainer(self, trainer) -> None:
        """Refuse the trainer settings this model cannot train under (``rnnlab.schema.check_values`` calls it)."""
        clip = trainer.get("gradient_clip_val")
        if clip and self.sparse_embeddings:
            raise ValueError(f"model.sparse_embeddings=true gives the embeddings sparse gradients, which "
                             f"trainer.gradient_clip_val={clip} cannot clip (Lightning clips dense ones): set "
                             f"trainer.gradient_clip_val=0 or model.sparse_embeddings=false")

@dataclass
class TaskConfig(TrainingConfig):
    """The synthetic tasks' model (:class:`rnnlab.models.tasks.TaskNet`): the encoder's fields (defaults: an LSTM of
    64 units), the training fields (``optimizer``: None means :data:`ADAM`), and

    Args:
        head: ``last`` (one output per sequence, from :math:`h_T`: the adding problem) or ``per_step`` (logits at
            every step: copy memory). Default ``last``.
        embedding_dim: 0: the inputs are features, fed to the cell as they are; > 0: an embedding of the input
            symbols of this width. Default 0.
        dropout: on the head's input (:math:`h_T`, or every :math:`h_t`), as the classifier's. Default 0.
    """

    _target_: str = field(default="rnnlab.models.tasks.TaskModule", repr=False)
    hidden_size: Any = 64
    head: Head = Head.last
    embedding_dim: int = 0
    dropout: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        plain_choice(self, "head", Head)
        _one_width(self)


@dataclass
class ReaderConfig(TrainingConfig):
    """The score reader stacked on cross-fitted bags (:class:`rnnlab.models.stacking.ScoreReader`): the encoder's
    fields (defaults: a bidirectional GRU of 64 units per direction), the training fields (``optimizer``: None means
    :data:`ADAM`), and

    Args:
        embedding_dim: the width of the word vectors beside each score. Default 16.
        words: rows of the word table (the most frequent words, padding and OOV included). Default 5000.
        dropout: before the net's own term. Default 0.5.
        recurrent: False replaces the RNN by a per-step layer (the control: the same inputs, read out of order).
    """

    _target_: str = field(default="rnnlab.models.stacking.ScoreReaderModule", repr=False)
    cell: Cell = Cell.gru
    hidden_size: Any = 64
    bidirectional: bool = True
    embedding_dim: int = 16
    words: int = 5000
    dropout: float = 0.5
    recurrent: bool = True

    def __post_init__(self):
        super().__post_init__()
        _one_width(self)
        if not (positive_int(self.words) and self.words >= 2):
            raise ValueError(f"model.words must be >= 2 (rows of the word table, padding and OOV included): got "
                             f"{self.words!r}")


def _one_width(config: EncoderConfig) -> None:
    if not isinstance(config.hidden_size, int):
        raise ValueError(f"model.hidden_size of {type(config).__name__} must be one positive int (its head reads one "
                         f"width): got {config.hidden_size!r}")


def _plain(cfg):
    """A DictConfig (or None/dict) as a plain dict, so it pickles into hparams without omegaconf objects."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return None if cfg is None else dict(cfg)


def model_config(node: DictConfig) -> ModelConfig:
    """The :class:`ModelConfig` of a composed ``model`` config node (interpolations resolved), its values checked."""
    return OmegaConf.to_object(node) if OmegaConf.get_type(node) is ModelConfig else ModelConfig(
        **{k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "_target_"})

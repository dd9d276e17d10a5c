"""Models and the training glue of ``rnnlab.train``.

* :mod:`rnnlab.models.config`: ``ModelConfig``, the model description (and the Hydra schema of ``model``).
* :mod:`rnnlab.models.classifier`: ``SequenceClassifier`` (Embedding -> any recurrent cell -> pooling -> dropout -> linear).
* :mod:`rnnlab.models.module`: ``ClassifierModule`` (loss, accuracy, optimizer, vocabulary) and
  ``SequenceClassifierModule``, the classifier's LightningModule.
* :mod:`rnnlab.models.stacking`: ``ScoreReader`` and its module: a recurrent net over bags' cross-fitted token scores.
* :mod:`rnnlab.models.optim`: ``KerasRMSprop``, RMSprop as Keras updates.
* :mod:`rnnlab.models.callbacks`: ``EpochTimer``, ``RunConfig`` (the run config in every checkpoint), ``DivergenceStop``.
* :mod:`rnnlab.models.resumable`: ``ResumableLoader`` (mid-epoch resume), ``restart_interrupted_validation``.
* :mod:`rnnlab.models.checkpointing`: ``AtomicCheckpointIO`` (atomic writes), ``RunCheckpoint`` (a NaN stop keeps last.ckpt).
"""
from rnnlab.models.classifier import SequenceClassifier
from rnnlab.models.config import ModelConfig

__all__ = ["ModelConfig", "SequenceClassifier"]

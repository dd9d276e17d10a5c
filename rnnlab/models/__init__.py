"""Models and the training glue of ``rnnlab.train``.

* :mod:`rnnlab.models.config`: ``ModelConfig``, the model description (and the Hydra schema of ``model``).
* :mod:`rnnlab.models.classifier`: ``SequenceClassifier`` (Embedding -> any recurrent cell -> pooling -> dropout -> linear).
* :mod:`rnnlab.models.module`: ``SequenceClassifierModule``, its LightningModule (loss, accuracy, optimizer, vocabulary).
* :mod:`rnnlab.models.optim`: ``KerasRMSprop``, RMSprop as Keras updates.
* :mod:`rnnlab.models.callbacks`: ``EpochTimer``; :mod:`rnnlab.models.resumable`: ``ResumableLoader`` (mid-epoch resume).
"""
from rnnlab.models.classifier import SequenceClassifier
from rnnlab.models.config import ModelConfig

__all__ = ["ModelConfig", "SequenceClassifier"]

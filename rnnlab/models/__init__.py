"""Models: their typed descriptions, networks and LightningModules.

* :mod:`rnnlab.models.encoder`: ``EncoderConfig`` (the encoder's fields, shared by every model), ``build_encoder``.
* :mod:`rnnlab.models.config`: ``ModelConfig``, ``TaskConfig``, ``ReaderConfig``: the models' descriptions (and the
  Hydra schemas of ``model``).
* :mod:`rnnlab.models.classifier`: ``SequenceClassifier`` (Embedding -> any recurrent cell -> pooling -> dropout -> linear).
* :mod:`rnnlab.models.module`: ``RecurrentModule`` (the shared base), ``ClassifierModule`` (loss, accuracy) and
  ``SequenceClassifierModule``, the classifier's LightningModule.
* :mod:`rnnlab.models.stacking`: ``ScoreReader`` and its module: a recurrent net over bags' cross-fitted token scores.
* :mod:`rnnlab.models.crossfit`: ``CrossFitDataModule``, the bags' cross-fitted token scores as data.
* :mod:`rnnlab.models.tasks`: ``TaskNet`` and ``TaskModule``, the synthetic tasks' model.
* :mod:`rnnlab.models.optim`: ``KerasRMSprop``, RMSprop as Keras updates.
"""
from rnnlab.models.classifier import SequenceClassifier
from rnnlab.models.config import ModelConfig

__all__ = ["ModelConfig", "SequenceClassifier"]

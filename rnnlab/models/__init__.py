"""Models and the training glue of ``rnnlab.train``.

* :mod:`rnnlab.models.classifier`: ``SequenceClassifier`` (Embedding -> any recurrent cell -> pooling -> dropout -> linear).
* :mod:`rnnlab.models.module`: ``SequenceClassifierModule``, its LightningModule (loss, accuracy, optimizer, vocabulary).
* :mod:`rnnlab.models.optim`: ``KerasRMSprop``, RMSprop as Keras updates.
* :mod:`rnnlab.models.callbacks`: ``EpochTimer``; :mod:`rnnlab.models.resumable`: ``ResumableLoader`` (mid-epoch resume).
"""

"""rnnlab's LightningModules: one shared base, the classifiers' loss and accuracy, checkpoints read safely.

:class:`RecurrentModule` holds what every module shares (the typed description, optimizer, step seed, NaN policy,
checkpoint record); :class:`ClassifierModule` adds the text classifiers' loss, metrics and steps (the task model,
:class:`rnnlab.models.tasks.TaskModule`, its own). :class:`SequenceClassifierModule` takes one :class:`ModelConfig`
(or its fields as keywords: Hydra's ``instantiate`` of the ``model`` group passes them so), builds its network from
it and saves its fields as plain hyperparameters, so ``SequenceClassifierModule.load_from_checkpoint(path)`` needs
nothing else. The optimizer and scheduler are
Hydra ``_partial_: true`` configs kept as plain dicts and instantiated in ``configure_optimizers``.

Loss: binary tasks :math:`J = -[y \\log \\sigma(z) + (1-y) \\log(1-\\sigma(z))]`, K classes
:math:`J = -\\log \\mathrm{softmax}(z)_y`, averaged over the batch.
"""
from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import hydra.utils
import lightning.pytorch as pl
import torch
import torchmetrics
from torch import nn

from rnnlab.models.classifier import SequenceClassifier, nb_log_count_ratios
from rnnlab.models.config import ModelConfig
from rnnlab.security import check_targets
from rnnlab.training.checkpointing import (UNREADABLE, checkpoint_file, data_record, load_checkpoint_file,
                                          not_a_checkpoint)
from rnnlab.training.resumable import restart_interrupted_validation


def data_sizes(module: type, datamodule, vocab_size: int | None, num_classes: int | None) -> tuple[int, int | None]:
    """``(vocab_size, num_classes)`` of a module: those of ``datamodule`` (set up) when one is given, else the
    arguments (a checkpoint's hyperparameters, or a user's). A datamodule whose batches only one model reads
    (``model_target``: the synthetic tasks') refuses every other ``module`` class."""
    if datamodule is None:
        if vocab_size is None:
            raise ValueError(f"{module.__name__} needs the data's sizes: expected vocab_size=... (and num_classes) or "
                             f"datamodule=... (set up), got neither")
        return vocab_size, num_classes
    needs, target = getattr(datamodule, "model_target", None), f"{module.__module__}.{module.__qualname__}"
    if needs is not None and needs != target:
        raise ValueError(f"data={datamodule.task} needs the model made for its batches and targets: expected model="
                         f"{datamodule.model_choice} (+experiment={datamodule.task} sets it, with its settings), got "
                         f"model._target_={target}")
    return datamodule.vectorizer.vocab_size, datamodule.num_classes


class RecurrentModule(pl.LightningModule):
    """What every rnnlab LightningModule shares: one typed description, the optimizer, one NaN policy and the data
    record of its checkpoints.

    Args:
        vocab_size, num_classes: the data's sizes (a checkpoint's hyperparameters); default: ``datamodule``'s, else
            :attr:`default_num_classes` classes.
        config: the model's typed description (:attr:`config_class`: :class:`~rnnlab.models.config.ModelConfig`,
            ``TaskConfig``, ``ReaderConfig``): the network, the optimizer (None: the description's default), the
            scheduler and ``step_seed`` (when set, torch's RNG is reseeded from (step_seed, global_step, the batch's
            place among those one step accumulates) before each training batch, so dropout masks depend only on the
            step and a run resumed mid-epoch matches an uninterrupted one).
        datamodule: the set-up datamodule of the run (``rnnlab.train`` passes it): the module asks it for what it
            needs (:meth:`build`). What it loads is in the state_dict, so a module rebuilt from a checkpoint needs no
            data.
        **fields: fields of the description that replace those of ``config`` (all of them, from Hydra or a
            checkpoint's hyperparameters).

    A subclass sets :attr:`config_class`, builds its network in :meth:`build` and says how a batch gives its loss
    (``_step``). A non-finite training loss (:attr:`nan_policy`) raises ``FloatingPointError`` (``raise``), or stops
    the run cleanly at that step, logging ``train/diverged_step`` (``stop``: the run keeps its logs and checkpoints).

    Attributes:
        config: the description; ``hparams`` holds its fields with ``vocab_size`` and ``num_classes``.
        model: the network.
        vocabulary: the vectorizer's JSON (``TextVectorizer.to_json()``), read from the checkpoint (the datamodule
            saves it there); None in a module not loaded from a checkpoint.
        class_names: label names, read likewise.
        data_config: the resolved data config of the run, read from the run config that
            :class:`~rnnlab.training.callbacks.RunConfig` saves in the checkpoint (``rnnlab.evaluate`` rebuilds the
            test split from it).
    """

    config_class: type = ModelConfig
    default_num_classes: int | None = None
    nan_policy = "raise"

    def __init__(self, vocab_size: int | None = None, num_classes: int | None = None, config=None, datamodule=None,
                 **fields):
        vocab_size, num_classes = data_sizes(type(self), datamodule, vocab_size, num_classes)
        num_classes = self.default_num_classes if num_classes is None else num_classes
        super().__init__()
        self.config = dataclasses.replace(config or self.config_class(), **fields)  # replace() checks the new values
        self.vocabulary: str | None = None
        self.class_names: list[str] | None = None
        self.data_config: dict | None = None
        self.setup_loss(num_classes)
        # logged once, with the metric keys, by diagnostics.LogHParams
        self.save_hyperparameters({"vocab_size": vocab_size, "num_classes": num_classes, **self.config.hparams()},
                                  logger=False)
        self.model = self.build(vocab_size, num_classes, datamodule)

    def setup_loss(self, num_classes: int) -> None:
        """The loss and metrics of ``num_classes`` outputs (before the network is built)."""

    def build(self, vocab_size: int, num_classes: int, datamodule) -> nn.Module:
        """The network of :attr:`config` for these sizes; ``datamodule`` (None from a checkpoint) is the run's."""
        raise NotImplementedError

    def _step(self, batch) -> tuple:
        """``(loss, ...)`` of a batch."""
        raise NotImplementedError

    def batch_loss(self, batch) -> torch.Tensor:
        """The training loss of a batch (the diagnostics' probe uses it)."""
        return self._step(batch)[0]

    def finite(self, loss: torch.Tensor, batch_idx: int) -> bool:
        """True for a finite training loss; else the :attr:`nan_policy`: raise, or stop the run (False: no step)."""
        if torch.isfinite(loss):
            return True
        if self.nan_policy == "stop":  # stop here, keep what was logged; no optimizer step on NaN gradients
            self.log("train/diverged_step", float(self.global_step))
            self.trainer.should_stop = True
            return False
        raise FloatingPointError(
            f"training loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}, batch "
            f"{batch_idx}): the gradients exploded. Clip them (trainer.gradient_clip_val=1.0) or lower the "
            f"learning rate (model.optimizer.lr=...).")

    def on_train_batch_start(self, batch, batch_idx):
        if self.hparams.get("step_seed") is not None:  # dropout masks as a function of the step only; the batches one
            # accumulated step sums each draw their own: batch k of the step adds k * 1e9 (torch keeps 32 bits)
            micro = batch_idx % self.trainer.accumulate_grad_batches if self._trainer is not None else 0
            torch.manual_seed(self.hparams.step_seed * 1_000_003 + self.global_step + micro * 1_000_000_007)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = hydra.utils.instantiate(self.hparams.optimizer)(params)
        if not self.hparams.get("scheduler"):
            return optimizer
        scheduler = hydra.utils.instantiate(self.hparams.scheduler)(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss",
                                                        "interval": self.hparams.scheduler_interval}}

    def on_load_checkpoint(self, checkpoint):
        restart_interrupted_validation(checkpoint)  # before Lightning restores its loops from it
        self.vocabulary, self.class_names, self.data_config = data_record(checkpoint)

    def describe(self) -> str:
        """What the run's log calls the model: its cell, or what stands in for it."""
        return self.hparams.cell if self.hparams.get("recurrent", True) else "no recurrent layer"

    def num_parameters(self, trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable)


class ClassifierModule(RecurrentModule):
    """What rnnlab's text classifiers share (see :class:`RecurrentModule`): the loss, accuracy and steps on batches
    ``(ids, lengths, labels, ...)``; a subclass says how a batch becomes logits (:meth:`logits`).

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``test/loss``, ``test/acc``.
    """

    default_num_classes = 2

    def setup_loss(self, num_classes: int) -> None:
        self.binary = num_classes == 2
        self.loss_fn = nn.BCEWithLogitsLoss() if self.binary else nn.CrossEntropyLoss()
        task = dict(task="binary") if self.binary else dict(task="multiclass", num_classes=num_classes)
        self.train_acc = torchmetrics.Accuracy(**task)
        self.val_acc = torchmetrics.Accuracy(**task)
        self.test_acc = torchmetrics.Accuracy(**task)

    def logits(self, batch) -> torch.Tensor:
        """Logits (B,) or (B, K) of a batch."""
        raise NotImplementedError

    def _step(self, batch):
        z, y = self.logits(batch), batch[2]
        y = y.to(z.dtype) if self.binary else y.long()
        loss = self.loss_fn(z, y)
        preds = (z > 0).long() if self.binary else z.argmax(-1)
        return loss, preds, y.long()

    def training_step(self, batch, batch_idx):
        loss, preds, y = self._step(batch)
        self.finite(loss, batch_idx)
        self.train_acc(preds, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, preds, y = self._step(batch)
        self.val_acc(preds, y)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def test_step(self, batch, batch_idx):
        loss, preds, y = self._step(batch)
        self.test_acc(preds, y)
        self.log("test/loss", loss, on_epoch=True, sync_dist=True)
        self.log("test/acc", self.test_acc, on_epoch=True)

    def on_train_epoch_start(self):
        self.train_acc.reset()  # a new epoch: counts restored from a checkpoint were those of the epoch before

    def on_save_checkpoint(self, checkpoint):
        # train/acc counts every batch of its epoch: a run resumed mid-epoch goes on from the counts of the batches
        # before (a resumed epoch gets no on_train_epoch_start, which would reset them)
        checkpoint["train_acc"] = {k: v.detach().cpu().clone() for k, v in self.train_acc.metric_state.items()
                                   if isinstance(v, torch.Tensor)}

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        if self._trainer is None or self.trainer.world_size == 1:  # DDP: each rank counts from the restart
            for name, value in (checkpoint.get("train_acc") or {}).items():
                setattr(self.train_acc, name, value.to(self.device))

    def vectorizer(self):
        """The :class:`rnnlab.data.text.TextVectorizer` the model was trained with (from the checkpoint)."""
        if self.vocabulary is None:
            raise ValueError("this module has no vocabulary: it was not trained by rnnlab.train or the checkpoint "
                             "predates vocabularies; set module.vocabulary = vectorizer.to_json()")
        from rnnlab.data.text import TextVectorizer

        return TextVectorizer.from_json(self.vocabulary)


class SequenceClassifierModule(ClassifierModule):
    """Trains a :class:`SequenceClassifier` of a :class:`ModelConfig` on batches ``(ids, lengths, labels)`` (see
    :class:`RecurrentModule` for the arguments). From the datamodule it takes the sizes, the pretrained vectors
    (``data.embeddings``) and, with ``nb_scale``, the training split's Naive Bayes ratios.

    Attributes:
        model: the :class:`SequenceClassifier` (``model.embedding``, ``model.encoder``).
    """

    def build(self, vocab_size: int, num_classes: int, datamodule) -> nn.Module:
        config = self.config
        pretrained = getattr(datamodule, "pretrained", None)
        if pretrained is not None and config.embedding_dim != pretrained.shape[1]:
            raise ValueError(f"model.embedding_dim must equal the dimension of the vectors of data.embeddings "
                             f"({datamodule.embeddings}): expected {pretrained.shape[1]}, got "
                             f"{config.embedding_dim}; set model.embedding_dim={pretrained.shape[1]}")
        model = SequenceClassifier(config, vocab_size, num_classes)
        if pretrained is not None:
            model.load_pretrained(pretrained, freeze=config.freeze_embeddings)
        if config.nb_scale and datamodule is not None:  # the training split's (validation's labels stay unseen)
            train = datamodule.datasets["train"]
            model.load_nb_ratios(*nb_log_count_ratios(train.flat, train.lengths, train.labels, vocab_size,
                                                      config.bigram_buckets, config.nb_alpha))
        return model

    def forward(self, ids, lengths=None):
        return self.model(ids, lengths)

    def logits(self, batch) -> torch.Tensor:
        return self(batch[0], batch[1])

    def predict_proba(self, ids, lengths=None) -> torch.Tensor:
        """P(positive) (B,) for binary tasks, class probabilities (B, K) otherwise."""
        z = self(ids, lengths)
        return torch.sigmoid(z) if self.binary else torch.softmax(z, dim=-1)


def _module_class(checkpoint: dict, path) -> type:
    """The class of the module a checkpoint holds: its run config's ``model._target_`` (one of rnnlab's, as
    :func:`read_checkpoint` checked), or :class:`SequenceClassifierModule` when it records none; a checkpoint of
    another kind of model is an error that says what it is and what reads it."""
    config = (checkpoint.get("rnnlab") or {}).get("config") or {}
    target = (config.get("model") or {}).get("_target_")
    cls = hydra.utils.get_class(target) if target else SequenceClassifierModule
    if not issubclass(cls, ClassifierModule):
        data = (config.get("data") or {}).get("_target_")
        raise ValueError(
            f"{path} is a checkpoint of rnnlab.train for a synthetic task (model {target}, data {data}), which reads "
            f"sequences of numbers or symbols, not texts: predict and evaluate read text classifiers' checkpoints. "
            f"Its test metrics are in its run's metrics.json; python -m rnnlab.train ckpt_path={path} resumes it, "
            f"and {target}.load_from_checkpoint(path) loads it in Python")
    return cls


def load_module(path, map_location="cpu") -> ClassifierModule:
    """The module of a checkpoint written by ``rnnlab.train`` (a :class:`SequenceClassifierModule`, or the class the
    run's ``model._target_`` names), with its vocabulary, class names and data config; a missing file, a file of
    another kind or one that would run code is an error naming it (:func:`read_checkpoint`)."""
    path = checkpoint_file(path)
    checkpoint = load_checkpoint_file(path, mmap=zipfile.is_zipfile(path))  # the weights stay on disk
    record, where = checkpoint.get("rnnlab") or {}, f"checkpoint {path}"
    config = record.get("config") or {}
    # what is built from it: the model's class, and the data config rnnlab.evaluate instantiates
    model = {k: v for k, v in (config.get("model") or {}).items() if k == "_target_"}
    check_targets({"model": model, "data": config.get("data")}, where)
    check_targets(record.get("data"), where, "rnnlab.data.")  # where earlier versions kept the data config
    cls = _module_class(checkpoint, path)
    try:
        module = cls.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    except (*UNREADABLE, ImportError) as e:
        raise not_a_checkpoint(path, e) from e
    if module.vocabulary is None:
        raise ValueError(f"{path} has no rnnlab vocabulary: it was not written by rnnlab.train, so its texts "
                         f"cannot be vectorized; train with python -m rnnlab.train")
    return module

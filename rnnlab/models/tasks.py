"""LightningModule for the synthetic long-range tasks (``rnnlab.data.synthetic``): the same cells, new heads.

.. math::
    e_t = \\mathrm{in}(x_t), \\qquad (h_1 \\dots h_T) = \\mathrm{RNN}(e_1 \\dots e_T), \\qquad
    \\text{head}=\\texttt{last}: \\hat y = w^\\top h_T + b, \\qquad
    \\text{head}=\\texttt{per\\_step}: z_t = W h_t + b

where ``in`` is an embedding table for symbol inputs (copy memory) or the identity for feature inputs (the adding
problem's (value, marker) pairs); in training the head reads :math:`\\mathrm{dropout}(h_t)` (``model.dropout``).
One output (``num_classes=1``) is a regression trained with the mean squared error; ``K`` outputs are logits trained
with the cross-entropy, averaged over the batch (``last``) or over every step of every sequence (``per_step``).

Metrics: ``train/loss``, ``val/loss``, ``test/loss``, ``{val,test}/acc`` (regression: fraction of predictions within
0.04 of the target; per-step: accuracy on the steps whose target is not class 0, the blank, i.e. on the recalled
symbols of copy memory), and beside each loss the closed-form baseline of the datamodule (``val/baseline_loss``,
``test/baseline_loss``) and the loss relative to it (``val/loss_vs_baseline``): a model that learnt nothing sits at 1.

A non-finite training loss stops training cleanly at that step (no optimizer step with NaN gradients): the run
keeps its logs, its curves and its last checkpoint, and ``train/diverged_step`` records where it happened.
"""
from __future__ import annotations

import hydra.utils
import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from rnnlab.models.classifier import build_encoder, run_encoder
from rnnlab.models.config import ModelConfig
from rnnlab.models.module import data_record
from rnnlab.models.resumable import restart_interrupted_validation
from rnnlab.nn.init import RECURRENT_INITS
from rnnlab.nn.registry import CELLS

HEADS = ("last", "per_step")
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}
TOLERANCE = 0.04  # a regression prediction within this of the target counts as right (adding problem)


class TaskNet(nn.Module):
    """Input layer -> recurrent encoder (one of :data:`rnnlab.nn.registry.CELLS`) -> linear head.

    Args:
        vocab_size: input symbols (an ``nn.Embedding`` of ``embedding_dim``) or, with ``embedding_dim=0``, the
            number of input features per step (no input layer: the features go to the cell as they are).
        num_outputs: 1 (regression) or ``K`` logits.
        head: ``last`` (the state at the last step) or ``per_step`` (every step).
        cell, hidden_size, num_layers, init, forget_bias, nonlinearity, backend, variant, peephole: as
            :class:`rnnlab.models.classifier.SequenceClassifier` (:class:`rnnlab.models.config.ModelConfig`).
        recurrent_init: ``None`` (keep ``init``'s draw) or one of ``orthogonal``, ``identity``, ``uniform``
            (:func:`rnnlab.nn.init.recurrent_init_`), with spectral radius ``recurrent_scale``.
        dropout: dropout on the head's input (:math:`h_T`, or every :math:`h_t`), as the classifier's
            ``model.dropout``. Default: 0
        zoneout, zoneout_cell, weight_dropout, variational_dropout, layer_norm, recurrent_max: the cell's
            regularizers, as :class:`rnnlab.models.config.ModelConfig`'s (:mod:`rnnlab.nn.regularizers`). Off by
            default.

    Inputs: ``x`` (B, T) int64 symbols or (B, T, F) float features. Outputs: (B,) for one output with ``last``,
    (B, K) for ``K`` outputs with ``last``, (B, T, K) (or (B, T)) with ``per_step``.

    Attributes:
        embedding: ``nn.Embedding`` (V, D), or ``nn.Identity`` for features (the diagnostics hook its output: e_t).
        encoder: the recurrent module. head: ``nn.Linear`` (H, K).

    >>> net = TaskNet(2, 1, cell="gru", hidden_size=4, embedding_dim=0)
    >>> net(torch.rand(3, 7, 2)).shape
    torch.Size([3])
    """

    def __init__(self, vocab_size: int, num_outputs: int, head: str = "last", cell: str = "lstm",
                 hidden_size: int = 64, num_layers: int = 1, embedding_dim: int = 0, init: str = "keras",
                 forget_bias: float = 1.0, nonlinearity: str = "tanh", backend: str = "auto",
                 recurrent_init: str | None = None, recurrent_scale: float = 1.0, dropout: float = 0.0,
                 variant: str = "vanilla", peephole: bool = False, **regularizers):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"`model.cell` must be one of {tuple(CELLS)}: got {cell!r}")
        if head not in HEADS:
            raise ValueError(f"`model.head` must be one of {HEADS}: got {head!r}")
        if recurrent_init is not None and recurrent_init not in RECURRENT_INITS:
            raise ValueError(f"`model.recurrent_init` must be null or one of {RECURRENT_INITS}: got {recurrent_init!r}")
        self.head_kind = head
        self.embedding = nn.Embedding(vocab_size, embedding_dim) if embedding_dim else nn.Identity()
        encoder = ModelConfig(cell=cell, hidden_size=hidden_size, num_layers=num_layers, init=init,
                              forget_bias=forget_bias, nonlinearity=nonlinearity, backend=backend,
                              recurrent_init=recurrent_init, recurrent_scale=recurrent_scale, variant=variant,
                              peephole=peephole, **regularizers)
        self.encoder = build_encoder(encoder, embedding_dim or vocab_size, hidden_size, num_layers, dropout=0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embedding(x)  # (B, T, D)
        out = run_encoder(self.encoder, e, None)  # (B, T, H)
        z = self.head(self.dropout(out[:, -1] if self.head_kind == "last" else out))  # (B, K) or (B, T, K)
        return z.squeeze(-1) if z.size(-1) == 1 else z


class TaskModule(pl.LightningModule):
    """Trains a :class:`TaskNet` on a synthetic task; see the module docstring for losses and metrics.

    Args:
        vocab_size, num_classes: from the datamodule (``rnnlab.train`` passes them): input symbols or features,
            and outputs (1: regression).
        head ... recurrent_scale, dropout, zoneout ... recurrent_max, variant, peephole: passed to :class:`TaskNet`.
        optimizer: Hydra config of a partial optimizer. Default: Adam, lr 1e-3.
    """

    def __init__(self, vocab_size: int, num_classes: int, head: str = "last", cell: str = "lstm",
                 hidden_size: int = 64, num_layers: int = 1, embedding_dim: int = 0, init: str = "keras",
                 forget_bias: float = 1.0, nonlinearity: str = "tanh", backend: str = "auto",
                 recurrent_init: str | None = None, recurrent_scale: float = 1.0, optimizer: dict | None = None,
                 dropout: float = 0.0, zoneout: float = 0.0, zoneout_cell: float | None = None,
                 weight_dropout: float = 0.0, variational_dropout: float = 0.0, layer_norm: bool = False,
                 recurrent_max: float | None = None, variant: str = "vanilla", peephole: bool = False):
        super().__init__()
        if isinstance(optimizer, DictConfig):
            optimizer = OmegaConf.to_container(optimizer, resolve=True)
        optimizer = dict(optimizer or ADAM)
        self.save_hyperparameters(logger=False)  # logged once, with the metric keys, by diagnostics.LogHParams
        self.model = TaskNet(vocab_size, num_classes, head, cell, hidden_size, num_layers, embedding_dim, init,
                             forget_bias, nonlinearity, backend, recurrent_init, recurrent_scale, dropout,
                             zoneout=zoneout, zoneout_cell=zoneout_cell, weight_dropout=weight_dropout,
                             variational_dropout=variational_dropout, layer_norm=layer_norm,
                             recurrent_max=recurrent_max, variant=variant, peephole=peephole)
        self.regression = num_classes == 1
        self.vocabulary: str | None = None
        self.class_names: list[str] | None = None
        self.data_config: dict | None = None

    def forward(self, x):
        return self.model(x)

    def num_parameters(self, trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable)

    def batch_loss(self, batch) -> torch.Tensor:
        """The training loss of a batch (the diagnostics' probe uses this too)."""
        return self._step(batch)[0]

    def _step(self, batch):
        x, y = batch[0], batch[-1]
        z = self(x)
        if self.regression:
            loss = nn.functional.mse_loss(z, y)
            correct = ((z - y).abs() < TOLERANCE).float().mean()
        else:
            loss = nn.functional.cross_entropy(z.flatten(0, -2), y.flatten())
            scored = y != 0
            correct = (z.argmax(-1) == y)[scored].float().mean() if scored.any() else (z.argmax(-1) == y).float().mean()
        return loss, correct

    def _baseline(self) -> float | None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return getattr(datamodule, "baseline_loss", None)

    def training_step(self, batch, batch_idx):
        loss, _ = self._step(batch)
        if not torch.isfinite(loss):  # stop here, keep what was logged; no optimizer step on NaN gradients
            self.log("train/diverged_step", float(self.global_step))
            self.trainer.should_stop = True
            return None
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _eval_step(self, batch, stage: str):
        loss, correct = self._step(batch)
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val")
        self.log(f"{stage}/acc", correct, on_epoch=True, prog_bar=stage == "val")
        baseline = self._baseline()
        if baseline is not None:
            self.log(f"{stage}/baseline_loss", baseline, on_epoch=True)
            self.log(f"{stage}/loss_vs_baseline", loss / baseline, on_epoch=True)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def configure_optimizers(self):
        return hydra.utils.instantiate(self.hparams.optimizer)(self.parameters())

    def on_load_checkpoint(self, checkpoint):
        restart_interrupted_validation(checkpoint)  # before Lightning restores its loops from it
        self.vocabulary, self.class_names, self.data_config = data_record(checkpoint)

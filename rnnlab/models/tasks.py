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

import dataclasses

import torch
from torch import nn

from rnnlab.models.config import TaskConfig
from rnnlab.models.encoder import build_encoder, run_encoder
from rnnlab.models.module import RecurrentModule

TOLERANCE = 0.04  # a regression prediction within this of the target counts as right (adding problem)


class TaskNet(nn.Module):
    """Input layer -> recurrent encoder (one of :data:`rnnlab.nn.registry.CELLS`) -> linear head.

    Args:
        vocab_size: input symbols (an ``nn.Embedding`` of ``embedding_dim``) or, with ``embedding_dim=0``, the
            number of input features per step (no input layer: the features go to the cell as they are).
        num_outputs: 1 (regression) or ``K`` logits.
        config: the :class:`~rnnlab.models.config.TaskConfig` (head, encoder, embedding_dim, dropout).
        **fields: its fields that replace those of ``config``.

    Inputs: ``x`` (B, T) int64 symbols or (B, T, F) float features. Outputs: (B,) for one output with ``last``,
    (B, K) for ``K`` outputs with ``last``, (B, T, K) (or (B, T)) with ``per_step``.

    Attributes:
        embedding: ``nn.Embedding`` (V, D), or ``nn.Identity`` for features (the diagnostics hook its output: e_t).
        encoder: the recurrent module. head: ``nn.Linear`` (H, K).

    >>> net = TaskNet(2, 1, cell="gru", hidden_size=4, embedding_dim=0)
    >>> net(torch.rand(3, 7, 2)).shape
    torch.Size([3])
    """

    def __init__(self, vocab_size: int, num_outputs: int, config: TaskConfig | None = None, **fields):
        super().__init__()
        config = dataclasses.replace(config or TaskConfig(), **fields)
        self.head_kind = config.head
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim) if config.embedding_dim else nn.Identity()
        self.encoder, width = build_encoder(config, config.embedding_dim or vocab_size)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embedding(x)  # (B, T, D)
        out = run_encoder(self.encoder, e, None)  # (B, T, H)
        z = self.head(self.dropout(out[:, -1] if self.head_kind == "last" else out))  # (B, K) or (B, T, K)
        return z.squeeze(-1) if z.size(-1) == 1 else z


class TaskModule(RecurrentModule):
    """Trains a :class:`TaskNet` of a :class:`~rnnlab.models.config.TaskConfig` on a synthetic task (arguments: see
    :class:`~rnnlab.models.module.RecurrentModule`); see the module docstring for losses and metrics. A non-finite
    training loss stops the run cleanly (``nan_policy = "stop"``)."""

    config_class = TaskConfig
    nan_policy = "stop"

    def setup_loss(self, num_classes: int) -> None:
        self.regression = num_classes == 1

    def build(self, vocab_size: int, num_classes: int, datamodule) -> nn.Module:
        return TaskNet(vocab_size, num_classes, self.config)

    def forward(self, x):
        return self.model(x)

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
        if not self.finite(loss, batch_idx):
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

"""Gradient diagnostics: per-timestep gradient norms, clipping statistics, HParams, figures.

* :class:`TimestepGradNorms`: ||dJ/dh_t|| per layer/direction and ||dJ/dx_t|| to TensorBoard every N steps.
* :class:`GradClipStats`: global gradient norm before/after Lightning's clipping, fraction of steps clipped.
* :class:`LogHParams`: hyperparameters with the metric keys of a sweep declared for TensorBoard's HParams tab.
* :mod:`rnnlab.diagnostics.gradients`, :mod:`rnnlab.diagnostics.plots`: the pure functions behind them.
"""

from rnnlab.diagnostics.callback import TimestepGradNorms
from rnnlab.diagnostics.clipping import GradClipStats
from rnnlab.diagnostics.gradients import EmbeddingGradNorm, decay_ratios, mean_over_samples
from rnnlab.diagnostics.hparams import LogHParams, hparam_metric_keys

__all__ = [
    "TimestepGradNorms",
    "GradClipStats",
    "LogHParams",
    "hparam_metric_keys",
    "EmbeddingGradNorm",
    "decay_ratios",
    "mean_over_samples",
]

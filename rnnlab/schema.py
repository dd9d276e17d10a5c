"""Typed schemas of the Hydra config groups, so a wrong key or value is Hydra's error while it composes the config.

* ``model``: :class:`rnnlab.models.config.ModelConfig`, the classifier's description (its defaults are the model's);
  :class:`~rnnlab.models.config.TaskConfig` (``model=task``) and :class:`~rnnlab.models.config.ReaderConfig`
  (``model=reader``) those of the other models, each with the encoder's fields of
  :class:`~rnnlab.models.encoder.EncoderConfig`.
  ``model.num_layers=two`` fails with "Value 'two' of type 'str' could not be converted to Integer" and
  ``model.cell=lsmt`` with "Invalid value 'lsmt', expected one of [lstm, cifg, ...]".
* ``trainer``: :class:`TrainerConfig`, the types of the ``lightning.pytorch.Trainer`` arguments that the
  ``conf/trainer/*.yaml`` files set (``trainer.max_epochs=abc`` fails likewise). Any other Trainer argument may
  still be added (``+trainer.accumulate_grad_batches=2``); Lightning checks it.

``conf/model/base.yaml``, ``task.yaml``, ``reader.yaml`` and ``conf/trainer/default.yaml`` start from them (``defaults: [/schema/<group>@_here_]``);
:func:`register` stores them under the group ``schema``, and importing ``rnnlab.conf`` calls it.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Optional, Union

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from rnnlab.models.config import ModelConfig, ReaderConfig, TaskConfig


@dataclass
class TrainerConfig(Dict[str, Any]):  # a Dict subclass: other Trainer arguments may be added
    """Types of the Trainer arguments the trainer configs set; the values are in ``conf/trainer/default.yaml``.

    None is Lightning's own default for each of them.
    """

    _target_: str = "lightning.pytorch.Trainer"
    default_root_dir: Optional[str] = None
    accelerator: str = "auto"
    devices: Any = "auto"  # an int, a list of device indices, or "auto"
    max_epochs: Optional[int] = None
    max_steps: int = -1
    limit_train_batches: Optional[Union[int, float]] = None  # a number of batches, or a fraction of them
    limit_val_batches: Optional[Union[int, float]] = None
    limit_test_batches: Optional[Union[int, float]] = None
    gradient_clip_val: Optional[Union[int, float]] = None
    gradient_clip_algorithm: Optional[str] = None
    log_every_n_steps: Optional[int] = None
    num_sanity_val_steps: Optional[int] = None
    enable_progress_bar: Optional[bool] = None
    enable_model_summary: Optional[bool] = None
    deterministic: Any = None  # a bool or "warn"
    precision: Any = None  # e.g. 32-true, bf16-mixed, 16


def register() -> None:
    store = ConfigStore.instance()
    store.store(group="schema", name="model", node=ModelConfig)
    store.store(group="schema", name="task", node=TaskConfig)
    store.store(group="schema", name="reader", node=ReaderConfig)
    with warnings.catch_warnings():  # OmegaConf < 2.4 (what hydra-core 1.3 allows) supports it, with a warning
        warnings.filterwarnings("ignore", message=".*subclasses `Dict`", category=UserWarning)
        store.store(group="schema", name="trainer", node=TrainerConfig)


def check_values(cfg: DictConfig) -> None:
    """Values Hydra's types cannot check, before any data is loaded: the ``model`` group's typed description is built
    (its ``__post_init__`` checks each value: ``model.hidden_size=abc``) and checks the trainer settings it needs
    (its ``check_trainer``), and the trainer settings that Lightning or torch would take without complaint and then
    do something else than asked are refused."""
    if dataclasses.is_dataclass(OmegaConf.get_type(cfg.model)):
        model = OmegaConf.to_object(cfg.model)
        getattr(model, "check_trainer", lambda trainer: None)(cfg.trainer)
    accelerator = str(cfg.trainer.get("accelerator"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        hint = ("trainer=ddp uses GPUs, and trainer=ddp trainer.accelerator=cpu trainer.devices=2 runs DDP on 2 CPU "
                "processes" if "ddp" in str(cfg.trainer.get("strategy")) else "trainer=cpu trains on the CPU")
        raise ValueError(f"trainer.accelerator={accelerator} needs a CUDA GPU and this machine has none: {hint}; "
                         f"expected trainer.accelerator=cpu here, got trainer.accelerator={accelerator}")
    clip = cfg.trainer.get("gradient_clip_val")
    if clip is not None and (not isinstance(clip, (int, float)) or isinstance(clip, bool) or clip < 0):
        raise ValueError(f"trainer.gradient_clip_val must be a number >= 0 (0 or null: no clipping): expected e.g. "
                         f"1.0, got {clip!r}")

"""Test-set metrics of a trained checkpoint: ``python -m rnnlab.evaluate ckpt=PATH``.

The datamodule is rebuilt from the data config stored in the checkpoint (``+data.KEY=VALUE`` overrides a key) with
the vocabulary stored in the checkpoint.
"""
from __future__ import annotations

import json
import logging

from rnnlab.envdefaults import set_defaults

set_defaults()  # before torch loads

import hydra  # noqa: E402  (after the environment above)
from omegaconf import DictConfig, OmegaConf

from rnnlab.models.module import load_module
from rnnlab.utils import end_distributed, flush_denormals, user_errors

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict:
    """Metrics of ``cfg.ckpt`` on ``cfg.split``, printed as JSON (and written to ``cfg.output`` if set)."""
    with flush_denormals(cfg.flush_denormal):
        return _evaluate(cfg)


def _evaluate(cfg: DictConfig) -> dict:
    if cfg.split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val' (the validation slice of train): got split={cfg.split!r}")
    module = load_module(cfg.ckpt)
    if module.data_config is None:
        raise ValueError(f"ckpt {cfg.ckpt} has no data config: expected a checkpoint written by rnnlab.train")
    data_cfg = OmegaConf.merge(OmegaConf.create(module.data_config), cfg.data)
    datamodule = hydra.utils.instantiate(data_cfg, vectorizer=module.vectorizer())  # the model's own vocabulary
    datamodule.prepare_data()
    datamodule.setup("fit" if cfg.split == "val" else "test")
    if module.vocabulary is not None and datamodule.vectorizer.to_json() != module.vocabulary:
        raise ValueError("the datamodule's vocabulary differs from the checkpoint's: expected the data config the "
                         "model was trained with (max_tokens, subset, seed, archive); drop the +data overrides")
    trainer = hydra.utils.instantiate(cfg.trainer)
    run = trainer.validate if cfg.split == "val" else trainer.test
    metrics = {k: float(v) for k, v in run(module, datamodule=datamodule, verbose=False)[0].items()}
    if trainer.is_global_zero:  # under DDP every rank has the reduced metrics; one prints and writes them
        text = json.dumps({"ckpt": str(cfg.ckpt), **metrics}, indent=2)
        print(text)
        if cfg.output:
            with open(cfg.output, "w") as f:
                f.write(text)
    end_distributed()
    return metrics


@hydra.main(version_base="1.3", config_path="pkg://rnnlab.conf", config_name="evaluate")
@user_errors()
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()

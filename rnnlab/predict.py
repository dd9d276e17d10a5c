"""Classify raw text with a trained checkpoint: ``python -m rnnlab.predict ckpt=PATH text="a great film"``.

Without ``text`` it reads one text per line from stdin. Prints one JSON line per text:
``{"label": "pos", "probability": 0.97, "text": "a great film"}`` where ``probability`` is that of the label.
"""
from __future__ import annotations

import json
import re
import sys

import hydra
import torch
from omegaconf import DictConfig, ListConfig

from rnnlab.data.datamodule import texts_to_batch
from rnnlab.models.module import SequenceClassifierModule, load_module
from rnnlab.utils import flush_denormals


@torch.no_grad()
def predict(module: SequenceClassifierModule, texts: list[str]) -> list[dict]:
    """Label and its probability for each text."""
    module.eval()
    max_length = (module.data_config or {}).get("max_length")
    ids, lengths = texts_to_batch(module.vectorizer(), texts, max_length)  # as the datamodules batch them
    lengths = lengths.clamp(min=1)  # a text without known words is read as one padding token
    probs = module.predict_proba(ids.to(module.device), lengths)
    names = module.class_names or [str(k) for k in range(module.hparams.num_classes)]
    out = []
    for text, p in zip(texts, probs.cpu()):
        if module.binary:
            k = int(p >= 0.5)
            prob = float(p) if k == 1 else 1 - float(p)
        else:
            k = int(p.argmax())
            prob = float(p[k])
        out.append({"label": names[k], "probability": round(prob, 6), "text": text})
    return out


def quote_text_override(arg: str) -> str:
    """``text=a, b`` as Hydra's quoted string ``text='a, b'``, so raw text (commas, brackets) needs no quoting."""
    if not arg.startswith("text=") or arg[5:6] in ("'", '"', "["):
        return arg
    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, arg[5:])  # backslashes before a quote are escapes
    return "text='" + value.replace("'", "\\'") + "'"


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    module = load_module(cfg.ckpt, map_location=cfg.device)  # a wrong path fails before stdin is read
    if cfg.text is None:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    else:
        texts = list(cfg.text) if isinstance(cfg.text, ListConfig) else [str(cfg.text)]
    with flush_denormals(cfg.flush_denormal):
        rows = predict(module, texts)
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    sys.argv = [sys.argv[0]] + [quote_text_override(a) for a in sys.argv[1:]]
    main()

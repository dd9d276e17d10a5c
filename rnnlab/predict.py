"""Classify raw text with a trained checkpoint: ``python -m rnnlab.predict ckpt=PATH text="a great film"``.

Without ``text`` it reads one text per line from stdin, ``batch_size`` lines at a time, and prints as it goes, so a
file of any length streams through in bounded memory. Prints one JSON line per text:
``{"label": "pos", "probability": 0.97, "text": "a great film"}`` where ``probability`` is that of the label; one
line per line of stdin, in order: a blank one gets ``{"label": null, "probability": null, "error": "empty text",
"text": ""}``.
A line of stdin that is not valid in its encoding is still predicted, with U+FFFD in place of the bytes that do not
decode, and a warning on stderr names the line.
"""
from __future__ import annotations

import itertools
import json
import re
import sys
from typing import BinaryIO, Iterable, Iterator

from rnnlab.envdefaults import set_defaults

set_defaults()  # before torch loads

import hydra  # noqa: E402  (after the environment above)
import torch
from omegaconf import DictConfig, ListConfig

from rnnlab.data.datamodule import texts_to_batch
from rnnlab.models.module import SequenceClassifierModule, load_module
from rnnlab.utils import flush_denormals, user_errors


def predict(module: SequenceClassifierModule, texts: Iterable[str], batch_size: int = 256) -> list[dict]:
    """Label and its probability for each text, ``batch_size`` texts per forward pass."""
    return list(iter_predict(module, texts, batch_size))


def iter_predict(module: SequenceClassifierModule, texts: Iterable[str], batch_size: int = 256) -> Iterator[dict]:
    """:func:`predict` as a stream: reads ``batch_size`` texts, yields their rows, reads on (for stdin)."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (texts per forward pass): got {batch_size!r}")
    vectorizer = module.vectorizer()  # rebuilt from the checkpoint's JSON once, not per batch
    texts = iter(texts)
    while batch := list(itertools.islice(texts, batch_size)):
        yield from _predict_batch(module, vectorizer, batch)


EMPTY = {"label": None, "probability": None, "error": "empty text"}  # the row of a text that is blank


@torch.no_grad()
def _predict_batch(module: SequenceClassifierModule, vectorizer, texts: list[str]) -> list[dict]:
    """One row per text, in order; a blank text (nothing but whitespace) gets :data:`EMPTY`, not a guess."""
    module.eval()
    out = [{**EMPTY, "text": text} for text in texts]
    given = [i for i, text in enumerate(texts) if text.strip()]
    if not given:
        return out
    max_length = (module.data_config or {}).get("max_length")
    ids, lengths = texts_to_batch(vectorizer, [texts[i] for i in given], max_length)  # as the datamodules batch them
    lengths = lengths.clamp(min=1)  # a text without known words is read as one padding token
    probs = module.predict_proba(ids.to(module.device), lengths)
    names = module.class_names or [str(k) for k in range(module.hparams.num_classes)]
    for i, p in zip(given, probs.cpu()):
        if module.binary:
            k = int(p >= 0.5)
            prob = float(p) if k == 1 else 1 - float(p)
        else:
            k = int(p.argmax())
            prob = float(p[k])
        out[i] = {"label": names[k], "probability": round(prob, 6), "text": texts[i]}
    return out


def load_classifier(ckpt, map_location="cpu") -> SequenceClassifierModule:
    """The text classifier of a checkpoint (:func:`~rnnlab.models.module.load_module`); a model that reads more than
    text is an error that says how to score it instead."""
    module = load_module(ckpt, map_location=map_location)
    if not isinstance(module, SequenceClassifierModule):
        raise ValueError(f"ckpt {ckpt} is a {type(module).__name__}, which reads more than text (the score reader "
                         f"reads its bags' scores): predict takes a text classifier's checkpoint; score this one on "
                         f"its data with python -m rnnlab.evaluate ckpt={ckpt}")
    return module


def read_texts(stream: BinaryIO, encoding: str = "utf-8") -> Iterator[str]:
    """Every line of a byte stream, blank ones included (one output row per input line), decoded as they are read.
    A line that is not valid ``encoding`` is decoded with U+FFFD (the replacement character) for each byte that does
    not decode, and a warning on stderr names its line number (1-based), so one bad line never stops the others."""
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode(encoding)
        except UnicodeDecodeError as e:
            line = raw.decode(encoding, errors="replace")
            print(f"warning: stdin line {number} is not valid {encoding} (byte 0x{raw[e.start]:02x} at position "
                  f"{e.start}): predicted with U+FFFD (\N{REPLACEMENT CHARACTER}) in place of the bytes that do not "
                  f"decode", file=sys.stderr, flush=True)
        yield line.removesuffix("\n").removesuffix("\r")


def check_device(device: str) -> torch.device:
    """``device`` as a :class:`torch.device`, or an error naming the setting when it is not one this machine has."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be a torch device such as cpu, cuda or cuda:1: got {device!r}") from e
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} needs a CUDA GPU, and torch sees none on this machine: use device=cpu")
    return parsed


def quote_text_override(arg: str) -> str:
    """``text=a, b`` as Hydra's quoted string ``text='a, b'``, so raw text (commas, brackets) needs no quoting."""
    if not arg.startswith("text=") or arg[5:6] in ("'", '"', "["):
        return arg
    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, arg[5:])  # backslashes before a quote are escapes
    return "text='" + value.replace("'", "\\'") + "'"


@hydra.main(version_base="1.3", config_path="pkg://rnnlab.conf", config_name="predict")
@user_errors()
def main(cfg: DictConfig) -> None:
    device = check_device(cfg.device)
    module = load_classifier(cfg.ckpt, map_location=device)  # a wrong path fails before stdin is read
    if cfg.text is None:  # bytes, decoded line by line: a line that does not decode is replaced, not fatal
        texts = read_texts(sys.stdin.buffer, sys.stdin.encoding or "utf-8")
    else:
        texts = list(cfg.text) if isinstance(cfg.text, ListConfig) else [str(cfg.text)]
    with flush_denormals(cfg.flush_denormal):
        for row in iter_predict(module, texts, cfg.batch_size):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.argv = [sys.argv[0]] + [quote_text_override(a) for a in sys.argv[1:]]
    main()

"""Benchmark: read + vectorize all 50,000 IMDB reviews, against a plain-Python reference.

Each pipeline runs in a fresh subprocess (so peak RSS is its own), on the same
extracted archive, in the same run:

- reference: open/read/decode every file, regex standardize (``re.sub`` for tags
  and punctuation, ``str.lower``, accents stripped for non-ASCII texts),
  ``str.split``, ``collections.Counter`` on train, Keras-ordered top 20,000,
  ``dict.get`` lookups truncated to 600;
- rnnlab: ``imdb.read_split`` + ``TextVectorizer.adapt_and_encode(train, 600)`` (the datamodule's call)
  + ``encode(test, 600)``; the "adapt" column holds adapting and encoding the training split, "encode"
  the test split.

Both must produce the same vocabulary and ids (checked). Prints seconds (and
where they go: reading the 50,000 files, building the vocabulary, encoding), peak
RSS, and the speed ratio reference / rnnlab. With ``--padding`` (default on) it also
reports the padding that length-bucketed batches save against padding every review
to 600 tokens.

Run it alone: ``flock /tmp/rnnlab-heavy.lock python scripts/bench_data.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MAX_TOKENS, MAX_LENGTH = 20000, 600
DEFAULT_ARCHIVE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aclImdb-labeled.tar.gz"


def reference(folder: Path):
    """The plain-Python pipeline."""
    import re
    import unicodedata
    from collections import Counter

    tag = re.compile(r"<\s*/?\s*[A-Za-z][^<>]*>")
    punct = re.compile(r"""[!"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~']""")

    def read(split):
        texts = []
        for cls in ("neg", "pos"):
            d = folder / split / cls
            for name in sorted(os.listdir(d)):
                with open(d / name, "rb") as f:
                    texts.append(f.read().decode("utf-8", errors="replace"))
        return texts

    def standardize(t):
        t = tag.sub(" ", t)
        if not t.isascii():
            t = unicodedata.normalize("NFC", "".join(c for c in unicodedata.normalize("NFD", t) if not unicodedata.category(c).startswith("M")))
        return punct.sub("", t.lower())

    stages = {"start": time.perf_counter()}
    train, test = read("train"), read("test")
    stages["read"] = time.perf_counter()
    counts = Counter()
    for t in train:
        counts.update(standardize(t).split())
    ranked = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[: MAX_TOKENS - 2]
    vocab = {w: i + 2 for i, (w, _) in enumerate(ranked)}
    stages["adapt"] = time.perf_counter()
    ids = [[vocab.get(w, 1) for w in standardize(t).split()[:MAX_LENGTH]] for t in train + test]
    lengths = np.array([len(x) for x in ids])
    flat = np.concatenate([np.array(x, dtype=np.int64) for x in ids])
    stages["encode"] = time.perf_counter()
    return ["", "[UNK]"] + [w for w, _ in ranked], flat, lengths, stages


def rnnlab_pipeline(folder: Path):
    from rnnlab.data import imdb
    from rnnlab.data.text import TextVectorizer

    stages = {"start": time.perf_counter()}
    train, test = imdb.read_split(folder, "train"), imdb.read_split(folder, "test")
    stages["read"] = time.perf_counter()
    v = TextVectorizer(max_tokens=MAX_TOKENS)
    flat_train, lengths_train = v.adapt_and_encode(train.texts, MAX_LENGTH)  # the datamodule's path
    stages["adapt"] = time.perf_counter()
    flat_test, lengths_test = v.encode(test.texts, MAX_LENGTH)
    stages["encode"] = time.perf_counter()
    flat, lengths = np.concatenate([flat_train, flat_test]), np.concatenate([lengths_train, lengths_test])
    return v.get_vocabulary(), flat, lengths, stages


def worker(name: str, folder: Path) -> None:
    """Runs one pipeline in this (fresh) process and prints a JSON line."""
    if name != "reference":
        from rnnlab.data import imdb, text  # noqa: F401  (imports are not part of the timing)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    vocab, flat, lengths, stages = reference(folder) if name == "reference" else rnnlab_pipeline(folder)
    seconds = time.perf_counter() - t
    marks = list(stages.values())
    stages = {k: b - a for k, a, b in zip(list(stages)[1:], marks, marks[1:])}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    digest = hashlib.sha256(json.dumps(vocab).encode() + flat.astype(np.int64).tobytes() + lengths.astype(np.int64).tobytes()).hexdigest()
    print(json.dumps({"name": name, "seconds": seconds, "peak_mb": peak / 1024, "base_mb": base / 1024, "digest": digest, "stages": stages,
                      "reviews": len(lengths), "tokens": int(lengths.sum()), "vocab": len(vocab), "lengths": lengths.tolist()}))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown cpu"


def run(name: str, folder: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", name, "--folder", str(folder)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def padding_report(lengths: np.ndarray, batch_size: int, seed: int = 0) -> None:
    from rnnlab.data.batching import BucketBatchSampler, padding_stats

    lengths = np.maximum(lengths, 1)
    n = len(lengths)
    fixed_cells = n * MAX_LENGTH
    bucketed = BucketBatchSampler(lengths, batch_size, seed=seed).batches(0)
    rng = np.random.default_rng(seed)
    random = np.array_split(rng.permutation(n), -(-n // batch_size))
    b, r = padding_stats(lengths, bucketed), padding_stats(lengths, random)
    print(f"\npadding on IMDB train ({n:,} reviews, truncated to {MAX_LENGTH}, batch {batch_size}):")
    print(f"  real tokens                       {b['tokens']:>12,}")
    print(f"  fixed length {MAX_LENGTH}: cells          {fixed_cells:>12,}  padding {1 - b['tokens'] / fixed_cells:6.1%}")
    print(f"  random batches, per-batch max     {r['cells']:>12,}  padding {r['padding_fraction']:6.1%}")
    print(f"  bucketed batches, per-batch max   {b['cells']:>12,}  padding {b['padding_fraction']:6.1%}")
    print(f"  bucketing saves {1 - b['cells'] / fixed_cells:.1%} of the cells (timesteps x batch) of fixed length {MAX_LENGTH}, "
          f"{1 - b['cells'] / r['cells']:.1%} of random batches")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archive", default=os.environ.get("RNNLAB_IMDB_ARCHIVE") or str(DEFAULT_ARCHIVE))
    p.add_argument("--root", default=os.environ.get("RNNLAB_DATA") or "/tmp/rnnlab-bench-data")
    p.add_argument("--repeat", type=int, default=2, help="runs of each pipeline (best is reported)")
    p.add_argument("--no-padding", action="store_true")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker, Path(args.folder))

    from rnnlab.data import imdb

    t = time.perf_counter()
    folder = imdb.prepare(args.root, args.archive).folder
    print(f"archive {args.archive}\nextracted to {folder} ({time.perf_counter() - t:.1f} s, once; not timed below)")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cpus; python {sys.version.split()[0]}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    names = ["reference", "rnnlab"]
    best: dict[str, dict] = {}
    for _ in range(args.repeat):  # interleaved, so load changes hit every pipeline alike
        for name in names:
            r = run(name, folder)
            if name not in best or r["seconds"] < best[name]["seconds"]:
                best[name] = r
    ref = best["reference"]
    print(f"\nread + vectorize {ref['reviews']:,} reviews ({ref['tokens']:,} tokens after truncation to {MAX_LENGTH}, "
          f"vocabulary {ref['vocab']:,}); best of {args.repeat}:")
    print(f"  {'pipeline':<22} {'seconds':>8} {'(read':>6} {'adapt':>6} {'encode)':>7} {'peak RSS MB':>12} {'(+ over start)':>15} "
          f"{'speed vs reference':>19}  same output")
    for name in names:
        r = best[name]
        st = r["stages"]
        print(f"  {name:<22} {r['seconds']:8.2f} {st['read']:6.2f} {st['adapt']:6.2f} {st['encode']:7.2f} {r['peak_mb']:12.0f} "
              f"{r['peak_mb'] - r['base_mb']:15.0f} {ref['seconds'] / r['seconds']:18.2f}x  {r['digest'] == ref['digest']}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if not args.no_padding:
        padding_report(np.asarray(ref["lengths"][:25000]), args.batch_size)


if __name__ == "__main__":
    main()

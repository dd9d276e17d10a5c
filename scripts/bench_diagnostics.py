"""Overhead of the gradient diagnostics callbacks on a representative training run.

The course's BiLSTM (``SequenceClassifierModule``: Embedding 256 -> BiLSTM 32 -> dropout 0.5 -> dense,
RMSprop, clipping at 1.0) trained by a Lightning ``Trainer`` with a TensorBoard logger on synthetic
batches whose lengths follow IMDB's (log-normal, median ~175 tokens, capped at 600, bucketed as the
datamodule does).

On a shared machine, whole runs timed one after the other differ by more than the overhead being
measured (other jobs come and go), so the overhead is measured inside one run, where numerator and
denominator see the same load:

1. a training run with ``TimestepGradNorms`` at the default interval (``every_n_steps=50``,
   figures every 4th recording and at the end) and ``GradClipStats``, each hook timed: the share of
   the training loop spent inside each callback;
2. what recording changes in the model's own forward and backward (the per-timestep norm buffers the
   cells fill, the embedding hook): the same batches run with recording off and on, alternating
   batch by batch, median ratio; times the number of recorded steps.

``grad_t overhead = (time in TimestepGradNorms hooks + recorded steps x extra compute per recorded
step) / (run time without them)``, the run being the whole ``trainer.fit``. ``--direct`` also times whole runs (no callbacks,
``every_n_steps=0``, ``every_n_steps=50``) for a quiet machine.

    flock /tmp/rnnlab-heavy.lock python scripts/bench_diagnostics.py             # ~15 s on 2 CPU cores
    flock /tmp/rnnlab-heavy.lock python scripts/bench_diagnostics.py --steps 400 --direct

Target: ``TimestepGradNorms(every_n_steps=50)`` adds < 10% to training time. ``--probe N`` measures the same with
``diagnostics.probe=N`` (the N longest sequences recorded on every recorded step, with the per-step Jacobian):
its forward, backward and Jacobian run inside the callback's hooks, so they are in the hook time.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass

os.environ.setdefault("RNNLAB_FUSED_EXT", "wait")  # time the C++ loops, not the fallback during a background build

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from rnnlab.diagnostics import GradClipStats, TimestepGradNorms
from rnnlab.diagnostics.callback import find_embedding, find_recorders
from rnnlab.diagnostics.gradients import EmbeddingGradNorm
from rnnlab.models.module import SequenceClassifierModule

VOCAB = 20000
HOOKS = ("on_fit_start", "on_train_batch_start", "on_after_backward", "on_before_optimizer_step",
         "on_train_batch_end", "on_train_end", "on_fit_end")


def imdb_like_batches(steps: int, batch_size: int, max_length: int, seed: int = 0):
    """(ids, lengths, labels) batches, lengths log-normal like IMDB reviews, bucketed (similar lengths per batch)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.exp(torch.randn(steps * batch_size, generator=g) * 0.75 + torch.log(torch.tensor(175.0)))
    lengths = lengths.round().long().clamp(10, max_length).sort().values.view(steps, batch_size)
    lengths = lengths[torch.randperm(steps, generator=g)]  # bucketed batches in random order
    batches = []
    for lens in lengths:
        lens = lens[torch.randperm(batch_size, generator=g)]
        T = int(lens.max())
        ids = torch.randint(1, VOCAB, (batch_size, T), generator=g) * (torch.arange(T) < lens[:, None])
        batches.append((ids, lens, torch.randint(0, 2, (batch_size,), generator=g).float()))
    return batches


def timed(callback: pl.Callback) -> pl.Callback:
    """Wrap the callback's hooks so that ``callback.seconds`` / ``callback.cpu`` accumulate the wall-clock / process
    CPU time spent inside them."""
    callback.seconds = callback.cpu = 0.0
    for name in HOOKS:
        hook = getattr(callback, name)

        def wrapper(*args, _hook=hook, **kwargs):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return _hook(*args, **kwargs)
            finally:
                callback.seconds += time.perf_counter() - t0
                callback.cpu += time.process_time() - c0

        setattr(callback, name, wrapper)
    return callback


@dataclass
class Times:
    seconds: float  # wall clock
    cpu: float  # process CPU time (less sensitive to other jobs' load)


def make_module(cell: str) -> SequenceClassifierModule:
    torch.manual_seed(0)
    return SequenceClassifierModule(vocab_size=VOCAB, embedding_dim=256, cell=cell, hidden_size=32,
                                    bidirectional=True, dropout=0.5)


class Batches(pl.LightningDataModule):
    """The batches as a datamodule whose ``probe_batch(n)`` is the ``n`` longest sequences (as IMDB's probe)."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def train_dataloader(self):
        return DataLoader(self.batches, batch_size=None)

    def probe_batch(self, n: int):
        width = max(b[0].size(1) for b in self.batches)
        ids = torch.cat([torch.nn.functional.pad(b[0], (0, width - b[0].size(1))) for b in self.batches])
        lengths, labels = torch.cat([b[1] for b in self.batches]), torch.cat([b[2] for b in self.batches])
        keep = lengths.argsort(descending=True)[:n]
        return ids[keep, : int(lengths[keep].max())], lengths[keep], labels[keep]


def fit(callbacks, batches, cell: str, clip: float) -> Times:
    """Times of the whole ``trainer.fit``, so every hook of every callback (``on_fit_start`` to ``on_fit_end``, the
    final figure included) lies inside the clock that the overhead is taken from."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            max_steps=len(batches), logger=TensorBoardLogger(tmp, default_hp_metric=False), log_every_n_steps=50,
            gradient_clip_val=clip, accelerator="cpu", enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=callbacks,
        )
        module, data = make_module(cell), Batches(batches)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.fit(module, datamodule=data)
        return Times(time.perf_counter() - t0, time.process_time() - c0)


def recording_compute_ratio(batches, cell: str) -> tuple[float, float]:
    """Median over batches of (forward + backward with recording) / (without), alternating; and the mean step."""
    module = make_module(cell)
    recorders = [m for _, m in find_recorders(module)]
    embedding = EmbeddingGradNorm(find_embedding(module))

    def step(batch, record: bool) -> float:
        module.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        for m in recorders:
            m.record_grad_norms(record)
        if record:
            embedding.attach()
        ids, lengths, y = batch
        module.loss_fn(module(ids, lengths), y).backward()
        embedding.detach()
        return time.perf_counter() - t0

    ratios, plain = [], []
    for i, batch in enumerate(batches):
        first = i % 2 == 0  # alternate which goes first
        a = step(batch, first)
        b = step(batch, not first)
        on, off = (a, b) if first else (b, a)
        ratios.append(on / off)
        plain.append(off)
    return statistics.median(ratios), statistics.mean(plain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps of the measured run")
    parser.add_argument("--every-n-steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=600)
    parser.add_argument("--cell", default="lstm", help="model.cell: lstm (rnnlab.nn) or torch_lstm (dJ/dx_t only)")
    parser.add_argument("--clip", type=float, default=1.0, help="trainer.gradient_clip_val")
    parser.add_argument("--compute-batches", type=int, default=16, help="batches of the recording on/off comparison")
    parser.add_argument("--probe", type=int, default=0, help="diagnostics.probe: fixed sequences recorded too")
    parser.add_argument("--direct", action="store_true", help="also time whole runs one after the other")
    parser.add_argument("--repeats", type=int, default=2, help="(--direct) runs per configuration")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    batches = imdb_like_batches(args.steps, args.batch_size, args.max_length)
    mean_len = sum(float(b[1].float().mean()) for b in batches) / len(batches)
    print(f"{args.cell} BiLSTM 32, {args.steps} steps of batch {args.batch_size}, mean length {mean_len:.0f} "
          f"(max {args.max_length}), torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")

    fit([TimestepGradNorms(every_n_steps=1), GradClipStats()], batches[:2], args.cell, args.clip)  # warm-up
    grad_t = timed(TimestepGradNorms(every_n_steps=args.every_n_steps, probe=args.probe))
    clip = timed(GradClipStats())
    loop = fit([grad_t, clip], batches, args.cell, args.clip)
    n_recorded = len(grad_t.records)
    ratio, step = recording_compute_ratio(batches[: args.compute_batches], args.cell)
    print(f"training run: {loop.seconds:.2f} s wall ({loop.seconds / args.steps:.4f} s/step), {loop.cpu:.2f} s CPU, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"TimestepGradNorms hooks: {grad_t.seconds:.3f} s wall, {grad_t.cpu:.3f} s CPU ({n_recorded} recorded steps, "
          f"figures on every 4th and the last)")
    print(f"recording in forward+backward: x{ratio:.3f} on a recorded step ({step:.4f} s/step without)")
    for kind, total, hooks, clip_hooks in (("wall", loop.seconds, grad_t.seconds, clip.seconds),
                                           ("CPU", loop.cpu, grad_t.cpu, clip.cpu)):
        compute = n_recorded * (ratio - 1) * step * total / loop.seconds  # the extra compute in this clock
        base = total - hooks - clip_hooks - compute
        if base <= 0.2 * total:  # the figures drawn at the end outweigh a run this short: no meaningful ratio
            print(f"{kind:4s} overhead: not measurable, the diagnostics took {hooks + clip_hooks + compute:.2f} s of "
                  f"a {total:.2f} s run; use more --steps (default 200)")
            continue
        overhead = (hooks + compute) / base
        print(f"{kind:4s} TimestepGradNorms(every_n_steps={args.every_n_steps}) overhead (probe={args.probe}): {100 * overhead:.1f}% "
              f"(ratio {1 + overhead:.3f}; target < 10%); GradClipStats: {100 * clip_hooks / base:.1f}%")

    if args.direct:
        whole = {"no diagnostics": lambda: [], "every_n_steps=0": lambda: [TimestepGradNorms(every_n_steps=0)],
                 f"every_n_steps={args.every_n_steps}": lambda: [TimestepGradNorms(every_n_steps=args.every_n_steps)]}
        times = {name: [] for name in whole}
        for _ in range(args.repeats):
            for name, make in whole.items():
                times[name].append(fit(make(), batches, args.cell, args.clip).seconds)
                print(f"  {name}: {times[name][-1]:.2f} s", file=sys.stderr)
        ref = min(times["no diagnostics"])
        for name, ts in times.items():
            print(f"direct {name:18s} {min(ts):8.2f} s  ratio {min(ts) / ref:.3f}   runs {[round(t, 2) for t in ts]}")


if __name__ == "__main__":
    main()

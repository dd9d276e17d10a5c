"""Overhead of the gradient diagnostics callbacks on a representative training run.

The course's BiLSTM (``SequenceClassifierModule``: Embedding 256 -> BiLSTM 32 -> dropout 0.5 -> dense,
RMSprop, clipping at 1.0) trained by a Lightning ``Trainer`` with a TensorBoard logger on synthetic
batches whose lengths follow IMDB's (log-normal, median ~175 tokens, capped at 600, bucketed as the
datamodule does).

Runs over the same batches, repeated and interleaved: ``reference`` (no diagnostics callbacks),
``grad_t`` (``TimestepGradNorms`` recording every ``--record-every`` steps, drawing figures on every
``--figures-every``-th recording) and ``clip stats`` (``GradClipStats`` with clipping at 1.0). Every
step is timed (batch start to next batch start: every hook of the step; best of the repeats per
step) and compared with the *same batch* in the reference run, so lengths and load cancel out:

* plain steps (not recorded): ratio grad_t / reference: the callback's cost when it is off on a step;
* recorded steps: extra seconds per recording (hooks, aggregation, scalars), and per drawing
  (profile figure and heatmap rendered and written);
* overhead at the defaults (every 50 steps, figures every 4th recording):
  ``(plain ratio - 1) + (extra per recording + extra per drawing / 4) / (50 * mean reference step)``;
* clip stats: ratio over all steps (one gradient norm per step when clipping is on).

With ``--direct`` it also times whole runs at ``every_n_steps=50`` against ``every_n_steps=0``
and no callbacks (use >= 200 steps so that several recordings fall in the run).

    flock /tmp/rnnlab-heavy.lock python scripts/bench_diagnostics.py             # ~5 min on 2 CPU cores
    flock /tmp/rnnlab-heavy.lock python scripts/bench_diagnostics.py --direct --steps 150

Target: ``TimestepGradNorms(every_n_steps=50)`` adds < 10% to training time.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from rnnlab.diagnostics import GradClipStats, TimestepGradNorms
from rnnlab.models.module import SequenceClassifierModule

VOCAB = 20000


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


class StepTimer(pl.Callback):
    """Wall-clock seconds of every training step (batch start to next batch start: every hook of the step) and of
    the whole training loop."""

    def __init__(self):
        self.steps: list[float] = []
        self.t0 = None

    def on_train_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now = time.perf_counter()
        if self.t0 is not None:
            self.steps.append(now - self.t0)
        self.t0 = now

    def on_train_end(self, trainer, pl_module):
        now = time.perf_counter()
        self.steps.append(now - self.t0)
        self.seconds = now - self.start


def fit(callbacks, batches, cell: str, clip: float) -> StepTimer:
    torch.manual_seed(0)
    module = SequenceClassifierModule(vocab_size=VOCAB, embedding_dim=256, cell=cell, hidden_size=32,
                                      bidirectional=True, dropout=0.5)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            max_steps=len(batches), logger=TensorBoardLogger(tmp, default_hp_metric=False), log_every_n_steps=50,
            gradient_clip_val=clip, accelerator="cpu", enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[timer, *callbacks],
        )
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    return timer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32, help="training steps per run")
    parser.add_argument("--record-every", type=int, default=4, help="recording interval of the per-step comparison")
    parser.add_argument("--figures-every", type=int, default=2, help="drawing interval (in recordings) of the comparison")
    parser.add_argument("--every-n-steps", type=int, default=50, help="interval the overhead is reported for")
    parser.add_argument("--default-figures-every", type=int, default=4, help="figures_every the overhead is reported for")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=600)
    parser.add_argument("--cell", default="lstm", help="model.cell: lstm (rnnlab.nn) or torch_lstm (dJ/dx_t only)")
    parser.add_argument("--clip", type=float, default=1.0, help="trainer.gradient_clip_val")
    parser.add_argument("--direct", action="store_true", help="also time whole runs at --every-n-steps vs off")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    batches = imdb_like_batches(args.steps, args.batch_size, args.max_length)
    mean_len = sum(float(b[1].float().mean()) for b in batches) / len(batches)
    print(f"{args.cell} BiLSTM 32, {args.steps} steps of batch {args.batch_size}, mean length {mean_len:.0f} "
          f"(max {args.max_length}), torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")

    configs = {
        "reference": lambda: [],
        "grad_t": lambda: [TimestepGradNorms(every_n_steps=args.record_every, figures_every=args.figures_every)],
        "clip stats": lambda: [GradClipStats()],
    }
    fit([TimestepGradNorms(every_n_steps=1), GradClipStats()], batches[:2], args.cell, args.clip)  # warm-up
    runs = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, make in configs.items():
            runs[name].append(fit(make(), batches, args.cell, args.clip).steps)
    ref, grad_t, clip = (torch.tensor(runs[n]).min(0).values for n in configs)  # (S,) best of the repeats, per step
    S = args.steps
    recorded = torch.arange(S) % args.record_every == 0
    drawn = recorded & ((torch.arange(S) // args.record_every) % args.figures_every == 0)
    later = torch.arange(S) > 0  # step 0 also pays one-off costs (first figure of the run): left out
    plain, undrawn, drawn = ~recorded & later, recorded & ~drawn & later, drawn & later
    step = float(ref[later].mean())
    plain_ratio = float(grad_t[plain].sum() / ref[plain].sum())
    per_record = float((grad_t - ref)[undrawn].mean())
    per_draw = float((grad_t - ref)[drawn].mean()) - per_record
    n, f = args.every_n_steps, args.default_figures_every
    overhead = (plain_ratio - 1) + (per_record + per_draw / f) / (n * step)
    print(f"reference step (mean): {step:.4f} s")
    print(f"grad_t plain steps / reference: {plain_ratio:.3f} ({int(plain.sum())} steps)")
    print(f"grad_t extra per recording: {per_record:+.4f} s ({int(undrawn.sum())} steps); extra per drawing: "
          f"{per_draw:+.4f} s ({int(drawn.sum())} steps)")
    print(f"grad_t overhead at every_n_steps={n}, figures_every={f}: {100 * overhead:+.1f}% "
          f"(ratio {1 + overhead:.3f}; target < 10%)")
    clip_ratio = float(clip[later].sum() / ref[later].sum())
    print(f"clip stats (gradient_clip_val={args.clip}) / reference: {clip_ratio:.3f}")

    if args.direct:
        whole = {"no diagnostics": lambda: [], "every_n_steps=0": lambda: [TimestepGradNorms(every_n_steps=0)],
                 f"every_n_steps={n}": lambda: [TimestepGradNorms(every_n_steps=n)]}
        times = {name: [] for name in whole}
        for _ in range(args.repeats):
            for name, make in whole.items():
                times[name].append(fit(make(), batches, args.cell, args.clip).seconds)
        base = min(times["no diagnostics"])
        for name, ts in times.items():
            print(f"direct {name:18s} {min(ts):8.2f} s  ratio {min(ts) / base:.3f}   runs {[round(t, 2) for t in ts]}")


if __name__ == "__main__":
    main()

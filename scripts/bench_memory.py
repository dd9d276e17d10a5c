"""Benchmark: the main job's peak resident memory beside its epoch time.

Runs ``python -m rnnlab.train +experiment=bilstm`` (or ``--experiment``) in a fresh subprocess per run, with
``trainer.max_epochs=--epochs`` and optionally ``data.subset=--subset``, and reports for each run:

- peak RSS: the child's ``ru_maxrss`` from ``os.wait4`` (what ``/usr/bin/time -v`` prints as "Maximum resident set
  size"), and the RSS sampled every ``--interval`` seconds from ``/proc/<pid>/status``, shown at the end of each epoch
  (does it keep growing with the number of steps?);
- the epoch times and test accuracy of the run's ``metrics.json``.

``--repo`` (repeatable) runs the job from other checkouts (``PYTHONPATH=<repo>``): e.g. the tree of an older commit,
``git archive <commit> | tar -x -C /tmp/old``, against this one, interleaved ``--repeat`` times so that a change of the
machine's load hits both alike. Before the timed runs each checkout prepares and vectorizes the data once (cached in
``RNNLAB_DATA``), so the runs measure training, not the first vectorization.

    RNNLAB_IMDB_ARCHIVE=shared/data/aclImdb-labeled.tar.gz python scripts/bench_memory.py --repo /tmp/old --repo .

Extra arguments after ``--`` are passed to every run as Hydra overrides. Run it alone: it trains one model at a time,
and the machine's load changes both numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
WARM = "from rnnlab.data.datamodule import IMDBDataModule as D; d = D(progressbar=False); d.prepare_data(); d.setup('fit'); d.setup('test')"


def rss_mb(pid: int) -> float | None:
    """The current resident set size of ``pid`` in MB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_job(repo: Path, args, out: Path) -> dict:
    """One training run from ``repo``; peak RSS (wait4), sampled RSS and the run's metrics."""
    env = dict(os.environ, PYTHONPATH=str(repo))
    cmd = [sys.executable, "-m", "rnnlab.train", f"+experiment={args.experiment}", f"trainer.max_epochs={args.epochs}",
           f"hydra.run.dir={out}", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    if args.subset:
        cmd.append(f"data.subset={args.subset}")
    cmd += args.overrides
    log = open(out.parent / f"{out.name}.log", "w")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=repo, stdout=log, stderr=subprocess.STDOUT)
    samples: list[tuple[float, float]] = []

    def sample():
        while proc.poll() is None:
            r = rss_mb(proc.pid)
            if r is not None:
                samples.append((time.perf_counter() - start, r))
            time.sleep(args.interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.join()
    log.close()
    wall = time.perf_counter() - start
    if proc.returncode:
        tail = (out.parent / f"{out.name}.log").read_text()[-3000:]
        raise RuntimeError(f"training from {repo} failed (exit {proc.returncode}):\n{tail}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"repo": str(repo), "peak_mb": usage.ru_maxrss / 1024, "wall_s": wall, "epoch_times_s": metrics.get("epoch_times_s", []),
            "test_acc": metrics.get("test/acc"), "val_acc": metrics.get("best/val/acc"), "steps": metrics.get("steps"),
            "rss_samples": samples, "rss_max_sampled_mb": max((r for _, r in samples), default=float("nan"))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repo", action="append", type=Path, help="checkout to run from (repeatable; default: this one)")
    p.add_argument("--experiment", default="bilstm")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--subset", type=int, default=None, help="data.subset: reviews per split (quick runs)")
    p.add_argument("--repeat", type=int, default=1, help="interleaved runs of each checkout")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between RSS samples")
    p.add_argument("--json", type=Path, help="also write every run's numbers here")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every run (after --)")
    args = p.parse_args()
    repos = [r.resolve() for r in (args.repo or [HERE])]
    os.environ.setdefault("RNNLAB_DATA", os.path.join(tempfile.gettempdir(), "rnnlab-bench-memory"))
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cpus; RNNLAB_DATA={os.environ['RNNLAB_DATA']}")
    for repo in repos:  # vectorize once per checkout (cached), outside the measured runs
        subprocess.run([sys.executable, "-c", WARM], env=dict(os.environ, PYTHONPATH=str(repo)), cwd=repo, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for k in range(args.repeat):
            for i, repo in enumerate(repos):
                r = run_job(repo, args, Path(tmp) / f"run{k}-{i}")
                runs.append(r)
                epochs = " ".join(f"{t:.1f}" for t in r["epoch_times_s"])
                acc = "n/a" if r["test_acc"] is None else f"{r['test_acc']:.4f}"
                print(f"{repo}: peak RSS {r['peak_mb']:.0f} MB; epoch times {epochs} s; test acc {acc}; "
                      f"{r['steps']} steps; wall {r['wall_s']:.0f} s", flush=True)
                trace = r["rss_samples"][:: max(1, len(r["rss_samples"]) // 12)]
                print("  RSS over the run (s: MB): " + ", ".join(f"{t:.0f}: {m:.0f}" for t, m in trace), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()

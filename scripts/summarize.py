"""Summarise a Hydra multirun: ``python scripts/summarize.py multirun/2026-11-27/17-00-00-123456``.

Reads every job's ``metrics.json``, resolved ``config.yaml`` and ``+experiment=`` choice (from the run's own
``overrides.yaml``, written by rnnlab.train once the run is accepted; Hydra's ``.hydra/overrides.yaml`` for older runs,
which a refused later run in the same folder rewrites) under MULTIRUN_DIR and writes, next to them (or in
``--out``): ``summary.md`` (Markdown table), ``summary.csv`` (one row per run) and ``summary.png`` (test accuracy
against the swept axis with the most values, one line per combination of the other swept settings). Jobs that
failed (an ``error.txt`` in their folder, which rnnlab.train writes for a job of a multirun that fails) and jobs
missing (launched per Hydra's ``multirun.yaml`` but with neither ``metrics.json`` nor ``error.txt``: never run, or
killed) are listed under the table.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import yaml

COLUMNS = {  # column -> (file, dotted key)
    "experiment": ("overrides", "experiment"),
    "cell": ("config", "model.cell"),
    "layers": ("config", "model.num_layers"),
    "hidden": ("config", "model.hidden_size"),
    "bidirectional": ("config", "model.bidirectional"),
    "clip": ("config", "trainer.gradient_clip_val"),
    "clip_algorithm": ("config", "trainer.gradient_clip_algorithm"),
    "epochs": ("metrics", "epochs"),
    "val_acc": ("metrics", "val/acc"),
    "best_val_acc": ("metrics", "best/val/acc"),
    "test_acc": ("metrics", "test/acc"),
    "clipped": ("metrics", "grad/clipped_fraction"),  # of the last epoch's steps
    "epoch_s": ("metrics", "epoch_times_s"),
    "params": ("metrics", "num_parameters"),
}
AXES = ("experiment", "layers", "bidirectional", "clip", "cell", "hidden", "clip_algorithm")


def _get(d: dict, dotted: str):
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _overrides(job: Path) -> dict:
    """The job's command-line overrides as ``{key: value}``, ``+``/``++`` prefixes dropped (``{"experiment": "gru"}``)."""
    path = job / "overrides.yaml"
    path = path if path.exists() else job / ".hydra" / "overrides.yaml"
    items = yaml.safe_load(path.read_text()) if path.exists() else None
    return dict(o.lstrip("+").split("=", 1) for o in items or [] if "=" in o)


def collect(root: Path) -> list[dict]:
    """One row per job folder under ``root`` that has a ``metrics.json``."""
    rows = []
    for metrics_file in sorted(root.rglob("metrics.json")):
        job = metrics_file.parent
        sources = {"metrics": json.loads(metrics_file.read_text()),
                   "config": yaml.safe_load((job / "config.yaml").read_text()) if (job / "config.yaml").exists() else {},
                   "overrides": _overrides(job)}
        # metrics keys contain "/" (val/acc): look them up whole, config keys by path
        row = {"job": str(job.relative_to(root))}
        for col, (src, key) in COLUMNS.items():
            row[col] = _get(sources[src], key) if src == "config" else sources[src].get(key)
        times = row["epoch_s"] or []
        row["epoch_s"] = round(sum(times) / len(times), 2) if times else None
        rows.append(row)
    return sorted(rows, key=lambda r: [str(r[a]) for a in AXES])


def expected_jobs(root: Path) -> int | None:
    """How many jobs the multirun in ``root`` launches, from Hydra's ``multirun.yaml``: the basic sweeper's swept
    overrides (``params`` and the command line's, split as the sweeper splits them) or a sweeper's ``n_trials``; None
    when unknown."""
    path = root / "multirun.yaml"
    if not path.exists():
        return None
    hydra = (yaml.safe_load(path.read_text()) or {}).get("hydra", {})
    sweeper = hydra.get("sweeper") or {}
    if sweeper.get("n_trials") is not None:
        return int(sweeper["n_trials"])
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create().parse_overrides(params + list((hydra.get("overrides") or {}).get("task") or []))
    return sum(len(batch) for batch in BasicSweeper.split_arguments(parsed, None))


def job_status(root: Path) -> tuple[dict[str, str], list[str]]:
    """``(failed, missing)``: the folders (relative to ``root``) holding an ``error.txt``, with its first line; and the
    jobs of ``multirun.yaml`` (folders ``0`` ... ``N-1``) with neither ``metrics.json`` nor ``error.txt`` (none when
    the job folders are not named by job number)."""
    failed = {str(p.parent.relative_to(root)): (p.read_text().strip().splitlines() or [""])[0]
              for p in sorted(root.rglob("error.txt"))}
    done = [str(p.parent.relative_to(root)) for p in root.rglob("metrics.json")]
    if not all(job.isdigit() for job in [*done, *failed]):  # hydra.sweep.subdir is not the job number
        return failed, []
    n = expected_jobs(root)
    missing = [str(i) for i in range(n or 0) if str(i) not in done and str(i) not in failed]
    return failed, missing


def status_lines(failed: dict[str, str], missing: list[str]) -> list[str]:
    lines = [f"failed: job {job}: {error}" for job, error in failed.items()]
    if missing:
        lines.append(f"missing: job{'s' if len(missing) > 1 else ''} {', '.join(missing)} (neither metrics.json nor "
                     f"error.txt: not run, or killed)")
    return lines


def swept(rows: list[dict]) -> list[str]:
    """Columns among AXES whose value differs between runs."""
    return [a for a in AXES if len({str(r[a]) for r in rows}) > 1]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if v <= 1 else f"{v:.1f}"
    return "" if v is None else str(v)


def markdown(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = swept(rows) or ["layers"]
    x_axis = max(axes, key=lambda a: len({str(r[a]) for r in rows}))
    others = [a for a in axes if a != x_axis]
    fig, ax = plt.subplots(figsize=(6, 4))
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[a] for a in others), []).append(r)
    xs = sorted({r[x_axis] for r in rows}, key=lambda v: (isinstance(v, str), v if not isinstance(v, str) else 0, str(v)))
    for key, group in groups.items():
        points = sorted((xs.index(r[x_axis]), r["test_acc"] if r["test_acc"] is not None else math.nan) for r in group)
        label = ", ".join(f"{a}={v}" for a, v in zip(others, key)) or "runs"
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_xlabel(x_axis)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("multirun_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="folder for summary.{md,csv,png} (default: MULTIRUN_DIR)")
    args = parser.parse_args(argv)
    rows = collect(args.multirun_dir)
    failed, missing = job_status(args.multirun_dir)
    status = status_lines(failed, missing)
    if not rows:
        raise SystemExit("\n".join(status + [f"no metrics.json under {args.multirun_dir}: expected a multirun folder "
                                              f"of rnnlab.train jobs"]))
    out = args.out or args.multirun_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(markdown(rows) + "".join(f"\n{line}\n" for line in status))
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / "summary.png")
    print(markdown(rows))
    if status:
        print("\n".join(status))
    print(f"wrote {out / 'summary.md'}, summary.csv, summary.png ({len(rows)} runs, {len(failed)} failed, "
          f"{len(missing)} missing; swept: {', '.join(swept(rows))})")


if __name__ == "__main__":
    main()

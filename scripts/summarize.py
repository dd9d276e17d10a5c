"""Summarise a Hydra multirun: ``python scripts/summarize.py multirun/2026-11-27/17-00-00-123456``.

Reads every job's ``metrics.json``, resolved ``config.yaml`` and ``+experiment=`` choice (from the run's own
``overrides.yaml``, written by rnnlab.train once the run is accepted; Hydra's ``.hydra/overrides.yaml`` for older runs,
which a refused later run in the same folder rewrites) under MULTIRUN_DIR and writes, next to them (or in
``--out``): ``summary.md`` (Markdown table), ``summary.csv`` (one row per run) and ``summary.png`` (test accuracy
against the swept axis with the most values, one line per combination of the other swept settings).
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
    if not rows:
        raise SystemExit(f"no metrics.json under {args.multirun_dir}: expected a multirun folder of rnnlab.train jobs")
    out = args.out or args.multirun_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(markdown(rows))
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / "summary.png")
    print(markdown(rows))
    print(f"wrote {out / 'summary.md'}, summary.csv, summary.png ({len(rows)} runs; swept: {', '.join(swept(rows))})")


if __name__ == "__main__":
    main()

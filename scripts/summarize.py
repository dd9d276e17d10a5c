"""Summarise a Hydra multirun: ``python scripts/summarize.py multirun/2026-11-27/17-00-00-123456``.

Reads every job's ``metrics.json``, resolved ``config.yaml`` and ``+experiment=`` choice (from the run's own
``overrides.yaml``, written by rnnlab.train once the run is accepted; Hydra's ``.hydra/overrides.yaml`` for older runs,
which a refused later run in the same folder rewrites) under MULTIRUN_DIR and writes, next to them (or in
``--out``): ``summary.md`` (Markdown table), ``summary.csv`` (one row per run) and ``summary.png`` (test accuracy
against the swept axis with the most values, one line per combination of the other swept settings). Jobs that
failed (an ``error.txt`` in their folder, which rnnlab.train writes for a job of a multirun that fails) and jobs
missing (launched per Hydra's ``multirun.yaml`` but with neither ``metrics.json`` nor ``error.txt``: never run, or
killed) are listed under the table.

Runs ended by ``trainer.max_time`` (the wall clock) instead of their step or epoch budget are marked ``max_time`` in
the ``stopped_by`` column, and the summary says how many there are when a table holds any.

Seeds (``-m ... seed=1,2,3``): runs that differ only in their seed form a group (:func:`rnnlab.stats.seed_groups`);
when a group has several runs (or ``--reference`` is given) the summary adds, for each ``--metric``, the group's n,
mean, standard deviation and 95 % confidence interval (Student's t), and with ``--reference model.cell=lstm`` a
two-sided t-test of each group against the group that differs from it only in that setting (paired on seeds when
both ran the same ones, Welch's otherwise; :mod:`rnnlab.stats`). ``--reference experiment=bilstm`` compares whole
recipes (``-m +experiment=bilstm,lstm,gru seed=1,2,3``): the settings each experiment fixes (bidirectional, cell)
come with it, and only the settings swept on the command line must match. Output: a "Seeds" section in ``summary.md``,
``summary_seeds.csv`` (one row per group and metric) and ``summary_seeds.png`` (each seed's value and the interval).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import yaml

from rnnlab.budget import max_time_seconds
from rnnlab.stats import SeedSummary, compare, flatten, plot_groups, seed_groups, summarize_seeds
from rnnlab.utils import user_errors

COLUMNS = {  # column -> (file, dotted key)
    "experiment": ("overrides", "experiment"),
    "cell": ("config", "model.cell"),
    "layers": ("config", "model.num_layers"),
    "hidden": ("config", "model.hidden_size"),
    "bidirectional": ("config", "model.bidirectional"),
    "clip": ("config", "trainer.gradient_clip_val"),
    "clip_algorithm": ("config", "trainer.gradient_clip_algorithm"),
    "seed": ("config", "seed"),
    "epochs": ("metrics", "epochs"),
    "val_acc": ("metrics", "val/acc"),
    "best_val_acc": ("metrics", "best/val/acc"),
    "test_acc": ("metrics", "test/acc"),
    "test_loss": ("metrics", "test/loss"),
    "loss_vs_baseline": ("metrics", "test/loss_vs_baseline"),  # synthetic tasks: 1 = learnt nothing
    "steps": ("metrics", "steps"),
    "stopped_by": ("metrics", "stopped_by"),  # rnnlab.budget: max_steps, max_epochs, max_time (wall clock), ...
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


def _stopped_by(metrics: dict, config: dict) -> str | None:
    """``metrics.json``'s ``stopped_by``; for a run written before rnnlab recorded it, ``max_time?`` when it had a
    ``trainer.max_time`` and ended short of its ``trainer.max_steps``, else None."""
    if "stopped_by" in metrics:
        return metrics["stopped_by"]
    max_steps, steps = _get(config, "trainer.max_steps"), metrics.get("steps")
    if max_time_seconds(_get(config, "trainer.max_time")) is not None and (max_steps or -1) > 0 and steps is not None \
            and steps < max_steps:
        return "max_time?"
    return None


def runs(root: Path) -> list[tuple[dict, dict]]:
    """``(row, flat config)`` of every job folder under ``root`` that has a ``metrics.json``, sorted by the axes."""
    found = []
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
        row["stopped_by"] = _stopped_by(sources["metrics"], sources["config"])
        flat = flatten(sources["config"] or {})
        if row["experiment"] is not None:
            flat["experiment"] = row["experiment"]  # the +experiment= recipe, a setting like any other
        found.append((row, flat))
    return sorted(found, key=lambda run: [str(run[0][a]) for a in AXES] + [str(run[0]["seed"])])


def collect(root: Path) -> list[dict]:
    """One row per job folder under ``root`` that has a ``metrics.json``."""
    return [row for row, _ in runs(root)]


def wall_clock_note(rows: list[dict]) -> str | None:
    """A line saying how many runs ``trainer.max_time`` ended (None when none did)."""
    cut = sum(str(r.get("stopped_by") or "").startswith("max_time") for r in rows)
    if not cut:
        return None
    which = f"all {cut}" if cut == len(rows) else f"{cut} of {len(rows)}"
    mix = "" if cut == len(rows) else "; their metrics are not comparable with the complete runs'"
    return (f"**Wall-clock budget: trainer.max_time ended {which} runs, not their step or epoch budget** "
            f"(stopped_by `max_time`; `max_time?`: inferred for runs written before rnnlab recorded it){mix}.")


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
    """Four decimals below 10 (a ratio to the baseline, an accuracy), one above (seconds), else 2 significant digits."""
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4):
            return f"{v:.2g}"
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return "" if v is None else str(v)


def markdown(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_flag(c, r[c]) for c in cols) + " |" for r in rows]
    note = wall_clock_note(rows)
    return (note + "\n\n" if note else "") + "\n".join(lines) + "\n"


def _flag(col: str, value) -> str:
    text = _fmt(value)
    return f"**{text}**" if col == "stopped_by" and text.startswith("max_time") else text


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


METRICS = ("test_acc", "test_loss", "loss_vs_baseline")  # summarised over seeds by default, where the runs have them


def _parse_reference(text: str | None, configs: list[dict]) -> tuple[str, str] | None:
    if text is None:
        return None
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--reference must be KEY=VALUE, a setting of the runs' config: expected e.g. "
                         f"model.cell=lstm, got {text!r}")
    if not any(key in c for c in configs):
        raise ValueError(f"--reference must name a setting of the runs' config: expected a key such as model.cell, "
                         f"got {key!r}, which no run's config.yaml has")
    return key, value


def seed_table(found: list[tuple[dict, dict]], metrics,
               reference: tuple[str, str] | None = None) -> tuple[list[dict], list[str]]:
    """One row per group of runs that differ only in their seed and per metric: the settings that tell the groups
    apart, n, seeds, mean, sd, the 95 % interval, the runs ended by max_time, and the test against the reference
    group (the one with ``reference``'s value and every other setting equal); and the names of those settings."""
    rows, configs = [r for r, _ in found], [c for _, c in found]
    group_of, keys = seed_groups(configs)
    if reference is not None and reference[0] not in keys:
        keys = keys + [reference[0]]  # every group has the reference's value: it compares with itself (no test)
    members: dict[int, list[int]] = {}
    for i, g in enumerate(group_of):
        members.setdefault(g, []).append(i)
    label = {g: tuple(_label(configs[ids[0]].get(k, "")) for k in keys) for g, ids in members.items()}
    recipe = set()
    if reference is not None and reference[0] == "experiment":
        # --reference experiment=NAME: a setting that is one value in every run of each experiment comes with the
        # recipe (bilstm's bidirectional=true), so the reference group need not share it; swept settings must match
        recipe = {k for k in keys if k != "experiment" and all(
            len({configs[i].get(k) for i, c in enumerate(configs) if c.get("experiment") == e}) == 1
            for e in {c.get("experiment") for c in configs})}
    table = []
    for metric in metrics:
        values = {g: [(rows[i]["seed"], rows[i][metric]) for i in ids if rows[i][metric] is not None]
                  for g, ids in members.items()}
        for g, ids in members.items():
            if not values[g]:
                continue
            summary = summarize_seeds([v for _, v in values[g]])
            row = {k: v for k, v in zip(keys, label[g]) if k not in recipe}
            row.update(metric=metric, n=summary.n, seeds=" ".join(str(s) for s, _ in sorted(values[g], key=str)),
                       mean=summary.mean, sd=summary.sd, ci95_low=summary.low, ci95_high=summary.high,
                       max_time_runs=sum(str(rows[i]["stopped_by"] or "").startswith("max_time") for i in ids),
                       reference="", test="", diff=None, t=None, df=None, p=None)
            if reference is not None:
                ref_label = tuple(reference[1] if k == reference[0] else v for k, v in zip(keys, label[g]))
                ref = next((h for h, lab in label.items() if all(
                    a == b for k, a, b in zip(keys, lab, ref_label) if k not in recipe)), None)
                row["reference"] = f"{reference[0]}={reference[1]}" if ref is not None else "(none)"
                result = compare(values[g], values[ref]) if ref is not None and ref != g else None
                if result is not None:
                    row.update(test=result.test, diff=result.diff, t=result.t, df=result.df, p=result.p)
            table.append(row)
    return table, [k for k in keys if k not in recipe]


def _label(value) -> str:
    """A setting's value as a group's label: floats to 4 significant digits (0.0001270, not 0.0001269772403622572)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def seed_markdown(table: list[dict], keys: list[str]) -> str:
    lines = ["## Seeds", "",
             "Groups of runs that differ only in `seed`: mean, sample sd and the 95 % confidence interval (Student's "
             "t, n - 1 degrees of freedom); against the reference group, a two-sided t-test, paired on seeds when "
             "both groups ran the same ones, Welch's otherwise (scipy.stats).", ""]
    for metric in dict.fromkeys(r["metric"] for r in table):
        cols = keys + ["n", "seeds", "mean", "sd", "95 % CI", "vs reference", "test", "diff", "t", "df", "p"]
        lines += [f"### {metric}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in (r for r in table if r["metric"] == metric):
            ci = "" if r["n"] < 2 else f"[{_num(r['ci95_low'])}, {_num(r['ci95_high'])}]"
            flag = f" ({r['max_time_runs']} **max_time**)" if r["max_time_runs"] else ""
            cells = [r[k] for k in keys] + [f"{r['n']}{flag}", r["seeds"], _num(r["mean"]), _num(r["sd"]), ci,
                                            r["reference"], r["test"], _num(r["diff"]), _num(r["t"]),
                                            _num(r["df"], 1), _num(r["p"])]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _num(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"


def seed_plot(table: list[dict], found: list[tuple[dict, dict]], keys: list[str], path: Path) -> None:
    """One panel per metric: every seed's value as a point, and each group's mean with its 95 % interval."""
    rows, configs = [r for r, _ in found], [c for _, c in found]
    panels: dict[str, list] = {}
    for g in table:
        label = tuple(str(g[k]) for k in keys)
        values = [(r["seed"], r[g["metric"]]) for r, c in zip(rows, configs)
                  if tuple(_label(c.get(k, "")) for k in keys) == label and r[g["metric"]] is not None]
        summary = SeedSummary(g["n"], g["mean"], g["sd"], g["ci95_low"], g["ci95_high"])
        panels.setdefault(g["metric"], []).append(("\n".join(label), values, summary))
    plot_groups(panels, path)


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@user_errors()
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("multirun_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="folder for summary.{md,csv,png} (default: MULTIRUN_DIR)")
    parser.add_argument("--reference", default=None, metavar="KEY=VALUE",
                        help="compare every group of seeds with the one that has this setting, e.g. model.cell=lstm")
    parser.add_argument("--metric", action="append", default=None, choices=[c for c, (src, _) in COLUMNS.items()
                                                                             if src == "metrics"],
                        help=f"a column to summarise over seeds (repeat it; default: those of {', '.join(METRICS)} "
                             f"the runs have)")
    args = parser.parse_args(argv)
    found = runs(args.multirun_dir)
    failed, missing = job_status(args.multirun_dir)
    status = status_lines(failed, missing)
    if not found:
        raise ValueError(" ".join(status + [f"MULTIRUN_DIR must hold rnnlab.train jobs: expected metrics.json files "
                                            f"under it, got none under {args.multirun_dir}"]))
    rows, configs = [r for r, _ in found], [c for _, c in found]
    out = args.out or args.multirun_dir
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows) + "".join(f"\n{line}\n" for line in status)
    reference = _parse_reference(args.reference, configs)
    group_of, _ = seed_groups(configs)
    extra = []
    if reference is not None or len(set(group_of)) < len(group_of):
        metrics = args.metric or [m for m in METRICS if any(r[m] is not None for r in rows)]
        table, keys = seed_table(found, metrics, reference)
        text += "\n" + seed_markdown(table, keys)
        write_csv(table, out / "summary_seeds.csv")
        seed_plot(table, found, keys, out / "summary_seeds.png")
        extra = ["summary_seeds.csv", "summary_seeds.png"]
    (out / "summary.md").write_text(text)
    write_csv(rows, out / "summary.csv")
    plot(rows, out / "summary.png")
    print(text)
    print(f"wrote {out / 'summary.md'}, {', '.join(['summary.csv', 'summary.png'] + extra)} ({len(rows)} runs, "
          f"{len(failed)} failed, {len(missing)} missing; swept: {', '.join(swept(rows))}; "
          f"{len(set(group_of))} groups of seeds)")


if __name__ == "__main__":
    main()

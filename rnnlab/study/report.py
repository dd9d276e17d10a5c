"""A study's report, in ``<study.dir>/report``: ``python -m rnnlab.study report search=adding``.

* ``trials.csv`` and ``trials.png``: every trial of every cell (state, value, parameters, run folder; runs ended by
  ``trainer.max_time`` flagged), and the distribution of the finished ones per cell as a box with every trial as a
  point (Greff et al. 2017, Fig. 3), diverged trials counted under the cell's name;
* ``best.csv`` and ``best.png``: each cell's best trial (by ``search.metric`` on validation) rerun with every seed of
  ``report.seeds`` (runs ``<study.dir>/<cell>/best_seed<s>``; a finished rerun is kept, so the report resumes), and for
  each of ``search.report_metrics`` the mean, sd and 95 % interval, and a t-test against ``report.reference``'s reruns
  (paired on seeds; :mod:`rnnlab.stats`);
* ``importance.csv`` and ``importance.png``: fANOVA importances of the parameters per cell
  (:class:`optuna.importance.FanovaImportanceEvaluator`, Hutter et al. 2014), on the finished trials;
* ``report.md``: the tables, the figures and the command.

Every trial and rerun is also an ordinary run with its TensorBoard HParams entry: ``tensorboard --logdir <study.dir>``.
"""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from omegaconf import DictConfig

from rnnlab.stats import compare, plot_groups, summarize_seeds
from rnnlab.study.search import cell_study, run_overrides, storage, train_run

log = logging.getLogger(__name__)


def _write_csv(rows: list[dict], path: Path) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def trial_rows(cell: str, study) -> list[dict]:
    return [{"cell": cell, "trial": t.number, "state": t.state.name, "value": t.value,
             "diverged": t.user_attrs.get("diverged", ""), "stopped_by": t.user_attrs.get("stopped_by", ""),
             "steps": t.user_attrs.get("steps"), **t.params, "run_dir": t.user_attrs.get("run_dir", "")}
            for t in study.get_trials(deepcopy=False)]


def plot_trials(rows: list[dict], cells: list[str], metric: str, path: Path) -> None:
    """The distribution of the finished trials of every cell: a box and each trial as a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [[r["value"] for r in rows if r["cell"] == c and r["state"] == "COMPLETE"] for c in cells]
    diverged = [sum(1 for r in rows if r["cell"] == c and r["diverged"]) for c in cells]
    fig, ax = plt.subplots(figsize=(1.3 * len(cells) + 2, 4))
    ax.boxplot([v or [math.nan] for v in values], positions=range(len(cells)), widths=0.5, showfliers=False)
    for x, v in enumerate(values):
        ax.scatter([x + 0.25 * ((i * 0.618) % 1 - 0.5) for i in range(len(v))], v, s=12, alpha=0.6)
    flat = [x for v in values for x in v]
    if flat and min(flat) > 0 and max(flat) / min(flat) > 100:
        ax.set_yscale("log")
    ax.set_xticks(range(len(cells)), [f"{c}\n{len(v)} trials" + (f"\n{d} diverged" if d else "")
                                      for c, v, d in zip(cells, values, diverged)], fontsize=8)
    ax.set_ylabel(f"{metric} (every finished trial)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def importances(cell: str, study) -> dict[str, float]:
    """fANOVA importances of the finished trials' parameters (empty with fewer than two finished trials)."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return {}
    return get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))


def plot_importances(table: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = sorted({p for imp in table.values() for p in imp})
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(params) + 2), 4))
    width = 0.8 / max(1, len(table))
    for i, (cell, imp) in enumerate(table.items()):
        ax.bar([j + i * width - 0.4 + width / 2 for j in range(len(params))], [imp.get(p, 0.0) for p in params],
               width, label=cell)
    ax.set_xticks(range(len(params)), params, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("fANOVA importance (share of the variance)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rerun_best(cfg: DictConfig, cell: str, study) -> dict[int, dict]:
    """The best trial's parameters run with every seed of ``report.seeds``: ``{seed: metrics}``. A rerun that
    finished is read back; one that was stopped resumes from its ``last.ckpt``."""
    import json

    best = study.best_trial
    reruns = {}
    for seed in cfg.report.seeds:
        out = Path(cfg.study.dir) / cell / f"best_seed{seed}"
        if (out / "metrics.json").exists():
            reruns[seed] = json.loads((out / "metrics.json").read_text())
            continue
        # tagged as the trial itself: the same config but for the seed, one group of seeds for scripts/summarize.py
        overrides = run_overrides(cfg, cell, best.params, out, {"study": cfg.study.name, "cell": cell,
                                                               "trial": best.number})
        last = out / "checkpoints" / "last.ckpt"
        overrides += [f"seed={seed}"] + ([f"ckpt_path={last}"] if last.exists() else [])
        log.info("%s: best trial %d rerun with seed %d", cell, best.number, seed)
        reruns[seed] = train_run(overrides)
    return reruns


def report(cfg: DictConfig) -> Path:
    """Write the study's report (module docstring) and return its folder."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search, out = cfg.search, Path(cfg.study.dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    rdb = storage(cfg)
    studies = {cell: cell_study(cfg, cell, rdb, load_only=True) for cell in search.cells}
    rows = [r for cell, study in studies.items() for r in trial_rows(cell, study)]
    _write_csv(rows, out / "trials.csv")
    plot_trials(rows, list(search.cells), search.metric, out / "trials.png")
    table = {cell: importances(cell, study) for cell, study in studies.items()}
    _write_csv([{"cell": c, "param": p, "importance": v} for c, imp in table.items() for p, v in imp.items()],
               out / "importance.csv")
    plot_importances(table, out / "importance.png")

    reruns = {cell: rerun_best(cfg, cell, study) for cell, study in studies.items()  # a cell whose every trial
              if any(r["cell"] == cell and r["state"] == "COMPLETE" for r in rows)}  # diverged has no best one
    metrics = [search.metric, *search.report_metrics]
    best_rows, panels = [], {}
    for metric in metrics:
        for cell in (c for c in search.cells if c in reruns):
            values = [(s, m[metric]) for s, m in reruns[cell].items() if m.get(metric) is not None]
            if not values:
                continue
            summary = summarize_seeds([v for _, v in values])
            ref = reruns.get(cfg.report.reference)
            result = None
            if ref is not None and cell != cfg.report.reference:
                result = compare(values, [(s, m[metric]) for s, m in ref.items() if m.get(metric) is not None])
            best_rows.append({"cell": cell, "metric": metric, "best_trial": studies[cell].best_trial.number,
                              "n": summary.n, "seeds": " ".join(str(s) for s, _ in values), "mean": summary.mean,
                              "sd": summary.sd, "ci95_low": summary.low, "ci95_high": summary.high,
                              "max_time_runs": sum(m.get("stopped_by") == "max_time" for m in reruns[cell].values()),
                              "reference": cfg.report.reference if result else "",
                              "test": result.test if result else "", "diff": result.diff if result else None,
                              "t": result.t if result else None, "p": result.p if result else None})
            panels.setdefault(metric, []).append((cell, values, summary))
    _write_csv(best_rows, out / "best.csv")
    if panels:
        plot_groups(panels, out / "best.png")
    (out / "report.md").write_text(markdown(cfg, rows, table, best_rows, studies))
    log.info("report of %s: %s", cfg.study.name, out / "report.md")
    return out


def _num(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.4g}"


def markdown(cfg: DictConfig, rows, table, best_rows, studies) -> str:
    search = cfg.search
    lines = [f"# Study {cfg.study.name}", "",
             f"`+experiment={search.experiment}` with {' '.join(f'`{o}`' for o in search.overrides)}; "
             f"{search.trials} trials per cell, optuna.samplers.{cfg.study.sampler}, optimising {search.metric} "
             f"({search.direction}). Storage `{cfg.study.storage}`.", "",
             "## Every trial", "", "![trials](trials.png)", "",
             "| cell | finished | diverged | ended by max_time | best " + search.metric + " | best trial's parameters |",
             "|---|---|---|---|---|---|"]
    for cell, study in studies.items():
        mine = [r for r in rows if r["cell"] == cell]
        finished = [r for r in mine if r["state"] == "COMPLETE"]
        best = study.best_trial if finished else None
        lines.append(f"| {cell} | {len(finished)} | {sum(1 for r in mine if r['diverged'])} | "
                     f"{sum(1 for r in finished if r['stopped_by'] == 'max_time')} | "
                     f"{_num(best.value) if best else ''} | "
                     f"{', '.join(f'{k}={_num(v) if isinstance(v, float) else v}' for k, v in best.params.items()) if best else ''} |")
    lines += ["", f"## The best configuration of each cell over seeds {list(cfg.report.seeds)}", "",
              "![best](best.png)", "",
              f"Mean ± 95 % interval (Student's t); the test is against `{cfg.report.reference}`'s reruns, paired on "
              f"seeds (Welch's when the seeds differ).", "",
              "| metric | cell | best trial | n | mean | 95 % CI | sd | test | diff | t | p |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in best_rows:
        ci = f"[{_num(r['ci95_low'])}, {_num(r['ci95_high'])}]" if r["n"] > 1 else ""
        flag = f" ({r['max_time_runs']} **max_time**)" if r["max_time_runs"] else ""
        lines.append(f"| {r['metric']} | {r['cell']} | {r['best_trial']} | {r['n']}{flag} | {_num(r['mean'])} | {ci} | "
                     f"{_num(r['sd'])} | {r['test']} | {_num(r['diff'])} | {_num(r['t'])} | {_num(r['p'])} |")
    params = sorted({p for imp in table.values() for p in imp})
    lines += ["", "## Hyperparameter importance (fANOVA, finished trials)", "", "![importance](importance.png)", "",
              "| cell | " + " | ".join(params) + " |", "|---|" + "---|" * len(params)]
    lines += [f"| {cell} | " + " | ".join(_num(imp.get(p)) for p in params) + " |" for cell, imp in table.items()]
    return "\n".join(lines) + "\n"

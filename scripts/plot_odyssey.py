"""The per-timestep gradient ‖∂J/∂h_t‖ of each variant's best run in an odyssey study (docs/odyssey.md).

    python scripts/plot_odyssey.py STUDY_DIR -o docs/img/odyssey_grad_t.png

For each variant folder of ``STUDY_DIR`` (``rnnlab.study``'s layout), the run read is the best configuration's
rerun with the first seed (``best_seed1``, written by ``python -m rnnlab.study report``), else the trial with the
lowest ``val/loss``. Its last probe (``tensorboard/grad_t_probe.pt``: the diagnostics' fixed batch at the last
recorded step) gives ‖∂J/∂h_t‖ of layer 0 averaged over the batch, t = 1..T. Prints a Markdown table (the norm at
the last step T, where the loss reads h_T, at the first step, and their ratio) and draws one line per variant.

``--pooled-fanova`` also prints the fANOVA importances (``optuna.importance.FanovaImportanceEvaluator(seed=0)``) of
every finished trial of every variant pooled into one in-memory study, with the variant as one more categorical
parameter: Greff et al.'s analysis, which asks how much of the variance the variant explains beside the learning
rate and the other hyperparameters.
"""
import argparse
import json
import math
from pathlib import Path

import torch


def best_run(variant_dir: Path) -> Path | None:
    rerun = variant_dir / "best_seed1"
    if (rerun / "tensorboard" / "grad_t_probe.pt").exists():
        return rerun
    trials = []
    for metrics in variant_dir.glob("trial_*/metrics.json"):
        value = json.loads(metrics.read_text()).get("val/loss", math.inf)
        if math.isfinite(value) and (metrics.parent / "tensorboard" / "grad_t_probe.pt").exists():
            trials.append((value, metrics.parent))
    return min(trials)[1] if trials else None


def profile(run: Path) -> tuple[int, torch.Tensor]:
    """The last probe's step and its ‖∂J/∂h_t‖ of layer 0, t in input order."""
    records = torch.load(run / "tensorboard" / "grad_t_probe.pt", weights_only=True)
    last = records[-1]
    return last["step"], last["curves"]["dh/l0"]["start"]


def pooled_fanova(study_dir: Path) -> dict[str, float]:
    """fANOVA importances over the finished trials of every study in ``study_dir/study.db``, variant included."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{study_dir / 'study.db'}"
    pooled = optuna.create_study()
    summaries = optuna.get_all_study_summaries(url)
    variants = sorted(s.study_name.rpartition("/")[2] for s in summaries)
    for summary in summaries:
        variant = summary.study_name.rpartition("/")[2]
        for t in optuna.load_study(study_name=summary.study_name, storage=url).get_trials(states=[TrialState.COMPLETE]):
            pooled.add_trial(create_trial(params={**t.params, "variant": variant}, value=t.value,
                                          distributions={**t.distributions,
                                                         "variant": CategoricalDistribution(variants)}))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return optuna.importance.get_param_importances(pooled, evaluator=evaluator)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study_dir", type=Path)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--pooled-fanova", action="store_true", help="print the pooled fANOVA importances too")
    args = ap.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    print("| variant | run | probe step | ‖∂J/∂h_T‖ | ‖∂J/∂h_1‖ | h_1 / h_T |")
    print("|---|---|---:|---:|---:|---:|")
    for variant_dir in sorted(p for p in args.study_dir.iterdir() if p.is_dir() and p.name != "report"):
        run = best_run(variant_dir)
        if run is None:
            continue
        step, curve = profile(run)
        curve = curve[torch.isfinite(curve)]
        ax.semilogy(range(1, len(curve) + 1), curve.numpy(), label=variant_dir.name)
        first, last = float(curve[0]), float(curve[-1])
        print(f"| {variant_dir.name} | {run.name} | {step} | {last:.2e} | {first:.2e} | {first / last:.2e} |")
    ax.set_xlabel("t (the loss reads h_T)")
    ax.set_ylabel("‖∂J/∂h_t‖, layer 0, batch mean")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    if args.pooled_fanova:
        print("\n| parameter (all variants pooled) | fANOVA importance |\n|---|---:|")
        for name, value in pooled_fanova(args.study_dir).items():
            print(f"| {name} | {value:.3f} |")


if __name__ == "__main__":
    main()

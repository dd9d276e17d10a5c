"""Table and figures of a synthetic-task sweep, the clipping pair and the Jacobian bound (docs/phenomena.md).

    python scripts/plot_phenomena.py sweep MULTIRUN_DIR --name adding        # table + loss and gradient figures
    python scripts/plot_phenomena.py clip RUN_WITHOUT RUN_WITH --name adding_clip
    python scripts/plot_phenomena.py jacobian RUN [RUN ...] --name adding_jacobian

``sweep`` groups the runs by cell and T (their seeds apart) and prints a Markdown table: the seeds, the steps run,
the test loss over the baseline (mean and 95 % Student-t interval, rnnlab.stats, and each seed's value), how many
seeds solved the task (test loss below ``--solved`` = 0.1 times the baseline), each seed's steps to solve (the first
validation step whose loss is below that), a paired t-test of the loss ratio against ``--reference`` (lstm) at the
same T, and Fisher's exact test of the solved counts against the reference's. It writes
``docs/img/<name>_loss.png`` (validation loss over the baseline against the step, one panel per T, one line per
seed) and ``docs/img/<name>_grad.png`` (||dJ/dh_t|| against the distance from the loss: the last recorded step of
every seed, solid, and the first seed's step 0, dotted). No times: runs that share a machine have no comparable
wall clock, and the budget is in steps.

``clip`` draws the training loss of two runs (the first without clipping, the second with), the global gradient
norm before clipping, and the per-timestep gradient at the first two recorded steps of each (of ``--early``, a
rerun of the unclipped run recording every step, when given) and the last of the clipped run.

``jacobian`` loads each run's last checkpoint and, on the first 16 validation sequences, draws the measured
||dJ/dh_t|| (geometric mean over sequences) against k = T - 1 - t beside its upper bound
||dJ/ds_T|| * prod sigma_max(ds_j/ds_{j-1}) (rnnlab.diagnostics.jacobian), at initialisation and after training.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
CELL_ORDER = ["rnn", "lstm", "lstm_noforget", "cifg", "gru"]


def scalars(job: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run's TensorBoard folder: ``{tag: [(step, value), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list] = {}
    for events in sorted((job / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {k: sorted(v) for k, v in out.items()}


def jobs(root: Path) -> list[dict]:
    rows = []
    for metrics_file in sorted(root.rglob("metrics.json")):
        job = metrics_file.parent
        cfg = yaml.safe_load((job / "config.yaml").read_text())
        rows.append({"job": job, "cfg": cfg, "metrics": json.loads(metrics_file.read_text()),
                     "cell": cfg["model"]["cell"], "T": cfg["data"]["length"]})
    return sorted(rows, key=lambda r: (CELL_ORDER.index(r["cell"]) if r["cell"] in CELL_ORDER else 99, r["T"]))


def _figure(n: int, width=4.0, height=3.2):
    fig = Figure(figsize=(width * n, height), dpi=90)
    FigureCanvasAgg(fig)
    return fig, np.atleast_1d(fig.subplots(1, n, squeeze=False)[0])


def _steps_to_solve(val: list[tuple[int, float]], vbase: float, solved: float) -> int | None:
    return next((s for s, v in val if v < solved * vbase), None)


def sweep(root: Path, name: str, solved: float, reference: str = "lstm") -> None:
    from rnnlab.stats import compare, compare_counts, summarize_seeds

    rows = jobs(root)
    lengths = sorted({r["T"] for r in rows})
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        r["seed"] = r["cfg"]["seed"]
        groups.setdefault((r["cell"], r["T"]), []).append(r)
    table = ["| cell | T | seeds | steps | test loss / baseline, mean [95 % CI] | per seed | solved | "
             f"steps to solve | vs {reference}: loss ratio (paired t) | vs {reference}: solved (Fisher) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    loss_fig, loss_axes = _figure(len(lengths))
    grad_fig, grad_axes = _figure(len(lengths))
    colours = {c: f"C{i}" for i, c in enumerate(CELL_ORDER)}
    ratios = {key: [(r["seed"], r["metrics"]["test/loss_vs_baseline"]) for r in sorted(runs, key=lambda r: r["seed"])]
              for key, runs in groups.items()}
    for key in sorted(groups, key=lambda k: (k[1], CELL_ORDER.index(k[0]) if k[0] in CELL_ORDER else 99)):
        cell, T = key
        i = lengths.index(T)
        runs = sorted(groups[key], key=lambda r: r["seed"])
        solved_at = []
        for n, r in enumerate(runs):
            m, ev = r["metrics"], scalars(r["job"])
            val = ev.get("val/loss", [])
            vbase = m.get("val/baseline_loss", m.get("test/baseline_loss", math.nan))
            solved_at.append(_steps_to_solve(val, vbase, solved))
            if val:
                loss_axes[i].plot([s for s, _ in val], [v / vbase for _, v in val], color=colours.get(cell), lw=0.9,
                                  alpha=0.8, label=cell if n == 0 else None)
            grad_file = r["job"] / "tensorboard" / "grad_t.pt"
            if grad_file.exists():
                records = torch.load(grad_file, weights_only=True)  # plain lists, dicts, floats and tensors
                for rec, style in ((records[0], ":"), (records[-1], "-")):
                    curve = rec["curves"].get("dh/l0", {}).get("end")
                    if curve is not None and (style == "-" or n == 0):
                        y = curve.double().numpy()
                        grad_axes[i].plot(np.arange(len(y)), np.where(y > 0, y, np.nan), ls=style, lw=0.9,
                                          color=colours.get(cell), label=cell if style == "-" and n == 0 else None)
        s = summarize_seeds([v for _, v in ratios[key]])
        ci = f"{s.mean:.4f} [{s.low:.4f}, {s.high:.4f}]" if s.n > 1 else f"{s.mean:.4f}"
        per_seed = " / ".join(f"{v:.2g}" if v < 0.01 else f"{v:.3f}" for _, v in ratios[key])
        steps = sorted({r["metrics"].get("steps") for r in runs}, key=str)
        n_solved = sum(v < solved for _, v in ratios[key])
        to_solve = " / ".join(str(a) if a is not None else "-" for a in solved_at)
        ref = ratios.get((reference, T))
        c = compare(ratios[key], ref) if ref is not None and cell != reference else None
        vs = f"{c.diff:+.3f}, p = {c.p:.2g}" if c is not None else ""
        fisher = ""
        if ref is not None and cell != reference:
            ref_solved = sum(v < solved for _, v in ref)
            fisher = f"{n_solved}/{len(runs)} vs {ref_solved}/{len(ref)}, p = " \
                     f"{compare_counts(n_solved, len(runs), ref_solved, len(ref)):.2g}"
        table.append(f"| {cell} | {T} | {' '.join(str(r['seed']) for r in runs)} | {'/'.join(map(str, steps))} | "
                     f"{ci} | {per_seed} | {n_solved}/{len(runs)} | {to_solve} | {vs} | {fisher} |")
    for i, T in enumerate(lengths):
        ax = loss_axes[i]
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.axhline(solved, color="grey", lw=0.8, ls=":")
        ax.set(title=f"T = {T}", xlabel="training step", yscale="log")
        ax = grad_axes[i]
        ax.set(title=f"T = {T}", xlabel="k = steps before the loss", yscale="log")
    loss_axes[0].set_ylabel("val loss / baseline (one line per seed)")
    grad_axes[0].set_ylabel("||dJ/dh_t|| (dotted: step 0, solid: last)")
    loss_axes[-1].legend(fontsize=8)
    grad_axes[-1].legend(fontsize=8)
    for fig in (loss_fig, grad_fig):
        fig.tight_layout()
    out = ROOT / "docs" / "img"
    loss_fig.savefig(out / f"{name}_loss.png")
    grad_fig.savefig(out / f"{name}_grad.png")
    print("\n".join(table))


def clip(without: Path, with_: Path, name: str, early: Path | None = None) -> None:
    fig, axes = _figure(3, 4.4, 3.4)
    for job, label in ((without, "no clipping"), (with_, "clipped")):
        ev = scalars(job)
        loss = ev.get("train/loss", [])
        axes[0].plot([s for s, _ in loss], [v for _, v in loss], label=label)
        norm = ev.get("grad/norm_before_clip", [])
        axes[1].plot([s for s, _ in norm], [v for _, v in norm], label=label)
        frac = json.loads((job / "metrics.json").read_text()).get("grad/clipped_fraction")
        print(f"{label}: {job}: clipped fraction of the last epoch {frac}, "
              f"diverged at {ev.get('train/diverged_step')}, final test loss "
              f"{json.loads((job / 'metrics.json').read_text()).get('test/loss')}")
        source = early if (early is not None and label == "no clipping") else job
        records = torch.load(source / "tensorboard" / "grad_t.pt", weights_only=True)
        for rec in (records[:2] if label == "no clipping" else [records[0], records[1], records[-1]]):
            y = rec["curves"]["dh/l0"]["end"].double().numpy()
            axes[2].plot(np.arange(len(y)), np.where(y > 0, y, np.nan), ls="-" if label == "clipped" else "--",
                         label=f"{label}, step {rec['step']}")
    axes[0].set(xlabel="training step", ylabel="train loss", yscale="log", title="loss")
    axes[1].set(xlabel="training step", ylabel="||g|| before clipping", yscale="log", title="global gradient norm")
    axes[2].set(xlabel="k = steps before the loss", ylabel="||dJ/dh_t||", yscale="log",
                title="per-timestep gradient")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "img" / f"{name}.png")


def _measured_and_bound(module, x, y):
    """Per-sample ||dJ/dh_t|| (B, T) and the bound ||dJ/ds_T|| prod sigma (B, T), t in input order."""
    from rnnlab.diagnostics.jacobian import jacobian_norms
    from rnnlab.nn.backends.loop import run_layer

    enc = module.model.encoder
    enc.record_grad_norms(True)
    module.zero_grad()
    module.batch_loss((x, y)).backward()
    measured = enc.grad_norms["l0"].double()  # (B, T)
    enc.record_grad_norms(False)
    # ||dJ/ds_T||: the gradient of the loss at the last state (h_T, c_T), through the head
    e = module.model.embedding(x)
    _, h, c = run_layer(enc.cell, e.transpose(0, 1), e.new_zeros(len(x), enc.hidden_size),
                        e.new_zeros(len(x), enc.hidden_size) if enc.cell in ("lstm", "cifg") else None,
                        *enc._layer_weights(0, 0), None, False, nonlinearity=enc.nonlinearity,
                        forget_gate=enc.forget_gate)
    loss = torch.nn.functional.mse_loss(module.model.head(h).squeeze(-1), y)
    grads = torch.autograd.grad(loss, [h] + ([c] if c is not None else []))
    end = torch.sqrt(sum(g.double().pow(2).sum(-1) for g in grads))  # (B,)
    sigma = jacobian_norms(enc, e.detach(), None, iters=30)["l0"].double()  # (B, T): ds_t/ds_{t-1}
    T = sigma.size(1)
    bound = torch.empty_like(sigma)
    bound[:, T - 1] = end
    for t in range(T - 2, -1, -1):
        bound[:, t] = bound[:, t + 1] * sigma[:, t + 1]
    return measured, bound


def jacobian(runs: list[Path], name: str) -> None:
    import lightning.pytorch as pl

    from rnnlab.data.synthetic import AddingDataModule
    from rnnlab.models.tasks import TaskModule

    fig, axes = _figure(len(runs), 4.2, 3.4)
    for ax, run in zip(axes, runs):
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        dm = AddingDataModule(length=cfg["data"]["length"], seed=cfg["seed"])
        x, y = dm.probe_batch(16)
        trained = TaskModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu",
                                                  weights_only=True)
        pl.seed_everything(cfg["seed"])  # the run's initial weights: seeded, then built as rnnlab.train does
        initial = TaskModule(**{k: v for k, v in trained.hparams.items()})
        for module, colour, label in ((initial, "C0", "init"), (trained, "C3", "trained")):
            measured, bound = _measured_and_bound(module, x, y)
            geo = lambda a: torch.exp(torch.log(a.clamp_min(1e-300)).mean(0)).flip(0).numpy()  # k = T-1-t
            k = np.arange(measured.size(1))
            ax.plot(k, geo(measured), color=colour, label=f"{label}: measured ||dJ/dh_t||")
            ax.plot(k, geo(bound), color=colour, ls="--", label=f"{label}: ||dJ/ds_T|| prod sigma_max")
        ax.set(title=f"{cfg['model']['cell']}, T = {cfg['data']['length']}", xlabel="k = steps before the loss",
               yscale="log")
    axes[0].set_ylabel("geometric mean over 16 sequences")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "img" / f"{name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sweep")
    s.add_argument("root", type=Path)
    s.add_argument("--name", default="adding")
    s.add_argument("--solved", type=float, default=0.1)
    s.add_argument("--reference", default="lstm")
    c = sub.add_parser("clip")
    c.add_argument("without", type=Path)
    c.add_argument("with_", type=Path)
    c.add_argument("--name", default="adding_clip")
    c.add_argument("--early", type=Path, help="a rerun of the unclipped run recording every step (its first steps)")
    j = sub.add_parser("jacobian")
    j.add_argument("runs", type=Path, nargs="+")
    j.add_argument("--name", default="adding_jacobian")
    args = parser.parse_args()
    (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
    if args.what == "sweep":
        sweep(args.root, args.name, args.solved, args.reference)
    elif args.what == "clip":
        clip(args.without, args.with_, args.name, args.early)
    else:
        jacobian(args.runs, args.name)


if __name__ == "__main__":
    main()

"""Seeds as an axis: runs that differ only in their seed, summarised with a confidence interval and compared by a t-test.

For a group of ``n`` runs with values :math:`x_1 \\dots x_n` of a metric (one per seed),

.. math::
    \\bar x = \\frac{1}{n} \\sum_i x_i, \\qquad s = \\sqrt{\\frac{1}{n - 1} \\sum_i (x_i - \\bar x)^2}, \\qquad
    \\bar x \\pm t_{0.975,\\, n-1} \\frac{s}{\\sqrt n} \\quad \\text{(95 % confidence interval, Student's t)}.

A group is compared with a reference group (``--reference model.cell=lstm``) by a two-sided t-test:

* **paired** when both groups ran the same seeds (each seed fixes the data order and the initial draw):
  :math:`t = \\bar d / (s_d / \\sqrt n)` on the differences :math:`d_i = x_i - y_i` of matching seeds, ``n - 1``
  degrees of freedom (``scipy.stats.ttest_rel``);
* **Welch** otherwise: :math:`t = (\\bar x - \\bar y) / \\sqrt{s_x^2 / n_x + s_y^2 / n_y}`, with the
  Welch-Satterthwaite degrees of freedom (``scipy.stats.ttest_ind(equal_var=False)``).

Every distribution comes from ``scipy.stats``. :func:`seed_groups` finds the groups in a set of run configs: runs
whose resolved configs are equal once ``seed``, the settings that follow it (``data.seed: ${seed}``) and the run's
own paths are set aside.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SeedSummary", "Comparison", "summarize_seeds", "compare", "flatten", "seed_groups", "plot_groups",
           "SEED_KEY"]

SEED_KEY = "seed"
CONFIDENCE = 0.95
_RUN_KEYS = ("output_dir", "ckpt_path")  # where a run wrote, not what it ran


@dataclass(frozen=True)
class SeedSummary:
    """``n`` values of one metric: mean, sample standard deviation (``n - 1``) and the 95 % Student-t interval
    (``sd``, ``low`` and ``high`` are NaN for ``n = 1``)."""

    n: int
    mean: float
    sd: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Comparison:
    """A two-sided t-test of a group against the reference: ``test`` is ``"paired"`` or ``"welch"``; ``diff`` the
    difference of the means (group - reference); ``t``, ``df`` and ``p`` the statistic, its degrees of freedom and
    the p-value."""

    test: str
    diff: float
    t: float
    df: float
    p: float


def summarize_seeds(values) -> SeedSummary:
    """Mean, sd and the 95 % confidence interval of the values (Student's t with ``n - 1`` degrees of freedom).

    >>> s = summarize_seeds([0.80, 0.82, 0.84])  # s = 0.02, t_{0.975, 2} = 4.3027
    >>> round(s.mean, 4), round(s.sd, 4), round(s.low, 4), round(s.high, 4)
    (0.82, 0.02, 0.7703, 0.8697)
    """
    from scipy import stats

    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("summarize_seeds needs at least one value: expected a list of metric values, got []")
    mean = math.fsum(values) / n
    if n == 1:
        return SeedSummary(1, mean, math.nan, math.nan, math.nan)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    return SeedSummary(n, mean, sd, mean - half, mean + half)


def compare(group, reference) -> Comparison | None:
    """The group's values against the reference's, each a list of ``(seed, value)`` pairs: a paired test when both
    ran the same seeds once each, Welch's test otherwise; None when either has fewer than two values.

    >>> c = compare([(1, 0.80), (2, 0.82), (3, 0.84)], [(1, 0.78), (2, 0.79), (3, 0.83)])
    >>> c.test, round(c.diff, 4), round(c.t, 4), c.df, round(c.p, 4)  # d = (0.02, 0.03, 0.01): t = 0.02 / (0.01 / √3)
    ('paired', 0.02, 3.4641, 2.0, 0.0742)
    """
    from scipy import stats

    group, reference = list(group), list(reference)
    if len(group) < 2 or len(reference) < 2:
        return None
    x, y = [float(v) for _, v in group], [float(v) for _, v in reference]
    diff = math.fsum(x) / len(x) - math.fsum(y) / len(y)
    seeds, reference_seeds = [s for s, _ in group], [s for s, _ in reference]
    if len(set(seeds)) == len(seeds) and sorted(seeds) == sorted(reference_seeds):
        by_seed = dict(reference)
        result = stats.ttest_rel(x, [float(by_seed[s]) for s in seeds])
        test = "paired"
    else:
        result = stats.ttest_ind(x, y, equal_var=False)
        test = "welch"
    return Comparison(test, diff, float(result.statistic), float(result.df), float(result.pvalue))


def compare_counts(successes: int, n: int, reference_successes: int, reference_n: int) -> float:
    """The two-sided p-value of Fisher's exact test of ``successes`` of ``n`` runs against the reference's
    (``scipy.stats.fisher_exact`` on the 2 x 2 table): for outcomes that are all or nothing, such as "solved".

    >>> round(compare_counts(3, 3, 0, 3), 4)  # the most extreme table of 3 against 3: 2 / C(6, 3) = 0.1
    0.1
    """
    from scipy import stats

    table = [[successes, n - successes], [reference_successes, reference_n - reference_successes]]
    return float(stats.fisher_exact(table).pvalue)


def flatten(tree, prefix: str = "") -> dict:
    """A nested config as ``{"model.cell": "gru", ...}``; lists are values.

    >>> flatten({"model": {"cell": "gru", "optimizer": {"lr": 0.1}}, "seed": 1})
    {'model.cell': 'gru', 'model.optimizer.lr': 0.1, 'seed': 1}
    """
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {f"{prefix}{key}": value})
    return out


def _is_run_path(key: str, value, config: dict) -> bool:
    out = config.get("output_dir")
    return key in _RUN_KEYS or (bool(out) and isinstance(value, str) and str(out) in value)


def seed_groups(configs: list[dict]) -> tuple[list[int], list[str]]:
    """Group runs that differ only in their seed.

    Args:
        configs: each run's resolved config, flat (:func:`flatten`), with its ``seed``.

    Returns:
        ``(group, keys)``: ``group[i]`` numbers run ``i``'s group (0, 1, ... in order of first appearance), and
        ``keys`` lists the settings that tell the groups apart (``["data.length", "model.cell"]``), for labels; of
        settings equal in every run, the one with the shortest name.

    Set aside: ``seed``; a setting equal to the seed in every run, which follows it (``data.seed: ${seed}``, so it
    varies with the seed alone); and each run's own paths (``output_dir`` and the settings under it).
    """
    follows_seed = {key for key in set().union(*configs) if key != SEED_KEY
                    and all(c.get(key) == c.get(SEED_KEY) for c in configs)}
    signatures = []
    for config in configs:
        signatures.append(tuple(sorted((k, repr(v)) for k, v in config.items() if k != SEED_KEY
                                       and k not in follows_seed and not _is_run_path(k, v, config))))
    settings = [dict(sig) for sig in signatures]
    keys = sorted({k for d in settings for k in d if len({other.get(k, "<unset>") for other in settings}) > 1})
    column = {k: tuple(d.get(k, "<unset>") for d in settings) for k in keys}
    # a setting that copies another in every run (callbacks.log_hparams.settings.data.batch_size) labels nothing new
    keys = [k for k in keys if not any(column[o] == column[k] and (len(o), o) < (len(k), k) for o in keys)]
    order: dict[tuple, int] = {}
    return [order.setdefault(sig, len(order)) for sig in signatures], keys


def plot_groups(panels: dict, path) -> None:
    """One panel per metric, ``{metric: [(label, [(seed, value), ...], SeedSummary), ...]}``: every seed's value as a
    point and each group's mean with its 95 % interval beside them, saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widest = max(len(groups) for groups in panels.values())
    fig, axes = plt.subplots(1, len(panels), figsize=((1.2 * widest + 2) * len(panels), 4), squeeze=False)
    for ax, (metric, groups) in zip(axes[0], panels.items()):
        for x, (_, values, summary) in enumerate(groups):
            points = [v for _, v in values]
            ax.scatter([x - 0.12 + 0.05 * (i - (len(points) - 1) / 2) for i in range(len(points))], points, s=14,
                       alpha=0.7, label="one seed" if x == 0 else None)
            if summary.n > 1:
                ax.errorbar([x + 0.12], [summary.mean], yerr=[[summary.mean - summary.low], [summary.high - summary.mean]],
                            fmt="_", color="black", capsize=6, markersize=16,
                            label="mean, 95 % CI" if x == 0 else None)
        ax.set_xticks(range(len(groups)), [label for label, _, _ in groups], fontsize=7)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

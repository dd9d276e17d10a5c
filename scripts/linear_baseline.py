"""The linear baselines of an experiment's data: logistic regression on the presence of words and word pairs.

Reads the training, validation and test splits exactly as ``python -m rnnlab.train +experiment=EXPERIMENT`` does
(the same vocabulary, the same held-out movies), and fits on the training split

- ``binary``: logistic regression on x_f = 1 if feature f occurs in the review, else 0;
- ``nb``: the same on x_f r_f, r_f the Naive Bayes log-count ratio of f on the training split (Wang & Manning's
  NBSVM features, with a logistic loss in place of the SVM's hinge),

where the features are the word ids and the word pairs: exact pairs of ids (``--buckets 0``), or the model's hashed
pair rows (``--buckets K``, as ``model.bigram_buckets=K``), and the ratios are smoothed by ``--alpha`` (1, NBSVM's; the
recipe's ``model.nb_alpha`` is 300). Each fit is ``--steps`` full-batch Adam steps with a small L2 penalty; the printed
accuracies are of the step with the best validation accuracy (checked every 25 steps). With ``--epochs E`` the fit is
trained as the network is instead: ``--batch-size`` reviews a step, lazy Adam on the weights a batch uses
(:class:`rnnlab.models.optim.LazyAdam`), no penalty, E passes, each pass's accuracies printed; ``--lr`` stays 0.01
unless given (the recipe's rate is ``--lr 0.001``).

    RNNLAB_IMDB_ARCHIVE=shared/data/aclImdb-labeled.tar.gz python scripts/linear_baseline.py --buckets 0 262144

A fit on IMDB's 22,500 training reviews (1.3M features with exact pairs) takes about 7 minutes on a 2-core CPU.
"""
from __future__ import annotations

import argparse

import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from rnnlab.models.classifier import log_count_ratio, pair_rows, present_features, previous_ids
from rnnlab.models.optim import LazyAdam


def presence(dataset, vocab_size: int, buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sequence, feature) of each word id and pair that occurs in a sequence, each once; pairs after the V words."""
    flat, lengths = dataset.flat, torch.as_tensor(dataset.lengths)
    prev = previous_ids(flat, lengths)
    pairs = pair_rows(prev, flat, buckets) if buckets else prev * vocab_size + flat  # exact: one key per (prev, word)
    word_seq, words = present_features(flat, lengths, vocab_size)
    pair_seq, pair_keys = present_features(pairs, lengths, buckets or vocab_size * vocab_size)
    return torch.cat([word_seq, pair_seq]), torch.cat([words, vocab_size + pair_keys])


def fit(train, val, test, scale: torch.Tensor, steps: int, lr: float, l2: float) -> tuple[float, float, int]:
    """Full-batch logistic regression on the columns scaled by ``scale``; (val acc, test acc, step) at best val."""
    (X, y), w, b = train, torch.zeros(scale.numel(), requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    best = (-1.0, 0.0, 0)
    for step in range(1, steps + 1):
        z = torch.sparse.mm(X, (w * scale)[:, None]).squeeze(1) + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y) + l2 * w.square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            with torch.no_grad():
                weights = w * scale
                acc = [accuracy(Xs, ys, weights, b) for Xs, ys in (val, test)]
            best = max(best, (acc[0], acc[1], step))
    return best


def accuracy(X: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, b: torch.Tensor) -> float:
    return ((torch.sparse.mm(X, weights[:, None]).squeeze(1) + b > 0).float() == y).float().mean().item()


def fit_minibatch(train, val, test, scale: torch.Tensor, epochs: int, batch_size: int, lr: float,
                  seed: int = 0) -> list[tuple[float, float]]:
    """Logistic regression trained as the network's tables are: batches of ``batch_size`` rows, lazy Adam (only the
    weights of the features a batch has move), no penalty; (val acc, test acc) after each of ``epochs`` passes."""
    (X, y), out = train, []
    w, b = torch.nn.Parameter(torch.zeros(scale.numel(), 1)), torch.nn.Parameter(torch.zeros(1))
    opt = LazyAdam([w, b], lr=lr)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=order).split(batch_size):
            rows, cols = X.index_select(0, idx).coalesce().indices()  # sorted by row
            counts = torch.bincount(rows, minlength=len(idx))
            z = torch.nn.functional.embedding_bag(cols, w, torch.cumsum(counts, 0) - counts, mode="sum",
                                                  per_sample_weights=scale[cols], sparse=True).squeeze(1) + b
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            weights = w.squeeze(1) * scale
            out.append(tuple(accuracy(Xs, ys, weights, b) for Xs, ys in (val, test)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="imdb_best")
    parser.add_argument("--buckets", type=int, nargs="+", default=[0, 262144],
                        help="pair features: 0 = exact pairs of word ids, K = the model's K hashed rows")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--l2", type=float, default=1e-5)
    parser.add_argument("--alpha", type=float, default=1.0, help="the ratios' smoothing (1: NBSVM's)")
    parser.add_argument("--epochs", type=int, default=0, help="E > 0: train in batches, as the network (see above)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the data, e.g. data.max_tokens=20000")
    args = parser.parse_args()
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"+experiment={args.experiment}", *args.overrides])
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    V = datamodule.vectorizer.vocab_size
    print(f"{args.experiment}: {V} words; train/val/test {[len(datamodule.datasets[s]) for s in ('train', 'val', 'test')]}")
    for K in args.buckets:
        splits = {}
        for name in ("train", "val", "test"):
            rows, cols = presence(datamodule.datasets[name], V, K)
            splits[name] = rows, cols, datamodule.datasets[name].labels.float()
        used = torch.unique(splits["train"][1])  # the training split's features (sorted); others would stay at 0
        mats = {}
        for name, (rows, cols, y) in splits.items():
            column = torch.searchsorted(used, cols).clamp(max=used.numel() - 1)
            keep = used[column] == cols
            X = torch.sparse_coo_tensor(torch.stack([rows[keep], column[keep]]), torch.ones(int(keep.sum())),
                                        (len(y), used.numel())).coalesce()
            mats[name] = X, y
        X, y = mats["train"]
        r = log_count_ratio(torch.sparse.mm(X.t(), y[:, None]).squeeze(1),
                            torch.sparse.mm(X.t(), (1 - y)[:, None]).squeeze(1), args.alpha)
        pairs = "exact pairs" if K == 0 else f"{K} hashed pair rows"
        for name, scale in (("binary", torch.ones_like(r)), ("nb", r)):
            if args.epochs:
                for epoch, (val, test) in enumerate(fit_minibatch(mats["train"], mats["val"], mats["test"], scale,
                                                                  args.epochs, args.batch_size, args.lr), 1):
                    print(f"{name:6s} words + {pairs}, batches of {args.batch_size} at lr {args.lr}: epoch {epoch} "
                          f"val {val:.4f}  test {test:.4f}", flush=True)
                continue
            val, test, step = fit(mats["train"], mats["val"], mats["test"], scale, args.steps, args.lr, args.l2)
            print(f"{name:6s} words + {pairs} ({used.numel()} features): val {val:.4f}  test {test:.4f}  (step {step})",
                  flush=True)


if __name__ == "__main__":
    main()

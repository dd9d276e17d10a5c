"""Cross-fitted stacking on IMDB: a bidirectional GRU over token scores that no training review's own label made.

Stage 1 (the scores). The training split is cut into ``--folds`` K random folds. For each fold k a bag of the recipe's
inputs (``+experiment=imdb_best model.recurrent=false model.pooling=sum_sqrt model.nb_alpha=30``: each word's and
pair's vector scaled by its Naive Bayes ratio, summed over the review, divided by sqrt(L), a linear head) is trained,
ratios included, on the other K - 1 folds, two epochs as the recipe. Its head is linear in the token vectors, so its
logit is a sum of one score per token,

    z = sum_t c_t / sqrt(L) + b,    c_t = w . x_t,

and each training review gets the scores c_t of the bag that did not see it (out of fold); validation and test
reviews get the mean of the K bags' scores.

Stage 2 (the recurrent net). A bidirectional GRU reads, at each step, c_t and a 16-wide vector of the word (the
``--words`` most frequent words, the rest one row) and corrects the bag's logit two ways (``--cell``: torch's GRU by
default, or any cell of rnnlab.nn.CELLS),

    z = sum_t (1 + tanh(v . h_t)) c_t / sqrt(L) + b + u . dropout([mean_t h_t ; max_t h_t]),

a weight per token in (0, 2) and a term of its own, both zero at the start, so it starts as the averaged bags. It is
trained ``--epochs`` passes (Adam, cosine decay) on the training split; the test set is scored once, at the epoch
with the best validation accuracy. ``--cell none`` replaces the GRU by a per-step layer (the same inputs, no
recurrence): the control for what reading the review in order adds.

    RNNLAB_IMDB_ARCHIVE=shared/data/aclImdb-labeled.tar.gz python scripts/crossfit_stack.py --scores /tmp/scores.pt

Stage 1 saves the scores to ``--scores`` with the settings that made them, and reads them from there when the file
exists and its settings are the run's (else it stops and says so); further arguments are Hydra overrides of the bags'
config. Deterministic on CPU.
Measurements: docs/imdb_best.md.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from torch import nn

from rnnlab.models.classifier import nb_log_count_ratios, pair_rows, previous_ids, run_encoder
from rnnlab.models.optim import LazyAdam
from rnnlab.nn import CELLS
from rnnlab.nn.registry import build_cell

BAG = ["+experiment=imdb_best", "model.recurrent=false", "model.pooling=sum_sqrt", "model.nb_alpha=30"]


def padded(dataset, idx, scores=None):
    """(ids (B, T), scores (B, T) or None, lengths (B,), labels (B,)) of the reviews ``idx``, right-padded."""
    lengths = dataset.lengths[idx]
    ids = torch.zeros(len(idx), int(lengths.max()), dtype=torch.long)
    c = None if scores is None else torch.zeros(ids.shape)
    for j, i in enumerate(idx):
        span = slice(dataset.offsets[i], dataset.offsets[i + 1])
        ids[j, :lengths[j]] = dataset.flat[span]
        if c is not None:
            c[j, :lengths[j]] = scores[span]
    return ids, c, torch.as_tensor(lengths), dataset.labels[idx]


def batches(dataset, idx, batch_size: int, generator=None, scores=None):
    idx = np.asarray(idx)
    if generator is not None:
        idx = idx[torch.randperm(len(idx), generator=generator).numpy()]
    for start in range(0, len(idx), batch_size):
        yield padded(dataset, idx[start:start + batch_size], scores)


def train_bag(cfg, dataset, idx, vocab_size: int, seed: int) -> nn.Module:
    """The recipe's bag (``BAG``), its ratios and weights from the reviews ``idx`` only; two epochs."""
    torch.manual_seed(seed)
    model = instantiate(cfg.model, vocab_size=vocab_size, num_classes=2, _recursive_=False).model
    sub = [dataset[i] for i in idx]
    flat = torch.cat([ids for ids, _ in sub])
    model.load_nb_ratios(*nb_log_count_ratios(flat, dataset.lengths[idx], dataset.labels[idx], vocab_size,
                                              cfg.model.bigram_buckets, cfg.model.nb_alpha))
    opt = LazyAdam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2)
    order = torch.Generator().manual_seed(seed)
    for _ in range(2):
        model.train()
        for ids, _, lengths, y in batches(dataset, idx, 32, order):
            loss = nn.functional.binary_cross_entropy_with_logits(model(ids, lengths), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        schedule.step()
    return model.eval()


@torch.no_grad()
def token_scores(model, dataset) -> tuple[torch.Tensor, float]:
    """c_t = w . x_t of every token of ``dataset`` (laid end to end) and the head's bias."""
    flat, buckets = dataset.flat, model.bigrams.num_embeddings
    prev, w, c = previous_ids(flat, torch.as_tensor(dataset.lengths)), model.head.weight[0], torch.empty(len(flat))
    for start in range(0, len(flat), 1 << 20):
        ids = flat[start:start + (1 << 20)]
        rows = pair_rows(prev[start:start + (1 << 20)], ids, buckets)
        x = model.embedding(ids) * model.word_scale[ids, None] + model.bigrams(rows) * model.pair_scale[rows, None]
        c[start:start + len(ids)] = x @ w
    return c, float(model.head.bias[0])


def bag_accuracy(dataset, c: torch.Tensor, bias: float) -> float:
    lengths = torch.as_tensor(dataset.lengths)
    z = torch.zeros(len(lengths)).index_add_(0, torch.repeat_interleave(torch.arange(len(lengths)), lengths), c)
    return float(((z / lengths.clamp(min=1).sqrt() + bias > 0).float() == dataset.labels).float().mean())


def crossfit_scores(cfg, data, vocab_size: int, folds: int) -> dict:
    """Stage 1: out-of-fold scores for the training split, the K bags' mean for validation and test."""
    train = data["train"]
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(1)).numpy()
    parts = np.array_split(perm, folds)
    out = {"train": (torch.empty(len(train.flat)), 0.0)}
    out.update({s: (torch.zeros(len(data[s].flat)), 0.0) for s in ("val", "test")})
    for k in range(folds):
        start = time.time()
        model = train_bag(cfg, train, np.sort(np.concatenate(parts[:k] + parts[k + 1:])), vocab_size, seed=42 + k)
        c, bias = token_scores(model, train)
        for i in parts[k]:
            span = slice(train.offsets[i], train.offsets[i + 1])
            out["train"][0][span] = c[span]
        out["train"] = (out["train"][0], out["train"][1] + bias / folds)
        for s in ("val", "test"):
            cs, bs = token_scores(model, data[s])
            out[s] = (out[s][0] + cs / folds, out[s][1] + bs / folds)
            if s == "val":
                val_acc = bag_accuracy(data[s], cs, bs)
        print(f"bag {k}: val {val_acc:.4f} ({time.time() - start:.0f} s)", flush=True)
    for s in ("train", "val", "test"):
        print(f"bags' scores ({'out of fold' if s == 'train' else 'mean of the bags'}): {s} acc "
              f"{bag_accuracy(data[s], *out[s]):.4f}", flush=True)
    return out


class ScoreReader(nn.Module):
    """Stage 2: the bag's logit, reweighted per token and corrected by a bidirectional recurrent layer over
    (c_t, word)."""

    def __init__(self, bias: float, hidden: int, words: int, cell: str):
        super().__init__()
        self.words = nn.Embedding(words, 16, padding_idx=0)
        nn.init.uniform_(self.words.weight, -0.05, 0.05)
        if cell == "none":  # each step's features from its own input only
            self.rnn = nn.Sequential(nn.Linear(17, 2 * hidden), nn.Tanh())
        else:
            self.rnn = build_cell(cell, 17, hidden, batch_first=True, bidirectional=True)
        self.weight = nn.Linear(2 * hidden, 1)
        self.head = nn.Linear(4 * hidden, 1)
        for layer in (self.weight, self.head):  # zero: the model starts as the bag
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.bias = nn.Parameter(torch.tensor(bias))
        self.dropout = nn.Dropout(0.5)

    def forward(self, ids, c, lengths):
        u = torch.cat([c.unsqueeze(-1), self.words(ids.masked_fill(ids >= self.words.num_embeddings, 1))], -1)
        h = self.rnn(u) if isinstance(self.rnn, nn.Sequential) else run_encoder(self.rnn, u, lengths)
        mask = (torch.arange(ids.size(1)) < lengths[:, None]).float()
        weight = 1 + torch.tanh(self.weight(h)).squeeze(-1)
        z = (weight * c * mask).sum(1) / lengths.float().sqrt() + self.bias
        pooled = torch.cat([(h * mask[..., None]).sum(1) / lengths[:, None].float(),
                            h.masked_fill(mask[..., None] == 0, -1e4).amax(1)], 1)
        return z + self.head(self.dropout(pooled)).squeeze(-1)


@torch.no_grad()
def evaluate(model, dataset, scores) -> tuple[float, float]:
    model.eval()
    right, loss = 0, 0.0
    for ids, c, lengths, y in batches(dataset, np.arange(len(dataset)), 256, scores=scores):
        z = model(ids, c, lengths)
        right += int(((z > 0).float() == y).sum())
        loss += float(nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum"))
    return right / len(dataset), loss / len(dataset)


def train_reader(data, scores, args) -> None:
    torch.manual_seed(args.seed)
    model = ScoreReader(scores["val"][1], args.hidden, args.words, args.cell)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    order, best = torch.Generator().manual_seed(args.seed), (-1.0, None, -1)
    print("start: val acc %.4f, loss %.4f" % evaluate(model, data["val"], scores["val"][0]), flush=True)
    train = data["train"]
    for epoch in range(args.epochs):
        model.train()
        start, right = time.time(), 0
        for ids, c, lengths, y in batches(train, np.arange(len(train)), 32, order, scores["train"][0]):
            z = model(ids, c, lengths)
            loss = nn.functional.binary_cross_entropy_with_logits(z, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            right += int(((z > 0).float() == y).sum())
        schedule.step()
        acc, val_loss = evaluate(model, data["val"], scores["val"][0])
        print(f"epoch {epoch + 1}: train acc {right / len(train):.4f}, val acc {acc:.4f}, loss {val_loss:.4f} "
              f"({time.time() - start:.0f} s)", flush=True)
        if acc > best[0]:
            best = (acc, copy.deepcopy(model.state_dict()), epoch + 1)
    model.load_state_dict(best[1])
    print("test (epoch %d): acc %.4f, loss %.4f" % ((best[2],) + evaluate(model, data["test"], scores["test"][0])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scores", type=Path, required=True, help="stage 1's scores: read if present, else written")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cell", choices=[*CELLS, "none"], default="torch_gru",
                        help="the recurrent layer of stage 2 (none: a per-step layer, the control)")
    parser.add_argument("--hidden", type=int, default=64, help="GRU units per direction")
    parser.add_argument("--words", type=int, default=5000, help="words with a vector of their own in stage 2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="stage 2's initial weights, batch order and dropout")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides of the bags' config (e.g. data.seed=1)")
    args = parser.parse_args()
    if args.folds < 2:
        parser.error(f"--folds must be >= 2 (each bag leaves one fold out): got {args.folds}")
    with initialize_config_module(version_base="1.3", config_module="rnnlab.conf"):
        cfg = compose(config_name="train", overrides=BAG + args.overrides)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    data = {s: datamodule.datasets[s] for s in ("train", "val", "test")}
    made_by = {"overrides": BAG + args.overrides, "folds": args.folds,
               "tokens": {s: len(data[s].flat) for s in ("train", "val", "test")}}
    if args.scores.exists():
        scores = torch.load(args.scores)
        if scores.get("made_by") != made_by:
            parser.error(f"--scores {args.scores} holds scores made with other settings ({scores.get('made_by')}), "
                         f"not {made_by}: give another --scores path to make new ones, or run with the settings "
                         f"they were made with")
    else:
        scores = crossfit_scores(cfg, data, datamodule.vectorizer.vocab_size, args.folds)
        torch.save({**scores, "made_by": made_by}, args.scores)
    train_reader(data, scores, args)


if __name__ == "__main__":
    main()

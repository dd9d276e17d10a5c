"""Length-bucketed batches and dynamic padding."""

import numpy as np
import torch

from rnnlab.data.batching import BucketBatchSampler, RaggedDataset, collate, padding_stats


def lengths_like_imdb(n, seed=0):
    return np.random.default_rng(seed).lognormal(5.2, 0.7, n).astype(np.int64)


def test_every_index_once_per_epoch_seeded_and_reshuffled_each_epoch():
    lengths = lengths_like_imdb(1000)
    s = BucketBatchSampler(lengths, batch_size=32, bucket_batches=5, seed=3)
    e0, e1 = list(s), list(s)  # the internal epoch counter advances
    for epoch in (e0, e1):
        assert sorted(i for b in epoch for i in b) == list(range(1000))
        assert len(epoch) == len(s) == 32
    assert e0 != e1
    s2 = BucketBatchSampler(lengths, batch_size=32, bucket_batches=5, seed=3)
    s2.set_epoch(1)
    assert list(s2) == e1 and list(s2) == e1  # set_epoch pins the epoch


def test_batches_are_near_uniform_in_length_and_save_padding():
    lengths = lengths_like_imdb(5000)
    bucketed = BucketBatchSampler(lengths, batch_size=32).batches(0)
    rng = np.random.default_rng(0)
    plain = np.array_split(rng.permutation(5000), -(-5000 // 32))
    saved = padding_stats(lengths, bucketed)["padding_fraction"]
    random_batches = padding_stats(lengths, plain)["padding_fraction"]
    assert random_batches > 0.3 and saved < 0.15 and saved < random_batches / 4


def test_no_shuffle_is_deterministic_and_drop_last():
    lengths = np.arange(1, 101)
    s = BucketBatchSampler(lengths, batch_size=8, shuffle=False, drop_last=True)
    assert list(s) == list(s) and len(list(s)) == len(s) == 12
    assert all(len(b) == 8 for b in s)


def test_collate_pads_per_batch_and_gives_empty_sequences_length_one():
    ds = RaggedDataset(np.array([5, 6, 7, 8, 9]), np.array([3, 0, 2]), np.array([1, 0, 1]))
    ids, lengths, labels = collate([ds[0], ds[1], ds[2]])
    assert ids.tolist() == [[5, 6, 7], [0, 0, 0], [8, 9, 0]]
    assert ids.dtype == lengths.dtype == torch.long
    assert lengths.tolist() == [3, 1, 2]  # the empty review: one padding token, length 1
    assert labels.dtype == torch.float32 and labels.tolist() == [1.0, 0.0, 1.0]
    ids, lengths, _ = collate([ds[0], ds[2]], pad_to=5)
    assert ids.shape == (2, 5) and lengths.tolist() == [3, 2]


def test_ranks_split_one_batch_order_without_overlap():
    lengths = lengths_like_imdb(1000)
    ranks = [BucketBatchSampler(lengths, batch_size=10, seed=5, num_replicas=3, rank=r) for r in range(3)]
    for s in ranks:
        s.set_epoch(2)
    per_rank = [list(s) for s in ranks]
    assert [len(b) for b in per_rank] == [len(s) for s in ranks] == [33, 33, 33]
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen)) == 990  # disjoint; one leftover batch dropped so ranks stay in step
    whole = BucketBatchSampler(lengths, batch_size=10, seed=5).batches(2)
    assert [list(b) for b in per_rank[1]] == [list(b) for b in whole[1::3][:33]]


def test_uneven_ranks_for_evaluation_use_every_batch_exactly_once():
    lengths = lengths_like_imdb(1000)  # 100 batches over 3 ranks: 34, 33, 33
    ranks = [BucketBatchSampler(lengths, batch_size=10, shuffle=False, num_replicas=3, rank=r, even=False)
             for r in range(3)]
    per_rank = [list(s) for s in ranks]
    assert [len(b) for b in per_rank] == [len(s) for s in ranks] == [34, 33, 33]
    seen = sorted(i for batches in per_rank for b in batches for i in b)
    assert seen == list(range(1000))  # every review once: the test accuracy of DDP is the whole test set's


def test_evaluation_order_is_one_seeded_shuffle_of_every_index_the_same_each_epoch():
    lengths = lengths_like_imdb(1000)
    s = BucketBatchSampler(lengths, batch_size=32, shuffle=False, seed=4)
    e0, e1 = list(s), list(s)
    s.set_epoch(7)
    assert e0 == e1 == list(s)  # fixed: every evaluation pass scores the same batches in the same order
    assert sorted(i for b in e0 for i in b) == list(range(1000))  # a permutation: full-set metrics unchanged
    assert e0[0] != sorted(e0[0]) or min(e0[0]) > 0  # not the files' order
    firsts = [min(b) for b in e0[:5]]
    assert max(firsts) > 100  # the first batches come from all over the index range, not its start
    assert list(BucketBatchSampler(lengths, batch_size=32, shuffle=False, seed=5)) != e0  # seeded


def test_collate_rounds_the_batch_length_up_to_a_multiple_capped_at_the_max_length():
    ds = RaggedDataset(np.arange(1, 11), np.array([3, 5, 2]), np.array([1, 0, 1]))
    ids, lengths, _ = collate([ds[0], ds[2]], multiple=4)
    assert ids.shape == (2, 4) and lengths.tolist() == [3, 2]
    assert ids.tolist() == [[1, 2, 3, 0], [9, 10, 0, 0]]
    ids, lengths, _ = collate([ds[0], ds[1]], multiple=4, cap=6)
    assert ids.shape == (2, 6) and lengths.tolist() == [3, 5]  # 8 capped at 6 (reviews are cut at max_length)
    assert collate([ds[0]], multiple=1)[0].shape == (1, 3)


def test_rounded_batch_lengths_take_few_distinct_values():
    lengths = np.minimum(lengths_like_imdb(5000), 600)
    ds = RaggedDataset(np.zeros(int(lengths.sum()), dtype=np.int64), lengths, np.zeros(len(lengths)))
    batches = BucketBatchSampler(lengths, batch_size=32, seed=0).batches(0)
    exact = {collate([ds[i] for i in b])[0].shape[1] for b in batches}
    rounded = {collate([ds[i] for i in b], multiple=32, cap=600)[0].shape[1] for b in batches}
    assert len(exact) > 60 and len(rounded) <= 19 and rounded <= {*range(32, 600, 32), 600}


def test_with_labels_every_evaluation_batch_holds_the_classes_in_proportion_at_little_padding():
    lengths = lengths_like_imdb(2000)
    labels = np.repeat([0, 1], 1000)  # files' order: one class, then the other
    s = BucketBatchSampler(lengths, batch_size=32, shuffle=False, seed=0, labels=labels)
    batches = s.batches(0)
    assert sorted(i for b in batches for i in b) == list(range(2000))
    assert all(13 <= labels[b].sum() <= 19 for b in batches if len(b) == 32)  # 16 of 32, give or take the chunk's mix
    plain = BucketBatchSampler(lengths, batch_size=32, shuffle=False, seed=0).batches(0)
    assert padding_stats(lengths, batches)["padding_fraction"] < 2 * padding_stats(lengths, plain)["padding_fraction"] + 0.02

"""Synthetic long-range tasks: datasets from the seed with closed-form baselines; the task heads train."""
import math

import lightning.pytorch as pl
import pytest
import torch

from rnnlab.data.synthetic import (AddingDataModule, CopyMemoryDataModule, adding_baseline, adding_problem,
                                   copy_baseline, copy_memory)
from rnnlab.models.tasks import TaskModule, TaskNet


def test_the_same_seed_gives_the_same_splits_and_another_seed_other_ones():
    a, b, c = (AddingDataModule(length=20, train_size=30, val_size=10, test_size=10, seed=s) for s in (1, 1, 2))
    for dm in (a, b, c):
        dm.setup("fit")
    for split in ("train", "val", "test"):
        assert all(torch.equal(u, v) for u, v in zip(a.datasets[split].tensors, b.datasets[split].tensors))
    assert not torch.equal(a.datasets["train"].tensors[0], c.datasets["train"].tensors[0])
    assert not torch.equal(a.datasets["train"].tensors[0][:10], a.datasets["val"].tensors[0])


def test_a_splits_samples_do_not_depend_on_the_size_of_another_split():
    small, large = (CopyMemoryDataModule(length=5, train_size=n, val_size=7, test_size=3, seed=0) for n in (10, 50))
    small.setup(), large.setup()
    assert torch.equal(small.datasets["val"].tensors[0], large.datasets["val"].tensors[0])


def test_adding_targets_are_the_sum_of_the_two_marked_values_one_marker_in_each_half():
    x, y = adding_problem(500, 30, torch.Generator().manual_seed(0))
    markers = x[..., 1]
    assert torch.equal(markers[:, :15].sum(1), torch.ones(500)) and torch.equal(markers[:, 15:].sum(1), torch.ones(500))
    torch.testing.assert_close(y, (x[..., 0] * markers).sum(1))


def test_the_adding_baseline_is_one_sixth_and_predicting_one_scores_it():
    assert adding_baseline() == pytest.approx(1 / 6)  # Var(U + U') = 2/12 by hand
    _, y = adding_problem(200_000, 4, torch.Generator().manual_seed(0))
    assert ((y - 1) ** 2).mean().item() == pytest.approx(1 / 6, rel=0.01)


def test_copy_memory_layout_and_the_memoryless_baseline_scores_10_log8_over_T_plus_20():
    T = 7
    x, y = copy_memory(1000, T, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (1000, T + 20)
    assert ((x[:, :10] >= 1) & (x[:, :10] <= 8)).all() and (x[:, 10:T + 9] == 0).all() and (x[:, T + 9] == 9).all()
    assert (x[:, T + 10:] == 0).all() and (y[:, :T + 10] == 0).all() and torch.equal(y[:, -10:], x[:, :10])
    # the memoryless strategy: blank with certainty for T + 10 steps, uniform over the 8 symbols for the last 10
    logits = torch.full((1000, T + 20, 10), -1e9)
    logits[:, :T + 10, 0] = 0
    logits[:, T + 10:, 1:9] = 0
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
    assert loss.item() == pytest.approx(copy_baseline(T), rel=1e-6)
    assert copy_baseline(100) == pytest.approx(10 * math.log(8) / 120)


def test_a_length_that_is_too_short_names_the_setting():
    with pytest.raises(ValueError, match=r"`data.length` must be >= 2"):
        AddingDataModule(length=1)
    with pytest.raises(ValueError, match=r"`data.batch_size` must be an integer >= 1: got 0"):
        CopyMemoryDataModule(batch_size=0)


@pytest.mark.parametrize("module", [AddingDataModule, CopyMemoryDataModule])
def test_a_length_whose_samples_cannot_fit_in_memory_is_refused_before_anything_is_allocated(module, monkeypatch):
    from rnnlab.data import synthetic

    monkeypatch.setattr(synthetic.torch, "rand", lambda *a, **k: pytest.fail("allocated"))
    with pytest.raises(ValueError, match=r"`data.length` must leave the 8000 samples of data.train_size \+ val_size "
                                         r"\+ test_size room in memory: expected data.length <= [0-9]+ here, got "
                                         r"10000000, whose samples need 1192\.[0-9] GiB to generate"):
        module(length=10**7)
    monkeypatch.setattr(synthetic, "available_memory", lambda: 16 * 8000 * 1000)  # exactly T = 1000 steps
    fits = 1000 - (20 if module is CopyMemoryDataModule else 0)  # copy memory's samples are T + 20 steps
    assert module(length=fits).length == fits
    with pytest.raises(ValueError, match=rf"expected data.length <= {fits} here"):
        module(length=1001)


def test_the_datamodules_expose_what_train_reads():
    adding, copy = AddingDataModule(length=10), CopyMemoryDataModule(length=10)
    assert (adding.vectorizer.vocab_size, adding.num_classes) == (2, 1)
    assert (copy.vectorizer.vocab_size, copy.num_classes) == (10, 10)
    assert '"adding"' in adding.vectorizer.to_json()
    assert copy.baseline_loss == pytest.approx(copy_baseline(10))


def test_task_heads_give_one_value_per_sequence_or_logits_per_step():
    assert TaskNet(2, 1, "last", "lstm", 4)(torch.rand(3, 6, 2)).shape == (3,)
    assert TaskNet(10, 10, "per_step", "gru", 4, embedding_dim=5)(torch.randint(0, 10, (3, 6))).shape == (3, 6, 10)
    with pytest.raises(ValueError, match="`model.head` must be one of"):
        TaskNet(2, 1, "first")


@pytest.mark.parametrize("task", ["adding", "copy"])
def test_each_head_trains_a_few_steps_and_lowers_its_loss(task, one_thread):
    pl.seed_everything(0)
    if task == "adding":
        dm = AddingDataModule(length=8, train_size=200, val_size=50, test_size=50, batch_size=20)
        module = TaskModule(2, 1, head="last", cell="gru", hidden_size=16, optimizer={
            "_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-2})
    else:
        dm = CopyMemoryDataModule(length=3, train_size=200, val_size=50, test_size=50, batch_size=20)
        module = TaskModule(10, 10, head="per_step", cell="lstm", hidden_size=16, embedding_dim=8, optimizer={
            "_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-2})
    dm.setup()
    x, y = dm.datasets["val"].tensors
    before = module.batch_loss((x, y)).item()
    trainer = pl.Trainer(max_steps=30, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    assert module.batch_loss((x, y)).item() < before
    results = trainer.test(module, datamodule=dm, verbose=False)[0]
    assert results["test/baseline_loss"] == pytest.approx(dm.baseline_loss)
    assert results["test/loss_vs_baseline"] == pytest.approx(results["test/loss"] / dm.baseline_loss, rel=1e-5)


def test_a_nan_loss_stops_training_cleanly_and_records_the_step(one_thread):
    dm = AddingDataModule(length=5, train_size=100, val_size=20, test_size=20, batch_size=10)
    module = TaskModule(2, 1, cell="rnn", hidden_size=4)
    with torch.no_grad():
        module.model.head.bias.fill_(float("nan"))
    trainer = pl.Trainer(max_steps=20, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    w_hh = module.model.encoder.weight_hh_l0.detach().clone()
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step <= 1 and trainer.callback_metrics["train/diverged_step"] == 0  # stopped at once
    assert torch.equal(module.model.encoder.weight_hh_l0, w_hh)  # and no update from NaN gradients


def test_the_resumable_training_order_is_the_plain_seeded_dataloaders_even_after_an_unused_iter():
    # Lightning calls iter() once on a loader that is not a DataLoader, to check it; that must draw nothing, so that
    # the epochs' orders (and the runs made before SeededShuffle) stay those of DataLoader(shuffle=True, generator)
    from torch.utils.data import DataLoader, TensorDataset

    from rnnlab.data.synthetic import SeededShuffle

    data = TensorDataset(torch.arange(20))

    def loader():
        return DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(3))

    plain, resumable = loader(), SeededShuffle(loader())
    iter(resumable)  # the probe
    assert [[b[0].tolist() for b in plain] for _ in range(3)] == [[b[0].tolist() for b in resumable] for _ in range(3)]

"""The probe batch: fixed validation sequences recorded without touching training; heatmap axes fit the data."""
import re

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from rnnlab.data.synthetic import AddingDataModule
from rnnlab.diagnostics import TimestepGradNorms
from rnnlab.diagnostics.callback import probe_batch
from rnnlab.diagnostics.plots import heatmap_figure
from rnnlab.models.tasks import TaskModule


class DropoutTask(TaskModule):
    """A task module that draws dropout masks in training, so a probe that consumed the RNG would change it."""

    def forward(self, x):
        return self.model(torch.nn.functional.dropout(x, 0.3, self.training))


def _fit(probe: int, root):
    pl.seed_everything(0)
    dm = AddingDataModule(length=12, train_size=60, val_size=20, test_size=10, batch_size=10)
    module = DropoutTask(2, 1, cell="lstm", hidden_size=8)
    callback = TimestepGradNorms(every_n_steps=2, probe=probe, decay_steps=(1, 5))
    trainer = pl.Trainer(max_steps=9, logger=False, default_root_dir=root, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, callbacks=[callback])
    trainer.fit(module, datamodule=dm)
    trainer.rng_after = torch.get_rng_state()
    return module, trainer, callback


def test_the_probe_leaves_weights_metrics_and_random_numbers_unchanged(one_thread, tmp_path):
    off_module, off_trainer, _ = _fit(0, tmp_path / "off")
    on_module, on_trainer, callback = _fit(4, tmp_path / "on")
    for (name, a), (_, b) in zip(off_module.state_dict().items(), on_module.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(off_trainer.callback_metrics["train/loss"], on_trainer.callback_metrics["train/loss"])
    assert torch.equal(off_trainer.rng_after, on_trainer.rng_after)  # the probe drew no random number
    assert [r["step"] for r in callback.probe_records] == [0, 2, 4, 6, 8]
    assert all(r["curves"]["dh/l0"]["end"].shape == (12,) for r in callback.probe_records)
    assert set(callback.probe_records[0]["jacobian"]) == {"l0"} and callback.probe_records[0]["w_hh_norm"]["l0"] > 0


def test_the_probe_is_the_same_sequences_every_time_and_the_training_batches_still_recorded(one_thread, tmp_path):
    _, _, callback = _fit(3, tmp_path)
    assert (tmp_path / "grad_t_probe.pt").exists()
    assert len(callback.records) == 5  # the training batches' curves as before
    # identical inputs: the first probe's curve is what the untrained weights give, and later ones change by training
    first, last = callback.probe_records[0]["curves"]["dx"]["end"], callback.probe_records[-1]["curves"]["dx"]["end"]
    assert first.shape == last.shape == (12,) and not torch.equal(first, last)


def test_without_a_probe_batch_method_the_probe_takes_the_longest_validation_sequences():
    class Texts:
        def val_dataloader(self):
            for lengths in ([3, 7, 2], [9, 1, 5]):
                ids = torch.zeros(3, max(lengths), dtype=torch.long)
                for i, n in enumerate(lengths):
                    ids[i, :n] = n  # each token is its sequence's length
                yield ids, torch.tensor(lengths), torch.tensor(lengths)

    ids, lengths, y = probe_batch(Texts(), 3)
    assert lengths.tolist() == [9, 7, 5] and y.tolist() == [9, 7, 5] and ids.shape == (3, 9)
    assert ids[1].tolist() == [7] * 7 + [0, 0]


@pytest.mark.parametrize("probe", [-1, "abc", 1.5, True])
def test_a_probe_that_is_not_a_count_names_the_setting(probe):
    with pytest.raises(ValueError, match=rf"`diagnostics.probe` must be an integer >= 0 .*: expected e\.g\. "
                                         rf"diagnostics\.probe=16, got {re.escape(repr(probe))}"):
        TimestepGradNorms(probe=probe)


def test_a_probe_larger_than_the_validation_set_warns_that_all_of_it_is_probed():
    dm = AddingDataModule(length=4, train_size=4, val_size=20, test_size=4)
    with pytest.warns(UserWarning, match=r"diagnostics\.probe=5000 asks for more sequences than the validation set "
                                         r"has \(20\): all 20 are probed"):
        x, _ = probe_batch(dm, 5000)
    assert len(x) == 20


def test_the_heatmap_x_axis_ends_with_the_longest_sequence_not_at_max_width():
    rows = [(s, torch.logspace(0, -6, 600)) for s in (0, 50)]
    fig = heatmap_figure({"dh/l0": rows}, max_width=1000)
    assert fig.axes[0].get_xlim()[1] == pytest.approx(599.5)
    image = fig.axes[0].images[0]
    low, high = image.get_clim()
    assert high - low > 5  # the colour range spans the six decades of the decay, not one colour


def test_the_profile_of_an_exploded_step_whose_norms_are_all_inf_or_nan_still_draws():
    from rnnlab.diagnostics.plots import figure_to_array, profile_figure

    bad = torch.tensor([float("inf"), float("nan"), 0.0])
    image = figure_to_array(profile_figure({"dh/l0": {"start": bad, "end": bad}, "dx": {"start": bad, "end": bad}}))
    assert image.ndim == 3 and image.shape[-1] == 3


def test_every_recorded_step_logs_the_spectral_norm_of_w_hh_even_without_a_probe(one_thread, tmp_path):
    from lightning.pytorch.loggers.logger import Logger

    class Capture(Logger):
        name, version = "capture", 0
        logged: list = []

        def log_hyperparams(self, params, *args, **kwargs):
            pass

        def log_metrics(self, metrics, step=None):
            self.logged.append((step, dict(metrics)))

    pl.seed_everything(0)
    dm = AddingDataModule(length=6, train_size=40, val_size=10, test_size=10, batch_size=10)
    module = TaskModule(2, 1, cell="gru", hidden_size=4, recurrent_init="orthogonal", recurrent_scale=0.5)
    logger = Capture()
    trainer = pl.Trainer(max_steps=3, logger=logger, default_root_dir=tmp_path, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[TimestepGradNorms(every_n_steps=2, save_curves=False)])
    trainer.fit(module, datamodule=dm)
    norms = [(step, m["jacobian/l0/w_hh_norm"]) for step, m in logger.logged if "jacobian/l0/w_hh_norm" in m]
    assert [step for step, _ in norms] == [0, 2]
    assert norms[0][1] == pytest.approx(0.5 * 3 ** 0.5, rel=1e-5)  # 3 orthogonal gate blocks of radius 0.5 stacked

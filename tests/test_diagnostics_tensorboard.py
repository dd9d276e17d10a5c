"""A tiny Trainer run with the diagnostics callbacks; TensorBoard event files read back with TensorBoard's reader."""

import importlib.util
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import grad_norm
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from torch import nn
from torch.utils.data import DataLoader

from rnnlab.diagnostics import GradClipStats, LogHParams, TimestepGradNorms
from rnnlab.nn import LSTM

ROOT = Path(__file__).resolve().parents[1]
VOCAB, T, BATCH, STEPS = 30, 24, 8, 4
CLIP = 0.05  # small enough that most steps clip


class Classifier(pl.LightningModule):
    """Embedding -> encoder -> last state -> linear; batches are (ids (B, L), lengths (B,), labels (B,))."""

    def __init__(self, cell: str = "lstm"):
        super().__init__()
        self.save_hyperparameters()
        self.model = nn.Module()
        self.model.embedding = nn.Embedding(VOCAB, 8, padding_idx=0)
        if cell == "lstm":
            self.model.encoder = LSTM(8, 6, batch_first=True, bidirectional=True)
        else:
            self.model.encoder = nn.LSTM(8, 6, batch_first=True, bidirectional=True)
        self.model.head = nn.Linear(12, 1)

    def training_step(self, batch, batch_idx):
        ids, lengths, labels = batch
        x = self.model.embedding(ids)  # (B, L, 8)
        if self.hparams.cell == "lstm":
            _, (h_n, _) = self.model.encoder(x, lengths=lengths)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            _, (h_n, _) = self.model.encoder(packed)
        logits = self.model.head(torch.cat([h_n[0], h_n[1]], -1)).squeeze(-1)  # (B,)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class ReferenceNorms(pl.Callback):
    """Lightning's own grad_norm total, pre-clip, to compare with GradClipStats."""

    def __init__(self):
        self.totals = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.totals.append(grad_norm(pl_module, 2)["grad_2.0_norm_total"].item())


def _batches():
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(STEPS):
        lengths = torch.randint(3, T + 1, (BATCH,), generator=g)
        lengths[0] = T
        ids = torch.randint(1, VOCAB, (BATCH, T), generator=g) * (torch.arange(T) < lengths[:, None])
        out.append((ids, lengths, torch.randint(0, 2, (BATCH,), generator=g).float()))
    return out


def _fit(tmp_path, cell="lstm", every_n_steps=1, clip=CLIP, log_every_n_steps=1):
    torch.manual_seed(0)
    logger = TensorBoardLogger(tmp_path, name="run", default_hp_metric=False)
    reference = ReferenceNorms()
    trainer = pl.Trainer(
        max_epochs=1, logger=logger, log_every_n_steps=log_every_n_steps, gradient_clip_val=clip, accelerator="cpu",
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[
            TimestepGradNorms(every_n_steps=every_n_steps, decay_steps=(2, 10, 400), figures_every=3),
            GradClipStats(), reference, LogHParams(metrics=("train/loss",)),
        ],
    )
    trainer.fit(Classifier(cell), train_dataloaders=DataLoader(_batches(), batch_size=None))
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    return trainer, events, reference, Path(logger.log_dir)


def _scalars(events, tag):
    return {e.step: e.value for e in events.Scalars(tag)}


def test_event_file_has_scalar_image_figure_and_hparams_tags(tmp_path):
    trainer, events, reference, log_dir = _fit(tmp_path)
    tags = events.Tags()
    assert {"grad_t/profile", "grad_t/heatmap"} <= set(tags["images"])
    # recorded on steps 0..3; figures on every 3rd recorded step (0, 3) and at the end (3)
    for tag in ("grad_t/profile", "grad_t/heatmap"):
        assert [e.step for e in events.Images(tag)] == [0, 3]
    for series in ("dx", "dh/l0", "dh/l0_reverse"):
        decay = _scalars(events, f"grad_t/{series}/decay_2")
        assert sorted(decay) == [0, 1, 2, 3] and all(0 < v < math.inf for v in decay.values())
    assert sorted(_scalars(events, "grad_t/decay_10")) == [0, 1, 2, 3]
    assert "grad_t/decay_400" not in tags["scalars"]  # no sequence is 400 long: skipped, not NaN or a placeholder
    # HParams: the session declares the diagnostics' keys as metrics, and the clip value as a hyperparameter
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    declared = {m.name.tag for m in experiment.metric_infos}
    assert {"train/loss", "grad_t/decay_2", "grad_t/decay_10", "grad/clipped_fraction"} <= declared
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["trainer/gradient_clip_val"].number_value == pytest.approx(CLIP)
    assert session.hparams["cell"].string_value == "lstm"
    # the curves are saved for offline plots
    records = torch.load(log_dir / "grad_t.pt")
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert set(records[0]["curves"]) == {"dx", "dh/l0", "dh/l0_reverse"}


def test_clipping_stats_before_after_and_fraction(tmp_path):
    _, events, reference, _ = _fit(tmp_path, every_n_steps=0)
    before, after = _scalars(events, "grad/norm_before_clip"), _scalars(events, "grad/norm_after_clip")
    assert len(before) == len(after) == STEPS
    # pre-clip total is Lightning's grad_norm total
    assert [before[s] for s in sorted(before)] == pytest.approx(reference.totals, rel=1e-5)
    for s in before:
        assert after[s] <= CLIP * (1 + 1e-4)  # clipped to the threshold ...
        assert after[s] == pytest.approx(min(before[s], CLIP), rel=1e-3)  # ... and only when above it
    expected_fraction = sum(v > CLIP for v in before.values()) / STEPS
    assert 0 < expected_fraction
    (fraction,) = _scalars(events, "grad/clipped_fraction").values()
    assert fraction == pytest.approx(expected_fraction)
    layers = {t for t in events.Tags()["scalars"] if t.startswith("grad/norm_layer/")}
    assert layers == {f"grad/norm_layer/{g}" for g in ("embedding", "encoder.l0", "encoder.l0_reverse", "head")}
    # every_n_steps=0: no per-timestep diagnostics at all
    assert not any(t.startswith("grad_t/") for t in events.Tags()["scalars"] + events.Tags()["images"])


def test_torch_baseline_gets_dx_only_and_offline_plot_script_writes_pngs(tmp_path):
    _, events, _, log_dir = _fit(tmp_path, cell="torch_lstm", every_n_steps=2, clip=0, log_every_n_steps=2)
    assert sorted(_scalars(events, "grad_t/decay_2")) == [0, 2]
    # norms are computed only on the steps Lightning writes, and all of those are written
    assert sorted(_scalars(events, "grad/norm_before_clip")) == sorted(_scalars(events, "train/loss")) == [1, 3]
    assert not any(t.startswith("grad_t/dh/") for t in events.Tags()["scalars"])
    assert set(_scalars(events, "grad/clipped_fraction").values()) == {0.0}  # no clipping configured
    spec = importlib.util.spec_from_file_location("plot_grad_norms", ROOT / "scripts" / "plot_grad_norms.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for source, out in ((log_dir / "grad_t.pt", tmp_path / "from_pt.png"), (log_dir, tmp_path / "from_events.png")):
        script.main([str(source), "-o", str(out)])
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

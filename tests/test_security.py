"""A checkpoint is data, never code: files from elsewhere are refused, with one line, before anything in them runs.

Each payload here is real: it would create its marker file if rnnlab ran it (docs/security.md).
"""
import os
import re
import shlex
from pathlib import Path

import pytest
import torch
from helpers import cli

from rnnlab.models.module import load_module
from rnnlab.training.checkpointing import AtomicCheckpointIO, read_checkpoint
from rnnlab.security import TRUSTED_TARGETS, check_targets, config_targets

pytestmark = pytest.mark.usefixtures("one_thread")


class RunsCode:
    """Pickles as a call of ``os.system``: loading it with plain pickle (``weights_only=False``) runs the command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.fixture
def pickled_call(text_ckpt, tmp_path):
    """A real checkpoint with one more entry, a pickled ``os.system("touch PWNED")``; and the marker's path."""
    checkpoint = torch.load(text_ckpt, weights_only=True)
    checkpoint["rnnlab"]["note"] = RunsCode(tmp_path / "PWNED")
    torch.save(checkpoint, tmp_path / "shared.ckpt")
    return tmp_path / "shared.ckpt", tmp_path / "PWNED"


@pytest.fixture
def config_call(text_ckpt, tmp_path):
    """A pickle-free checkpoint whose saved data config has Hydra call ``numpy.savetxt`` (it writes a file); and the
    path of that file."""
    checkpoint = torch.load(text_ckpt, weights_only=True)
    written = tmp_path / "x.sh"
    checkpoint["rnnlab"]["config"]["data"]["embeddings"] = {"_target_": "numpy.savetxt", "fname": str(written),
                                                            "X": [[1.0]]}
    torch.save(checkpoint, tmp_path / "shared.ckpt")
    return tmp_path / "shared.ckpt", written


LOADERS = {  # what predict and evaluate load with; what a resume reads first; what Lightning resumes through
    "load_module": load_module, "read_checkpoint": read_checkpoint,
    "AtomicCheckpointIO": lambda path: AtomicCheckpointIO().load_checkpoint(path)}


@pytest.mark.parametrize("loader", LOADERS)
def test_a_checkpoint_holding_a_pickled_call_is_refused_by_every_loader_naming_it_and_never_runs(pickled_call, loader):
    path, marker = pickled_call
    with pytest.raises(ValueError, match=r"checkpoint .*shared\.ckpt must hold only tensors and plain values .*"
                                         r"would import posix\.system when loaded; refused"):
        LOADERS[loader](path)
    assert not marker.exists()


def commands(path, run):
    return {"rnnlab.predict": [f"ckpt={path}", "text=a great film"],
            "rnnlab.evaluate": [f"ckpt={path}", "split=val"],
            "rnnlab.train": [f"ckpt_path={path}", f"hydra.run.dir={run}"]}


@pytest.mark.parametrize("module", ["rnnlab.predict", pytest.param("rnnlab.evaluate", marks=pytest.mark.slow),
                                    pytest.param("rnnlab.train", marks=pytest.mark.slow)])
def test_from_the_command_line_a_pickled_call_is_one_error_line_and_exit_2_and_never_runs(pickled_call, tmp_path,
                                                                                           module):
    path, marker = pickled_call
    run = cli(tmp_path, module, *commands(path, tmp_path / "run")[module])
    assert run.returncode == 2, run.stderr[-3000:]
    assert run.stderr.startswith("error: checkpoint ") and len(run.stderr.strip().splitlines()) == 1
    assert "posix.system" in run.stderr and not marker.exists() and run.stdout == ""


def test_a_saved_config_naming_a_foreign_target_is_refused_before_anything_is_instantiated(config_call):
    path, written = config_call
    with pytest.raises(ValueError, match=r"data\.embeddings\._target_ of checkpoint .*shared\.ckpt must name a class "
                                         r"of rnnlab's own configs: .*got 'numpy\.savetxt'; refused"):
        load_module(path)
    assert not written.exists()


def test_a_resume_trusts_the_classes_its_own_command_line_names_and_predict_checks_only_what_it_builds(text_ckpt,
                                                                                                       tmp_path):
    checkpoint = torch.load(text_ckpt, weights_only=True)
    config = checkpoint["rnnlab"]["config"]
    config["callbacks"]["mine"] = {"_target_": "mypkg.MyCallback"}  # an experiment's own callback
    with pytest.raises(ValueError, match=r"^callbacks\.mine\._target_ of a resume .* got 'mypkg\.MyCallback'"):
        check_targets(config, "a resume")
    check_targets(config, "a resume", trusted=config_targets({"callbacks": {"mine": {"_target_": "mypkg.MyCallback"}}}))
    torch.save(checkpoint, tmp_path / "own.ckpt")
    assert load_module(tmp_path / "own.ckpt").vocabulary is not None  # predict and evaluate build no callback


@pytest.mark.slow
def test_a_resume_of_a_checkpoint_whose_data_config_calls_numpy_savetxt_is_one_line_and_exit_2(config_call,
                                                                                                 tmp_path):
    path, written = config_call
    run = cli(tmp_path, "rnnlab.train", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert run.returncode == 2 and not written.exists(), run.stderr[-3000:]
    assert run.stderr.startswith("error: ") and len(run.stderr.strip().splitlines()) == 1
    assert "data.embeddings" in run.stderr and "numpy.savetxt" in run.stderr


@pytest.mark.slow
def test_evaluate_refuses_a_saved_data_config_that_calls_numpy_savetxt_in_one_line_with_exit_2(config_call, tmp_path):
    path, written = config_call
    run = cli(tmp_path, "rnnlab.evaluate", f"ckpt={path}", "split=val")
    assert run.returncode == 2 and not written.exists(), run.stderr[-3000:]
    one_line = r"error: data\.embeddings\._target_ of checkpoint \S+ must name [^\n]*'numpy\.savetxt'[^\n]*\n"
    assert re.fullmatch(one_line, run.stderr)


def test_a_foreign_target_is_found_at_any_depth_and_named_by_its_key():
    check_targets({"data": {"_target_": "rnnlab.data.datamodule.IMDBDataModule", "root": None}}, "a config")
    with pytest.raises(ValueError, match=r"^data\.bags\.1\.root\._target_ of a config must name .*got 'os\.system'"):
        check_targets({"data": {"bags": [{}, {"root": {"_target_": "os.system", "_args_": ["true"]}}]}}, "a config")


def test_every_target_of_the_shipped_configs_is_trusted_and_nothing_else():
    conf = Path(__file__).parents[1] / "conf"
    named = {m for f in conf.rglob("*.yaml") for m in re.findall(r"_target_:\s*([\w.]+)", f.read_text())}
    from rnnlab.models.config import ModelConfig, ReaderConfig, TaskConfig
    from rnnlab.schema import TrainerConfig

    named |= {schema._target_ for schema in (ModelConfig, TaskConfig, ReaderConfig, TrainerConfig)}
    assert named == TRUSTED_TARGETS


def test_every_real_checkpoint_loads_weights_only(text_ckpt):
    assert torch.load(text_ckpt, weights_only=True)["state_dict"]
    assert load_module(text_ckpt).vocabulary is not None


def test_a_checkpoint_written_before_the_classes_moved_names_them_at_their_present_places(tmp_path):
    from rnnlab.training.checkpointing import data_record, read_checkpoint

    old = {"data": {"_target_": "rnnlab.data.crossfit.CrossFitDataModule", "bags": "b"},
           "callbacks": {"timer": {"_target_": "rnnlab.models.callbacks.EpochTimer"},
                         "best": {"_target_": "rnnlab.models.checkpointing.RunCheckpoint"}},
           "trainer": {"plugins": [{"_target_": "rnnlab.models.checkpointing.AtomicCheckpointIO"}]}}
    torch.save({"rnnlab": {"config": old}}, tmp_path / "old.ckpt")
    config = read_checkpoint(tmp_path / "old.ckpt")["rnnlab"]["config"]
    assert config["data"]["_target_"] == "rnnlab.models.crossfit.CrossFitDataModule"
    assert config["callbacks"]["timer"]["_target_"] == "rnnlab.training.callbacks.EpochTimer"
    assert config["trainer"]["plugins"][0]["_target_"] == "rnnlab.training.checkpointing.AtomicCheckpointIO"
    check_targets(config, "old.ckpt")  # every class it names is trusted where it is now
    assert data_record({"rnnlab": {"config": old}})[2]["_target_"] == "rnnlab.models.crossfit.CrossFitDataModule"

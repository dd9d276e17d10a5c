"""model.variant and model.peephole (Greff et al.'s LSTM variants) through the typed schema, the classifier and the
synthetic tasks' model: composed, refused with a one-line error where they mean nothing, and trained in a tiny run."""
import json
import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from rnnlab.models.config import ModelConfig
from rnnlab.models.tasks import TaskModule
from rnnlab.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def composed(*overrides):
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_the_classifier_builds_the_variant_the_config_names():
    cfg = composed("model=lstm", "model.variant=fgr", "model.peephole=true", "model.backend=loop",
                   "model.embedding_dim=4", "model.hidden_size=3")
    module = instantiate(cfg.model, vocab_size=50, num_classes=2, _recursive_=False)
    encoder = module.model.encoder
    assert (encoder.variant, encoder.peephole) == ("fgr", True)
    assert encoder.weight_gg_l0.shape == (9, 9) and encoder.weight_peephole_l0.shape == (9,)


def test_an_unknown_variant_is_refused_while_the_config_composes():
    with pytest.raises(ConfigCompositionException) as error:
        composed("model.variant=nigg")
    assert re.search(r"Invalid value 'nigg', expected one of \[vanilla, np, nig", str(error.value.__cause__))


@pytest.mark.parametrize("kwargs,match", [
    ({"cell": "gru", "variant": "nig"}, r"model.variant and model.peephole must stay vanilla and false unless "
                                        r"model.cell=lstm .*: expected model.cell=lstm, got gru"),
    ({"cell": "cifg", "peephole": True}, r"expected model.cell=lstm, got cifg"),
    ({"variant": "np", "peephole": True}, r"model.peephole must be false with model.variant=np"),
])
def test_a_variant_of_another_cell_is_refused_with_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_the_adding_task_trains_a_variant_and_its_checkpoint_rebuilds_it(tmp_path):
    cfg = composed("+experiment=adding", "model.cell=lstm", "model.variant=nig", "model.peephole=true",
                   "data.length=6", "data.train_size=20", "data.val_size=10", "data.test_size=10",
                   "data.batch_size=10", "model.hidden_size=3", "trainer.max_steps=2",
                   "trainer.enable_progress_bar=false", "diagnostics.every_n_steps=1", "diagnostics.probe=2",
                   f"output_dir={tmp_path}")
    metrics = train(cfg)
    assert metrics["test/loss"] > 0 and json.loads((tmp_path / "metrics.json").read_text())["test/loss"] > 0
    module = TaskModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert (module.model.encoder.variant, module.model.encoder.peephole) == ("nig", True)


@pytest.mark.slow
def test_a_variant_of_the_gru_on_the_command_line_is_one_error_line_and_exit_2(tmp_path):
    run = subprocess.run([sys.executable, "-m", "rnnlab.train", "+experiment=adding", "model.cell=gru",
                          "model.variant=nog", f"output_dir={tmp_path}"], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("error: model.variant and model.peephole must stay")

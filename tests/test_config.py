"""One model description (ModelConfig, the Hydra schema) and the checks that run while the config is composed."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import make_text_folder
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

import rnnlab.conf
from rnnlab.models import config as model_config_module
from rnnlab.models.config import RMSPROP_KERAS, ModelConfig, model_config
from rnnlab.models.module import SequenceClassifierModule
from rnnlab.nn import CELLS
from rnnlab.train import train

CONF = Path(rnnlab.conf.__file__).parent

pytestmark = pytest.mark.usefixtures("one_thread")


def composed(*overrides):
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


# Built by the code before the model description was one dataclass (vocabulary 20,000, every other value the
# config's): parameters, and the logits of ids torch.randint(1, 20000, (3, 7)) under seed 1 after building under seed 0.
BEFORE = {
    "model=cifg": (5147873, [0.006714, 0.000161, -0.007914]),
    "model=gru": (5147873, [-0.015658, -0.034503, 0.032712]),
    "model=lstm": (5157153, [-0.002998, -0.005006, -0.013113]),
    "model=lstm_noforget": (5147873, [0.038804, 0.003019, -0.014314]),
    "model=rnn": (5129313, [-0.015845, -0.095067, 0.056816]),
    "model=torch_gru": (5147873, [0.050411, 0.076608, 0.030573]),
    "model=torch_lstm": (5157153, [0.014826, 0.018903, 0.003101]),
    "+experiment=bilstm": (5194305, [-0.001865, -0.016231, -0.003961]),
    "+experiment=gru_course": (5147873, [-0.015658, 0.022228, -0.020529]),
    "+experiment=gru_stack": (5191681, [0.003173, 0.004257, 0.000567]),
    "+experiment=torch_lstm": (5194305, [0.009248, -0.020345, -0.013645]),
}


@pytest.mark.parametrize("override", BEFORE)
def test_every_model_config_builds_the_parameters_and_seeded_logits_it_built_before(override):
    cfg = composed(override, "model.backend=loop")
    torch.manual_seed(0)
    module = instantiate(cfg.model, vocab_size=20000, num_classes=2, _recursive_=False).eval()
    torch.manual_seed(1)
    ids, lengths = torch.randint(1, 20000, (3, 7)), torch.tensor([7, 4, 1])
    n_params, logits = BEFORE[override]
    assert module.num_parameters() == n_params
    with torch.no_grad():
        torch.testing.assert_close(module(ids, lengths), torch.tensor(logits), atol=2e-6, rtol=0)


def test_each_cell_file_sets_only_its_cell_and_starts_from_the_base_not_from_another_cell():
    # base: what they start from; task: the synthetic tasks' model (rnnlab.models.tasks); reader: the net over
    # cross-fitted scores (rnnlab.models.stacking). Neither is a cell of the classifier.
    files = {p.stem: yaml.safe_load(p.read_text()) for p in (CONF / "model").glob("*.yaml")
             if p.stem not in ("base", "task", "reader")}
    assert set(files) == set(CELLS)
    for name, content in files.items():
        assert content == {"defaults": ["base"], "cell": name}


def test_the_schema_defaults_are_the_model_defaults():
    cfg = model_config(composed().model)
    assert cfg == dataclasses.replace(ModelConfig(), step_seed=42)  # the base config adds the run's seed only
    assert cfg.optimizer == RMSPROP_KERAS and cfg.scheduler is None


def test_the_module_saves_the_description_whole_and_a_checkpoint_rebuilds_it(tmp_path):
    import lightning.pytorch as pl

    config = ModelConfig(cell="gru", embedding_dim=4, hidden_size=[3, 5], bidirectional=True, pooling="mean")
    module = SequenceClassifierModule(20, 3, config)
    assert module.config == config and module.model.config is module.config
    assert dict(module.hparams) == {"vocab_size": 20, "num_classes": 3, **config.hparams()}
    assert isinstance(module.hparams.cell, str) and type(module.hparams.cell) is str
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = SequenceClassifierModule.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=False)
    assert loaded.config == config
    for a, b in zip(module.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_keywords_replace_fields_of_the_description_and_are_checked():
    module = SequenceClassifierModule(20, config=ModelConfig(cell="rnn"), hidden_size=3, embedding_dim=4)
    assert (module.config.cell, module.config.hidden_size) == ("rnn", 3)
    with pytest.raises(ValueError, match="model.hidden_size must be a positive int"):
        SequenceClassifierModule(20, hidden_size=0)
    with pytest.raises(TypeError, match="hiden_size"):
        SequenceClassifierModule(20, hiden_size=3)


@pytest.mark.parametrize("value", ["abc", 0, -3, True, 2.5, [], [32, "a"], [32, 0], "32"])
def test_a_hidden_size_that_is_not_a_positive_int_or_a_list_of_them_names_the_setting(value):
    with pytest.raises(ValueError, match=r"model\.hidden_size must be a positive int, or a list of them \(one width "
                                         r"per stacked layer, e.g\. \[32, 64\]\): got "):
        ModelConfig(hidden_size=value)


@pytest.mark.parametrize("field, value, message", [
    ("cell", "lsmt", r"model\.cell must be one of \['lstm', 'cifg', 'gru', 'rnn', 'indrnn', 'lstm_noforget', 'torch_lstm', "
                     r"'torch_gru'\]: got 'lsmt'"),
    ("pooling", "median", r"model\.pooling must be one of \['last', 'mean', 'max', 'mean_max', 'sum_sqrt', "
                          r"'sum_sqrt_max'\]: got 'median'"),
    ("num_layers", 0, r"model\.num_layers must be >= 1 .*: got 0"),
    ("dropout", 1.5, r"model\.dropout must be a probability in \[0, 1\]: got 1.5"),
    ("fixed_length", 0, r"model\.fixed_length must be null or a positive int .*: got 0"),
    ("recurrent", False, r"model\.recurrent=false pools the token vectors themselves, and the last one is one word: "
                         r"set model\.pooling to mean, max, sum_sqrt, mean_max or sum_sqrt_max"),
])
def test_a_bad_value_given_in_python_names_the_setting_as_the_config_does(field, value, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{field: value})


@pytest.mark.parametrize("fields, message", [
    ({"zoneout": 1.0}, r"model\.zoneout must be a probability in \[0, 1\): got 1.0"),
    ({"cell": "torch_lstm", "weight_dropout": 0.3}, r"model\.weight_dropout needs one of rnnlab's cells: "
                                                    r"model\.cell=torch_lstm is torch's, .* set model\.cell=lstm"),
    ({"recurrent_max": 2.0}, r"model\.recurrent_max must be null, or a number > 0 with model\.cell=indrnn"),
    ({"cell": "indrnn", "recurrent_init": "orthogonal"}, r"model\.recurrent_init must be null with model\.cell=indrnn"),
])
def test_a_regularizer_setting_out_of_range_or_for_a_cell_without_it_names_the_setting(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**fields)


def test_the_regularizer_keys_reach_the_cell():
    cfg = model_config(composed("model.zoneout=0.1", "model.zoneout_cell=0.3", "model.weight_dropout=0.2",
                                "model.variational_dropout=0.25", "model.layer_norm=true").model)
    encoder = SequenceClassifierModule(20, config=cfg, embedding_dim=4, hidden_size=3).model.encoder
    assert (encoder.zoneout, encoder.zoneout_cell, encoder.weight_dropout, encoder.variational_dropout,
            encoder.layer_norm) == (0.1, 0.3, 0.2, 0.25, True)
    ind = SequenceClassifierModule(20, config=ModelConfig(cell="indrnn", recurrent_max=1.5), embedding_dim=4).model
    assert ind.encoder.recurrent_max == 1.5 and ind.encoder.weight_hh_l0.dim() == 1


def test_lists_of_widths_and_enum_choices_from_hydra_become_plain_python_values():
    cfg = model_config(composed("model=gru", "model.hidden_size=[32,64,64]", "model.pooling=max").model)
    assert cfg.hidden_size == [32, 64, 64] and type(cfg.hidden_size) is list
    assert (cfg.cell, cfg.pooling) == ("gru", "max") and type(cfg.cell) is str and type(cfg.pooling) is str
    assert model_config_module.Cell.__members__.keys() == CELLS.keys()


def test_a_hidden_size_that_is_not_a_number_is_refused_before_the_data_is_loaded(tmp_path):
    root = make_text_folder(tmp_path / "texts")
    cfg = composed("data=folder", f"data.train_dir={root}", f"data.root={tmp_path / 'cache'}",
                   "model.hidden_size=abc", f"output_dir={tmp_path / 'run'}")
    with pytest.raises(ValueError, match=r"model\.hidden_size must be a positive int, or a list .*: got 'abc'"):
        train(cfg)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()  # nothing prepared, nothing written


def test_a_max_epochs_that_is_not_a_number_is_a_hydra_error_at_composition():
    with pytest.raises(ConfigCompositionException) as error:
        composed("trainer.max_epochs=abc")
    assert "Value 'abc' of type 'str' could not be converted to Integer" in str(error.value.__cause__)
    assert "trainer.max_epochs" in str(error.value.__cause__)


def test_other_trainer_arguments_may_still_be_added_and_fractions_stay_fractions():
    cfg = composed("+trainer.accumulate_grad_batches=2", "++trainer.limit_val_batches=0.25",
                   "trainer.limit_train_batches=3")
    assert cfg.trainer.accumulate_grad_batches == 2 and cfg.trainer.limit_val_batches == 0.25
    assert type(cfg.trainer.limit_train_batches) is int


@pytest.mark.parametrize("override, message", [
    ("trainer.max_epochs=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
    ("model.hidden_size=abc", "model.hidden_size must be a positive int, or a list of them"),
])
def test_the_command_line_reports_a_bad_number_without_touching_the_data(tmp_path, override, message):
    run = subprocess.run([sys.executable, "-m", "rnnlab.train", override, f"data.root={tmp_path / 'cache'}",
                          f"data.archive={tmp_path / 'missing.tar.gz'}"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode != 0 and message in run.stderr
    assert "IMDB archive" not in run.stderr and "AssertionError" not in run.stderr


def test_the_model_docstring_examples_run():
    import doctest

    from rnnlab.models import classifier, config, encoder, stacking, tasks

    for module in (config, classifier, encoder, tasks, stacking):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0

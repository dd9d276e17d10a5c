"""The real IMDB archive ($RNNLAB_IMDB_ARCHIVE): the headline command learns on a 2,000-review subset."""
import os

import pytest
from hydra import compose, initialize_config_module

from rnnlab.train import train


@pytest.mark.slow
@pytest.mark.imdb
def test_bilstm_learns_imdb_sentiment_from_2000_reviews(tmp_path):
    # measured on this CPU: 77% test after 2 epochs on this subset (~10 s of training); chance is 50%
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[
            "+experiment=bilstm", f"data.archive={os.environ['RNNLAB_IMDB_ARCHIVE']}", "data.subset=2000",
            "trainer.max_epochs=2", "trainer.enable_progress_bar=false", f"output_dir={tmp_path}"])
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.70, metrics

"""Cross-fitting: bags trained without one fold each (stage 1), a recurrent net over their out-of-fold token scores
(stage 2), on a tiny IMDB archive."""
import json
import math
import shutil

import numpy as np
import pytest
import torch
from helpers import compose_train, make_imdb_archive, tiny_text
from hydra import compose, initialize_config_module

from rnnlab.data.batching import fold_ids
from rnnlab.models.crossfit import CrossFitDataModule, token_scores
from rnnlab.data.datamodule import IMDBDataModule
from rnnlab.models.classifier import SequenceClassifier, score_tables
from rnnlab.models.config import ModelConfig
from rnnlab.models.module import load_module
from rnnlab.evaluate import evaluate
from rnnlab.predict import load_classifier
from rnnlab.train import train

pytestmark = pytest.mark.usefixtures("one_thread")
DATA = dict(batch_size=8, max_tokens=200, max_length=40, val_fraction=0.2, val_block=1)


def run(archive, tmp_path, out, *overrides) -> dict:
    return train(compose_train(*tiny_text(archive, out, tmp_path / "cache", **DATA), "trainer.max_epochs=1", *overrides))


def train_bags(archive, tmp_path, folder, folds=2, *overrides):
    for k in range(folds):
        run(archive, tmp_path, folder / str(k), "+experiment=imdb_bags", "model.embedding_dim=8",
            "model.bigram_buckets=101", f"data.folds={folds}", f"data.fold={k}", *overrides)
    return folder


@pytest.fixture(scope="module")
def bags(archive, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crossfit")
    return train_bags(archive, tmp, tmp / "bags"), tmp


def datamodule(archive, cache, **options):
    dm = (CrossFitDataModule if "bags" in options else IMDBDataModule)(archive=archive, root=cache, **DATA, **options)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_fold_ids_cut_every_sequence_into_one_of_k_near_equal_seeded_parts():
    folds = fold_ids(103, 5, seed=3)
    assert sorted(np.bincount(folds).tolist()) == [20, 20, 21, 21, 21]
    assert np.array_equal(folds, fold_ids(103, 5, seed=3)) and not np.array_equal(folds, fold_ids(103, 5, seed=4))


def test_a_bag_trains_without_its_fold_and_validates_on_the_same_reviews(archive, tmp_path):
    whole = datamodule(archive, tmp_path / "cache")
    bag = datamodule(archive, tmp_path / "cache", folds=3, fold=1)
    train = whole.datasets["train"]
    keep = fold_ids(len(train), 3, whole.seed) != 1
    assert len(bag.datasets["train"]) == keep.sum() < len(train)
    kept = [train[i][0] for i in np.flatnonzero(keep)]
    assert torch.equal(bag.datasets["train"].flat, torch.cat(kept))
    assert torch.equal(bag.datasets["train"].labels, train.labels[keep])
    assert torch.equal(bag.datasets["val"].flat, whole.datasets["val"].flat)


@pytest.mark.parametrize("options", [dict(folds=5), dict(fold=0), dict(folds=1, fold=0), dict(folds=3, fold=3)])
def test_folds_and_fold_come_together_and_in_range(options, tmp_path):
    with pytest.raises(ValueError, match=r"expected both null, or an int K >= 2 and an int 0 <= k < K"):
        IMDBDataModule(root=tmp_path, **options)


def test_score_tables_give_a_bags_logit_token_by_token():
    torch.manual_seed(0)
    config = ModelConfig(recurrent=False, pooling="sum_sqrt", embedding_dim=6, bigram_buckets=11, nb_scale=True)
    bag = SequenceClassifier(config, vocab_size=30).eval()
    with torch.no_grad():
        bag.bigrams.weight.normal_()
        bag.word_scale.uniform_(-2, 2)
        bag.pair_scale.uniform_(-2, 2)
        bag.head.bias.fill_(0.3)
    lengths = torch.tensor([5, 1, 3])
    flat = torch.randint(1, 30, (9,))
    c = token_scores(score_tables(bag), flat, lengths)
    ids = torch.zeros(3, 5, dtype=torch.long)
    for i, piece in enumerate(flat.split(lengths.tolist())):
        ids[i, :len(piece)] = piece
    per_review = torch.stack([s.sum() for s in c.split(lengths.tolist())]) / lengths.sqrt()
    torch.testing.assert_close(per_review, bag(ids, lengths))


def test_score_tables_refuse_a_model_whose_logit_is_not_a_sum_over_tokens():
    with pytest.raises(ValueError, match=r"need a bag: .*model.recurrent=false, model.pooling=sum_sqrt.*got recurrent=true"):
        score_tables(SequenceClassifier(ModelConfig(pooling="sum_sqrt", embedding_dim=4, hidden_size=2), 20))


def test_training_reviews_get_the_scores_of_the_bag_that_did_not_see_them_and_the_rest_the_mean(archive, bags):
    folder, tmp = bags
    dm = datamodule(archive, tmp / "cache", bags=folder)
    dm.setup("test")
    models = [load_module(json.loads((folder / str(k) / "metrics.json").read_text())["best_ckpt"]).model.eval()
              for k in range(2)]
    folds = fold_ids(len(dm.datasets["train"]), 2, dm.seed)
    for split in ("train", "val", "test"):
        data = dm.datasets[split]
        ids, label, c = data[3]
        with torch.no_grad():
            z = [m(ids[None], torch.tensor([len(ids)]))[0] for m in models]
        expected = z[folds[3]] if split == "train" else (z[0] + z[1]) / 2
        torch.testing.assert_close(c.sum() / math.sqrt(len(ids)), expected)
    ids, lengths, labels, scores = next(iter(dm.val_dataloader()))
    assert scores.shape == ids.shape and bool((scores[ids == 0] == 0).all())


def test_the_reader_trains_on_the_bags_with_any_cell_and_as_the_control_without_recurrence(archive, bags):
    folder, tmp = bags
    metrics = run(archive, tmp, tmp / "reader", "+experiment=imdb_crossfit", f"data.bags={folder}",
                  "model.hidden_size=4", "model.cell=lstm", "diagnostics.probe=4", "diagnostics.every_n_steps=2")
    assert list((tmp / "reader" / "tensorboard").glob("**/grad_t.pt"))  # the probe batch carries the scores too
    assert 0 <= metrics["test/acc"] <= 1 and metrics["num_parameters"] > 0
    module = load_module(metrics["best_ckpt"])  # the class the run trained, from its config
    assert type(module).__name__ == "ScoreReaderModule" and module.hparams.cell == "lstm"
    with initialize_config_module("rnnlab.conf", version_base="1.3"):  # its data rebuilt, bags included
        scored = evaluate(compose("evaluate", overrides=[f"ckpt={metrics['best_ckpt']}",
                                                         "trainer.enable_progress_bar=false"]))
    assert scored["test/acc"] == metrics["test/acc"] and scored["test/loss"] == metrics["test/loss"]
    with pytest.raises(ValueError, match=r"is a ScoreReaderModule, which reads more than text.*python -m rnnlab.evaluate"):
        load_classifier(metrics["best_ckpt"])
    control = run(archive, tmp, tmp / "control", "+experiment=imdb_crossfit", f"data.bags={folder}",
                  "model.hidden_size=4", "model.recurrent=false")
    assert 0 <= control["test/acc"] <= 1


@pytest.mark.parametrize("options", [dict(cell="gru"), dict(cell="lstm"), dict(cell="torch_gru"), dict(recurrent=False)])
def test_an_untrained_reader_is_the_mean_of_the_bags(archive, bags, options):
    from rnnlab.models.stacking import ScoreReaderModule

    folder, tmp = bags
    dm = datamodule(archive, tmp / "cache", bags=folder)
    reader = ScoreReaderModule(dm.vectorizer.vocab_size, hidden_size=3, words=20, **options).eval()
    ids, lengths, labels, scores = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        torch.testing.assert_close(reader.logits((ids, lengths, labels, scores)), scores.sum(1) / lengths.sqrt())


def test_the_command_line_names_missing_bags_in_one_line(tmp_path):
    import subprocess
    import sys

    def run_cli(*overrides):
        return subprocess.run([sys.executable, "-m", "rnnlab.train", "+experiment=imdb_crossfit",
                               f"hydra.run.dir={tmp_path / 'run'}", *overrides], capture_output=True, text=True,
                              timeout=300, env={**__import__("os").environ, "RNNLAB_IMDB_ARCHIVE": str(make_imdb_archive(
                                  tmp_path / "imdb.tar.gz", n_per_class=4)), "RNNLAB_DATA": str(tmp_path / "cache")})

    unset = run_cli()
    assert unset.returncode != 0 and "Missing mandatory value: data.bags" in unset.stderr
    missing = run_cli(f"data.bags={tmp_path / 'nowhere'}", "data.val_block=1")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert f"error: data.bags={tmp_path / 'nowhere'} must be the folder of the bags' multirun" in missing.stderr


def test_stage_two_names_missing_unfinished_or_mismatched_bags(archive, bags, tmp_path):
    folder, tmp = bags
    cache = tmp / "cache"
    with pytest.raises(FileNotFoundError, match=r"does not exist. Train them first: python -m rnnlab.train -m "
                                                r"\+experiment=imdb_bags"):
        datamodule(archive, cache, bags=tmp_path / "nowhere")
    one = tmp_path / "one"
    shutil.copytree(folder / "0", one / "0")
    with pytest.raises(ValueError, match=r"one finished bag for each fold 0 \.\.\. K-1 of one K: got folds \[0\] of K = \[2\]"):
        datamodule(archive, cache, bags=one)
    (one / "0" / "metrics.json").unlink()
    with pytest.raises(ValueError, match=r"has not finished \(no metrics.json\)"):
        datamodule(archive, cache, bags=one)
    with pytest.raises(ValueError, match=r"other data than this run reads \(data.max_length: the bag's 40, here 30\)"):
        CrossFitDataModule(archive=archive, root=cache, bags=folder, **{**DATA, "max_length": 30}).setup("fit")
    recurrent = tmp_path / "recurrent"
    run(archive, tmp_path, recurrent / "0", "+experiment=imdb_bags", "model.embedding_dim=8", "model.hidden_size=2",
        "model.bigram_buckets=101", "data.folds=2", "data.fold=0", "model.recurrent=true")
    with pytest.raises(ValueError, match=r"recurrent/0 in data.bags=.* is not a bag: score tables need a bag"):
        datamodule(archive, cache, bags=recurrent)
    with pytest.raises(ValueError, match=r"stage 2 reads every fold's bag from data.bags"):
        CrossFitDataModule(bags=folder, folds=2, fold=0)


def test_the_bags_experiment_sweeps_one_job_per_fold():
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=imdb_bags"], return_hydra_config=True)
    assert [int(k) for k in str(cfg.hydra.sweeper.params["data.fold"]).split(",")] == list(range(cfg.data.folds))

"""IMDBDataModule / FolderDataModule: splits, batches, the on-disk cache, stage isolation, Lightning."""

import os
import tempfile

import lightning as L
import numpy as np
import pytest
import torch

from helpers import make_imdb_archive, make_text_folder
from rnnlab.data import imdb
from rnnlab.data.datamodule import FolderDataModule, IMDBDataModule, texts_to_batch


pytestmark = pytest.mark.usefixtures("no_data_env")


@pytest.fixture
def archive(tmp_path):
    return make_imdb_archive(tmp_path / "imdb.tar.gz", n_per_class=20)


@pytest.fixture
def reads(monkeypatch):
    """Records which splits are read from disk."""
    seen = []
    real = imdb.read_split

    def spy(folder, split):
        seen.append(split)
        return real(folder, split)

    monkeypatch.setattr(imdb, "read_split", spy)
    return seen


def make_dm(tmp_path, archive, **kw):
    kw.setdefault("batch_size", 4)
    dm = IMDBDataModule(root=tmp_path / "cache", archive=archive, **kw)
    dm.prepare_data()
    return dm


def test_fit_gives_stratified_train_val_and_batches_in_the_spec_format(tmp_path, archive, reads):
    dm = make_dm(tmp_path, archive, max_length=10)
    dm.setup("fit")
    assert reads == ["train"]  # the test set is not touched by fit
    assert dm.class_names == ["neg", "pos"] and dm.num_classes == 2 and dm.pretrained is None
    assert len(dm.datasets["train"]) == 32 and len(dm.datasets["val"]) == 8
    assert dm.datasets["val"].labels.tolist().count(1.0) == 4
    ids, lengths, labels = next(iter(dm.train_dataloader()))
    assert ids.dtype == lengths.dtype == torch.int64 and labels.dtype == torch.float32
    assert ids.shape == (4, int(lengths.max())) and 1 <= lengths.min() and lengths.max() <= 10
    assert torch.all(ids[torch.arange(ids.size(1)) >= lengths[:, None]] == 0)  # padded after each length
    n = sum(len(b[0]) for b in dm.train_dataloader())
    assert n == 32
    dm.setup("test")
    assert reads == ["train", "test"] and len(dm.datasets["test"]) == 40


def test_second_run_loads_the_cache_and_a_changed_setting_does_not(tmp_path, archive, reads):
    first = make_dm(tmp_path, archive)
    first.setup("fit")
    first.setup("test")
    again = make_dm(tmp_path, archive)
    again.setup("fit")
    again.setup("test")
    assert reads == ["train", "test"]  # nothing read the second time
    assert again.vectorizer.to_json() == first.vectorizer.to_json()
    for split in ("train", "val", "test"):
        assert torch.equal(again.datasets[split].flat, first.datasets[split].flat)
    other = make_dm(tmp_path, archive, max_tokens=10)
    other.setup("fit")
    assert reads[-1] == "train" and other.vectorizer.vocab_size == 10
    assert other.cache_dir() != first.cache_dir()
    blocks = make_dm(tmp_path, archive, val_block=4)  # whole runs of 4 reviews held out: another split
    blocks.setup("fit")
    assert reads[-1] == "train" and blocks.cache_dir() != first.cache_dir()
    assert len(blocks.datasets["val"]) == len(first.datasets["val"])
    assert not torch.equal(blocks.datasets["val"].flat, first.datasets["val"].flat)


def test_test_stage_alone_adapts_on_train_not_test(tmp_path, archive, reads):
    dm = make_dm(tmp_path, archive)
    dm.setup("test")
    assert reads == ["train", "test"]
    ref = make_dm(tmp_path / "other", archive)
    ref.setup("fit")
    assert dm.vectorizer.to_json() == ref.vectorizer.to_json()


def test_val_fraction_zero_and_subset(tmp_path, archive):
    dm = make_dm(tmp_path, archive, val_fraction=0.0)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 40 and len(dm.datasets["val"]) == 0
    assert list(dm.val_dataloader()) == []
    sub = make_dm(tmp_path, archive, subset=6)
    sub.setup("fit")
    sub.setup("test")
    assert [len(sub.datasets[s]) for s in ("train", "val", "test")] == [6, 6, 6]
    assert sorted(sub.datasets["train"].labels.tolist()) == [0, 0, 0, 1, 1, 1]


def test_empty_reviews_get_length_one_and_fixed_length_pads_to_max_length(tmp_path):
    texts = {"neg": ["", "bad bad movie", "!!! ..."], "pos": ["good", "a good good good good good good film", "<br />"]}
    archive = make_imdb_archive(tmp_path / "a.tar.gz", texts=texts)
    dm = make_dm(tmp_path, archive, val_fraction=0.0, batch_size=6, max_length=5)
    dm.setup("fit")
    assert sorted(dm.datasets["train"].lengths.tolist()) == [0, 0, 0, 1, 3, 5]
    ids, lengths, _ = next(iter(dm.train_dataloader()))
    assert sorted(lengths.tolist()) == [1, 1, 1, 1, 3, 5] and ids.shape == (6, 5)
    assert torch.all(ids[lengths == 1][:, 0] >= 0)
    fixed = make_dm(tmp_path, archive, val_fraction=0.0, batch_size=2, max_length=7, fixed_length=True)
    fixed.setup("fit")
    assert {b[0].shape[1] for b in fixed.train_dataloader()} == {7}


def test_folder_datamodule_multiclass_int_labels_and_test_dir(tmp_path):
    classes = {c: [f"{c} text number {i} {'x ' * i}" for i in range(10)] for c in ("b_sci", "a_art", "c_cars")}
    train = make_text_folder(tmp_path / "train", classes)
    test = make_text_folder(tmp_path / "test", {c: t[:3] for c, t in classes.items()})
    dm = FolderDataModule(train, test, root=tmp_path / "cache", batch_size=5, val_fraction=0.2, bucket=False)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert dm.class_names == ["a_art", "b_sci", "c_cars"] and dm.num_classes == 3
    assert len(dm.datasets["train"]) == 24 and len(dm.datasets["val"]) == 6 and len(dm.datasets["test"]) == 9
    ids, lengths, labels = next(iter(dm.test_dataloader()))
    assert labels.dtype == torch.int64
    no_test = FolderDataModule(train, root=tmp_path / "cache")
    with pytest.raises(ValueError, match="needs a test set"):
        no_test.setup("test")


@pytest.mark.parametrize("kwargs, match", [
    ({"max_length": -5}, r"max_length must be a positive int .* got -5"),
    ({"batch_size": 0}, "batch_size must be an int >= 1: got 0"),
    ({"batch_size": 2.5}, "batch_size must be an int >= 1: got 2.5"),
    ({"num_workers": -1}, "num_workers must be an int >= 0: got -1"),
    ({"subset": 0}, "subset must be an int >= 1 or None: got 0"),
    ({"val_block": 0}, "val_block must be an int >= 1: got 0"),
])
def test_bad_settings_are_named_when_the_datamodule_is_built(tmp_path, archive, kwargs, match):
    with pytest.raises(ValueError, match=match):  # not an epoch later, in the sampler or the vectorizer
        make_dm(tmp_path, archive, **kwargs)


@pytest.mark.parametrize("bucket", [True, False])
def test_ddp_ranks_train_on_disjoint_equal_shares_and_evaluate_every_review_once(tmp_path, archive, bucket):
    from types import SimpleNamespace

    dm = make_dm(tmp_path, archive, batch_size=3, bucket=bucket)
    dm.setup("fit")
    dm.setup("test")

    def indices(split, rank):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)  # what Lightning's DDP sets
        loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
        return [i for batch in loader.batch_sampler for i in batch], len(loader)

    (r0, n0), (r1, n1) = indices("train", 0), indices("train", 1)
    assert n0 == n1 and not set(r0) & set(r1)  # DDP steps the ranks together: same number of batches
    assert len(r0) + len(r1) > len(dm.datasets["train"]) - 2 * 3  # at most one batch per rank left out
    for split in ("val", "test"):
        (r0, _), (r1, _) = indices(split, 0), indices(split, 1)
        assert sorted(r0 + r1) == list(range(len(dm.datasets[split])))  # every review exactly once


def test_folder_datamodule_missing_folder_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="text folder not found"):
        FolderDataModule(tmp_path / "missing", root=tmp_path).prepare_data()


def test_embeddings_option_sets_pretrained(tmp_path, archive):
    glove = tmp_path / "glove.txt"
    glove.write_text("the 1 2 3\ngreat 4 5 6\nnotinvocab 7 8 9\n")
    dm = make_dm(tmp_path, archive, embeddings=glove)
    dm.setup("fit")
    vocab = dm.vectorizer.get_vocabulary()
    assert dm.pretrained.shape == (len(vocab), 3)
    assert dm.pretrained[vocab.index("great")].tolist() == [4, 5, 6]
    assert dm.embedding_coverage["found"] == 2


def test_texts_to_batch_matches_the_dataloader(tmp_path, archive):
    dm = make_dm(tmp_path, archive, val_fraction=0.0, bucket=False, batch_size=40, max_length=8)
    dm.setup("fit")
    texts = imdb.read_split(dm._prepare().folder, "train").texts
    ids, lengths = texts_to_batch(dm.vectorizer, texts[:3], max_length=8)
    for i in range(3):
        seq = dm.datasets["train"][i][0]  # val_fraction=0: train keeps the file order
        assert lengths[i] == max(len(seq), 1) and ids[i, : len(seq)].tolist() == seq.tolist()


class TinyClassifier(L.LightningModule):
    def __init__(self, vocab_size):
        super().__init__()
        self.emb = torch.nn.EmbeddingBag(vocab_size, 4, mode="sum")
        self.out = torch.nn.Linear(4, 1)
        self.seen = []

    def training_step(self, batch, _):
        ids, lengths, labels = batch
        self.seen.append(len(labels))
        mask = (torch.arange(ids.size(1)) < lengths[:, None]).float()
        return torch.nn.functional.binary_cross_entropy_with_logits(self.out(self.emb(ids, per_sample_weights=mask)).squeeze(1), labels)

    def validation_step(self, batch, _):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_trainer_runs_on_the_datamodule(tmp_path, archive):
    dm = IMDBDataModule(root=tmp_path / "cache", archive=archive, batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    model = TinyClassifier(dm.vectorizer.vocab_size)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert sum(model.seen) == 2 * 32


IMDB_ARCHIVE = os.environ.get(imdb.ENV_ARCHIVE)
IMDB_ROOT = os.environ.get(imdb.ENV_ROOT) or os.path.join(tempfile.gettempdir(), "rnnlab-imdb-tests")


@pytest.mark.imdb
def test_real_imdb_datamodule():
    dm = IMDBDataModule(root=IMDB_ROOT, archive=IMDB_ARCHIVE, cache=False, progressbar=False)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    train, val, test = (dm.datasets[s] for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (20_000, 5_000, 25_000)
    for ds in (train, val, test):
        assert np.bincount(ds.labels.numpy().astype(int)).tolist() == [len(ds) // 2] * 2
        assert ds.lengths.min() >= 1 and ds.lengths.max() == 600  # no empty review; truncation at max_length
    assert dm.vectorizer.vocab_size == 20_000
    assert dm.vectorizer.get_vocabulary()[:6] == ["", "[UNK]", "the", "and", "a", "of"]


@pytest.mark.parametrize("bucket", [True, False])
def test_the_first_evaluation_batch_holds_both_classes_and_a_full_pass_sees_every_review_once(tmp_path, archive, bucket):
    # the files are read negatives first; a pass in that order made limit_val_batches=1 score negatives only
    dm = make_dm(tmp_path, archive, bucket=bucket, val_fraction=0.5)
    dm.setup("fit")
    dm.setup("test")
    for split, loader in (("val", dm.val_dataloader), ("test", dm.test_dataloader)):
        batches = list(loader())
        assert set(batches[0][2].tolist()) == {0.0, 1.0}, split
        assert [b[2].tolist() for b in batches] == [b[2].tolist() for b in loader()]  # the same order every pass
        order = [i for b in loader().batch_sampler for i in b]
        assert sorted(order) == list(range(len(dm.datasets[split])))  # a permutation: full-set metrics unchanged


def test_batch_lengths_are_rounded_up_to_pad_multiple_and_capped_at_max_length(tmp_path, archive):
    dm = make_dm(tmp_path, archive, max_length=30, pad_multiple=8)
    dm.setup("fit")
    widths = {ids.shape[1] for ids, lengths, _ in dm.train_dataloader()}
    assert widths <= {8, 16, 24, 30} and len(widths) > 1
    exact = make_dm(tmp_path, archive, max_length=30, pad_multiple=1)
    exact.setup("fit")
    assert all(ids.shape[1] == int(lengths.max()) for ids, lengths, _ in exact.train_dataloader())
    with pytest.raises(ValueError, match="pad_multiple must be an int >= 1: got 0"):
        make_dm(tmp_path, archive, pad_multiple=0)


def test_a_model_that_reads_lengths_gives_the_same_logits_for_any_padding():
    from rnnlab.models import ModelConfig, SequenceClassifier

    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig(embedding_dim=8, cell="lstm", hidden_size=6, bidirectional=True), 50).eval()
    ids = torch.randint(2, 50, (4, 13))
    lengths = torch.tensor([13, 9, 1, 5])
    ids[torch.arange(13) >= lengths[:, None]] = 0
    padded = torch.cat([ids, torch.zeros(4, 19, dtype=torch.long)], 1)  # 13 -> 32: pad_multiple=32
    with torch.no_grad():
        assert torch.equal(model(ids, lengths), model(padded, lengths))


def test_embedding_dim_is_the_vectors_width_before_and_after_setup(tmp_path, archive):
    glove = tmp_path / "glove.txt"
    glove.write_text("the 1 2 3\ngreat 4 5 6\n")
    dm = make_dm(tmp_path, archive, embeddings=glove)
    assert dm.embedding_dim == 3  # before setup: read from the first line, so train.py can check it first
    dm.setup("fit")
    assert dm.embedding_dim == dm.pretrained.shape[1] == 3
    w2v = tmp_path / "w2v.txt"
    w2v.write_text("2 5\nthe 1 2 3 4 5\ngreat 1 2 3 4 5\n")
    assert make_dm(tmp_path, archive, embeddings=w2v).embedding_dim == 5
    assert make_dm(tmp_path, archive).embedding_dim is None


@pytest.mark.parametrize("texts, what", [
    ({"neg": ["", ""], "pos": ["", "  \n"]}, "every class"),
    ({"neg": ["bad film", "awful"], "pos": ["<br />", "!!!"]}, r"the classes \['pos'\]"),
])
def test_training_texts_without_words_are_an_error_naming_the_folder(tmp_path, texts, what):
    train = make_text_folder(tmp_path / "train", texts)
    dm = FolderDataModule(train, root=tmp_path / "cache", val_fraction=0.0, batch_size=2)
    dm.prepare_data()
    with pytest.raises(ValueError, match=rf"the training texts of {what} in {train} must hold words"):
        dm.setup("fit")
    assert not list((tmp_path / "cache").rglob("train.npz"))  # nothing cached: a second run fails alike


@pytest.mark.parametrize("test_classes, match", [
    (("neg",), r"test_dir .* must hold every class folder of train_dir .*: expected \['neg', 'pos'\], got \['neg'\]; "
               r"it lacks \['pos'\]"),
    (("neg", "pos", "zzz"), r"test_dir .* must hold only class folders of train_dir .*training has no \['zzz'\]"),
])
def test_test_dir_classes_that_differ_from_training_are_an_error_before_training(tmp_path, test_classes, match, reads):
    train = make_text_folder(tmp_path / "train", {"neg": ["bad film"] * 4, "pos": ["good film"] * 4})
    test = make_text_folder(tmp_path / "test", {c: [f"{c} film"] * 2 for c in test_classes})
    with pytest.raises(ValueError, match=match):
        FolderDataModule(train, test, root=tmp_path / "cache").prepare_data()
    with pytest.raises(ValueError, match=match):
        FolderDataModule(train, test, root=tmp_path / "cache").setup("fit")  # what train.py runs before fit
    assert not (tmp_path / "cache").exists()  # nothing read, nothing cached


def test_train_segment_cuts_training_reviews_into_labelled_pieces_and_leaves_evaluation_whole(tmp_path, archive):
    whole = make_dm(tmp_path, archive)
    whole.setup("fit")
    cut = make_dm(tmp_path, archive, train_segment=5)
    cut.setup("fit")
    a, b = whole.datasets["train"], cut.datasets["train"]
    assert torch.equal(a.flat, b.flat) and b.lengths.max() <= 5 and len(b) > len(a)
    pieces = -(-a.lengths // 5)
    assert len(b) == pieces.sum()
    assert torch.equal(b.labels, a.labels.repeat_interleave(torch.from_numpy(pieces)))
    for split in ("val",):
        assert np.array_equal(cut.datasets[split].lengths, whole.datasets[split].lengths)
    assert cut.cache_dir() == whole.cache_dir()  # the cache keeps whole reviews


def damage(path, how: str) -> None:
    """Cut a file in half, or flip one bit in its middle: what a full disk or bad storage leaves."""
    data = bytearray(path.read_bytes())
    if how == "truncated":
        del data[len(data) // 2:]
    else:
        data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "bit-flipped"])
@pytest.mark.parametrize("entry", ["train.npz", "val.npz", "test.npz", "vectorizer.json"])
def test_a_damaged_cache_entry_is_named_in_a_warning_at_setup_and_rebuilt_with_the_same_arrays(
        tmp_path, archive, caplog, entry, how):
    first = make_dm(tmp_path, archive)
    first.setup("fit")
    first.setup("test")
    damage(first.cache_dir() / entry, how)
    again = make_dm(tmp_path, archive)
    with caplog.at_level("WARNING", logger="rnnlab.data.datamodule"):
        again.setup("fit")  # a bad test.npz is found here, before any training, not after it
    assert f"cache entry {first.cache_dir() / entry} is damaged" in caplog.text and "rebuilding it" in caplog.text
    again.setup("test")
    assert again.vectorizer.to_json() == first.vectorizer.to_json()
    for split in ("train", "val", "test"):
        assert torch.equal(again.datasets[split].flat, first.datasets[split].flat)
    caplog.clear()
    with caplog.at_level("WARNING", logger="rnnlab.data.datamodule"):
        make_dm(tmp_path, archive).setup(None)  # rebuilt whole, with its checksum: no warning now
    assert "damaged" not in caplog.text


def test_a_full_disk_while_the_cache_is_written_leaves_no_partial_entry_behind(tmp_path, archive, monkeypatch):
    import errno

    real, calls = os.fsync, []

    def full_disk(fd):
        calls.append(fd)
        if len(calls) == 3:  # train.npz and its checksum are written; the disk fills during val.npz
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        make_dm(tmp_path, archive).setup("fit")
    monkeypatch.setattr(os, "fsync", real)
    cache = make_dm(tmp_path, archive).cache_dir()
    assert sorted(p.name for p in cache.iterdir()) == ["train.npz", "train.npz.sha256"]  # no temporary file left
    dm = make_dm(tmp_path, archive)
    dm.setup("fit")
    assert len(dm.datasets["val"]) == 8

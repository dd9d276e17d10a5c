"""LightningDataModules for text classification: `IMDBDataModule`, `FolderDataModule`.

Stages, as Lightning intends them:

- ``prepare_data()``: download / extract (once, one process);
- ``setup("fit")`` / ``setup("validate")``: read the *training* texts, hold out a
  seeded stratified validation slice (``val_fraction``, 0 allowed; whole runs of
  ``val_block`` consecutively numbered files), adapt the
  vectorizer on the rest, vectorize train and validation;
- ``setup("test")`` / ``setup("predict")``: vectorize the test texts. Only these
  stages read the test set.

Vectorized splits are cached in ``<root>/cache/<key>/`` where the key hashes the
data's fingerprint (archive hash, or every file's path, size and mtime) and every
setting that changes the arrays (vectorizer options, ``max_length``,
``val_fraction``, ``seed``, ``subset``), so a second run starts in about a second
and a changed setting never reuses stale arrays. Each entry (``vectorizer.json``,
``train.npz``, ``val.npz``, ``test.npz``) is written atomically with its SHA-256
beside it (``<entry>.sha256``, :func:`rnnlab.security.write_verified`); ``setup``
checks every entry present before it reads any, and one that does not match (cut
short, a flipped bit) is removed with a warning naming it and rebuilt from the data.

Batches are ``(ids (B, L) int64, lengths (B,) int64, labels (B,))``; labels are
float32 for two classes (binary) and int64 otherwise. Sequences are truncated to
``max_length`` tokens and padded per batch to the longest one rounded up to a multiple of
``pad_multiple`` (``bucket=True``: length-bucketed, see `rnnlab.data.batching`), or to
exactly ``max_length`` with ``fixed_length=True``. Validation and test batches come in one
fixed seeded order, each holding the classes in proportion, so any prefix of an evaluation
pass is a fair sample.
With DDP and ``bucket=True``, use ``Trainer(use_distributed_sampler=False)``: the
bucketed sampler splits batches over ranks itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from rnnlab.training.resumable import ResumableLoader
from rnnlab.security import checksum_path, verify, write_verified
from rnnlab.utils import is_int_at_least

from . import imdb
from .batching import BucketBatchSampler, Collate, RaggedDataset, chop, collate, fold_ids, select, stratified
from .folder import (TextSamples, file_blocks, has_txt, list_classes, read_text_folder, stratified_split,
                     stratified_subset)
from .text import TextVectorizer, check_max_length

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: every entry has its checksum beside it
CACHE_ENTRIES = ("vectorizer.json", "train.npz", "val.npz", "test.npz")


class TextDataModule(L.LightningDataModule):
    """Shared logic; subclasses say where the texts come from (`_fingerprint`, `_read`)."""

    def __init__(
        self,
        root=None,
        val_fraction: float = 0.2,
        val_block: int = 1,
        max_tokens: int | None = 20000,
        max_length: int | None = 600,
        batch_size: int = 32,
        bucket: bool = True,
        num_workers: int = 0,
        seed: int = 42,
        embeddings=None,
        subset: int | None = None,
        ngrams: int = 1,
        lowercase: bool = True,
        strip_accents: bool = True,
        strip_punctuation: bool = True,
        strip_html: bool = True,
        fixed_length: bool = False,
        pad_multiple: int = 1,
        train_segment: int | None = None,
        folds: int | None = None,
        fold: int | None = None,
        vectorizer: TextVectorizer | str | os.PathLike | None = None,
        cache: bool = True,
    ):
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1): expected e.g. 0.2, got {val_fraction}")
        check_max_length(max_length)
        optional = ("subset", "train_segment")
        for name, value, least in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0), ("subset", subset, 1),
                                   ("pad_multiple", pad_multiple, 1), ("val_block", val_block, 1),
                                   ("train_segment", train_segment, 1)):
            if name in optional and value is None:
                continue
            if not is_int_at_least(value, least):
                raise ValueError(f"{name} must be an int >= {least}{' or None' if name in optional else ''}: got {value!r}")
        if fixed_length and max_length is None:
            raise ValueError("fixed_length=True needs max_length: got max_length=None")
        if (folds is None) != (fold is None) or folds is not None and not (
                is_int_at_least(folds, 2) and is_int_at_least(fold, 0) and fold < folds):
            raise ValueError(f"folds and fold leave fold k of K out of training: expected both null, or an int K >= 2 "
                             f"and an int 0 <= k < K (e.g. folds=5 fold=0), got folds={folds!r} fold={fold!r}")
        self.root = imdb.data_root(root)
        self.val_fraction = val_fraction
        self.val_block = val_block
        self.max_tokens = max_tokens
        self.max_length = max_length
        self.batch_size = batch_size
        self.bucket = bucket
        self.num_workers = num_workers
        self.seed = seed
        self.embeddings = embeddings
        self.subset = subset
        self.fixed_length = fixed_length
        self.pad_multiple = pad_multiple
        self.train_segment = train_segment
        self.folds, self.fold = folds, fold
        self.use_cache = cache
        self.vectorizer_options = dict(max_tokens=max_tokens, ngrams=ngrams, lowercase=lowercase, strip_accents=strip_accents,
                                       strip_punctuation=strip_punctuation, strip_html=strip_html)
        if isinstance(vectorizer, (str, os.PathLike)):
            vectorizer = TextVectorizer.load(vectorizer)
        self.vectorizer: TextVectorizer | None = vectorizer
        self._given_vectorizer = vectorizer is not None
        self.class_names: list[str] | None = None
        self.num_classes: int | None = None
        self.pretrained: torch.Tensor | None = None
        self.embedding_coverage: dict | None = None
        self.datasets: dict[str, RaggedDataset] = {}
        self.n_replaced_files = 0

    # ------------------------------------------------------- for subclasses
    def _fingerprint(self) -> str:
        raise NotImplementedError

    def _read(self, split: str) -> TextSamples:
        raise NotImplementedError

    def _has_test(self) -> bool:
        return True

    def _source(self, split: str) -> str:
        """Where the texts of `split` come from, for messages."""
        raise NotImplementedError

    @property
    def embedding_dim(self) -> int | None:
        """D, the width of the pretrained vectors of ``embeddings`` (None without them).

        Known before `setup` (read from the file's first line) so that the model's embedding width can be checked
        against it before anything is loaded; after `setup` it is ``pretrained.shape[1]``.
        """
        if self.embeddings is None:
            return None
        if self.pretrained is not None:
            return int(self.pretrained.shape[1])
        from .embeddings import vectors_dim

        return vectors_dim(self.embeddings)

    # ---------------------------------------------------------------- cache
    def cache_dir(self) -> Path:
        """``<root>/cache/<key>``: the key hashes the data and every array-changing setting."""
        settings = {
            "version": CACHE_VERSION, "data": self._fingerprint(), "vectorizer": self.vectorizer_options,
            "given_vectorizer": hashlib.sha256(self.vectorizer.to_json().encode()).hexdigest() if self._given_vectorizer else None,
            "max_length": self.max_length, "val_fraction": self.val_fraction,
            **({"val_block": self.val_block} if self.val_block > 1 else {}), "seed": self.seed, "subset": self.subset,
        }
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
        return self.root / "cache" / key

    def _save(self, path: Path, **arrays) -> None:
        write_verified(path, lambda f: np.savez(f, **arrays))  # atomic, its SHA-256 beside it

    def _verify_cache(self, cache: Path | None) -> None:
        """Remove every entry of ``cache`` that does not match the checksum recorded beside it (a warning names each),
        so that the setup rebuilds it: all entries, the test split's too, before the first is read."""
        if cache is None or not cache.is_dir():
            return
        for name in CACHE_ENTRIES:
            path = cache / name
            problem = verify(path) if path.exists() else None
            if problem:
                log.warning("cache entry %s is damaged (%s): rebuilding it from the data", path, problem)
                path.unlink(missing_ok=True)
                checksum_path(path).unlink(missing_ok=True)

    # ---------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        cache = self.cache_dir() if self.use_cache else None
        if not self.datasets:  # the first setup of this module: check the cache once
            self._verify_cache(cache)
        if stage in (None, "fit", "validate") and "train" not in self.datasets:
            self._setup_fit(cache)
        if stage in (None, "test", "predict") and "test" not in self.datasets:
            if self.vectorizer is None:
                self._setup_fit(cache)
            self._setup_split("test", cache)
        if self.embeddings is not None and self.pretrained is None:
            from .embeddings import load_embeddings

            self.pretrained, self.embedding_coverage = load_embeddings(self.embeddings, self.vectorizer.get_vocabulary())

    def _load_cached(self, cache: Path | None, split: str) -> bool:
        if cache is None or not (cache / f"{split}.npz").exists():
            return False
        with np.load(cache / f"{split}.npz") as z:
            self.class_names = z["class_names"].tolist()
            self._set_dataset(split, z["flat"], z["lengths"], z["labels"])
        return True

    def _set_dataset(self, split: str, flat, lengths, labels) -> None:
        self.num_classes = len(self.class_names)
        dtype = torch.float32 if self.num_classes == 2 else torch.long
        if split == "train" and self.folds is not None:  # the cache keeps the whole training split
            flat, lengths, labels = select(flat, lengths, labels, fold_ids(len(lengths), self.folds, self.seed) != self.fold)
        if split == "train" and self.train_segment is not None:  # the cache keeps whole reviews
            lengths, labels = chop(lengths, labels, self.train_segment)
        self.datasets[split] = RaggedDataset(flat, lengths, labels, label_dtype=dtype)

    def _setup_fit(self, cache: Path | None) -> None:
        vec_path = cache / "vectorizer.json" if cache else None
        if vec_path is not None and vec_path.exists() and all((cache / f"{s}.npz").exists() for s in ("train", "val")):
            if not self._given_vectorizer:
                self.vectorizer = TextVectorizer.load(vec_path)
            self._load_cached(cache, "train")
            self._load_cached(cache, "val")
            log.info("loaded vectorized train/val splits from %s", cache)
            return
        samples = self._read("train")
        self.n_replaced_files += samples.n_replaced_files
        groups = file_blocks(samples.paths, self.val_block) if self.val_block > 1 else None
        keep, held = stratified_split(samples.labels, self.val_fraction, self.seed, groups)
        parts = {"train": samples.select(keep), "val": samples.select(held)}
        if self.subset is not None:
            parts = {k: p.select(stratified_subset(p.labels, self.subset, self.seed)) for k, p in parts.items()}
        self.class_names = samples.class_names
        encoded = None
        if not self._given_vectorizer:  # adapt to the training texts and encode them in one pass
            self.vectorizer = TextVectorizer(**self.vectorizer_options)
            encoded = self.vectorizer.adapt_and_encode(parts["train"].texts, self.max_length)
        self._vectorize("train", parts["train"], cache, encoded)
        self._vectorize("val", parts["val"], cache)
        if vec_path is not None:
            text = self.vectorizer.to_json().encode("utf-8")
            write_verified(vec_path, lambda f: f.write(text))

    def _setup_split(self, split: str, cache: Path | None) -> None:
        if self._load_cached(cache, split):
            return
        if not self._has_test():
            raise ValueError(f"stage '{split}' needs a test set: pass test_dir (got none)")
        samples = self._read(split)
        self.n_replaced_files += samples.n_replaced_files
        self.class_names = samples.class_names
        samples = samples.select(stratified_subset(samples.labels, self.subset, self.seed))
        self._vectorize(split, samples, cache)

    def _vectorize(self, split: str, samples: TextSamples, cache: Path | None, encoded=None) -> None:
        """Dataset ``split`` from ``samples`` (``encoded``: their ``(flat, lengths)``, if already encoded), cached."""
        flat, lengths = encoded if encoded is not None else self.vectorizer.encode(samples.texts, self.max_length)
        if split == "train":
            self._check_words(samples, lengths)
        flat = flat.astype(np.int32 if self.vectorizer.vocab_size < 2**31 else np.int64)
        self._set_dataset(split, flat, lengths, samples.labels)
        if cache is not None:
            self._save(cache / f"{split}.npz", flat=flat, lengths=lengths, labels=samples.labels,
                       class_names=np.array(samples.class_names))

    def _check_words(self, samples: TextSamples, lengths: np.ndarray) -> None:
        """A class whose training texts hold no word (empty files, or only tags and punctuation) cannot be learned:
        the model would see nothing but padding for it and the run would end at chance without a word of warning."""
        words = np.bincount(samples.labels, weights=lengths, minlength=len(samples.class_names))
        empty = [c for c, n in zip(samples.class_names, words) if n == 0]
        if empty:
            what = "every class" if len(empty) == len(samples.class_names) else f"the classes {empty}"
            raise ValueError(f"the training texts of {what} in {self._source('train')} must hold words: expected "
                             f"at least one word per class after standardization, got none (the files are empty, or "
                             f"hold only HTML tags and punctuation); fill the files or point the data at other ones")

    # ----------------------------------------------------------- dataloaders
    def _collate(self) -> Collate:
        """How a list of items becomes a batch (`rnnlab.data.batching.collate`)."""
        return Collate(pad_to=self.max_length) if self.fixed_length else Collate(multiple=self.pad_multiple, cap=self.max_length)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"call setup() for the '{split}' split first (setup('fit') for train/val, setup('test') for test)")
        ds = self.datasets[split]
        common = dict(collate_fn=self._collate(), num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        # Under DDP (use_distributed_sampler=False) the ranks are split here: training gives every rank the same
        # number of batches, as DDP steps them together; evaluation counts every review exactly once.
        # Evaluation runs in one fixed seeded order (not the files' order, one class after the other), every batch
        # holding the classes in proportion, so that a partial pass (limit_val_batches, an interrupted one) scores a
        # fair sample of every class; the full pass sees every review once, whatever the order.
        labels = None if shuffle else ds.labels.numpy()
        if self.bucket:
            sampler = BucketBatchSampler(ds.lengths, self.batch_size, shuffle=shuffle, seed=self.seed,
                                         num_replicas=world, rank=rank, even=shuffle, labels=labels)
            return DataLoader(ds, batch_sampler=sampler, **common)
        if shuffle and world > 1:
            order = DistributedSampler(ds, world, rank, shuffle=True, seed=self.seed, drop_last=True)
            return DataLoader(ds, batch_size=self.batch_size, sampler=order, **common)
        if shuffle:
            gen = torch.Generator().manual_seed(self.seed)
            return DataLoader(ds, batch_size=self.batch_size, shuffle=True, generator=gen, **common)
        order = np.random.default_rng(self.seed).permutation(len(ds))
        order = stratified(order, np.arange(len(ds)), labels[order])[rank::world].tolist()  # random within each class
        return DataLoader(ds, batch_size=self.batch_size, sampler=order, **common)

    def state_dict(self) -> dict:
        """What checkpoints keep of the data (Lightning stores it under the class name): the vocabulary and the class
        names, which ``rnnlab.predict`` / ``rnnlab.evaluate`` and a resumed run read back."""
        if self.vectorizer is None:
            return {}
        return {"vocabulary": self.vectorizer.to_json(), "class_names": list(self.class_names or [])}

    def train_dataloader(self) -> DataLoader:
        loader = self._loader("train", shuffle=True)
        trainer = getattr(self, "trainer", None)  # under a trainer: resumable mid-epoch, see rnnlab.training.resumable
        return ResumableLoader.of_trainer(loader, trainer) if isinstance(trainer, L.Trainer) else loader

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class IMDBDataModule(TextDataModule):
    """IMDB reviews (neg = 0, pos = 1): train / seeded stratified validation / test.

    Args:
        root: cache folder (config ``data.root``), else env RNNLAB_DATA, else ~/.cache/rnnlab.
        archive: a local archive in the official layout (config ``data.archive``), else env
            RNNLAB_IMDB_ARCHIVE, else the official archive is downloaded.
        val_fraction: share of the 25,000 training reviews held out, stratified and seeded. Default: 0.2.
        val_block: hold out runs of this many consecutively numbered reviews (IMDB numbers one movie's reviews
            consecutively: 100 holds out whole movies, as the test set's movies are not in training); 1: reviews
            one by one. Default: 1.
        max_tokens: vocabulary cap, padding and OOV included. Default: 20000.
        max_length: truncate reviews to this many tokens (None: keep all). Default: 600.
        batch_size, bucket, num_workers, seed: batching (see `rnnlab.data.batching`).
        embeddings: path of a GloVe / word2vec text file; sets ``.pretrained`` (V, D).
        subset: keep only N seeded, stratified reviews of each split (quick runs, tests).
        ngrams, lowercase, strip_accents, strip_punctuation, strip_html: `TextVectorizer` options.
        fixed_length: pad every batch to ``max_length`` (Keras-style) instead of per batch.
        train_segment: train on the reviews cut into pieces of at most this many tokens, each with its review's
            label (Johnson & Zhang, 2016); validation and test read whole reviews. None: whole reviews. Default: None.
        folds, fold: train on the training split without fold ``fold`` of ``folds`` (a seeded partition of its
            reviews, :func:`rnnlab.data.batching.fold_ids`; validation and test unchanged): the bags of cross-fitting
            (``rnnlab.models.crossfit``). None: the whole split. Default: None.
        pad_multiple: round each batch's length up to a multiple of this (at most ``max_length``): few distinct
            shapes, so oneDNN's kernel cache and the allocator reuse what they built (less memory, another rounding:
            docs/data.md). 1: pad to the longest sequence, the published numbers to the last digit.
            Default: 1.
        vectorizer: a fitted `TextVectorizer` (or its JSON path) to use instead of adapting one.
        url, known_hash: where the official archive is downloaded from and its hash (tests point them elsewhere).

    Attributes after ``setup``: ``vectorizer``, ``num_classes`` (2), ``class_names`` (['neg', 'pos']),
    ``pretrained`` (FloatTensor (V, D) or None), ``datasets`` ({'train', 'val', 'test'}: `RaggedDataset`).
    ``embedding_dim`` (D of ``embeddings``, or None) is known before ``setup``.
    """

    def __init__(self, root=None, archive=None, val_fraction: float = 0.2, max_tokens: int | None = 20000, max_length: int | None = 600,
                 batch_size: int = 32, bucket: bool = True, num_workers: int = 0, seed: int = 42, embeddings=None,
                 subset: int | None = None, url: str = imdb.IMDB_URL, known_hash: str = imdb.IMDB_HASH, progressbar: bool = True, **options):
        super().__init__(root=root, val_fraction=val_fraction, max_tokens=max_tokens, max_length=max_length, batch_size=batch_size,
                         bucket=bucket, num_workers=num_workers, seed=seed, embeddings=embeddings, subset=subset, **options)
        self.archive = archive
        self.url = url
        self.known_hash = known_hash
        self.progressbar = progressbar
        self._prepared: imdb.Prepared | None = None

    def prepare_data(self) -> None:
        self._prepare()

    def _prepare(self) -> imdb.Prepared:
        if self._prepared is None:
            self._prepared = imdb.prepare(self.root, self.archive, self.url, self.known_hash, self.progressbar)
        return self._prepared

    def _fingerprint(self) -> str:
        return "imdb-" + self._prepare().fingerprint

    def _read(self, split: str) -> TextSamples:
        return imdb.read_split(self._prepare().folder, split)

    def _source(self, split: str) -> str:
        return str(self._prepare().folder / split)


class FolderDataModule(TextDataModule):
    """Texts from ``train_dir/<class>/*.txt`` (and optionally ``test_dir``), Keras' folder semantics.

    Classes are the sorted sub-folder names (two classes: binary float labels; more:
    int64 labels). Same options as `IMDBDataModule` (``root`` holds only the cache).
    ``test_dir`` must hold exactly the class folders of ``train_dir``, each with a ``.txt`` file:
    ``prepare_data`` and ``setup`` check it, so a mismatch stops the run before training.
    """

    def __init__(self, train_dir, test_dir=None, root=None, **options):
        super().__init__(root=root, **options)
        self.train_dir = Path(train_dir).expanduser()
        self.test_dir = Path(test_dir).expanduser() if test_dir is not None else None

    def prepare_data(self) -> None:
        self._check_folders()

    def setup(self, stage: str | None = None) -> None:
        self._check_folders()  # every rank, before training: not after it, when the test split is read
        super().setup(stage)

    def _check_folders(self) -> None:
        """The folders exist, and ``test_dir`` has exactly the class folders of ``train_dir`` (raises ValueError)."""
        for d in filter(None, (self.train_dir, self.test_dir)):
            if not d.is_dir():
                read_text_folder(d)  # fails early with the error that says how to get data
        if self.test_dir is None:
            return
        train, test = list_classes(self.train_dir), list_classes(self.test_dir)
        missing, extra = [c for c in train if c not in test], [c for c in test if c not in train]
        if missing:
            raise ValueError(f"test_dir {self.test_dir} must hold every class folder of train_dir {self.train_dir}: "
                             f"expected {train}, got {test}; it lacks {missing}. Add them (root/<class>/*.txt), "
                             f"or set test_dir=null to train without a test split")
        if extra:
            raise ValueError(f"test_dir {self.test_dir} must hold only class folders of train_dir {self.train_dir}: "
                             f"expected {train}, got {test}; training has no {extra}, so the model cannot predict "
                             f"them and they would be left out of the test score. Remove them from test_dir, or add "
                             f"training texts for them to train_dir")
        empty = [c for c in test if not has_txt(self.test_dir / c)]
        if empty:
            raise ValueError(f"every class folder of test_dir {self.test_dir} must hold a .txt file: expected at least "
                             f"1, got 0 in {empty}")

    def _has_test(self) -> bool:
        return self.test_dir is not None

    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        for d in filter(None, (self.train_dir, self.test_dir)):
            if not d.is_dir():
                read_text_folder(d)  # raises the helpful FileNotFoundError
            for dirpath, dirnames, filenames in sorted(os.walk(d, followlinks=True)):
                for f in sorted(filenames):
                    st = os.stat(os.path.join(dirpath, f))
                    h.update(f"{os.path.relpath(os.path.join(dirpath, f), d)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            h.update(b"\1")
        return "folder-" + h.hexdigest()[:20]

    def _read(self, split: str) -> TextSamples:
        if split == "train":
            return read_text_folder(self.train_dir)
        return read_text_folder(self.test_dir, class_names=self.class_names)

    def _source(self, split: str) -> str:
        return str(self.train_dir if split == "train" else self.test_dir)


def texts_to_batch(vectorizer: TextVectorizer, texts, max_length: int | None = 600) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids (B, L) int64, lengths (B,) int64)`` for raw texts, exactly as the data modules batch them."""
    flat, lengths = vectorizer.encode(list(texts), max_length)
    ds = RaggedDataset(flat, lengths, np.zeros(len(lengths)))
    ids, lengths, _ = collate([ds[i] for i in range(len(ds))])
    return ids, lengths

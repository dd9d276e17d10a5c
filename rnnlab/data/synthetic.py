"""Long-range synthetic tasks, generated from the seed: the adding problem and copy memory.

**Adding problem** (Hochreiter & Schmidhuber 1997; the setting of Le, Jaitly & Hinton 2015). Each sample is ``T``
steps of two features, a value :math:`v_t \\sim \\mathcal{U}(0, 1)` and a marker :math:`m_t \\in \\{0, 1\\}` with
exactly two markers set, one in each half of the sequence; the target is the sum of the two marked values,

.. math::
    y = \\sum_t m_t v_t, \\qquad
    \\mathrm{MSE}_{\\text{baseline}} = \\mathbb{E}\\,[(y - 1)^2] = \\operatorname{Var}(v_a + v_b) = 2 \\cdot \\tfrac{1}{12}
    = \\tfrac{1}{6} \\approx 0.167,

the loss of always predicting 1, a model that has learnt nothing about the sequence.

**Copy memory** (Arjovsky, Shah & Bengio 2016). The input is ``T + 20`` symbols: 10 symbols drawn uniformly from the
8 categories ``1..8``, then ``T - 1`` blanks (``0``), the delimiter ``9``, then 10 more blanks; the target is
``T + 10`` blanks followed by the 10 symbols. The loss is the cross-entropy averaged over all ``T + 20`` steps; the
memoryless baseline predicts a blank for ``T + 10`` steps and the uniform distribution over the 8 categories for the
last 10, so

.. math::
    J_{\\text{baseline}} = \\frac{10 \\log 8}{T + 20}.

Both datamodules hold fixed ``train_size`` / ``val_size`` / ``test_size`` samples, each split drawn from its own
generator seeded from ``(seed, split)``: the same seed gives the same tensors on every machine, and changing one
split's size leaves the others unchanged. They expose what ``rnnlab.train`` reads from a datamodule
(``vectorizer.vocab_size``, ``vectorizer.to_json()``, ``num_classes``), plus :attr:`baseline_loss` and
:meth:`probe_batch` for the diagnostics.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from rnnlab.models.resumable import ResumableLoader

__all__ = ["adding_problem", "copy_memory", "AddingDataModule", "CopyMemoryDataModule", "adding_baseline",
           "copy_baseline", "BLANK", "DELIMITER", "NUM_SYMBOLS", "COPY_LENGTH"]

SPLITS = ("train", "val", "test")
BLANK, DELIMITER, NUM_SYMBOLS, COPY_LENGTH = 0, 9, 8, 10


def adding_baseline() -> float:
    """MSE of always predicting 1: the variance of the sum of two U(0, 1) values, 1/6."""
    return 1.0 / 6.0


def copy_baseline(length: int) -> float:
    """Mean per-step cross-entropy of the memoryless strategy: 10 log 8 / (T + 20)."""
    return COPY_LENGTH * math.log(NUM_SYMBOLS) / (length + 2 * COPY_LENGTH)


def _generator(seed: int, split: str) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + SPLITS.index(split))


def adding_problem(n: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples of the adding problem: inputs ``(n, T, 2)`` float32 (value, marker), targets ``(n,)`` float32.

    >>> x, y = adding_problem(3, 10, torch.Generator().manual_seed(0))
    >>> x.shape, x[..., 1].sum(1).tolist(), torch.allclose(y, (x[..., 0] * x[..., 1]).sum(1))
    (torch.Size([3, 10, 2]), [2.0, 2.0, 2.0], True)
    """
    if length < 2:
        raise ValueError(f"`data.length` must be >= 2 for the adding problem (one marker per half): got {length}")
    values = torch.rand(n, length, generator=generator)  # (n, T)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=generator)  # one marker in the first half
    second = torch.randint(half, length, (n,), generator=generator)  # and one in the second
    markers = torch.zeros(n, length)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]  # (n,)
    return torch.stack([values, markers], dim=-1), target


def copy_memory(n: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` copy-memory samples: inputs and targets ``(n, T + 20)`` int64 (0 blank, 1..8 symbols, 9 delimiter).

    >>> x, y = copy_memory(2, 5, torch.Generator().manual_seed(0))
    >>> x.shape, (x[:, 14] == 9).all().item(), torch.equal(y[:, -10:], x[:, :10]), (y[:, :-10] == 0).all().item()
    (torch.Size([2, 25]), True, True, True)
    """
    if length < 1:
        raise ValueError(f"`data.length` must be >= 1 for copy memory (the blanks between the symbols and "
                         f"the delimiter): got {length}")
    total = length + 2 * COPY_LENGTH
    symbols = torch.randint(1, NUM_SYMBOLS + 1, (n, COPY_LENGTH), generator=generator)  # (n, 10)
    x = torch.full((n, total), BLANK, dtype=torch.long)
    x[:, :COPY_LENGTH] = symbols
    x[:, COPY_LENGTH + length - 1] = DELIMITER  # after T - 1 blanks
    y = torch.full((n, total), BLANK, dtype=torch.long)
    y[:, -COPY_LENGTH:] = symbols
    return x, y


@dataclass(frozen=True)
class SyntheticInputs:
    """What ``rnnlab.train`` reads from a datamodule's ``vectorizer``: the input alphabet (or feature width)."""

    task: str
    vocab_size: int  # symbols of the input alphabet (copy), or features per step (adding)

    def to_json(self) -> str:
        return json.dumps({"task": self.task, "vocab_size": self.vocab_size})


def available_memory() -> int:
    """Bytes of memory available to a new allocation: Linux's ``MemAvailable``, else the free physical pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class SeededShuffle:
    """A training DataLoader shuffled by its own generator (seeded once, so epoch e's order follows from the seed and
    the e epochs before it), whose order a checkpoint can restore.

    The order is the plain DataLoader's (``shuffle=True`` with the generator): the runs made before this class existed
    are unchanged. The checkpoint keeps the generator's state at the start of the current epoch and now (after the last batch drawn).
    Restored mid-epoch (``mid_epoch``: :class:`~rnnlab.models.resumable.ResumableLoader` then drops the batches already
    trained on), the epoch draws its order again from its start state; restored at an epoch's end, the next epoch
    draws from the state the finished epoch left, as in the uninterrupted run.
    """

    def __init__(self, loader: DataLoader):
        self.loader = loader
        self._start = loader.generator.get_state()

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):  # sampler, dataset, batch_size ...
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self):
        # a generator: nothing runs before the first batch is asked for, so an iter() that asks for none (Lightning
        # probes a loader that is not a DataLoader so) draws nothing from the generator and leaves the order as it was
        self._start = self.loader.generator.get_state()
        yield from self.loader

    def state_dict(self) -> dict:
        return {"epoch_start": self._start, "now": self.loader.generator.get_state()}

    def load_state_dict(self, state: dict, mid_epoch: bool) -> None:
        self.loader.generator.set_state(state["epoch_start" if mid_epoch else "now"])


class _SyntheticDataModule(L.LightningDataModule):
    task = ""
    # the model whose inputs and outputs these batches are (rnnlab.train refuses another): conf/model/task.yaml
    model_choice, model_target = "task", "rnnlab.models.tasks.TaskModule"
    bytes_per_step = 16  # generating a sample of T steps holds ~16 T bytes at its peak (two float32 or int64 tensors)

    def __init__(self, length: int = 100, train_size: int = 5000, val_size: int = 1000, test_size: int = 2000,
                 batch_size: int = 50, seed: int = 42, num_workers: int = 0):
        super().__init__()
        for name, value in (("length", length), ("train_size", train_size), ("val_size", val_size),
                            ("test_size", test_size), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`data.{name}` must be an integer >= 1: got {value!r}")
        self.length, self.batch_size, self.seed, self.num_workers = length, batch_size, seed, num_workers
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self._check_memory()
        self.datasets: dict[str, TensorDataset] = {}
        self.class_names: list[str] = []

    def steps(self) -> int:
        """Steps of one sample: ``T``."""
        return self.length

    def _check_memory(self) -> None:
        """The splits are generated whole in memory: refuse sizes that cannot fit before allocating anything."""
        n = sum(self.sizes.values())
        need, free = n * self.steps() * self.bytes_per_step, available_memory()
        if need > free:
            fits = max(free // (n * self.bytes_per_step) - (self.steps() - self.length), 1)
            raise ValueError(
                f"`data.length` must leave the {n} samples of data.train_size + val_size + test_size room in memory: "
                f"expected data.length <= {fits} here, got {self.length}, whose samples need {need / 2**30:.1f} GiB "
                f"to generate where {free / 2**30:.1f} GiB are available; lower data.length or the split sizes")

    def _make(self, n: int, generator: torch.Generator):
        raise NotImplementedError

    @property
    def baseline_loss(self) -> float:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            if split not in self.datasets:
                self.datasets[split] = TensorDataset(*self._make(self.sizes[split], _generator(self.seed, split)))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle, generator=generator,
                          num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        loader = self._loader("train", True)
        trainer = getattr(self, "trainer", None)  # under a trainer: resumable mid-epoch, see rnnlab.models.resumable
        return ResumableLoader.of_trainer(SeededShuffle(loader), trainer) if isinstance(trainer, L.Trainer) else loader

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def state_dict(self) -> dict:
        """What checkpoints keep of the data, as the text datamodules keep their vocabulary: the input alphabet."""
        return {"vocabulary": self.vectorizer.to_json(), "class_names": []}

    def probe_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` validation samples: the same inputs every time (every sample has length ``T``)."""
        self.setup()
        x, y = self.datasets["val"].tensors
        return x[:n], y[:n]


class AddingDataModule(_SyntheticDataModule):
    """The adding problem of length ``T`` (module docstring). Batches: ``x`` (B, T, 2) float32, ``y`` (B,) float32.

    Attributes:
        vectorizer: ``vocab_size`` = 2 input features; num_classes: 1 (one regression output).
        baseline_loss: 1/6, the MSE of always predicting 1.
    """

    task = "adding"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.length < 2:
            raise ValueError(f"`data.length` must be >= 2 for the adding problem (one marker per half): got "
                             f"{self.length}")
        self.vectorizer, self.num_classes = SyntheticInputs("adding", 2), 1

    def _make(self, n, generator):
        return adding_problem(n, self.length, generator)

    @property
    def baseline_loss(self) -> float:
        return adding_baseline()


class CopyMemoryDataModule(_SyntheticDataModule):
    """Copy memory with ``T`` blanks (module docstring). Batches: ``x``, ``y`` (B, T + 20) int64.

    Attributes:
        vectorizer: ``vocab_size`` = 10 input symbols; num_classes: 10 per-step classes (same alphabet).
        baseline_loss: 10 log 8 / (T + 20), the memoryless strategy's cross-entropy.
    """

    task = "copy"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.vectorizer, self.num_classes = SyntheticInputs("copy", NUM_SYMBOLS + 2), NUM_SYMBOLS + 2

    def steps(self) -> int:
        return self.length + 2 * COPY_LENGTH

    def _make(self, n, generator):
        return copy_memory(n, self.length, generator)

    @property
    def baseline_loss(self) -> float:
        return copy_baseline(self.length)

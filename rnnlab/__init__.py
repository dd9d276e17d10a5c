"""rnnlab: hand-written recurrent cells, exact peers of torch.nn, with gradient diagnostics."""

__version__ = "0.1.0"

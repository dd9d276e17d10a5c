"""rnnlab: hand-written recurrent cells, exact peers of torch.nn, with gradient diagnostics."""
from pathlib import Path as _Path

__version__ = "0.1.0"

# The Hydra configs are the top-level conf/ folder, installed as the package rnnlab.conf (setup.py maps it). Run
# from a source checkout that is not installed (PYTHONPATH=.), rnnlab.conf is found there too: the checkout's root
# is searched for rnnlab's subpackages after rnnlab/ itself.
if not (_Path(__file__).parent / "conf" / "__init__.py").is_file() and (
        _Path(__file__).parents[1] / "conf" / "__init__.py").is_file():
    __path__.append(str(_Path(__file__).parents[1]))

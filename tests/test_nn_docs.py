"""The examples in the rnnlab.nn docstrings run and print what they claim."""
import doctest

import pytest
import torch

import rnnlab.nn as rn
from rnnlab.nn import base, cells, gru, lstm, norms, registry, rnn


@pytest.mark.parametrize("module", [lstm, gru, rnn, base, cells, norms, registry])
def test_docstring_examples(module):
    globs = {"torch": torch, **{name: getattr(rn, name) for name in rn.__all__}}
    result = doctest.testmod(module, extraglobs=globs, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

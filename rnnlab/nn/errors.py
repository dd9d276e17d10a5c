"""The exceptions of rnnlab.nn's argument and input checks: torch.nn's types, rnnlab's messages.

Each class derives from the type ``torch.nn`` raises for the same mistake, so code written for ``torch.nn``
(``except RuntimeError``) catches it, and from the type rnnlab raised before, so code written for rnnlab does too.
The messages keep rnnlab's grammar: "`x` must ...: expected A, got B".

* :class:`ShapeError` (ValueError, RuntimeError): ``input.size(-1)``, the shape or rank of ``hx``, a sequence
  length of 0. torch.nn raises RuntimeError; rnnlab raised ValueError.
* :class:`DTypeError` (TypeError, ValueError, RuntimeError): ``input`` or ``hx`` of another dtype than the
  parameters. torch.nn raises ValueError for the input, RuntimeError for ``hx``; rnnlab raised TypeError, ValueError.
* :class:`SizeTypeError` (ValueError, TypeError): ``input_size``, ``hidden_size``, ``num_layers`` or ``proj_size``
  not an int. torch.nn raises TypeError; rnnlab raised ValueError.
"""


class ShapeError(ValueError, RuntimeError):
    """A tensor of the wrong shape: torch.nn's RuntimeError, rnnlab's earlier ValueError."""


class DTypeError(TypeError, ValueError, RuntimeError):
    """A tensor of another dtype than the parameters: torch.nn's ValueError (input) or RuntimeError (hx), rnnlab's
    earlier TypeError (input) or ValueError (hx)."""


class SizeTypeError(ValueError, TypeError):
    """A size argument that is not an int: torch.nn's TypeError, rnnlab's earlier ValueError."""

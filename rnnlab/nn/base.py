"""RNNBase: what every recurrent module shares: argument checks, parameters, input handling, layer stacking.

The recurrence itself (one layer, one direction) is not here: :func:`rnnlab.nn.backends.loop.run_layer` is the
reference, and ``BACKENDS`` maps a backend name to a function with the same signature (:mod:`rnnlab.nn.backends`). The concrete modules
(:class:`~rnnlab.nn.lstm.LSTM`, :class:`~rnnlab.nn.lstm.CIFGLSTM`, :class:`~rnnlab.nn.gru.GRU`,
:class:`~rnnlab.nn.rnn.RNN`) only say which cell they run and document its equations.
"""
from __future__ import annotations

import numbers
import warnings
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnlab.nn import regularizers
from rnnlab.nn.backends import fused, loop
from rnnlab.nn.backends import triton as triton_backend
from rnnlab.nn.errors import DTypeError, ShapeError, SizeTypeError
from rnnlab.nn.init import INITS, reset_parameters_

#: backend name -> ``run_layer`` with the signature of :func:`rnnlab.nn.backends.loop.run_layer`. Adding one is one
#: line.
BACKENDS = {"loop": loop.run_layer, "fused": fused.run_layer, "triton": triton_backend.run_layer}


def resolve_backend(name: str, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """The backend ``name`` runs as on ``device``: ``'auto'`` picks the fastest correct one.

    CPU: ``fused`` (its C++ loops; scripts/bench_cells.py). CUDA, float32/float64 with triton installed: ``triton``,
    whose persistent kernels ran faster than ``fused`` on a GPU (docs/kernels.md); else ``fused``.
    """
    if name == "auto":
        device = torch.device(device)
        if device.type == "cuda" and dtype in (torch.float32, torch.float64) and triton_backend.available():
            return "triton"
        return "fused"
    return name


def _to_float(t, dtype: torch.dtype):
    """A floating Tensor or PackedSequence cast to ``dtype``; anything else (None, wrong types) as it is, for the
    argument checks to name."""
    data = t.data if isinstance(t, PackedSequence) else t
    return t.to(dtype) if isinstance(data, Tensor) and data.is_floating_point() else t


def check_sizes(**sizes) -> None:
    """Each keyword a positive int (not a bool): :class:`SizeTypeError` for another type, ValueError if <= 0."""
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise SizeTypeError(f"`{name}` must be a positive int: got {value!r}")
        if value <= 0:
            raise ValueError(f"`{name}` must be a positive int: got {value!r}")


def _check_backend(name) -> None:
    if name != "auto" and name not in BACKENDS:
        raise ValueError(f"`backend` must be one of {['auto', *BACKENDS]}: got {name!r}")


class RNNBase(nn.Module):
    """Base class of rnnlab's recurrent modules; see :class:`rnnlab.nn.LSTM` for the arguments.

    It checks arguments and inputs, creates the parameters in torch's names, shapes and order, turns every input
    form (batch_first, unbatched 2-D, PackedSequence, ``lengths``) into a time-major ``(T, B, I)`` batch with
    lengths, and calls ``BACKENDS[backend]`` once per (layer, direction), with dropout between layers in training.

    Per-timestep gradient norms (for :mod:`rnnlab.diagnostics`)::

        >>> m = LSTM(3, 4, bidirectional=True).record_grad_norms()
        >>> out, _ = m(torch.randn(6, 2, 3), lengths=[6, 2])
        >>> out.sum().backward()
        >>> sorted(m.grad_norms), m.grad_norms["l0"].shape  # (B, T) per layer and direction
        (['l0', 'l0_reverse'], torch.Size([2, 6]))
        >>> m.grad_norms["l0"][1, 2:]  # zero past the sequence's length
        tensor([0., 0., 0., 0.])
        >>> m.last_lengths
        tensor([6, 2])
    """

    cell: str = ""  # 'lstm' | 'cifg' | 'gru' | 'rnn' | 'indrnn'
    torch_peer: Optional[type] = None  # the torch.nn class with the same parameters, for from_torch/to_torch

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        nonlinearity: str = "tanh",
        forget_gate: bool = True,
        forget_bias: float = 0.0,
        init: str = "torch",
        backend: str = "auto",
        proj_size: Optional[int] = None,
        zoneout: float = 0.0,
        zoneout_cell: Optional[float] = None,
        weight_dropout: float = 0.0,
        variational_dropout: float = 0.0,
        layer_norm: bool = False,
        variant: str = "vanilla",
        peephole: bool = False,
    ) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        if proj_size is not None and self.cell != "lstm":  # torch.nn.GRU/RNN refuse even proj_size=0
            raise ValueError(
                f"`proj_size` is only supported for LSTM: {type(self).__name__} got proj_size={proj_size!r}"
            )
        proj_size = 0 if proj_size is None else proj_size
        is_int = isinstance(proj_size, int) and not isinstance(proj_size, bool)
        if not is_int or not 0 <= proj_size < hidden_size:
            raise (ValueError if is_int else SizeTypeError)(
                f"`proj_size` must be a non-negative int smaller than hidden_size: expected 0 <= proj_size < "
                f"{hidden_size}, got {proj_size!r}"
            )
        for name, value in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
            if not isinstance(value, bool):
                raise TypeError(f"`{name}` must be a bool: got {type(value).__name__} {value!r}")
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"`dropout` must be a number in [0, 1] (the probability of zeroing an element): got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
                f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}"
            )
        if nonlinearity not in loop.NONLINEARITIES:
            raise ValueError(f"`nonlinearity` must be one of {list(loop.NONLINEARITIES)}: got {nonlinearity!r}")
        if init not in INITS:
            raise ValueError(f"`init` must be one of {list(INITS)}: got {init!r}")
        if not isinstance(forget_bias, numbers.Real) or isinstance(forget_bias, bool):
            raise TypeError(f"`forget_bias` must be a float: got {forget_bias!r}")
        _check_backend(backend)
        for name, p in (("zoneout", zoneout), ("zoneout_cell", 0.0 if zoneout_cell is None else zoneout_cell),
                        ("weight_dropout", weight_dropout), ("variational_dropout", variational_dropout)):
            if not isinstance(p, numbers.Real) or isinstance(p, bool) or not 0 <= p < 1:
                raise ValueError(f"`{name}` must be a probability in [0, 1): got {p!r}")
        if not isinstance(layer_norm, bool):
            raise TypeError(f"`layer_norm` must be a bool: got {type(layer_norm).__name__} {layer_norm!r}")
        if variant not in loop.VARIANTS:
            raise ValueError(f"`variant` must be one of {list(loop.VARIANTS)}: got {variant!r}")
        if not isinstance(peephole, bool):
            raise TypeError(f"`peephole` must be a bool: got {type(peephole).__name__} {peephole!r}")
        if self.cell != "lstm" and (variant != "vanilla" or peephole):
            raise ValueError(f"`variant` and `peephole` are options of LSTM: {type(self).__name__} got "
                             f"variant={variant!r}, peephole={peephole!r}")
        if not forget_gate and variant not in ("vanilla", "nfg"):
            raise ValueError(f"`forget_gate=False` is variant 'nfg': expected variant 'nfg' (or 'vanilla'), got {variant!r}")
        if variant == "np" and peephole:
            raise ValueError("`peephole` must be False with variant 'np' (no peepholes): expected False, got True "
                             "(Greff's vanilla LSTM with peepholes is variant='vanilla', peephole=True)")
        variant = "nfg" if not forget_gate else variant
        forget_gate = variant != "nfg"
        if layer_norm and (variant not in ("vanilla", "np", "nfg") or peephole):
            raise ValueError(f"`layer_norm=True` is not supported with variant={variant!r}, peephole={peephole!r}: "
                             "expected variant 'vanilla', 'np' or 'nfg' without peepholes, or layer_norm=False")

        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.dropout = float(dropout)
        self.nonlinearity, self.forget_gate = nonlinearity, bool(forget_gate)
        self.forget_bias, self.init, self.backend = float(forget_bias), init, backend
        self.proj_size = proj_size  # P: h_t = W_hr (o_t ⊙ tanh(c_t)) has P entries; 0 = no projection
        # regularizers (rnnlab/nn/regularizers.py): zoneout z_h, z_c; DropConnect on W_hh; locked dropout; LayerNorm
        self.zoneout = float(zoneout)
        self.zoneout_cell = self.zoneout if zoneout_cell is None else float(zoneout_cell)
        self.weight_dropout, self.variational_dropout = float(weight_dropout), float(variational_dropout)
        self.layer_norm = layer_norm
        self._warned_loop_only = False
        self.variant, self.peephole = variant, peephole  # Greff et al. (2017)'s LSTM variants (loop.VARIANTS)
        self._warned_backend = False
        self._record_grad_norms = False
        self.grad_norms: dict[str, Tensor] = {}
        self._last_lengths: Optional[Tensor] = None

        D, G, H = self.num_directions, self.num_gates, hidden_size
        H_out = proj_size or H  # the width of h_t
        factory = {"device": device, "dtype": dtype}
        for k in range(num_layers):  # registration order = torch's, so init='torch' draws the same numbers
            layer_input = input_size if k == 0 else H_out * D
            for d in range(D):
                sfx = f"_l{k}" + ("_reverse" if d == 1 else "")
                self.register_parameter("weight_ih" + sfx, nn.Parameter(torch.empty(G * H, layer_input, **factory)))
                self.register_parameter("weight_hh" + sfx, nn.Parameter(torch.empty(self._weight_hh_shape(H_out),
                                                                                     **factory)))
                if bias:
                    self.register_parameter("bias_ih" + sfx, nn.Parameter(torch.empty(G * H, **factory)))
                    self.register_parameter("bias_hh" + sfx, nn.Parameter(torch.empty(G * H, **factory)))
                if proj_size:
                    self.register_parameter("weight_hr" + sfx, nn.Parameter(torch.empty(proj_size, H, **factory)))
                if layer_norm:
                    regularizers.register_layer_norm(self, sfx, G * H, H if self.cell in ("lstm", "cifg") else 0,
                                                     factory)
                if peephole:  # p_i, p_f, p_o of the variant's sigmoid gates, (S*H,)
                    S = sum(k in loop.VARIANT_GATES[variant] for k in "ifo")
                    self.register_parameter("weight_peephole" + sfx, nn.Parameter(torch.empty(S * H, **factory)))
                if variant == "fgr":  # (R_i|R_f|R_o): the i, f, o gates read [i; f; o]_{t-1}
                    self.register_parameter("weight_gg" + sfx, nn.Parameter(torch.empty(3 * H, 3 * H, **factory)))
        self.reset_parameters()

    # --- layout -------------------------------------------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def num_gates(self) -> int:
        """G: the number of H-row blocks in weight_ih / weight_hh."""
        if self.cell == "lstm":
            return len(loop.VARIANT_GATES[self.variant])
        return {"cifg": 3, "gru": 3, "rnn": 1, "indrnn": 1}[self.cell]

    def _weight_hh_shape(self, h_out: int) -> tuple[int, ...]:
        """The shape of ``weight_hh``: ``(G*H, H_out)``; :class:`rnnlab.nn.IndRNN`'s is a vector."""
        return (self.num_gates * self.hidden_size, h_out)

    def forget_slice(self) -> Optional[slice]:
        """Rows of the forget gate in the packed weights and biases, or None without a forget gate."""
        H = self.hidden_size
        if self.cell == "lstm":
            gates = loop.VARIANT_GATES[self.variant]  # (i, f, g, o) with the variant's gates left out
            k = gates.find("f")
            return slice(k * H, (k + 1) * H) if k >= 0 else None
        if self.cell == "cifg":
            return slice(0, H)  # (f, g, o)
        return None

    def _layer_weights(self, k: int, d: int) -> list[Optional[Tensor]]:
        sfx = f"_l{k}" + ("_reverse" if d == 1 else "")
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [getattr(self, n + sfx) if self.bias or n.startswith("weight") else None for n in names]

    def _projection(self, k: int, d: int) -> Optional[Tensor]:
        """``weight_hr_l{k}{_reverse}`` (P, H), or None without ``proj_size``."""
        return getattr(self, f"weight_hr_l{k}" + ("_reverse" if d == 1 else "")) if self.proj_size else None

    @property
    def fused_ready(self) -> bool:
        """The fused (and triton) backends run this module: no projection, no peepholes, and an LSTM variant their
        loops hold (vanilla = np, nfg = ``forget_gate=False``, cifg = :class:`~rnnlab.nn.lstm.CIFGLSTM`'s loops)."""
        return not self.proj_size and not self.peephole and self.variant in ("vanilla", "np", "nfg", "cifg")

    def _loop_only_kwargs(self, k: int, d: int) -> dict:
        """The arguments only the loop reference takes: the projection and Greff's variants, where they are used."""
        sfx = f"_l{k}" + ("_reverse" if d == 1 else "")
        kwargs = {"weight_hr": self._projection(k, d)} if self.proj_size else {}
        if self.cell == "lstm" and self.variant not in ("vanilla", "np", "nfg") or self.peephole:
            kwargs["variant"] = self.variant
        if self.peephole:
            kwargs["weight_peephole"] = getattr(self, "weight_peephole" + sfx)
        if self.variant == "fgr":
            kwargs["weight_gg"] = getattr(self, "weight_gg" + sfx)
        return kwargs

    # torch.nn.RNNBase's attributes, which third-party code reads (AWD-LSTM's WeightDrop, weight_norm on an RNN).
    # Computed on each read, so a weight replaced by a plain tensor (weight_norm, WeightDrop) is the one listed.
    @property
    def mode(self) -> str:
        """torch's ``mode``: ``'LSTM'``, ``'GRU'``, ``'RNN_TANH'``, ``'RNN_RELU'``; rnnlab's variants without a torch
        peer: ``'CIFG'``, ``'LSTM_NOFORGET'``, ``'RNN_IDENTITY'``."""
        if self.cell == "rnn":
            return "RNN_" + self.nonlinearity.upper()
        if self.cell == "lstm" and not self.forget_gate and not self.peephole:
            return "LSTM_NOFORGET"
        if self.cell == "lstm" and (self.variant not in ("vanilla", "np") or self.peephole):
            return "LSTM_" + self.variant.upper() + ("_PEEPHOLE" if self.peephole else "")
        return self.cell.upper()

    @property
    def _all_weights(self) -> list[list[str]]:
        """Per (layer, direction), the parameter names in torch's order: weight_ih, weight_hh, bias_ih, bias_hh
        (without ``bias``: none), weight_hr (with ``proj_size``)."""
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.bias else [])
        names += ["weight_hr"] if self.proj_size else []
        names += ["weight_peephole"] if self.peephole else []
        names += ["weight_gg"] if self.variant == "fgr" else []
        return [[n + f"_l{k}" + ("_reverse" if d == 1 else "") for n in names]
                for k in range(self.num_layers) for d in range(self.num_directions)]

    @property
    def _flat_weights_names(self) -> list[str]:
        return [n for names in self._all_weights for n in names]

    @property
    def _flat_weights(self) -> list[Optional[Tensor]]:
        return [getattr(self, n, None) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """Per (layer, direction): the weights named in :attr:`_all_weights`, as torch."""
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def reset_parameters(self) -> None:
        reset_parameters_(self, self.init, self.forget_bias)
        regularizers.reset_layer_norm_(self)

    def flatten_parameters(self) -> None:
        """No-op, so code written for torch.nn (cuDNN weight flattening) runs unchanged."""

    # --- per-timestep gradient recording (consumed by rnnlab.diagnostics) --------------------------------------
    def record_grad_norms(self, enabled: bool = True) -> "RNNBase":
        """While enabled, each forward allocates a zero ``(B, T)`` float32 buffer per (layer, direction) that the
        backward fills with :math:`\\lVert \\partial J/\\partial h_t \\rVert_2`; read it from :attr:`grad_norms`
        (keys ``'l0'``, ``'l0_reverse'``, ``'l1'``, ...) after ``loss.backward()``. Disabled costs nothing."""
        self._record_grad_norms = bool(enabled)
        if not enabled:
            self.grad_norms = {}
        return self

    @property
    def last_lengths(self) -> Optional[Tensor]:
        """The lengths ``(B,)`` int64 CPU tensor used by the last forward, or None (every sequence had T steps)."""
        if self._last_lengths is not None and self._last_lengths.device.type != "cpu":
            self._last_lengths = self._last_lengths.cpu()  # synchronises, but only when someone asks
        return self._last_lengths

    # --- forward ------------------------------------------------------------------------------------------------
    def forward(self, input: Union[Tensor, PackedSequence], hx=None, lengths=None):
        """``(output, h_n)``, or ``(output, (h_n, c_n))`` for LSTM/CIFG, exactly as torch.nn; see the class
        docstring for the shapes. ``lengths`` (list of ints or 1-D integer tensor on the CPU or the input's
        device) gives each sequence's length: padded steps keep the state and output zeros.

        Under ``torch.autocast`` (Lightning's ``precision='16-mixed'`` / ``'bf16-mixed'``) the recurrence runs with
        autocast off, in the parameters' dtype: the input and ``hx`` are cast to it, and the outputs come back in it.
        A state carried over hundreds of steps would collect float16/bfloat16 rounding at every one."""
        if isinstance(input, (Tensor, PackedSequence)):
            device = (input.data if isinstance(input, PackedSequence) else input).device.type
            if torch.is_autocast_enabled(device):
                dtype = self.weight_ih_l0.dtype
                hx = tuple(_to_float(h, dtype) for h in hx) if isinstance(hx, (tuple, list)) else _to_float(hx, dtype)
                with torch.autocast(device, enabled=False):
                    return self.forward(_to_float(input, dtype), hx, lengths)
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError("`lengths` must be None when input is a PackedSequence: the lengths come from the packing")
            pack = input
            x, lengths = pad_packed_sequence(pack)  # (T, B, I) in the caller's batch order; lengths int64 CPU
            batched = True
        else:
            if not isinstance(input, Tensor):
                raise TypeError(f"`input` must be a Tensor or PackedSequence: got {type(input).__name__}")
            if input.dim() not in (2, 3):
                raise ValueError(
                    f"`input` must be 3-D (batched) or 2-D (unbatched): expected (L, N, H_in), (N, L, H_in) with "
                    f"batch_first=True, or (L, H_in), got {input.dim()}-D input of shape {tuple(input.shape)}"
                )
            batched = input.dim() == 3
            if not batched:
                x = input.unsqueeze(1)  # (T, 1, I)
            elif self.batch_first:
                x = input.transpose(0, 1)  # (T, B, I)
            else:
                x = input  # (T, B, I)
        self._check_input(x)
        T, B = x.shape[:2]
        lengths = self._check_lengths(lengths, x) if lengths is not None else None
        h0, c0 = self._check_hx(hx, x, batched)  # (L*D, B, H) each; c0 None for gru/rnn

        backend = _resolved(self.backend, x.device, x.dtype)
        if not self.fused_ready:  # the projection, peepholes and most variants are written in the loop reference only
            if backend != "loop" and not self._warned_backend:
                warnings.warn(f"{type(self).__name__}({self.extra_repr()}) runs on the 'loop' backend: the "
                              f"{backend!r} backend has no projection, peepholes or variant {self.variant!r}")
                self._warned_backend = True
            backend = "loop"
        loop_only = regularizers.loop_only(self)
        if loop_only and backend != "loop":  # zoneout, layer_norm, indrnn change the step: written in the loop only
            if not self._warned_loop_only:
                warnings.warn(f"{type(self).__name__}({loop_only}) runs on the 'loop' backend: the {backend!r} backend "
                              "has no such step")
                self._warned_loop_only = True
            backend = "loop"
        cell = "cifg" if self.variant == "cifg" and backend != "loop" else self.cell  # CIFG's own fused loops
        run = BACKENDS[backend]
        record = self._record_grad_norms
        self.grad_norms = {}
        self._last_lengths = lengths
        lengths_dev = lengths.to(x.device, non_blocking=True) if lengths is not None else None
        layer_input, h_n, c_n = x, [], []
        for k in range(self.num_layers):
            outs = []
            if self.variational_dropout and self.training:  # one mask per sequence, the same at every step
                layer_input = regularizers.locked_dropout(layer_input, self.variational_dropout)
            for d in range(self.num_directions):
                idx = k * self.num_directions + d
                buf = None
                if record:
                    buf = torch.zeros(B, T, dtype=torch.float32, device=x.device)
                    self.grad_norms[f"l{k}" + ("_reverse" if d == 1 else "")] = buf
                out, h, c = run(
                    cell, layer_input, h0[idx], None if c0 is None else c0[idx],
                    *regularizers.layer_weights(self, k, d, T, self._layer_weights(k, d)),
                    lengths_dev, d == 1, nonlinearity=self.nonlinearity, forget_gate=self.forget_gate, grad_norms=buf,
                    **(self._loop_only_kwargs(k, d) if backend == "loop" else {}),
                    **regularizers.step_options(self, k, d, T, h0[idx]),
                )  # (T, B, H_out), (B, H_out), (B, H) | None
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_input = outs[0] if len(outs) == 1 else torch.cat(outs, -1)  # (T, B, D*H)
            if self.dropout and self.training and k < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, True)  # between layers, as torch
        output = layer_input
        if self.variational_dropout and self.training:
            output = regularizers.locked_dropout(output, self.variational_dropout)
        h_n = torch.stack(h_n)  # (L*D, B, H)
        c_n = torch.stack(c_n) if c0 is not None else None

        if packed:
            output = self._repack(output, lengths, pack)
        elif not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)  # (T, D*H), (L*D, H)
            c_n = c_n.squeeze(1) if c_n is not None else None
        elif self.batch_first:
            output = output.transpose(0, 1)  # (B, T, D*H)
        return output, ((h_n, c_n) if c_n is not None else h_n)

    @staticmethod
    def _repack(output: Tensor, lengths: Tensor, pack: PackedSequence) -> PackedSequence:
        """Pack ``output`` (T, B, *) in the batch order of ``pack``, keeping its sorted/unsorted indices."""
        if pack.sorted_indices is not None:
            idx = pack.sorted_indices
            output, lengths = output.index_select(1, idx), lengths[idx.cpu()]
        out = pack_padded_sequence(output, lengths, enforce_sorted=True)
        return PackedSequence(out.data, out.batch_sizes, pack.sorted_indices, pack.unsorted_indices)

    # --- checks -------------------------------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        if x.size(-1) != self.input_size:
            raise ShapeError(
                f"`input.size(-1)` must equal input_size: expected {self.input_size}, got {x.size(-1)}"
            )
        w = self.weight_ih_l0
        if x.dtype != w.dtype:
            raise DTypeError(
                f"`input.dtype` must equal the parameters' dtype: expected {w.dtype}, got {x.dtype} "
                f"(cast the input, or the module with .to({x.dtype}))"
            )
        if x.device != w.device:
            raise ValueError(f"`input.device` must equal the parameters' device: expected {w.device}, got {x.device}")
        if x.size(0) == 0:
            raise ShapeError("`input` must have at least one time step: got sequence length 0")

    def _check_lengths(self, lengths, x: Tensor) -> Tensor:
        T, B = x.shape[:2]
        if isinstance(lengths, (list, tuple)):
            if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in lengths):
                raise TypeError(f"`lengths` must be a list of ints or an int64 tensor: got {lengths!r}")
            lengths = torch.tensor(lengths, dtype=torch.int64)
        if not isinstance(lengths, Tensor):
            raise TypeError(f"`lengths` must be a list of ints or a 1-D int64 tensor: got {type(lengths).__name__}")
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"`lengths.dtype` must be an integer type: expected torch.int64, got {lengths.dtype}")
        if lengths.device.type != "cpu" and lengths.device != x.device:
            raise ValueError(
                f"`lengths.device` must be the CPU or the input's device: expected cpu or {x.device}, got {lengths.device}"
            )
        if lengths.dim() != 1 or lengths.size(0) != B:
            raise ValueError(f"`lengths` must have shape (batch,): expected ({B},), got {tuple(lengths.shape)}")
        lengths = lengths.long()
        if B == 0:
            pass  # an empty batch has no lengths to check
        elif lengths.device.type == "cpu" and not torch.compiler.is_compiling():  # a graph has no values to read
            lo, hi = int(lengths.min()), int(lengths.max())
            if lo < 1 or hi > T:
                raise ValueError(f"`lengths` must lie in [1, T={T}] (T = input's time steps): got min {lo}, max {hi}")
        else:  # checked on the device, without a host synchronisation; fails at the next sync
            torch._assert_async(((lengths >= 1) & (lengths <= T)).all(), f"`lengths` must lie in [1, T={T}]")
        return lengths

    def _check_hx(self, hx, x: Tensor, batched: bool) -> tuple[Tensor, Optional[Tensor]]:
        LD, B, H = self.num_layers * self.num_directions, x.size(1), self.hidden_size
        H_out = self.proj_size or H
        is_lstm = self.cell in ("lstm", "cifg")
        if hx is None:
            return x.new_zeros(LD, B, H_out), (x.new_zeros(LD, B, H) if is_lstm else None)
        if is_lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"`hx` must be a tuple (h_0, c_0) for {type(self).__name__}: got {type(hx).__name__}")
            states = [("hx[0]", hx[0]), ("hx[1]", hx[1])]
        else:
            if not isinstance(hx, Tensor):
                raise TypeError(f"`hx` must be a Tensor for {type(self).__name__}: got {type(hx).__name__}")
            states = [("hx", hx)]
        out = []
        for name, s in states:
            width = H if name == "hx[1]" else H_out  # c_0 has hidden_size columns, h_0 proj_size if projected
            expected = (LD, B, width) if batched else (LD, width)
            if tuple(s.shape) != expected:
                raise ShapeError(
                    f"`{name}` must have shape (num_layers * num_directions, batch, hidden_size)"
                    f"{'' if batched else ' without batch for 2-D input'}: expected {expected}, got {tuple(s.shape)}"
                )
            if s.dtype != x.dtype or s.device != x.device:
                raise (DTypeError if s.dtype != x.dtype else ValueError)(
                    f"`{name}` must match the input's dtype and device: expected {x.dtype} on {x.device}, "
                    f"got {s.dtype} on {s.device}"
                )
            out.append(s if batched else s.unsqueeze(1))
        return out[0], (out[1] if is_lstm else None)

    # --- conversion to and from torch.nn ------------------------------------------------------------------------
    def _torch_kwargs(self) -> dict:
        kwargs = dict(
            input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers, bias=self.bias,
            batch_first=self.batch_first, dropout=self.dropout, bidirectional=self.bidirectional,
        )
        return {**kwargs, "proj_size": self.proj_size} if self.proj_size else kwargs

    @classmethod
    def from_torch(cls, module: nn.Module, **kwargs) -> "RNNBase":
        """A copy of a ``torch.nn`` module of the peer class, same configuration and weights (``kwargs`` are extra
        rnnlab arguments, e.g. ``backend``)."""
        if cls.torch_peer is None:
            raise TypeError(f"{cls.__name__} has no torch.nn peer to convert from")
        if not isinstance(module, cls.torch_peer):
            raise TypeError(f"`module` must be a {cls.torch_peer.__module__}.{cls.torch_peer.__name__}: got {type(module).__name__}")
        w = next(module.parameters())
        args = dict(
            input_size=module.input_size, hidden_size=module.hidden_size, num_layers=module.num_layers,
            bias=module.bias, batch_first=module.batch_first, dropout=float(module.dropout),
            bidirectional=module.bidirectional, device=w.device, dtype=w.dtype,
        )
        if cls.cell == "rnn":
            args["nonlinearity"] = module.nonlinearity
        if getattr(module, "proj_size", 0):
            args["proj_size"] = module.proj_size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the dropout/num_layers warning was already given for `module`
            new = cls(**args, **kwargs)
        new.load_state_dict(module.state_dict())
        return new.train(module.training)

    def to_torch(self) -> nn.Module:
        """The ``torch.nn`` module with this configuration and these weights."""
        if self.torch_peer is None or (self.cell == "lstm" and self.mode != "LSTM"):
            raise TypeError(f"{type(self).__name__}({self.extra_repr()}) has no torch.nn peer: its gates differ from torch's")
        if self.cell == "rnn" and self.nonlinearity == "identity":
            raise TypeError("RNN(nonlinearity='identity') has no torch.nn peer: torch.nn.RNN supports 'tanh' and 'relu'")
        if self.layer_norm:
            raise TypeError(f"{type(self).__name__}(layer_norm=True) has no torch.nn peer: torch.nn has no "
                            "layer-normalized recurrence")
        w = self.weight_ih_l0
        kwargs = self._torch_kwargs()
        if self.cell == "rnn":
            kwargs["nonlinearity"] = self.nonlinearity
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = self.torch_peer(**kwargs, device=w.device, dtype=w.dtype)
        m.load_state_dict(self.state_dict())
        return m.train(self.training)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"  # where torch prints it
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        if self.cell == "rnn" and self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        if self.cell == "lstm" and not self.forget_gate:
            s += ", forget_gate=False"
        elif self.cell == "lstm" and self.variant != "vanilla":
            s += f", variant={self.variant!r}"
        if self.peephole:
            s += ", peephole=True"
        if self.forget_slice() is not None and self.forget_bias != 0.0:
            s += f", forget_bias={self.forget_bias}"
        if self.init != "torch":
            s += f", init={self.init!r}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s + regularizers.extra_repr(self)


def _resolved(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    _check_backend(backend)  # the attribute may have been changed after construction
    return resolve_backend(backend, device, dtype)

r"""The fused backends' autograd Function: setup, the per-step loops, a hand-written BPTT backward.

Same contract as :func:`rnnlab.nn.backends.loop.run_layer`. The per-step loops are a parameter (``loops``: the
Python ones of :mod:`~rnnlab.nn.backends.fused`, the C++ ones of :mod:`~rnnlab.nn.backends.cpp`, the Triton ones of
:mod:`~rnnlab.nn.backends.triton`); everything around them is here:

* the input projection of all timesteps is one matmul ``(T*B, I) @ W_ih^T`` (LSTM/CIFG rows permuted so the
  sigmoid gates are contiguous and ``g`` is last);
* the backward first computes, for all steps at once, the local derivative factors (e.g.
  :math:`A_o = \tanh(c_t) \odot o_t (1 - o_t)`), so each reverse step is ~6 ops: add the incoming gradient, scale
  by the factors, one matmul with :math:`W_{hh}` (the C++ LSTM loop, ``lstm_bwd_inline``, computes the factors row
  by row inside its loop instead);
* gate gradients of all steps land in one buffer ``DG (T, B, G*H)``; after the loop ``dx``, ``dW_ih``, ``dW_hh``
  are one matmul each and the biases one sum (:func:`_weight_grads`).

Lengths: with :math:`m_t = [t < \text{len}]`, the state is kept where :math:`m_t = 0`
(``h_t = m_t ? \tilde h_t : h_{t-1}``) and the output is :math:`m_t \tilde h_t`. The reverse direction walks
``t = T-1..0`` with the same mask, so it starts at each sequence's own last token.

Buffers (time-major; ``G`` gates, ``H`` hidden units, ``K = G - 1``); the loops in every language use these names:

=============  ================  ==================================================================================
name           shape             content
=============  ================  ==================================================================================
``A``          (T, B, G*H)       LSTM/CIFG: :math:`W_{ih} x_t + b_{ih} + b_{hh}`, gates ``[sigmoid gates..., g]``;
                                 the forward adds :math:`W_{hh} h_{t-1}` and overwrites it with the activations.
                                 GRU: ``[r, z, n]`` blocks, the r and z preactivations (both biases) and
                                 :math:`b_{hn}`, overwritten with :math:`r_t`, :math:`z_t`,
                                 :math:`W_{hn} h_{t-1} + b_{hn}`
``XP``         (T, B, G*H)       the input projection :math:`W_{ih} x_t (+ b_{ih})`; RNN: plus :math:`b_{hh}`
``XN``         (T, B, H)         GRU: the n block of ``XP``, :math:`W_{in} x_t + b_{in}`
``N``          (T, B, H)         GRU: the candidate :math:`n_t`
``Cs``         (T+1, B, H)       LSTM/CIFG cell states, ``c0`` at index 0 (``T`` for the reverse direction)
``TC``         (T, B, H)         :math:`\tanh(\tilde c_t)` of the candidate cell state
``Hs``         (T+1, B, H)       with lengths, the hidden states like ``Cs`` (``out`` holds the masked outputs);
                                 ``None`` without lengths: ``out`` is then the state sequence
``M``, ``Mf``  (T, B, 1)         the length mask :math:`m_t`, bool and in the input's dtype; ``None`` if unmasked
``DG``         (T, B, G*H)       :math:`\partial J / \partial` preactivations, torch gate order; GRU: ``[r, z,
                                 W_hn h + b_hn]``
``DN``         (T, B, H)         GRU: :math:`\partial J / \partial` the n preactivation
``Ac``         (T, B, H)         :math:`o_t \odot (1 - \tanh^2 c_t)`: dJ/dh_t's share of dJ/dc_t
``Ao``         (T, B, H)         :math:`\tanh(c_t) \odot o_t (1 - o_t)`: dJ/dh_t to the o preactivation
``Adc``        (T, B, K, H)      dJ/dc_t to the preactivations of the K gates before ``o`` in torch order
                                 (:math:`g_t \odot \sigma'` for i, :math:`c_{t-1} \odot \sigma'` for f,
                                 :math:`i_t \odot (1 - g_t^2)` for g; CIFG with :math:`i_t = 1 - f_t`)
``F``          (T, B, H)         the forget gate :math:`f_t` (a view of ``A``), ``None`` without one
``Az``         (T, B, H)         GRU: :math:`(h_{t-1} - n_t) \odot z_t (1 - z_t)`
``An``         (T, B, H)         GRU: :math:`(1 - z_t) \odot (1 - n_t^2)`
``Ar``         (T, B, H)         GRU: :math:`(W_{hn} h_{t-1} + b_{hn}) \odot r_t (1 - r_t)`
``R``, ``Z``   (T, B, H)         GRU: :math:`r_t`, :math:`z_t` (views of ``A``)
``Ad``         (T, B, H)         RNN: :math:`\phi'` at the output (``None`` for the identity)
``NR``         (T, B)            :math:`\lVert \partial J / \partial h_t \rVert_2` per row, if recording
``gout``       (T, B, H)         :math:`\partial J / \partial \mathrm{out}_t` from the layer above
``dh``, ``dc`` (B, H)            the running :math:`\partial J / \partial h`, :math:`\partial J / \partial c`
=============  ================  ==================================================================================

Integer codes: ``kind`` (:data:`~rnnlab.nn.backends.LSTM`, ``LSTM_NOFORGET``, ``CIFG``) and ``act`` (``TANH``,
``RELU``, ``IDENTITY``), defined once in :mod:`rnnlab.nn.backends`.

Double backward (``torch.autograd.grad(..., create_graph=True)``: gradient penalties, MAML, Hessian-vector
products): the hand-written backward above writes into buffers in place and is not itself differentiable. The
autograd engine runs a Function's backward with grad mode on exactly when a graph of the backward is asked for
(``create_graph=True``), so :meth:`_BPTTLayer.backward` checks :func:`torch.is_grad_enabled` and then computes the
first-order gradients through the differentiable reference (:func:`rnnlab.nn.backends.loop.run_layer`, re-run on
the saved inputs), whose graph carries the second-order terms. The first-order path (``create_graph=False``) is
unchanged: one check, nothing recomputed.
"""
import os

import torch

from rnnlab.nn.backends import ACTS, CIFG, KERNEL_CELLS, LSTM, LSTM_NOFORGET, loop

__all__ = ["run_layer_with", "states", "walk"]



def states(h0, out, Hs, reverse):
    """Views of the state before/after each step: ``[Hl[t + p], Hl[t + n]]`` (see :func:`walk`).

    Without lengths the output *is* the state sequence, so ``out`` is used directly; with lengths
    states live in ``Hs`` (T+1, B, H) and ``out`` holds the masked outputs.
    """
    if Hs is not None:
        return Hs.unbind(0)
    return [*out.unbind(0), h0] if reverse else [h0, *out.unbind(0)]


def walk(T, reverse):
    """Time indices in walk order and offsets ``p``, ``n``: state before step t is index t+p, after it t+n."""
    return (range(T - 1, -1, -1), 1, 0) if reverse else (range(T), 0, 1)


def _onednn_ok():
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


_ONEDNN = _onednn_ok()


#: How many times :func:`_linear` answered with the public op because the internal one was missing or threw.
FALLBACKS = 0


def _linear(x, w, b=None):
    """``x @ w.T + b`` for the big matmuls. float32 on CPU goes to oneDNN (``mkldnn::_linear_pointwise``, a torch
    internal: faster than ``torch.mm`` on these shapes, docs/kernels.md); where that op is missing or throws,
    ``torch.mm`` / ``torch.addmm`` compute the same product. ``RNNLAB_FUSED_PRETEND`` (see
    ``csrc/fused_loops.cpp``) containing ``linear_pointwise:missing`` or ``linear_pointwise:throws`` forces that."""
    global FALLBACKS
    if x.dtype == torch.float32 and x.device.type == "cpu" and torch.backends.mkldnn.is_available():
        pretend = os.environ.get("RNNLAB_FUSED_PRETEND", "")
        if _ONEDNN and "linear_pointwise:missing" not in pretend:
            try:
                if "linear_pointwise:throws" in pretend:
                    raise RuntimeError("RNNLAB_FUSED_PRETEND: linear_pointwise throws")
                return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
            except (RuntimeError, TypeError):
                pass
        FALLBACKS += 1
    return torch.mm(x, w.t()) if b is None else torch.addmm(b, x, w.t())


def _gate_layout(cell, forget_gate):
    """Torch-order gate names, and the forward order putting the sigmoid gates first."""
    names = {"cifg": "fgo", "lstm": "ifgo" if forget_gate else "igo"}[cell]
    fwd = names.replace("g", "") + "g"
    return names, [names.index(c) for c in fwd]


def _rows(w, order, H):
    """Rows of a gate-packed ``w`` ((G*H, ...) or (G*H,)) reordered gate-wise."""
    return torch.cat([w[k * H:(k + 1) * H] for k in order])


class _BPTTLayer(torch.autograd.Function):
    """One layer, one direction: the forward runs ``loops``' forward loop, the backward one of the ``_*_backward``
    functions below, then :func:`_weight_grads`."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, mask, reverse, cell, nonlinearity,
                forget_gate, grad_norms, loops):
        T, B, _ = x.shape
        H = w_hh.size(1)
        x2 = x.reshape(T * B, -1)  # (T*B, I)
        out = x.new_empty(T, B, H)
        M = Mf = Hs = None
        if mask is not None:  # states in Hs; out = m ⊙ candidate
            Hs = x.new_empty(T + 1, B, H)
            Hs[T if reverse else 0] = h0
            M = mask.unsqueeze(-1)  # (T, B, 1) bool
            Mf = M.to(x.dtype)
        saved = {}
        if cell in ("lstm", "cifg"):
            names, perm = _gate_layout(cell, forget_gate)
            w_ih_p, w_hh_p = _rows(w_ih, perm, H), _rows(w_hh, perm, H)
            b = None if b_ih is None else _rows(b_ih + b_hh, perm, H)
            A = _linear(x2, w_ih_p, b).view(T, B, -1)  # (T, B, G*H), gates [sigmoid gates..., g]
            Cs = x.new_empty(T + 1, B, H)
            Cs[T if reverse else 0] = c0
            TC = x.new_empty(T, B, H)  # tanh(c~_t)
            kind = CIFG if cell == "cifg" else (LSTM if forget_gate else LSTM_NOFORGET)
            loops.lstm_fwd(A, w_hh_p.t(), h0, Cs, TC, out, Hs, M, Mf, kind, reverse)
            saved.update(A=A, Cs=Cs, TC=TC, names=names, perm=perm, kind=kind)
        elif cell == "gru":
            XP = _linear(x2, w_ih).view(T, B, 3 * H)  # (T, B, 3H)
            A = x.new_empty(T, B, 3 * H)
            if b_ih is None:
                A[..., : 2 * H] = XP[..., : 2 * H]
                A[..., 2 * H:] = 0
            else:
                XP += b_ih
                torch.add(XP[..., : 2 * H], b_hh[: 2 * H], out=A[..., : 2 * H])
                A[..., 2 * H:] = b_hh[2 * H:]
            N = x.new_empty(T, B, H)
            loops.gru_fwd(A, w_hh.t(), XP[..., 2 * H:], N, h0, out, Hs, M, Mf, reverse)
            saved.update(A=A, N=N)
        else:
            XP = _linear(x2, w_ih, None if b_ih is None else b_ih + b_hh)
            loops.rnn_fwd(XP.view(T, B, H), w_hh.t(), h0, out, Hs, M, Mf, ACTS[nonlinearity], reverse)

        h_n = (out[0 if reverse else T - 1] if Hs is None else Hs[0 if reverse else T]).clone()
        c_n = saved["Cs"][0 if reverse else T].clone() if "Cs" in saved else None
        saved.update(Hs=Hs, Mf=Mf, reverse=reverse, cell=cell, nonlinearity=nonlinearity, forget_gate=forget_gate,
                     grad_norms=grad_norms, loops=loops)
        ctx.saved = saved
        ctx.has_bias = b_ih is not None
        # `out` also: in-place edits of it are caught; c0, the biases and the mask for a differentiable backward
        ctx.save_for_backward(x, h0, w_ih, w_hh, out, c0, b_ih, b_hh, mask)
        return out, h_n, c_n

    @staticmethod
    def backward(ctx, gout, gh_n, gc_n):
        if torch.is_grad_enabled():  # create_graph=True: the gradients must carry their own graph
            return _differentiable_backward(ctx, gout, gh_n, gc_n)
        x, h0, w_ih, w_hh, out = ctx.saved_tensors[:5]
        s = ctx.saved
        T, B, _ = x.shape
        if s["Hs"] is not None:  # (T, B, H) states before / after each step
            Hs = s["Hs"]
            Hprev, Hnew = (Hs[1:], Hs[:T]) if s["reverse"] else (Hs[:T], Hs[1:])
            gout = gout * s["Mf"]  # out = m ⊙ h~
        else:
            Hnew = out
            Hprev = torch.cat([out[1:], h0[None]] if s["reverse"] else [h0[None], out[:-1]])
        NR = x.new_empty(T, B) if s["grad_norms"] is not None else None
        DG = x.new_empty(T, B, w_hh.size(0))  # preactivation gradients, torch gate order
        dh = gh_n.clone()  # dJ/d(state) after the current step
        dc0 = None
        if s["cell"] in ("lstm", "cifg"):
            dc0 = gc_n.clone()
            DX = DH = _lstm_backward(s, x, w_hh, gout, DG, dh, dc0, NR)
        elif s["cell"] == "gru":
            DX, DH = _gru_backward(s, x, w_hh, Hprev, gout, DG, dh, NR)
        else:
            DX = DH = _rnn_backward(s, x, w_hh, Hnew, gout, DG, dh, NR)
        if NR is not None:
            s["grad_norms"].copy_(NR.t())
        dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(s["loops"], ctx.needs_input_grad, ctx.has_bias, x, Hprev,
                                                       w_ih, DX, DH)
        return dx, dh, dc0, dw_ih, dw_hh, db_ih, db_hh, None, None, None, None, None, None, None


def _differentiable_backward(ctx, gout, gh_n, gc_n):
    """The first-order gradients as differentiable functions of the inputs and of ``gout``, ``gh_n``, ``gc_n``: the
    layer re-run through :func:`rnnlab.nn.backends.loop.run_layer` (same numbers, tests/test_fused.py) on the saved
    inputs, then ``torch.autograd.grad(..., create_graph=True)`` of it. Costs one more forward, only when asked."""
    x, h0, w_ih, w_hh, _, c0, b_ih, b_hh, mask = ctx.saved_tensors
    s = ctx.saved
    inputs = (x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    wanted = [k for k, t in enumerate(inputs) if t is not None and ctx.needs_input_grad[k]]
    lengths = None if mask is None else mask.sum(0)  # (B,): the mask is m_t = [t < len]
    outs = loop.run_layer(s["cell"], x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, s["reverse"],
                          nonlinearity=s["nonlinearity"], forget_gate=s["forget_gate"], grad_norms=s["grad_norms"])
    pairs = [(o, g) for o, g in zip(outs, (gout, gh_n, gc_n)) if o is not None and g is not None]
    grads = torch.autograd.grad([o for o, _ in pairs], [inputs[k] for k in wanted], [g for _, g in pairs],
                                create_graph=True, allow_unused=True)
    result = [None] * 14  # one per forward argument
    for k, g in zip(wanted, grads):
        result[k] = g
    return tuple(result)


def _lstm_backward(s, x, w_hh, gout, DG, dh, dc, NR):
    """LSTM / CIFG: fills ``DG`` (the preactivations' gradients, torch gate order); ``dh``, ``dc`` end as the
    gradients of the initial states. Returns ``DG``, which is both ``dG`` for ``W_ih`` and for ``W_hh``."""
    A, Cs, TC, names, perm, kind = (s[k] for k in ("A", "Cs", "TC", "names", "perm", "kind"))
    loops, Mf, reverse = s["loops"], s["Mf"], s["reverse"]
    inline = _inline_lstm_bwd(loops, x)
    if inline is not None:  # C++ on CPU: the factors below are computed inside the loop, no pass over all steps
        inline(DG, A, TC, Cs, gout, dh, dc, w_hh, Mf, NR, kind, reverse)
        return DG
    T, H = x.size(0), w_hh.size(1)
    one = x.new_ones(())
    act = {names[j]: A[..., k * H:(k + 1) * H] for k, j in enumerate(perm)}  # activations by gate name
    Cprev = Cs[1:] if reverse else Cs[:T]  # c_{t-1}
    o, g = act["o"], act["g"]
    Ac = o * torch.addcmul(one, TC, TC, value=-1)  # o ⊙ (1 - tanh² c)
    Ao = TC * torch.addcmul(o, o, o, value=-1)  # tanh(c) ⊙ o(1 - o)
    K = len(names) - 1  # gates driven by dJ/dc: all but o (last in torch order)
    Adc = x.new_empty(T, x.size(1), K, H)
    for k, nm in enumerate(names[:K]):
        a = act[nm]
        if nm == "g":
            gi = (1 - act["f"]) if kind == CIFG else act["i"]
            torch.mul(gi, torch.addcmul(one, g, g, value=-1), out=Adc[:, :, k])  # i ⊙ (1 - g²)
        else:
            other = {"i": g, "f": (Cprev - g) if kind == CIFG else Cprev}[nm]
            torch.mul(other, torch.addcmul(a, a, a, value=-1), out=Adc[:, :, k])  # · ⊙ σ'
    F = act["f"] if kind != LSTM_NOFORGET else None
    loops.lstm_bwd(DG, Ac, Adc, Ao, F, gout, dh, dc, w_hh, Mf, NR, reverse)
    return DG


def _gru_backward(s, x, w_hh, Hprev, gout, DG, dh, NR):
    """GRU: fills ``DG`` = gradients of ``[r, z, W_hn h + b_hn]`` preactivations; ``dh`` ends as dJ/dh_0. Returns
    ``(DX, DH)``: the gradients for ``W_ih`` (``[dr, dz, dn]``) and for ``W_hh`` (``DG``)."""
    A, N = s["A"], s["N"]
    H = w_hh.size(1)
    one = x.new_ones(())
    R, Z, HN = (A[..., k * H:(k + 1) * H] for k in range(3))
    Az = (Hprev - N) * torch.addcmul(Z, Z, Z, value=-1)  # (h_{t-1} - n) ⊙ z(1 - z)
    An = (1 - Z) * torch.addcmul(one, N, N, value=-1)  # (1 - z) ⊙ (1 - n²)
    Ar = HN * torch.addcmul(R, R, R, value=-1)  # (W_hn h + b_hn) ⊙ r(1 - r)
    DN = x.new_empty(N.shape)
    s["loops"].gru_bwd(DG, DN, Az, An, Ar, R, Z, gout, dh, w_hh, s["Mf"], NR, s["reverse"])
    return torch.cat([DG[..., : 2 * H], DN], dim=-1), DG  # [dr, dz, dn] (T, B, 3H); [dr, dz, d(W_hn h + b_hn)]


def _rnn_backward(s, x, w_hh, Hnew, gout, DG, dh, NR):
    """Elman RNN: fills ``DG`` = gradients of the preactivation; ``dh`` ends as dJ/dh_0. Returns ``DG``."""
    nl = s["nonlinearity"]
    Ad = None  # φ' at the (candidate) output; padded steps get no gradient anyway
    if nl == "tanh":
        Ad = torch.addcmul(x.new_ones(()), Hnew, Hnew, value=-1)  # 1 - h²
    elif nl == "relu":
        Ad = (Hnew > 0).to(x.dtype)
    s["loops"].rnn_bwd(DG, Ad, gout, dh, w_hh, s["Mf"], NR, s["reverse"])
    return DG


def _weight_grads(loops, need, has_bias, x, Hprev, w_ih, DX, DH):
    """The gradients of the input and the weights from the preactivations' gradients of all steps: ``dx = DX W_ih``,
    ``dW_ih = DX^T x``, ``dW_hh = DH^T h_{t-1}``, the biases their sums; one matmul or sum each."""
    T, B, _ = x.shape
    H = Hprev.size(-1)
    DX2, DH2 = DX.reshape(T * B, -1), DH.reshape(T * B, -1)
    dx = _linear(DX2, w_ih.t()).view_as(x) if need[0] else None  # dG W_ih
    dw_ih = dw_hh = None
    wgrad = getattr(loops, "wgrad", None)  # the C++ loops' dG^T X: oneDNN on the transposed view, no copy
    if wgrad is not None and x.device.type == "cpu":
        dw_ih = wgrad(DX2, x.reshape(T * B, -1)) if need[3] else None  # dG^T x
        dw_hh = wgrad(DH2, Hprev.reshape(T * B, H)) if need[4] else None  # dG^T h_{t-1}
    elif need[3] or need[4]:  # dG^T made contiguous once (oneDNN would copy a transposed view on each call)
        DXt = DX2.t().contiguous()  # (G*H, T*B)
        DHt = DXt if DH is DX else DH2.t().contiguous()
        dw_ih = _linear(DXt, x.reshape(T * B, -1).t()) if need[3] else None  # dG^T x
        dw_hh = _linear(DHt, Hprev.reshape(T * B, H).t()) if need[4] else None  # dG^T h_{t-1}
    db_ih = db_hh = None
    if has_bias:
        db_ih = DX2.sum(0)
        db_hh = db_ih if DH is DX else DH2.sum(0)
    return dx, dw_ih, dw_hh, db_ih, db_hh


def _inline_lstm_bwd(loops, x):
    """The C++ ``lstm_bwd_inline`` (LSTM backward computing its derivative factors inside the loop) where it
    applies: the extension's loops, CPU, float32/float64; else None (precompute + ``loops.lstm_bwd``)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    return getattr(loops, "lstm_bwd_inline", None)


def _traced_or_transformed(*tensors) -> bool:
    """Whether this call is being traced (``torch.compile`` / ``torch.export``, i.e. Dynamo; ``torch.jit.trace``)
    or runs under a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``, ...). The per-step loops write into
    buffers in place, outside the dispatcher's view (the C++ ones are ops without fake kernels or batching rules),
    so none of these can see through them, and the layer runs the loop reference instead: same numbers, made of
    torch ops. ``torch._C._functorch.is_functorch_wrapped_tensor`` (a torch internal) tells a transform's wrapped
    tensor; without it the transform meets the fused Function and raises its own error."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return True
    wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    return wrapped is not None and any(t is not None and wrapped(t) for t in tensors)


def run_layer_with(loops, cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
                   *, nonlinearity="tanh", forget_gate=True, grad_norms=None):
    """:func:`rnnlab.nn.backends.loop.run_layer` with a given implementation of the six per-step loops."""
    if cell not in KERNEL_CELLS:
        raise ValueError(f"`cell` must be one of {KERNEL_CELLS}: got {cell!r}")
    T, B, _ = x.shape
    H = weight_hh.size(1)
    if h0 is None:
        h0 = x.new_zeros(B, H)
    if cell in ("lstm", "cifg") and c0 is None:
        c0 = x.new_zeros(B, H)
    mask = None
    if lengths is not None:
        lengths = torch.as_tensor(lengths, device=x.device)
        mask = torch.arange(T, device=x.device).unsqueeze(1) < lengths.unsqueeze(0)  # (T, B)
    if cell in ("gru", "rnn"):
        c0 = None
    if B == 0 or _traced_or_transformed(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
        # an empty batch: nothing to compute, and the reference's ops give torch.nn's empty shapes. Traced or
        # transformed: the reference is made of torch ops that every tracer and transform sees through
        return loop.run_layer(cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
                              nonlinearity=nonlinearity, forget_gate=forget_gate, grad_norms=grad_norms)
    return _BPTTLayer.apply(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, mask, bool(reverse), cell,
                            nonlinearity, forget_gate, grad_norms, loops)

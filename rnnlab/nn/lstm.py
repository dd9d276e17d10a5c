"""LSTM (with or without a forget gate) and the coupled input-forget gate LSTM (CIFG)."""
from __future__ import annotations

from torch import nn

from rnnlab.nn._docs import args_doc, shapes_doc
from rnnlab.nn.base import RNNBase


class LSTM(RNNBase):
    __doc__ = r"""Multi-layer long short-term memory (LSTM) RNN, a drop-in peer of :class:`torch.nn.LSTM`.

    For each element in the input sequence, each layer computes:

    .. math::
        \begin{array}{ll}
            i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
            f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
            g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
            o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
            c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
            h_t = o_t \odot \tanh(c_t) \\
        \end{array}

    where :math:`h_t` is the hidden state at time `t`, :math:`c_t` the cell state, :math:`x_t` the input
    (for layer :math:`l > 0`, the output :math:`h^{(l-1)}_t` of the layer below, with dropout in training if
    ``dropout > 0``), :math:`h_{t-1}` the hidden state at `t-1` (or :math:`h_0`), and :math:`i_t, f_t, g_t, o_t`
    the input, forget, cell and output gates. :math:`\sigma` is the sigmoid and :math:`\odot` the Hadamard
    (elementwise) product.

    With ``forget_gate=False`` this is the original LSTM of Hochreiter & Schmidhuber (1997), "Long Short-Term
    Memory": there is no :math:`f_t` and :math:`c_t = c_{t-1} + i_t \odot g_t`. It has no ``torch.nn`` peer.

    **Variants** (Greff, Srivastava, Koutník, Steunebrink & Schmidhuber 2017, "LSTM: A Search Space Odyssey"):
    ``variant`` changes one part of the equations above, ``peephole=True`` adds peephole connections to any of them.
    Only ``'vanilla'`` (= ``'np'``) with ``peephole=False`` has a ``torch.nn`` peer.

    .. math::
        \begin{array}{ll}
            \text{peephole=True:} & i_t = \sigma(\ldots + p_i \odot c_{t-1}), \;
                f_t = \sigma(\ldots + p_f \odot c_{t-1}), \; o_t = \sigma(\ldots + p_o \odot c_t) \\
            \text{'vanilla'}, \text{'np'}: & \text{the equations above (Greff's V is 'vanilla' with peepholes,
                his NP is 'np': no peepholes)} \\
            \text{'nig'} \text{ (no input gate)}: & i_t = 1, \; c_t = f_t \odot c_{t-1} + g_t \\
            \text{'nfg'} \text{ (no forget gate)}: & f_t = 1, \; c_t = c_{t-1} + i_t \odot g_t
                \quad (= \text{forget\_gate=False}) \\
            \text{'nog'} \text{ (no output gate)}: & o_t = 1, \; h_t = \tanh(c_t) \\
            \text{'niaf'} \text{ (no input activation)}: & g_t = W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg} \\
            \text{'noaf'} \text{ (no output activation)}: & h_t = o_t \odot c_t \\
            \text{'cifg'} \text{ (coupled input-forget gate)}: & i_t = 1 - f_t
                \quad (= :class:`CIFGLSTM`) \\
            \text{'fgr'} \text{ (full gate recurrence)}: & \text{the preactivation of each } j \in \{i, f, o\}
                \text{ also gets } R_{ij} i_{t-1} + R_{fj} f_{t-1} + R_{oj} o_{t-1} \\
        \end{array}

    where :math:`p_i, p_f, p_o` are diagonal (elementwise) peephole weights and the nine :math:`R_{kj}` the
    gate-to-gate matrices of FGR; :math:`i_0 = f_0 = o_0 = 0` before the first step (at the start of every forward:
    the gate activations are not part of ``hx``). The variants run on the ``'loop'`` backend, except ``'vanilla'``,
    ``'np'``, ``'nfg'`` and ``'cifg'`` without peepholes, which every backend runs (another backend warns once and
    steps aside to ``'loop'``).
    """ + args_doc("LSTM", forget=True, proj=True) + r"""        forget_gate: ``False`` removes the forget gate (1997
            LSTM, 3 gates; the same as ``variant='nfg'``). Default: ``True``
        variant: ``'vanilla'``, ``'np'``, ``'nig'``, ``'nfg'``, ``'nog'``, ``'niaf'``, ``'noaf'``, ``'cifg'`` or
            ``'fgr'`` (above). Default: ``'vanilla'``
        peephole: add the peephole weights :math:`p_i, p_f, p_o` (those of the variant's sigmoid gates).
            Default: ``False``
    """ + shapes_doc(lstm=True, proj=True) + r"""
    Attributes:
        weight_ih_l[k]: input-hidden weights of layer k, :math:`(W_{ii}|W_{if}|W_{ig}|W_{io})`, shape
            ``(4*hidden_size, input_size)`` for k = 0, else ``(4*hidden_size, num_directions * hidden_size)``;
            ``(W_ii|W_ig|W_io)``, ``3*hidden_size`` rows, with ``forget_gate=False``.
        weight_hh_l[k]: hidden-hidden weights, :math:`(W_{hi}|W_{hf}|W_{hg}|W_{ho})`, ``(4*hidden_size, hidden_size)``
        bias_ih_l[k]: :math:`(b_{ii}|b_{if}|b_{ig}|b_{io})`, ``(4*hidden_size)``; ``forget_bias`` is added to :math:`b_{if}`
        bias_hh_l[k]: :math:`(b_{hi}|b_{hf}|b_{hg}|b_{ho})`, ``(4*hidden_size)``
        weight_hr_l[k]: the projection :math:`W_{hr}`, ``(proj_size, hidden_size)``; only with ``proj_size > 0``,
            where ``weight_hh_l[k]`` is ``(4*hidden_size, proj_size)`` and layers k > 0 take
            ``num_directions * proj_size`` inputs.
        weight_peephole_l[k]: with ``peephole=True``, :math:`(p_i|p_f|p_o)`, ``(3*hidden_size)``, only the gates
            the variant has (``'nig'``, ``'cifg'``: :math:`(p_f|p_o)`; ``'nfg'``: :math:`(p_i|p_o)`; ``'nog'``:
            :math:`(p_i|p_f)`).
        weight_gg_l[k]: with ``variant='fgr'``, :math:`(R_{\cdot i}|R_{\cdot f}|R_{\cdot o})`, ``(3*hidden_size,
            3*hidden_size)``: row block j (i, f, o) reads the columns :math:`[i_{t-1}; f_{t-1}; o_{t-1}]`.
        weight_*_l[k]_reverse: the same for the reverse direction (``bidirectional=True``).

    Variants pack the gates they have in the order (i, f, g, o): ``'nig'`` (f, g, o), ``'nfg'`` (i, g, o),
    ``'nog'`` (i, f, g), ``'cifg'`` (f, g, o) as :class:`CIFGLSTM`; the others (i, f, g, o). ``init='torch'`` draws
    the peephole and FGR weights like the others, ``init='keras'`` starts them at zero.

    Gates are packed (i, f, g, o) as in torch, so ``state_dict()`` loads into ``torch.nn.LSTM`` and back;
    :meth:`from_torch` / :meth:`to_torch` convert. ``record_grad_norms()`` records
    :math:`\lVert \partial J / \partial h_t \rVert` per step (see :class:`rnnlab.nn.base.RNNBase`).

    Examples::

        >>> rnn = LSTM(10, 20, 2)
        >>> input = torch.randn(5, 3, 10)
        >>> h0, c0 = torch.randn(2, 3, 20), torch.randn(2, 3, 20)
        >>> output, (hn, cn) = rnn(input, (h0, c0), lengths=[5, 2, 4])
        >>> output.shape, hn.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))
        >>> bool(output[2:, 1].eq(0).all())  # sequence 1 has 2 steps: padded outputs are zero
        True
    """

    cell = "lstm"
    torch_peer = nn.LSTM

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None, *, forget_bias=0.0, forget_gate=True,
                 init="torch", backend="auto", variant="vanilla", peephole=False, **regularizers):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype,
                         forget_gate=forget_gate, forget_bias=forget_bias, init=init, backend=backend,
                         proj_size=proj_size, variant=variant, peephole=peephole, **regularizers)


class CIFGLSTM(RNNBase):
    __doc__ = r"""LSTM with coupled input and forget gates (CIFG): the input gate is :math:`1 - f_t`.

    Greff et al. (2017), "LSTM: A Search Space Odyssey", found this variant as good as the full LSTM on their
    tasks with a quarter fewer parameters. For each element in the input sequence, each layer computes:

    .. math::
        \begin{array}{ll}
            f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
            g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
            o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
            c_t = f_t \odot c_{t-1} + (1 - f_t) \odot g_t \\
            h_t = o_t \odot \tanh(c_t) \\
        \end{array}

    with the symbols of :class:`LSTM`; :math:`i_t = 1 - f_t` is not a parameterised gate.
    """ + args_doc("LSTM", forget=True) + shapes_doc(lstm=True) + r"""
    Attributes:
        weight_ih_l[k]: :math:`(W_{if}|W_{ig}|W_{io})`, ``(3*hidden_size, input_size)`` for k = 0, else
            ``(3*hidden_size, num_directions * hidden_size)``
        weight_hh_l[k]: :math:`(W_{hf}|W_{hg}|W_{ho})`, ``(3*hidden_size, hidden_size)``
        bias_ih_l[k]: :math:`(b_{if}|b_{ig}|b_{io})`, ``(3*hidden_size)``; ``forget_bias`` is added to :math:`b_{if}`
        bias_hh_l[k]: :math:`(b_{hf}|b_{hg}|b_{ho})`, ``(3*hidden_size)``

    Gates are packed (f, g, o); there is no ``torch.nn`` peer, so :meth:`to_torch` raises.

    Examples::

        >>> rnn = CIFGLSTM(10, 20, bidirectional=True)
        >>> output, (hn, cn) = rnn(torch.randn(5, 3, 10))
        >>> output.shape, rnn.weight_ih_l0.shape
        (torch.Size([5, 3, 40]), torch.Size([60, 10]))
    """

    cell = "cifg"
    torch_peer = None

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None, *, forget_bias=0.0, init="torch", backend="auto",
                 **regularizers):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype,
                         forget_bias=forget_bias, init=init, backend=backend, **regularizers)

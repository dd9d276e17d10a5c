"""Per-timestep gradient aggregation on hand-made inputs, and the vanishing-gradient claim on synthetic data."""

import math

import pytest
import torch
from torch import nn

from rnnlab.diagnostics.callback import batch_lengths, find_embedding, find_recorders
from rnnlab.diagnostics.clipping import parameter_group
from rnnlab.diagnostics.gradients import EmbeddingGradNorm, decay_ratios, mean_over_samples
from rnnlab.nn import LSTM, RNN

NORMS = torch.tensor([
    [1.0, 2.0, 3.0, 4.0],
    [5.0, 6.0, 9.0, 9.0],  # length 2: the 9s are padding and must not count
    [7.0, 8.0, 9.0, 0.0],  # length 3
])
LENGTHS = torch.tensor([4, 2, 3])


def test_start_aligned_mean_counts_only_samples_covering_t():
    expected = torch.tensor([(1 + 5 + 7) / 3, (2 + 6 + 8) / 3, (3 + 9) / 2, 4 / 1])
    torch.testing.assert_close(mean_over_samples(NORMS, LENGTHS, "start"), expected)


def test_end_aligned_mean_counts_back_from_each_sequence_last_token():
    # k = 0: last tokens 4, 6, 9; k = 1: 3, 5, 8; k = 2: 2, -, 7; k = 3: 1, -, -
    expected = torch.tensor([(4 + 6 + 9) / 3, (3 + 5 + 8) / 3, (2 + 7) / 2, 1.0])
    torch.testing.assert_close(mean_over_samples(NORMS, LENGTHS, "end"), expected)


def test_index_no_sample_reaches_is_nan_and_none_lengths_mean_full_length():
    out = mean_over_samples(NORMS[1:], LENGTHS[1:], "start")  # lengths 2, 3: nobody reaches t = 3
    assert math.isnan(out[3]) and torch.isfinite(out[:3]).all()
    torch.testing.assert_close(mean_over_samples(NORMS, None, "end"), NORMS.flip(1).mean(0))
    torch.testing.assert_close(mean_over_samples(NORMS, [4, 4, 4], "start"), NORMS.mean(0))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="align must be 'start' or 'end'"):
        mean_over_samples(NORMS, LENGTHS, "middle")
    with pytest.raises(ValueError, match=r"lengths must have shape \(B,\) = \(3,\)"):
        mean_over_samples(NORMS, torch.tensor([1, 2]))


def test_decay_ratios_skip_what_cannot_be_formed():
    assert decay_ratios(torch.tensor([4.0, 2.0, 1.0]), ks=(1, 2, 100)) == {1: 0.5, 2: 0.25}  # T shorter than 100
    assert decay_ratios(torch.tensor([4.0, float("nan"), 1.0]), ks=(1, 2)) == {2: 0.25}
    assert decay_ratios(torch.tensor([0.0, 1.0]), ks=(1,)) == {}


def test_embedding_grad_norm_equals_norm_of_the_gradient_at_each_token():
    torch.manual_seed(0)
    emb, proj = nn.Embedding(20, 5), nn.Linear(5, 1)
    ids = torch.randint(0, 20, (3, 7))
    with EmbeddingGradNorm(emb) as rec:
        x = emb(ids)
        x.retain_grad()
        (proj(x).squeeze(-1) * torch.arange(7.0)).sum().backward()
    torch.testing.assert_close(rec.norms, x.grad.norm(dim=-1))
    assert rec.norms[:, 0].abs().max() == 0  # token 0 had weight 0 in the loss


def test_embedding_grad_norm_works_for_a_frozen_embedding_and_detaches():
    emb = nn.Embedding(10, 4).requires_grad_(False)
    rec = EmbeddingGradNorm(emb).attach()
    emb(torch.tensor([[1, 2]])).pow(2).sum().backward()
    assert rec.norms.shape == (1, 2) and (rec.norms > 0).all()
    rec.detach()
    rec.norms = None
    emb(torch.tensor([[1, 2]]))
    assert rec.norms is None and not emb._forward_hooks


def test_parameter_groups_are_layers_not_parameters():
    assert parameter_group("model.encoder.weight_hh_l1_reverse") == "model.encoder.l1_reverse"
    assert parameter_group("model.encoder.bias_ih_l0") == "model.encoder.l0"
    assert parameter_group("model.head.weight") == "model.head"
    assert parameter_group("weight_ih_l0") == "l0"


def test_finders_pick_outermost_recorders_the_embedding_and_batch_lengths():
    net = nn.Module()
    net.model = nn.Module()
    net.model.embedding = nn.Embedding(5, 3)
    net.model.encoder = LSTM(3, 4, num_layers=2)
    net.baseline = nn.LSTM(3, 4)
    assert [n for n, _ in find_recorders(net)] == ["model.encoder"]
    assert find_embedding(net) is net.model.embedding
    ids, lengths = torch.zeros(2, 5, dtype=torch.long), torch.tensor([5, 3])
    assert batch_lengths((ids, lengths, torch.zeros(2))) is lengths
    assert batch_lengths({"lengths": lengths}) is lengths
    assert batch_lengths((ids, torch.zeros(2))) is None  # float labels are not lengths


# --- the course's claim: tanh RNN gradients vanish with distance from the loss, LSTM's far less ---------------
B, T, I, H = 16, 60, 8, 32


def _end_aligned_decay(cell: str, ks):
    """Per-timestep ||dJ/dh_t|| of one layer, loss on each sequence's own last state, variable lengths."""
    torch.manual_seed(0)
    lengths = torch.randint(45, T + 1, (B,))
    x = torch.randn(T, B, I)
    if cell == "rnn":
        m = RNN(I, H, nonlinearity="tanh")
        with torch.no_grad():  # small recurrent weights: spectral norm 0.5
            nn.init.orthogonal_(m.weight_hh_l0).mul_(0.5)
    else:
        m = LSTM(I, H, forget_bias=1.0)
    m.record_grad_norms(True)
    _, h_n = m(x, lengths=lengths)
    h_last = h_n if cell == "rnn" else h_n[0]  # (1, B, H): state at each sequence's own last token
    nn.Linear(H, 1)(h_last[0]).sum().backward()
    curve = mean_over_samples(m.grad_norms["l0"], m.last_lengths, align="end")
    return curve, decay_ratios(curve, ks)


def _embedding_decay(cell: str, ks):
    """||dJ/dx_t|| at the embedding of torch.nn baselines (packed), the view every model supports."""
    torch.manual_seed(1)
    lengths = torch.randint(45, T + 1, (B,))
    emb = nn.Embedding(100, I)
    m = (nn.RNN if cell == "rnn" else nn.LSTM)(I, H, batch_first=True)
    with torch.no_grad():
        if cell == "rnn":
            nn.init.orthogonal_(m.weight_hh_l0).mul_(0.5)
        else:  # forget bias 1 (torch has two bias vectors; gate order i, f, g, o)
            m.bias_ih_l0.zero_(), m.bias_hh_l0.zero_(), m.bias_ih_l0[H : 2 * H].fill_(1.0)
    ids = torch.randint(1, 100, (B, T))
    with EmbeddingGradNorm(emb) as rec:
        packed = nn.utils.rnn.pack_padded_sequence(emb(ids), lengths, batch_first=True, enforce_sorted=False)
        _, h_n = m(packed)
        h_last = h_n if cell == "rnn" else h_n[0]
        nn.Linear(H, 1)(h_last[0]).sum().backward()
    assert all(rec.norms[b, lengths[b]:].abs().max() == 0 for b in range(B) if lengths[b] < T)  # padding: no gradient
    return mean_over_samples(rec.norms, lengths, align="end"), decay_ratios(mean_over_samples(rec.norms, lengths, "end"), ks)


@pytest.mark.parametrize("measure", [_end_aligned_decay, _embedding_decay], ids=["dJ/dh_t rnnlab.nn", "dJ/dx_t torch.nn"])
def test_tanh_rnn_gradient_vanishes_with_distance_while_lstm_forget_bias_1_keeps_it(measure):
    ks = (1, 5, 10, 20, 40)
    rnn_curve, rnn = measure("rnn", ks)
    lstm_curve, lstm = measure("lstm", ks)
    # the RNN's gradient shrinks geometrically with distance from the loss ...
    assert rnn[1] > rnn[5] > rnn[10] > rnn[20] > rnn[40]
    assert rnn[40] < 1e-8
    # ... the LSTM's, through the cell state with f_t ≈ sigmoid(1), by orders of magnitude less
    assert lstm[40] > 1e4 * rnn[40]
    assert lstm[20] > 100 * rnn[20]
    assert torch.isfinite(rnn_curve[:45]).all() and torch.isfinite(lstm_curve[:45]).all()

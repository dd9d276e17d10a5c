"""SequenceClassifier: padding never changes a sequence's logit, pooling reads the right steps, Keras-like init."""
from pathlib import Path

import pytest
import torch
from torch import nn

import rnnlab.conf
from rnnlab.nn import CELLS
from rnnlab.models.classifier import SequenceClassifier, bigram_ids
from rnnlab.models.config import ModelConfig
from rnnlab.models.module import SequenceClassifierModule
from rnnlab.models.optim import KerasRMSprop, LazyAdam

LENGTHS = [7, 5, 5, 2, 1, 1]


pytestmark = pytest.mark.usefixtures("one_thread")


def classifier(vocab_size, embedding_dim, cell="lstm", num_classes=2, **fields) -> SequenceClassifier:
    return SequenceClassifier(ModelConfig(embedding_dim=embedding_dim, cell=cell, **fields), vocab_size, num_classes)


def padded_batch(vocab=50, lengths=LENGTHS, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(1, vocab, (n,), generator=g)
    return ids, torch.tensor(lengths)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("pooling", ["last", "mean", "max", "mean_max", "sum_sqrt_max"])
def test_logit_of_a_padded_sequence_equals_its_logit_alone(cell, pooling):
    torch.manual_seed(0)
    model = classifier(50, 6, cell, hidden_size=5, num_layers=2, bidirectional=True, pooling=pooling).eval()
    ids, lengths = padded_batch()
    batch = model(ids, lengths)
    alone = torch.stack([model(ids[b:b + 1, :n], lengths[b:b + 1]) for b, n in enumerate(LENGTHS)]).squeeze(1)
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)


def test_last_pooling_reads_forward_at_each_end_and_reverse_at_step_zero():
    torch.manual_seed(0)
    model = classifier(50, 6, "torch_lstm", hidden_size=3, bidirectional=True).eval()
    ids, lengths = padded_batch()
    features = {}
    model.head.register_forward_hook(lambda m, args, out: features.setdefault("x", args[0]))
    model(ids, lengths)
    for b, n in enumerate(LENGTHS):  # torch's own h_n of the unpadded sequence: (2, 1, H) = forward end, reverse end
        _, (h_n, _) = model.encoder(model.embedding(ids[b:b + 1, :n]))
        torch.testing.assert_close(features["x"][b], h_n[:, 0].reshape(-1))


def test_without_lengths_the_model_reads_the_padding_as_keras_without_masking_does():
    torch.manual_seed(0)
    model = classifier(50, 6, "torch_gru", hidden_size=4, use_lengths=False, fixed_length=12).eval()
    ids, lengths = padded_batch()
    assert model.embedding.padding_idx is None and model.embedding.weight[0].abs().sum() > 0  # pad is a token
    z = model(ids, lengths)
    z_longer = model(torch.nn.functional.pad(ids, (0, 3)), lengths)  # same fixed length after padding
    torch.testing.assert_close(z, z_longer)
    ref = model.head(model.encoder(model.embedding(torch.nn.functional.pad(ids, (0, 5))))[0][:, -1])
    torch.testing.assert_close(z, ref.squeeze(-1))  # the state after step 12, padding included


def test_keras_init_matches_keras_layers():
    torch.manual_seed(0)
    model = classifier(1000, 64, "torch_lstm", hidden_size=16, init="keras")
    emb = model.embedding.weight
    assert emb[0].abs().sum() == 0 and emb[1:].abs().max() <= 0.05 and emb[1:].std() > 0.025  # U(-0.05, 0.05)
    assert model.head.bias.abs().sum() == 0
    assert model.head.weight.abs().max() <= (6 / (16 + 1)) ** 0.5  # glorot uniform: fan_in H=16, fan_out 1
    b_ih, b_hh = model.encoder.bias_ih_l0, model.encoder.bias_hh_l0
    assert torch.all(b_ih[16:32] == 1) and b_ih[:16].abs().sum() == 0 and b_hh.abs().sum() == 0  # forget bias 1
    w_hh = model.encoder.weight_hh_l0  # (4H, H), orthonormal columns: Keras' (H, 4H) kernel with orthonormal rows
    torch.testing.assert_close(w_hh.T @ w_hh, torch.eye(16), atol=1e-5, rtol=0)
    assert model.encoder.weight_ih_l0.abs().max() <= (6 / (64 + 64)) ** 0.5  # glorot over the whole (4H, I)


def test_torch_init_keeps_torch_defaults():
    torch.manual_seed(0)
    model = classifier(1000, 64, "torch_gru", hidden_size=16, init="torch")
    assert model.embedding.weight[1:].std() > 0.9  # N(0, 1)
    assert model.encoder.bias_ih_l0.abs().sum() > 0


def test_keras_init_of_a_torch_gru_zeroes_both_biases():
    model = classifier(100, 4, "torch_gru", hidden_size=3, init="keras")
    assert model.encoder.bias_ih_l0.abs().sum() == 0 and model.encoder.bias_hh_l0.abs().sum() == 0


def test_stacked_widths_build_one_layer_per_width():
    model = classifier(50, 6, "torch_gru", hidden_size=[3, 5, 4], bidirectional=True).eval()
    assert [layer.hidden_size for layer in model.encoder.layers] == [3, 5, 4]
    assert model.head.in_features == 8
    ids, lengths = padded_batch()
    assert model(ids, lengths).shape == (len(LENGTHS),)


def test_a_zero_embedding_dim_is_named_as_the_setting_the_user_wrote():
    with pytest.raises(ValueError, match="embedding_dim must be >= 1 .*: got 0"):
        classifier(50, embedding_dim=0)


def test_pretrained_vectors_of_the_wrong_shape_name_the_fix():
    model = classifier(10, 4, "torch_gru", hidden_size=3)
    with pytest.raises(ValueError, match=r"expected \(10, 4\), got \(10, 8\).*embedding_dim=8"):
        model.load_pretrained(torch.zeros(10, 8))
    model.load_pretrained(torch.ones(10, 4), freeze=True)
    assert not model.embedding.weight.requires_grad and model.embedding.weight[0].abs().sum() == 0


def test_multiclass_uses_k_logits_and_cross_entropy():
    module = SequenceClassifierModule(vocab_size=20, num_classes=3, embedding_dim=4, cell="torch_gru", hidden_size=3)
    ids, lengths = padded_batch(vocab=20)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    loss, preds, _ = module._step((ids, lengths, y))
    assert preds.shape == (6,) and isinstance(module.loss_fn, nn.CrossEntropyLoss) and loss.ndim == 0


def test_default_optimizer_is_keras_rmsprop_with_keras_hyperparameters():
    module = SequenceClassifierModule(vocab_size=20, embedding_dim=4, cell="torch_gru", hidden_size=3)
    opt = module.configure_optimizers()
    assert isinstance(opt, KerasRMSprop)
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["rho"] == 0.9 and opt.defaults["eps"] == 1e-7


def test_keras_rmsprop_divides_by_sqrt_of_v_plus_eps_and_torch_by_sqrt_v_plus_eps():
    g = torch.tensor([1e-5, 1.0])  # a rare token's tiny gradient and a large one
    steps = {}
    for name, make in {"keras": lambda p: KerasRMSprop([p], lr=1.0, rho=0.9, eps=1e-7),
                       "torch": lambda p: torch.optim.RMSprop([p], lr=1.0, alpha=0.9, eps=1e-7)}.items():
        p = nn.Parameter(torch.zeros(2))
        opt = make(p)
        p.grad = g.clone()
        opt.step()
        steps[name] = -p.detach()
    v = 0.1 * g ** 2
    torch.testing.assert_close(steps["keras"], g / (v + 1e-7).sqrt())
    torch.testing.assert_close(steps["torch"], g / (v.sqrt() + 1e-7))
    assert steps["keras"][0] < 0.05 * steps["torch"][0]  # the tiny gradient: Keras barely moves, torch jumps ~3.2
    torch.testing.assert_close(steps["keras"][1], steps["torch"][1], rtol=1e-5, atol=0)


@pytest.mark.parametrize("name", ["rmsprop_keras", "rmsprop", "adam", "adamw", "lazy_adam", "sgd"])
def test_every_optimizer_config_builds_an_optimizer(name):
    from hydra import compose, initialize_config_module

    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"model/optimizer={name}", "model/scheduler=cosine"])
    module = SequenceClassifierModule(vocab_size=20, embedding_dim=4, cell="torch_gru", hidden_size=3,
                                      optimizer=cfg.model.optimizer, scheduler=cfg.model.scheduler)
    out = module.configure_optimizers()
    assert isinstance(out["optimizer"], torch.optim.Optimizer)
    assert isinstance(out["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR)


def test_a_stack_of_widths_reports_grad_norms_per_layer_as_one_module_would():
    model = classifier(50, 6, "gru", hidden_size=[3, 5], bidirectional=True)
    model.encoder.record_grad_norms(True)
    ids, lengths = padded_batch()
    model(ids, lengths).sum().backward()
    norms = model.encoder.grad_norms
    assert sorted(norms) == ["l0", "l0_reverse", "l1", "l1_reverse"]
    assert all(n.shape == ids.shape for n in norms.values())
    assert torch.all(norms["l1"][lengths.view(-1, 1) <= torch.arange(ids.size(1))] == 0)  # zero at padding
    torch_stack = classifier(50, 6, "torch_gru", hidden_size=[3, 5])
    torch_stack.encoder.record_grad_norms(True)  # nothing to record, and no error
    torch_stack(ids, lengths).sum().backward()
    assert torch_stack.encoder.grad_norms == {}


MODEL_CONFIGS = sorted(p.stem for p in (Path(rnnlab.conf.__file__).parent / "model").glob("*.yaml")
                       if p.stem not in ("task", "reader"))  # the synthetic tasks' model: tests/test_synthetic_configs.py;
# the reader of cross-fitted scores: tests/test_crossfit.py


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_every_model_config_builds_a_module_that_runs(name):
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", "model.embedding_dim=4", "model.hidden_size=3"])
    module = instantiate(cfg.model, vocab_size=20, num_classes=2, _recursive_=False)
    assert module.hparams.cell == cfg.model.cell.value
    ids, lengths = torch.randint(1, 20, (2, 5)), torch.tensor([5, 2])
    module(ids, lengths).sum().backward()
    assert all(p.grad is not None for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "torch_lstm"])
def test_recurrent_init_puts_every_gate_block_of_w_hh_at_the_chosen_spectral_radius(cell):
    net = SequenceClassifier(ModelConfig(cell=cell, embedding_dim=4, hidden_size=[6, 5], recurrent_init="orthogonal",
                                         recurrent_scale=1.5), 20)
    blocks = [b for name, w in net.encoder.named_parameters() if "weight_hh" in name
              for b in w.split(w.size(1), dim=0)]
    assert len(blocks) >= 2
    for block in blocks:  # orthogonal times 1.5: every singular value is 1.5
        assert torch.allclose(torch.linalg.svdvals(block), torch.full((block.size(0),), 1.5), atol=1e-5)


def test_a_recurrent_init_that_is_not_known_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="model.recurrent_init must be null or one of"):
        ModelConfig(recurrent_init="eye")
    with pytest.raises(ValueError, match="model.recurrent_scale must be >= 0"):
        ModelConfig(recurrent_scale=-1.0)


def test_bigram_rows_hash_each_word_pair_and_leave_padding_at_row_zero():
    from rnnlab.models.classifier import bigram_ids

    ids, lengths = padded_batch()
    rows = bigram_ids(ids, 1000)
    for b, n in enumerate(LENGTHS):
        prev = [0] + ids[b, :n - 1].tolist()  # x_{t-1}: 0 before the first token
        assert rows[b, :n].tolist() == [1 + (p * 1_000_003 + x) % 999 for p, x in zip(prev, ids[b, :n].tolist())]
        assert rows[b, n:].eq(0).all()
    assert rows[:, :].max() < 1000 and rows[ids != 0].min() >= 1


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bigram_embeddings_start_at_zero_and_learn_the_pair_not_just_its_words(cell):
    torch.manual_seed(0)
    plain = classifier(50, 6, cell, hidden_size=5, bidirectional=True, pooling="max").eval()
    torch.manual_seed(0)
    model = classifier(50, 6, cell, hidden_size=5, bidirectional=True, pooling="max", bigram_buckets=101).eval()
    ids, lengths = padded_batch()
    torch.testing.assert_close(model(ids, lengths), plain(ids, lengths))  # zero-initialised: the unigram model
    with torch.no_grad():
        model.bigrams.weight.normal_()
        model.bigrams.weight[0].zero_()
    swapped = ids.clone()
    swapped[0, :2] = ids[0, :2].flip(0)  # the same words, another order: other pairs
    assert not torch.allclose(model(swapped, lengths)[0], model(ids, lengths)[0])
    alone = torch.stack([model(ids[b:b + 1, :n], lengths[b:b + 1]) for b, n in enumerate(LENGTHS)]).squeeze(1)
    torch.testing.assert_close(model(ids, lengths), alone, atol=1e-5, rtol=1e-5)  # padding adds no pair


def test_nb_ratios_count_each_word_and_pair_once_per_sequence_by_class():
    from rnnlab.models.classifier import bigram_ids, nb_log_count_ratios

    ids, lengths = padded_batch()
    labels = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    flat = torch.cat([ids[b, :n] for b, n in enumerate(LENGTHS)])
    rows = bigram_ids(ids, 1000)
    for alpha in (1.0, 10.0):
        r_words, r_pairs = nb_log_count_ratios(flat, LENGTHS, labels, vocab_size=50, buckets=1000, alpha=alpha)
        for r, table, size in ((r_words, ids, 50), (r_pairs, rows, 1000)):
            p, q = torch.full((size,), alpha, dtype=torch.float64), torch.full((size,), alpha, dtype=torch.float64)
            for b, n in enumerate(LENGTHS):  # by hand: each feature once per sequence
                for f in set(table[b, :n].tolist()):
                    (p if labels[b] else q)[f] += 1
            torch.testing.assert_close(r, (torch.log(p / p.sum()) - torch.log(q / q.sum())).float())
    with pytest.raises(ValueError, match="model.nb_scale needs binary labels"):
        nb_log_count_ratios(flat, LENGTHS, torch.tensor([0, 1, 2, 0, 1, 0]), vocab_size=50)


def test_nb_scale_multiplies_each_word_and_pair_vector_by_its_ratio_and_is_saved_with_the_weights():
    torch.manual_seed(0)
    model = classifier(50, 6, "gru", hidden_size=5, bigram_buckets=101, nb_scale=True).eval()
    ids, lengths = padded_batch()
    seen = {}
    model.encoder.register_forward_pre_hook(lambda m, args, kwargs: seen.update(x=args[0]), with_kwargs=True)
    with torch.no_grad():
        model.bigrams.weight.normal_()
        model.bigrams.weight[0].zero_()
    r_words, r_pairs = torch.randn(50), torch.randn(101)
    model.load_nb_ratios(r_words, r_pairs)
    model(ids, lengths)
    from rnnlab.models.classifier import bigram_ids
    rows = bigram_ids(ids, 101)
    expected = model.embedding(ids) * r_words[ids, None] + model.bigrams(rows) * r_pairs[rows, None]
    torch.testing.assert_close(seen["x"], expected)
    loaded = classifier(50, 6, "gru", hidden_size=5, bigram_buckets=101, nb_scale=True).eval()
    loaded.load_state_dict(model.state_dict())  # a checkpoint carries the ratios
    torch.testing.assert_close(loaded(ids, lengths), model(ids, lengths))
    with pytest.raises(ValueError, match=r"pair_scale must have \(101,\) entries"):
        model.load_nb_ratios(r_words, torch.randn(100))
    with pytest.raises(ValueError, match="needs a model built with model.nb_scale=true"):
        classifier(50, 6, "gru", hidden_size=5).load_nb_ratios(r_words)


def test_embedding_dropout_drops_whole_token_vectors_in_training_only():
    torch.manual_seed(0)
    model = classifier(50, 8, "gru", hidden_size=4, embedding_dropout=0.5)
    seen = {}
    model.encoder.register_forward_pre_hook(lambda m, args, kwargs: seen.update(x=args[0]), with_kwargs=True)
    ids = torch.randint(1, 50, (64, 20))
    model(ids)
    e = model.embedding(ids)
    kept = seen["x"].ne(0).all(-1)  # a token is kept whole or dropped whole
    assert seen["x"][~kept].eq(0).all()
    torch.testing.assert_close(seen["x"][kept], 2 * e[kept])  # scaled by 1 / (1 - p)
    assert 0.45 < kept.float().mean() < 0.55
    model.eval()
    model(ids)
    torch.testing.assert_close(seen["x"], e)


@pytest.mark.parametrize("field, value", [("bigram_buckets", 1), ("bigram_buckets", -5), ("embedding_dropout", 1.5),
                                          ("nb_alpha", 0.0)])
def test_bad_bigram_buckets_embedding_dropout_or_nb_alpha_are_refused_naming_the_setting(field, value):
    with pytest.raises(ValueError, match=f"model.{field} must be"):
        ModelConfig(**{field: value})


def test_the_batches_one_accumulated_step_sums_draw_their_own_dropout_masks():
    module = SequenceClassifierModule(vocab_size=20, embedding_dim=4, cell="gru", hidden_size=3, step_seed=7)

    class Trainer:  # what on_train_batch_start reads of a Trainer
        accumulate_grad_batches, global_step = 2, 0

    trainer = Trainer()
    module.trainer = trainer
    draws = []
    for batch_idx in range(4):  # at one global_step: batches 0, 1 make one step, 2, 3 (in a real run) the next
        module.on_train_batch_start(None, batch_idx)
        draws.append(torch.rand(3))
    torch.testing.assert_close(draws[0], draws[2])  # a function of (step, place in the step) only
    assert not torch.equal(draws[0], draws[1])
    trainer.accumulate_grad_batches = 1
    module.on_train_batch_start(None, 1)
    torch.testing.assert_close(torch.rand(3), draws[0])  # without accumulation: the step alone, as before


@pytest.mark.parametrize("pooling, first", [("mean_max", lambda h: h.mean(0)),
                                             ("sum_sqrt_max", lambda h: h.sum(0) / len(h) ** 0.5)])
def test_max_pooling_pairs_sit_side_by_side_mean_or_sum_over_root_length_then_max(pooling, first):
    torch.manual_seed(0)
    model = classifier(50, 6, "gru", hidden_size=5, bidirectional=True, pooling=pooling).eval()
    ids, lengths = padded_batch()
    out = model.encoder(model.embedding(ids), lengths=lengths)[0]
    pooled = model.pool(out, lengths)
    assert model.head.in_features == pooled.shape[1] == 20
    for b, n in enumerate(LENGTHS):
        torch.testing.assert_close(pooled[b], torch.cat([first(out[b, :n]), out[b, :n].amax(0)]))


def test_without_a_recurrent_layer_the_head_reads_the_pooled_token_vectors():
    torch.manual_seed(0)
    model = classifier(50, 6, "gru", hidden_size=5, pooling="sum_sqrt_max", recurrent=False, bigram_buckets=101,
                       nb_scale=True).eval()
    assert model.encoder is None and model.head.in_features == 12
    assert not any(name.startswith("encoder") for name, _ in model.named_parameters())
    model.load_nb_ratios(torch.rand(50), torch.rand(101))
    with torch.no_grad():
        model.bigrams.weight.normal_()
    ids, lengths = padded_batch()
    rows = bigram_ids(ids, 101)
    e = (model.embedding(ids) * model.word_scale[ids].unsqueeze(-1)
         + model.bigrams(rows) * model.pair_scale[rows].unsqueeze(-1))
    expected = torch.stack([model.head(torch.cat([e[b, :n].sum(0) / n ** 0.5, e[b, :n].amax(0)]))
                            for b, n in enumerate(LENGTHS)]).squeeze(-1)
    torch.testing.assert_close(model(ids, lengths), expected)
    alone = torch.stack([model(ids[b:b + 1, :n], lengths[b:b + 1]) for b, n in enumerate(LENGTHS)]).squeeze(1)
    torch.testing.assert_close(model(ids, lengths), alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_lazy_adam_is_adam_on_dense_gradients_and_sparse_adam_on_the_rows_of_sparse_ones(weight_decay):
    torch.manual_seed(0)
    dense = nn.Parameter(torch.randn(5, 3))
    reference = nn.Parameter(dense.detach().clone())
    ours = LazyAdam([dense], lr=0.01, weight_decay=weight_decay)
    torchs = torch.optim.AdamW([reference], lr=0.01, eps=1e-8, weight_decay=weight_decay)
    for _ in range(4):
        dense.grad = torch.randn(5, 3)
        reference.grad = dense.grad.clone()
        ours.step()
        torchs.step()
    torch.testing.assert_close(dense, reference, rtol=0, atol=1e-7)

    table = nn.Embedding(10, 4, sparse=True)
    copy = nn.Embedding(10, 4, sparse=True)
    copy.load_state_dict(table.state_dict())
    ours = LazyAdam(table.parameters(), lr=0.01, weight_decay=weight_decay)
    sparse_adam = torch.optim.SparseAdam(list(copy.parameters()), lr=0.01)
    untouched = table.weight.detach()[7:].clone()
    for rows in ([1, 2, 2, 5], [0, 5, 6], [2, 3]):  # a row twice in a batch: its gradients summed
        for emb, opt in ((table, ours), (copy, sparse_adam)):
            opt.zero_grad()
            emb(torch.tensor(rows)).square().sum().backward()
            if emb is copy and weight_decay:  # SparseAdam has no decay: shrink the same rows by hand first
                with torch.no_grad():
                    emb.weight[sorted(set(rows))] *= 1 - 0.01 * weight_decay
            opt.step()
    torch.testing.assert_close(table.weight, copy.weight, rtol=0, atol=1e-6)
    assert torch.equal(table.weight.detach()[7:], untouched)  # rows no batch used: not moved, not decayed
    assert ours.state[table.weight]["step"] == 3


def test_sparse_embeddings_need_an_optimizer_that_takes_sparse_gradients():
    with pytest.raises(ValueError, match=r"model\.sparse_embeddings=true needs an optimizer that takes sparse "
                                         r"gradients: model/optimizer=lazy_adam .*got rnnlab\.models\.optim\.KerasRMSprop"):
        ModelConfig(sparse_embeddings=True)  # the default optimizer, Keras' RMSprop, is dense
    ModelConfig(sparse_embeddings=True, optimizer={"_target_": "rnnlab.models.optim.LazyAdam", "_partial_": True})

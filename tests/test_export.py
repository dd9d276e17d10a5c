"""The deployment path users take for LSTMs: a trained classifier with rnnlab's cells, given padded reviews and their
lengths, exported with ``torch.export`` and to ONNX (run in onnxruntime) gives the eager outputs, for any batch size
and any lengths, not only the ones it was traced with. The fused backends step aside to ``loop`` under tracing
(docs/decisions.md), so the exported graph holds plain ATen ops unrolled over the time steps: T is fixed by the
example, the batch is dynamic."""
import warnings

import pytest
import torch

from rnnlab.models.classifier import SequenceClassifier
from rnnlab.models.config import ModelConfig

T, V = 8, 40


def classifier(cell: str, bidirectional: bool) -> SequenceClassifier:
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, embedding_dim=6, hidden_size=5, bidirectional=bidirectional, pooling="mean_max")
    return SequenceClassifier(config, vocab_size=V).eval()


def padded_batch(B: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    ids = torch.randint(2, V, (B, T), generator=g).masked_fill(torch.arange(T) >= lengths[:, None], 0)
    return ids, lengths


def export(model, ids, lengths):
    batch = torch.export.Dim("batch", min=1, max=4096)
    return torch.export.export(model, (ids, lengths), dynamic_shapes={"ids": {0: batch}, "lengths": {0: batch}})


def test_an_exported_classifier_with_lengths_gives_the_eager_logits_for_other_batches_and_lengths():
    model = classifier("lstm", bidirectional=True)
    exported = export(model, *padded_batch(3, seed=0)).module()
    for B, seed in ((3, 1), (7, 2), (1, 3)):
        ids, lengths = padded_batch(B, seed)
        with torch.no_grad():
            torch.testing.assert_close(exported(ids, lengths), model(ids, lengths), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell,bidirectional", [
    ("gru", False),
    pytest.param("lstm", True, marks=pytest.mark.slow),
    pytest.param("cifg", True, marks=pytest.mark.slow),
    pytest.param("rnn", True, marks=pytest.mark.slow),
])
def test_onnx_export_runs_in_onnxruntime_to_the_eager_logits(cell, bidirectional, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = classifier(cell, bidirectional)
    ids, lengths = padded_batch(3, seed=0)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (ids, lengths), dynamo=True, verbose=False,
                                    dynamic_shapes={"ids": {0: batch}, "lengths": {0: batch}})
    program.save(str(tmp_path / "classifier.onnx"))
    session = ort.InferenceSession(str(tmp_path / "classifier.onnx"))
    names = [i.name for i in session.get_inputs()]
    for B, seed in ((3, 1), (6, 2)):
        ids, lengths = padded_batch(B, seed)
        got, = session.run(None, dict(zip(names, [ids.numpy(), lengths.numpy()])))
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(got), model(ids, lengths), rtol=1e-5, atol=1e-6)

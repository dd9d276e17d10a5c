"""Pretrained embeddings (GloVe / word2vec text format) for a vocabulary."""

import pytest
import torch

from rnnlab.data.embeddings import load_embeddings

VOCAB = ["", "[UNK]", "the", "movie", "great", "zzz"]


def test_glove_format_rows_and_coverage(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("the 0.1 0.2\nunused 9 9\ngreat -1 2.5\nmovie 3 4\nthe 7 7\n")
    weights, cov = load_embeddings(path, VOCAB)
    assert weights.shape == (6, 2) and weights.dtype == torch.float32
    assert weights[2].tolist() == pytest.approx([0.1, 0.2])  # first occurrence wins
    assert weights[4].tolist() == [-1.0, 2.5] and weights[3].tolist() == [3.0, 4.0]
    assert weights[0].tolist() == weights[1].tolist() == weights[5].tolist() == [0.0, 0.0]  # pad, OOV, missing
    assert cov["found"] == 3 and cov["total"] == 4 and cov["fraction"] == 0.75 and cov["missing_examples"] == ["zzz"]


def test_word2vec_header_is_skipped(tmp_path):
    path = tmp_path / "w2v.txt"
    path.write_text("2 3\nmovie 1 2 3\nzzz 4 5 6\n")
    weights, cov = load_embeddings(path, VOCAB)
    assert weights.shape == (6, 3) and weights[5].tolist() == [4, 5, 6] and cov["dim"] == 3


def test_bad_files_raise_named_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="embeddings file not found"):
        load_embeddings(tmp_path / "none.txt", VOCAB)
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("the 1 2 3\nmovie 1 2\n")
    with pytest.raises(ValueError, match="expected 3, got 2"):
        load_embeddings(ragged, VOCAB)

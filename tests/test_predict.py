"""rnnlab.predict as a command: stdin lines that do not decode are replaced, never fatal; a bad device is named."""
import io
import json
import os
import subprocess
import sys

import pytest
import torch

from rnnlab.predict import check_device, iter_predict, load_classifier, read_texts

pytestmark = pytest.mark.usefixtures("one_thread")


def predict_command(ckpt, stdin: bytes, cwd, *overrides) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # strict UTF-8 on stdin: what made a bad byte fatal
    return subprocess.run([sys.executable, "-m", "rnnlab.predict", f"ckpt={ckpt}", *overrides], input=stdin,
                          capture_output=True, cwd=cwd, env=env, timeout=300)


def test_a_stdin_line_that_is_not_utf8_is_predicted_with_replacement_characters_and_named_in_a_warning(text_ckpt,
                                                                                                        tmp_path):
    stdin = b"a great film\n\nbad \xff\xfe bytes\r\nlast line, awful\n"
    run = predict_command(text_ckpt, stdin, tmp_path)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    rows = [json.loads(line) for line in run.stdout.decode().splitlines()]
    assert [r["text"] for r in rows] == ["a great film", "", "bad \ufffd\ufffd bytes", "last line, awful"]
    assert [r["label"] in ("neg", "pos") for r in rows] == [True, False, True, True]
    stderr = run.stderr.decode()
    assert "warning: stdin line 3 is not valid utf-8 (byte 0xff at position 4)" in stderr
    assert "U+FFFD (\ufffd)" in stderr and "Traceback" not in stderr


def test_read_texts_keeps_every_line_blank_ones_included_and_counts_them_in_the_line_numbers(capsys):
    stream = io.BytesIO(b"one\r\n\n   \ntw\xc3o\nthree")  # \xc3 starts a 2-byte character that 'o' does not finish
    assert list(read_texts(stream)) == ["one", "", "   ", "tw\ufffdo", "three"]
    assert "stdin line 4 is not valid utf-8 (byte 0xc3 at position 2)" in capsys.readouterr().err


def test_a_blank_text_gets_a_null_label_flagged_empty_in_its_place_even_in_a_batch_of_blanks_only(text_ckpt):
    module = load_classifier(text_ckpt)
    texts = ["a great film", "", "   ", "the worst, awful", ""]
    rows = list(iter_predict(module, texts, batch_size=2))  # the third batch holds a blank line only
    assert [r["text"] for r in rows] == texts
    empty = {"label": None, "probability": None, "error": "empty text"}
    assert [rows[i] for i in (1, 2, 4)] == [{**empty, "text": t} for t in ("", "   ", "")]
    assert all(rows[i]["label"] in ("neg", "pos") and "error" not in rows[i] for i in (0, 3))


def test_a_checkpoint_of_a_synthetic_task_is_named_with_what_reads_it(tmp_path):
    from hydra import compose, initialize_config_module

    from rnnlab.train import train

    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[
            "+experiment=adding", "data.length=4", "data.train_size=8", "data.val_size=4", "data.test_size=4",
            "data.batch_size=4", "model.hidden_size=2", "trainer.max_steps=1", "trainer.enable_progress_bar=false",
            "diagnostics.every_n_steps=0", "test=false", f"output_dir={tmp_path}"])
    train(cfg)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match=r"last\.ckpt is a checkpoint of rnnlab\.train for a synthetic task \(model "
                                         r"rnnlab\.models\.tasks\.TaskModule, data rnnlab\.data\.synthetic\."
                                         r"AddingDataModule\), .*predict and evaluate read text classifiers' .*"
                                         r"metrics\.json.*python -m rnnlab\.train ckpt_path=.*TaskModule\."
                                         r"load_from_checkpoint"):
        load_classifier(ckpt)


def test_read_texts_reads_one_line_at_a_time_so_stdin_streams():
    stream = io.BytesIO(b"first\nsecond\n")
    texts = read_texts(stream)
    assert next(texts) == "first" and stream.tell() == len(b"first\n")  # the second line is not read yet


def test_a_device_that_is_not_one_is_named_with_examples():
    with pytest.raises(ValueError, match=r"device must be a torch device such as cpu, cuda or cuda:1: got 'gpu'"):
        check_device("gpu")
    assert check_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_device_on_a_machine_without_one_says_to_use_the_cpu(text_ckpt, tmp_path):
    with pytest.raises(ValueError, match=r"device=cuda needs a CUDA GPU, and torch sees none .*: use device=cpu"):
        check_device("cuda")
    run = predict_command(text_ckpt, b"a film\n", tmp_path, "device=cuda")  # not "is not a checkpoint ... truncated"
    assert run.returncode != 0 and "device=cuda needs a CUDA GPU" in run.stderr.decode()
    assert "is not a checkpoint" not in run.stderr.decode()

"""The command line: bad values end with one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from simplecnn.cli import main


@pytest.mark.parametrize("argv, words", [
    (["train", "--epochs", "0"], ["--epochs", "positive integer", "0"]),
    (["train", "--epochs", "two"], ["--epochs", "'two'"]),
    (["train", "--val-split", "1.5"], ["--val-split", "[0, 1)", "1.5"]),
    (["train", "--lr", "-1"], ["--lr", "positive", "-1"]),
    (["train", "--lr", "nan"], ["--lr", "positive"]),
    (["train", "--batch-size", "0"], ["--batch-size"]),
    (["train", "--impl", "jax"], ["--impl", "jax"]),
    (["train", "--device", "tpu"], ["--device", "tpu"]),
    (["train", "--resume", "/nonexistent/run"], ["--resume", "/nonexistent/run", "not a folder"]),
    (["evaluate", "--checkpoint", "/nonexistent/model.npz"], ["checkpoint not found", "/nonexistent/model.npz"]),
    (["evaluate"], ["--checkpoint"]),
    (["compare", "--dtype", "float16"], ["--dtype", "float16"]),
    (["frobnicate"], ["frobnicate"]),
])
def test_bad_values_give_one_line_and_exit_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simplecnn: error: "), err
    for word in words:
        assert word in err


def test_resume_from_a_folder_without_checkpoint(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no resumable checkpoint" in capsys.readouterr().err


def test_corrupt_checkpoint_is_reported(tmp_path, capsys):
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"this is not a zip file")
    assert main(["evaluate", "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not an .npz file" in err and "text file" in err and err.count("\n") == 1


def test_missing_data_is_one_line_naming_the_folder(tmp_path, capsys):
    assert main(["train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--no-download"]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "MNIST" / "raw") in err and "train-images-idx3-ubyte" in err


def test_console_script_prints_no_traceback():
    result = subprocess.run([sys.executable, "-m", "simplecnn.cli", "train", "--epochs", "0"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0

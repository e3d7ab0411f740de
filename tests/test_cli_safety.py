"""Nothing lost, nothing silent: every case runs the real command in a temporary folder and ends in one
clear line and the right exit status (0 done, 1 failure while running, 2 bad command line or file, 130
interrupted), with nothing lost or half-written."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratch.data import raw_dir
from simplecnn import backends
from simplecnn.checkpoint import load_model, save_model
from simplecnn.cli import build_parser, main
from simplecnn.resume_policy import RESUME_POLICY
from simplecnn.run import _divergence_warning, _resume_hint

QUICK = ["--epochs", "1", "--train-limit", "100", "--batch-size", "32"]
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def one_error_line(capsys, *words: str) -> str:
    """The command printed exactly one line on stderr, an error naming every one of ``words``."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simplecnn: error: "), err
    for word in words:
        assert word in err, (word, err)
    return err


@pytest.fixture(scope="module")
def finished_run(mnist_dir, tmp_path_factory) -> Path:
    """One quick finished NumPy run (100 images, 1 epoch); tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", *QUICK, "--data-dir", str(mnist_dir), "--out", str(out)]) == 0
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    target = tmp_path / "a run"  # a space: quoting matters
    shutil.copytree(finished_run, target)
    return target


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --- output folders: checked before any training ---------------------------------------------------

def _bad_out(kind: str, tmp_path: Path) -> Path:
    if kind == "existing file":
        (tmp_path / "f").write_text("keep me")
        return tmp_path / "f"
    if kind == "under a file":
        (tmp_path / "f").write_text("keep me")
        return tmp_path / "f" / "run"
    if kind == "/dev/null":
        return Path("/dev/null")
    if kind == "metrics.json is a folder":
        (tmp_path / "o" / "metrics.json").mkdir(parents=True)
        return tmp_path / "o"
    assert kind == "read-only folder"
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    return tmp_path / "ro" / "run"


OUT_PROBLEMS = ["existing file", "under a file", "/dev/null", "metrics.json is a folder",
                pytest.param("read-only folder", marks=pytest.mark.skipif(ROOT, reason="root writes anywhere"))]


@pytest.mark.parametrize("kind", OUT_PROBLEMS)
def test_train_out_problem_fails_before_training(kind, tmp_path, capsys, monkeypatch):
    out = _bad_out(kind, tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    monkeypatch.setattr("simplecnn.run.load_mnist", lambda *a: pytest.fail("training started"))
    assert main(["train", *QUICK, "--out", str(out)]) == 2
    one_error_line(capsys, "--out", str(out))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing created


@pytest.mark.parametrize("kind", ["existing file", "under a file",
                                  pytest.param("read-only folder", marks=pytest.mark.skipif(ROOT, reason="root"))])
def test_evaluate_plots_out_problem_fails_before_evaluating(kind, finished_run, tmp_path, capsys, monkeypatch):
    out = _bad_out(kind, tmp_path)
    monkeypatch.setattr("scratch.data.load_mnist", lambda *a: pytest.fail("evaluation started"))
    assert main(["evaluate", "--checkpoint", str(finished_run), "--plots", "--out", str(out)]) == 2
    one_error_line(capsys, "--out", str(out))


def test_compare_out_file_fails_before_training(tmp_path, capsys, monkeypatch):
    out = _bad_out("existing file", tmp_path)
    monkeypatch.setattr("simplecnn.compare.load_mnist", lambda *a: pytest.fail("training started"))
    assert main(["compare", *QUICK, "--out", str(out)]) == 2
    one_error_line(capsys, "--out", str(out), "not a folder")
    assert out.read_text() == "keep me"


def test_sweep_out_file_fails_before_training(tmp_path, capsys, monkeypatch):
    out = _bad_out("existing file", tmp_path)
    monkeypatch.setattr("simplecnn.sweep.load_mnist", lambda *a: pytest.fail("training started"))
    assert main(["sweep", "--optimizer", "adam,sgd", *QUICK, "--out", str(out)]) == 2
    one_error_line(capsys, "--out", str(out), "not a folder")
    assert out.read_text() == "keep me"


# --- earlier runs are never replaced silently ---------------------------------------------------

def test_new_run_refuses_to_replace_a_finished_one(run_copy, mnist_dir, capsys):
    before = snapshot(run_copy)
    assert main(["train", *QUICK, "--data-dir", str(mnist_dir), "--out", str(run_copy)]) == 2
    one_error_line(capsys, "already holds a run", f"--resume '{run_copy}'", "--force")
    assert snapshot(run_copy) == before


def test_force_replaces_the_earlier_run(run_copy, mnist_dir, capsys):
    (run_copy / "checkpoint.npz").unlink()  # a finished run without its checkpoint is still a run
    assert main(["train", *QUICK, "--seed", "3", "--data-dir", str(mnist_dir), "--out", str(run_copy)]) == 2
    assert main(["train", *QUICK, "--seed", "3", "--data-dir", str(mnist_dir), "--out", str(run_copy),
                 "--force"]) == 0
    assert json.loads((run_copy / "metrics.json").read_text())["config"]["seed"] == 3
    out = capsys.readouterr().out
    assert f"Wrote model.npz, metrics.json, losses.png and checkpoint.npz to {run_copy}" in out


# --- --resume: every option decided ---------------------------------------------------------------

@pytest.mark.parametrize("option, value", [("--batch-size", "7"), ("--train-limit", "300"), ("--seed", "9"),
                                           ("--val-split", "0.2"), ("--impl", "torch"), ("--dtype", "float64")])
def test_resume_refuses_options_that_define_the_run(option, value, run_copy, capsys):
    before = snapshot(run_copy)
    assert main(["train", "--resume", str(run_copy), option, value]) == 2
    one_error_line(capsys, option, value, "start a new run")
    assert snapshot(run_copy) == before


def test_resume_accepts_a_new_learning_rate_says_so_and_records_it(run_copy, capsys):
    assert main(["train", "--resume", str(run_copy), "--epochs", "2", "--lr", "0.0005", "--batch-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "--lr changed from 0.001 to 0.0005" in out and "--epochs changed from 1 to 2" in out
    metrics = json.loads((run_copy / "metrics.json").read_text())
    assert metrics["config"]["lr"] == 0.0005 and len(metrics["train_losses"]) == 2
    assert metrics["resume_changes"] == [{"epoch": 2, "step": 0, "lr": [0.001, 0.0005], "epochs": [1, 2]}]


def test_every_train_option_has_a_resume_policy():
    """A new train option must say what --resume does with it: one line in RESUME_POLICY."""
    train = build_parser()._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    dests = {a.dest for a in train._actions} - {"help", "resume", "force", "no_download", "default_epochs"}
    assert dests - set(RESUME_POLICY) == set()


# --- Ctrl-C during the final test evaluation ------------------------------------------------------

def test_ctrl_c_in_the_test_evaluation_keeps_the_epochs_and_resume_finishes(mnist_dir, tmp_path, capsys,
                                                                            monkeypatch):
    real_evaluate = backends.NumpyBackend.evaluate

    def evaluate(self, x, y):
        if len(x) == 10000:  # the test set, after the last epoch
            raise KeyboardInterrupt
        return real_evaluate(self, x, y)

    monkeypatch.setattr(backends.NumpyBackend, "evaluate", evaluate)
    out = tmp_path / "my run"
    assert main(["train", *QUICK, "--data-dir", str(mnist_dir), "--out", str(out)]) == 130
    printed = capsys.readouterr().out
    assert "Interrupted during the test evaluation" in printed and f"--resume '{out}'" in printed
    assert {"model.npz", "metrics.json", "losses.png", "checkpoint.npz"} <= set(os.listdir(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] is None and len(metrics["train_losses"]) == 1

    monkeypatch.undo()
    assert main(["train", "--resume", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "All 1 epochs" in printed and "only the test evaluation is left" in printed and "Epoch 1/1" not in printed
    assert "Test Loss: " in printed
    assert json.loads((out / "metrics.json").read_text())["test_accuracy"] > 0


def test_resume_hint_is_shell_quoted(tmp_path):
    assert _resume_hint(tmp_path / "a b") == f"Resume with: simplecnn train --resume '{tmp_path / 'a b'}'"


# --- silent nonsense --------------------------------------------------------------------------------

def test_checkpoint_with_nan_weights_is_refused(run_copy, capsys):
    state = load_model(run_copy / "model.npz")
    state["fc1.weight"][0, 0] = np.nan
    save_model(run_copy / "model.npz", state)
    assert main(["evaluate", "--checkpoint", str(run_copy / "model.npz")]) == 2
    one_error_line(capsys, "NaN", "fc1.weight", "diverged")


@pytest.mark.parametrize("losses, warned", [([2.3, 0.5, 0.3], False), ([0.6], False), ([2.3, 1e21], True),
                                            ([1e21], True), ([0.05, 0.6], True), ([2.3, 2.2], False)])
def test_divergence_warning(losses, warned):
    warning = _divergence_warning(losses, 1e6)
    assert (warning is not None) == warned
    if warned:
        assert warning is not None and "diverging" in warning and "--lr 1e+06" in warning


def test_val_split_zero_prints_no_nan(mnist_dir, tmp_path, capsys):
    assert main(["train", *QUICK, "--val-split", "0", "--data-dir", str(mnist_dir), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out.lower() and "no validation (--val-split 0)" in out
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["val_losses"] == [None] and metrics["val_accuracies"] == [None]


def test_loss_plot_has_no_empty_legend_entry_and_whole_epoch_ticks(tmp_path, monkeypatch):
    from simplecnn import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    plots.plot_losses([0.9, 0.5, 0.4], [float("nan")] * 3, tmp_path / "l.png")
    plots.plot_losses([0.9, 0.5, 0.4], [0.8, 0.6, 0.5], tmp_path / "m.png")
    without, with_val = (fig.axes[0] for fig in figures)
    assert without.get_legend_handles_labels()[1] == ["training loss"]
    assert with_val.get_legend_handles_labels()[1] == ["training loss", "validation loss"]
    for ax in (without, with_val):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


@pytest.mark.parametrize("command", [["train"], ["evaluate", "--checkpoint", "x.npz"]])
def test_device_with_numpy_is_refused(command, capsys):
    assert main([*command, "--impl", "numpy", "--device", "cuda"]) == 2
    one_error_line(capsys, "--device cuda", "--impl torch")


@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_seed_range_is_the_same_for_both_implementations(impl, capsys):
    assert main(["train", "--impl", impl, "--seed", str(2**64)]) == 2
    one_error_line(capsys, "--seed", "2**64")
    backends.make_backend(impl, seed=2**64 - 1, device="cpu")  # the largest seed works for both


# --- messages ---------------------------------------------------------------------------------------

def test_no_command_shows_usage_and_the_commands(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: simplecnn") and all(c in err for c in ("train", "evaluate", "compare", "convert"))


def test_version_and_python_dash_m():
    for argv in (["-m", "simplecnn", "--version"], ["-m", "simplecnn.cli", "--version"]):
        result = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
        assert result.returncode == 0 and result.stdout.startswith("simplecnn "), result
    result = subprocess.run([sys.executable, "-m", "simplecnn", "train", "--epoch", "1"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "--epoch" in result.stderr and "Traceback" not in result.stderr


def test_abbreviated_options_are_refused(capsys):
    assert main(["train", "--epoch", "1"]) == 2
    one_error_line(capsys, "--epoch")


def test_every_option_has_help_with_its_default():
    parser = build_parser()
    subparsers = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in subparsers.items():
        assert not sub.allow_abbrev, name
        for action in sub._actions:
            if action.dest == "help" or not action.option_strings:
                continue
            assert action.help and ("default" in action.help or "required" in action.help), (name, action.dest)


def test_evaluate_accepts_a_run_folder(finished_run, mnist_dir, capsys):
    assert main(["evaluate", "--checkpoint", str(finished_run), "--data-dir", str(mnist_dir)]) == 0
    expected = json.loads((finished_run / "metrics.json").read_text())["test_accuracy"]
    assert f"Test Accuracy: {expected:.2f}%" in capsys.readouterr().out


def test_torch_pickle_is_named_and_converted_safely(finished_run, mnist_dir, tmp_path, capsys):
    import torch

    state = load_model(finished_run / "model.npz")
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "model.npz")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "model.npz")]) == 2
    one_error_line(capsys, "PyTorch pickle", "simplecnn convert")

    assert main(["convert", str(tmp_path / "model.npz"), str(tmp_path / "converted.npz")]) == 0
    converted = load_model(tmp_path / "converted.npz")
    assert converted.keys() == state.keys()
    for key in state:
        np.testing.assert_array_equal(converted[key], state[key])
    assert main(["convert", str(tmp_path / "model.npz"), str(tmp_path / "converted.npz")]) == 2  # no overwrite
    capsys.readouterr()


class _NotWeights:
    def __reduce__(self):
        return (print, ("code ran",))


def test_convert_refuses_a_pickle_that_runs_code(tmp_path, capsys):
    import torch

    torch.save({"conv1.weight": _NotWeights()}, tmp_path / "evil.pt")
    assert main(["convert", str(tmp_path / "evil.pt"), str(tmp_path / "out.npz")]) == 2
    captured = capsys.readouterr()
    assert "cannot be read safely" in captured.err and "code ran" not in captured.out
    assert not (tmp_path / "out.npz").exists()


# --- corrupt MNIST: the real problem, not "checksum mismatch" ------------------------------------

@pytest.mark.parametrize("damage, words", [("label 12", ["labels contain 12"]), ("truncated", ["truncated"]),
                                           ("magic", ["magic"])])
def test_corrupt_idx_reports_the_real_problem(damage, words, mnist_copy, tmp_path, capsys):
    path = raw_dir(mnist_copy) / "t10k-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    if damage == "label 12":
        data[8 + 17] = 12
    elif damage == "truncated":
        data = data[:-100]
    else:
        data[3] = 0x07
    path.write_bytes(bytes(data))
    assert main(["train", *QUICK, "--data-dir", str(mnist_copy), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "checksum" not in err and all(w in err for w in words), err
    assert not (tmp_path / "o").exists()


# --- leftovers --------------------------------------------------------------------------------------

def test_all_outputs_have_the_same_mode(finished_run):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in finished_run.iterdir()}
    assert modes["checkpoint.npz"] == modes["model.npz"] == modes["metrics.json"] == modes["losses.png"], modes


def test_checkpoints_respect_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        save_model(tmp_path / "m.npz", {"w": np.zeros(2)})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "m.npz").stat().st_mode) == 0o640


def test_compare_shows_progress_and_where_it_wrote(mnist_dir, tmp_path, capsys, monkeypatch):
    from simplecnn import run

    bars = []

    class Bar:
        def __init__(self, total, initial, desc):
            self.total, self.desc, self.updates = total, desc, 0
            bars.append(self)

        def update(self, n):
            self.updates += n

        def close(self):
            pass

    monkeypatch.setattr(run, "_progress_bar", Bar)
    assert main(["compare", *QUICK, "--data-dir", str(mnist_dir), "--out", str(tmp_path / "c")]) == 0
    assert [(b.desc, b.total, b.updates) for b in bars] == [("compare epoch 1/1", 3, 3)]  # 90 images, batch 32
    assert f"to {tmp_path / 'c'}" in capsys.readouterr().out


def test_resume_policy_table_decides_each_kind(monkeypatch):
    from simplecnn import resume_policy as rp

    monkeypatch.setitem(rp.RESUME_POLICY, "colour", (rp.KEEP, "the run is painted"))
    recorded = {"lr": 0.001, "seed": 0, "colour": "red", "new_option": 1}
    config, messages, changes = rp.apply_resume_policy(recorded, {"lr": 0.01, "colour": "blue", "seed": 0}, "D")
    assert config == {"lr": 0.01, "seed": 0, "colour": "red", "new_option": 1} and changes == {"lr": [0.001, 0.01]}
    assert messages == ["--lr changed from 0.001 to 0.01 (Adam continues from its saved moments with the new "
                        "learning rate)", "--colour blue ignored: the run continues with red (the run is painted)"]
    with pytest.raises(rp.ResumeConflict, match="--seed 0, not 5"):
        rp.apply_resume_policy(recorded, {"seed": 5}, "D")
    with pytest.raises(rp.ResumeConflict, match="--new-option.*no resume policy"):
        rp.apply_resume_policy(recorded, {"new_option": 2}, "D")

"""``simplecnn``: train, evaluate, compare and gradient-check the two SimpleCNNs.

Every user mistake (a bad value, a missing file) ends with one line on stderr and a non-zero exit
status: 2 for a bad command line, 1 for a failure while running. Never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from scratch.model import ACTIVATIONS, POOLS

from .backends import IMPLEMENTATIONS, OPTIMIZERS


class UsageError(Exception):
    """A bad command-line value: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2), no abbreviations (``--epoch`` is not ``--epochs``))."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):  # argparse's own errors: one line, exit 2
        raise UsageError(message)


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= ``minimum`` (``what`` names the rule in the message)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    return convert


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")

#: One range for both implementations: torch.manual_seed takes seeds below 2**64, NumPy any size.
SEED_LIMIT = 2**64


def _seed(text: str) -> int:
    value = _non_negative_int(text)
    if value >= SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be below 2**64 (both implementations accept that range), got {value}")
    return value


def _learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


DEVICES = ("cpu", "cuda", "auto")
DEVICE_HELP = "torch only: where to run; auto = cuda if available (default: auto; refused with --impl numpy)"
NO_DOWNLOAD_HELP = "never download MNIST, also set by SIMPLECNN_NO_DOWNLOAD=1 (default: download missing files)"
DATA_DIR_HELP = "folder holding MNIST/raw/ (default: $SIMPLECNN_DATA, else ./data)"


def _add_training_options(p: argparse.ArgumentParser, default_out: str, default_epochs: int,
                          lists: bool = False) -> None:
    p.add_argument("--epochs", type=_positive_int, default=None, help=f"epochs to train (default: {default_epochs})")
    p.set_defaults(default_epochs=default_epochs)
    p.add_argument("--batch-size", type=_positive_int, default=64, help="images per step (default: 64)")
    defaults = ", ".join(f"{name} {choice.default_lr:g}" for name, choice in OPTIMIZERS.items())
    p.add_argument("--lr", type=_learning_rate, default=None,
                   help=f"learning rate (default: the optimizer's own: {defaults})")
    p.add_argument("--val-split", type=_fraction, default=0.1,
                   help="fraction of the training images held out for validation; 0 = no validation "
                        "(default: 0.1)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="initial weights, split, batch order and dropout; 0 <= S < 2**64 (default: 0)")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--out", default=None, help=f"output folder (default: {default_out})")
    p.add_argument("--train-limit", type=_positive_int, default=None,
                   help="train on the first N training images only, for quick runs (default: all)")
    p.add_argument("--no-download", action="store_true", help=NO_DOWNLOAD_HELP)
    _add_network_choices(p, lists)


def _add_network_choices(p: argparse.ArgumentParser, lists: bool) -> None:
    """``--optimizer``, ``--activation``, ``--pool``: one value each, or (``lists``, for sweep) comma lists."""
    for option, choices, default in (("--optimizer", OPTIMIZERS, "adam"), ("--activation", ACTIVATIONS, "relu"),
                                     ("--pool", POOLS, "max")):
        if lists:
            p.add_argument(option, default=default, metavar="A,B,...",
                           help=f"comma list of {', '.join(choices)} (default {default})")
        else:
            p.add_argument(option, choices=tuple(choices), default=None, help=f"default {default}")


def _resume_help() -> str:
    """The --resume help, made from the policy table so that a new option's line shows up here too."""
    from .resume_policy import ACCEPT, RESUME_POLICY

    def flags(accepted: bool) -> str:
        return ", ".join("--" + dest.replace("_", "-") for dest, (policy, _) in RESUME_POLICY.items()
                         if (policy == ACCEPT) == accepted)

    return (f"continue the run saved in DIR; options left out keep their recorded values. Given again, "
            f"{flags(True)} may change (printed and recorded in metrics.json); {flags(False)} must keep "
            "the recorded value, as they define the run (default: start a new run)")


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    try:
        own_version = version("simplecnn")
    except PackageNotFoundError:
        own_version = "unknown (not installed)"
    parser = _Parser(prog="simplecnn", description=__doc__.splitlines()[0],
                     epilog="exit status: 0 success, 1 failure while running, 2 bad command line or "
                            "file, 130 interrupted (Ctrl-C)")
    parser.add_argument("--version", action="version", version=f"simplecnn {own_version}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("train", help="train one implementation on MNIST")
    p.add_argument("--impl", choices=IMPLEMENTATIONS, default=None, help="implementation (default: numpy)")
    _add_training_options(p, "runs/<impl>", 10)
    p.add_argument("--resume", default=None, metavar="DIR", help=_resume_help())
    p.add_argument("--force", action="store_true",
                   help="replace a run already in --out (default: refuse, naming --resume)")
    p.add_argument("--device", choices=DEVICES, default="auto", help=DEVICE_HELP)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="precision of weights and data (default: float32)")

    p = sub.add_parser("evaluate", help="test accuracy of a checkpoint, with either implementation")
    p.add_argument("--impl", choices=IMPLEMENTATIONS, default="numpy", help="implementation (default: numpy)")
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="model.npz, checkpoint.npz or a run folder (its model.npz); required")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--plots", action="store_true",
                   help="also write confusion_matrix.png, conv1_filters.png, misclassified.png (default: off)")
    p.add_argument("--out", default=None, help="folder for the plots (default: the checkpoint's folder)")
    p.add_argument("--image", type=int, default=None, metavar="INDEX",
                   help="with --plots: the test image whose forward maps and backward gradients are drawn "
                        "(default: 0)")
    p.add_argument("--device", choices=DEVICES, default="auto", help=DEVICE_HELP)
    p.add_argument("--no-download", action="store_true", help=NO_DOWNLOAD_HELP)

    p = sub.add_parser("compare", help="train both implementations side by side, in lockstep")
    _add_training_options(p, "runs/compare", 1)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="precision of both sides (default: float32)")

    p = sub.add_parser("sweep", help="one training run per combination of optimizers, activations, pools")
    p.add_argument("--impl", choices=IMPLEMENTATIONS, default="numpy", help="numpy (default) or torch")
    _add_training_options(p, "runs/sweep", 2, lists=True)
    p.add_argument("--device", choices=DEVICES, default="auto", help=DEVICE_HELP)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="precision of every run (default: float32)")

    p = sub.add_parser("gradcheck", help="every scratch component against torch autograd")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="precision of the check (default: float64)")
    p.add_argument("--seed", type=_seed, default=0, help="random inputs; 0 <= S < 2**64 (default: 0)")

    p = sub.add_parser("convert", help="turn a torch.save state dict (.pt) into a portable model.npz")
    p.add_argument("source", metavar="FILE.pt", help="a state dict saved by torch.save (read with weights_only=True)")
    p.add_argument("target", metavar="OUT.npz", help="the .npz to write (must not exist)")

    from .exercise.commands import add_parser as add_exercise_parser  # list | start | check | solution

    add_exercise_parser(sub)
    return parser


def _cmd_train(args) -> int:
    from dataclasses import asdict

    from .outputs import RUN_FILES, check_output_dir, refuse_to_overwrite
    from .run import TrainConfig, config_from_checkpoint, train

    changes: dict = {}
    if args.resume is not None:
        if not Path(args.resume).is_dir():
            raise UsageError(f"--resume: {args.resume} is not a folder")
        resumed, changes = _resumed_config(args, asdict(config_from_checkpoint(args.resume)))
        config = TrainConfig(**resumed)
    else:
        impl = args.impl or "numpy"
        config = TrainConfig(impl=impl, epochs=args.epochs or args.default_epochs,
                             batch_size=args.batch_size, lr=args.lr, val_split=args.val_split,
                             seed=args.seed, data_dir=args.data_dir,
                             out=args.out or f"runs/{impl}", train_limit=args.train_limit,
                             device=args.device, dtype=args.dtype, **_single_choices(args))
    _check_device(config.impl, args)
    check_output_dir(config.out, RUN_FILES)
    if args.resume is None or Path(config.out).resolve() != Path(args.resume).resolve():
        refuse_to_overwrite(config.out, args.force)
    train(config, resume=args.resume, changes=changes)
    return 0


def _resumed_config(args, recorded: dict) -> tuple[dict, dict]:
    """The resumed run's configuration: :mod:`simplecnn.resume_policy` decides each option given again."""
    from .resume_policy import ResumeConflict, apply_resume_policy, given_options

    names = given_options(args.argv) - {"resume", "force", "no_download"}
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    recorded = dict(recorded, out=args.resume)
    try:
        config, messages, changes = apply_resume_policy(recorded, given, args.resume)
    except ResumeConflict as e:
        raise UsageError(str(e)) from None
    for message in messages:
        print(message)
    return config, changes


def _check_device(impl: str, args) -> None:
    """``--device`` means something for torch only: refuse it with ``--impl numpy`` rather than ignore it."""
    if impl == "numpy" and "device" in _given(args) and args.device != "cpu":
        raise UsageError(f"--device {args.device} applies to --impl torch only (the NumPy implementation "
                         "runs on the CPU)")


def _given(args) -> set[str]:
    from .resume_policy import given_options

    return given_options(getattr(args, "argv", []))


def _single_choices(args) -> dict[str, str]:
    """The ``--optimizer/--activation/--pool`` given, the guide's network for those not given."""
    return {"optimizer": args.optimizer or "adam", "activation": args.activation or "relu", "pool": args.pool or "max"}


def _cmd_evaluate(args) -> int:
    import numpy as np

    from scratch.data import load_mnist, normalize

    from .backends import make_backend
    from .checkpoint import check_finite_state, load_model, load_model_config

    checkpoint = Path(args.checkpoint)
    if checkpoint.is_dir():  # a run folder: its portable checkpoint
        checkpoint = checkpoint / "model.npz"
    _check_device(args.impl, args)
    if args.image is not None and not args.plots:
        raise UsageError("--image: only used with --plots (it picks the image of the backward-pass figures)")
    image = 0 if args.image is None else args.image
    if args.plots:
        from .backprop_plots import BACKPROP_FILES
        from .outputs import check_output_dir

        check_output_dir(args.out or checkpoint.parent, PLOT_FILES + BACKPROP_FILES)
    state = load_model(checkpoint)
    check_finite_state(state, checkpoint)
    recorded = load_model_config(checkpoint)  # the network the checkpoint was trained as
    network = {k: recorded[k] for k in ("num_classes", "activation", "pool") if k in recorded}
    backend = make_backend(args.impl, seed=0, device=args.device, **network)
    backend.load_model_state(state)
    mnist = load_mnist(args.data_dir)
    test_x = normalize(mnist.test_images, np.float32)
    from .backprop_plots import check_image_index, plot_backward_pass

    if args.plots and (problem := check_image_index(image, len(test_x))):
        raise UsageError(problem)
    loss, accuracy, predicted = backend.evaluate(test_x, mnist.test_labels)
    print(f"Test Loss: {loss:.4f}, Test Accuracy: {accuracy:.2f}%")
    if args.plots:
        from .plots import plot_confusion_matrix, plot_filters, plot_misclassified

        out = Path(args.out) if args.out else checkpoint.parent
        plot_confusion_matrix(mnist.test_labels, predicted, out / "confusion_matrix.png")
        plot_filters(backend.model_state()["conv1.weight"], out / "conv1_filters.png")
        plot_misclassified(mnist.test_images, mnist.test_labels, predicted, out / "misclassified.png")
        print(f"Wrote confusion_matrix.png, conv1_filters.png, misclassified.png to {out}")
        backprop = plot_backward_pass(backend, test_x, mnist.test_labels, image, out)
        print(f"Wrote {len(backprop)} backward-pass figures (backprop_*.png) for test image {image}")
    return 0


PLOT_FILES = ("confusion_matrix.png", "conv1_filters.png", "misclassified.png")


def _cmd_compare(args) -> int:
    from .compare import COMPARE_FILES, CompareConfig, compare
    from .outputs import check_output_dir

    check_output_dir(args.out or "runs/compare", COMPARE_FILES)

    compare(CompareConfig(epochs=args.epochs or args.default_epochs, batch_size=args.batch_size,
                          lr=args.lr, val_split=args.val_split, seed=args.seed, data_dir=args.data_dir,
                          out=args.out or "runs/compare", train_limit=args.train_limit, dtype=args.dtype,
                          **_single_choices(args)))
    return 0


def _cmd_sweep(args) -> int:
    from .outputs import check_output_dir
    from .sweep import SWEEP_FILES, SweepConfig, parse_choices, sweep

    _check_device(args.impl, args)
    check_output_dir(args.out or "runs/sweep", SWEEP_FILES)
    try:
        lists: dict[str, Any] = {"optimizers": parse_choices("--optimizer", args.optimizer, OPTIMIZERS),
                 "activations": parse_choices("--activation", args.activation, ACTIVATIONS),
                 "pools": parse_choices("--pool", args.pool, POOLS)}
    except ValueError as e:
        raise UsageError(str(e)) from None
    sweep(SweepConfig(impl=args.impl, **lists, epochs=args.epochs or args.default_epochs,
                      batch_size=args.batch_size, lr=args.lr, val_split=args.val_split, seed=args.seed,
                      data_dir=args.data_dir, out=args.out or "runs/sweep", train_limit=args.train_limit,
                      device=args.device, dtype=args.dtype))
    return 0


def _cmd_gradcheck(args) -> int:
    from .gradcheck import run

    return run(args.dtype, seed=args.seed)


def _cmd_convert(args) -> int:
    from .checkpoint import convert_torch_file

    convert_torch_file(args.source, args.target)
    print(f"Wrote {args.target} (from {args.source})")
    return 0


def _cmd_exercise(args) -> int:
    from .exercise.commands import run

    return run(args, UsageError)


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "compare": _cmd_compare,
            "gradcheck": _cmd_gradcheck, "exercise": _cmd_exercise,
            "convert": _cmd_convert, "sweep": _cmd_sweep}


def main(argv: list[str] | None = None) -> int:
    from scratch.data import DataError
    from scratch.module import StateDictError
    from scratch.train import NonFiniteLossError

    from .checkpoint import CheckpointError
    from .outputs import OutputError
    from .run import Interrupted

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = argv
        if args.command is None:  # no command: the usage and the list of commands, exit 2
            parser.print_help(sys.stderr)
            return 2
        if getattr(args, "no_download", False):
            import os

            os.environ["SIMPLECNN_NO_DOWNLOAD"] = "1"
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(f"simplecnn: error: {e}", file=sys.stderr)
        return 2
    except (CheckpointError, OutputError) as e:
        print(f"simplecnn: error: {e}", file=sys.stderr)
        return 2
    except (DataError, StateDictError, NonFiniteLossError, ValueError) as e:
        print(f"simplecnn: error: {e}", file=sys.stderr)
        return 1
    except Interrupted:
        return 130
    except KeyboardInterrupt:
        print("simplecnn: stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

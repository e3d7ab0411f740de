"""``simplecnn``: train, evaluate, compare and gradient-check the two SimpleCNNs.

Every user mistake (a bad value, a missing file) ends with one line on stderr and a non-zero exit
status: 2 for a bad command line, 1 for a failure while running. Never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .backends import IMPLEMENTATIONS


class UsageError(Exception):
    """A bad command-line value: exit status 2."""


class _Parser(argparse.ArgumentParser):
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


def _add_training_options(p: argparse.ArgumentParser, default_out: str, default_epochs: int) -> None:
    p.add_argument("--epochs", type=_positive_int, default=None, help=f"default {default_epochs}")
    p.set_defaults(default_epochs=default_epochs)
    p.add_argument("--batch-size", type=_positive_int, default=64, help="default 64")
    p.add_argument("--lr", type=_learning_rate, default=1e-3, help="Adam learning rate, default 1e-3")
    p.add_argument("--val-split", type=_fraction, default=0.1,
                   help="fraction of the training images held out for validation, default 0.1")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="default 0")
    p.add_argument("--data-dir", default=None,
                   help="folder holding MNIST/raw/ (default: $SIMPLECNN_DATA, else ./data)")
    p.add_argument("--out", default=None, help=f"output folder (default {default_out})")
    p.add_argument("--train-limit", type=_positive_int, default=None,
                   help="train on the first N training images only (quick runs)")
    p.add_argument("--no-download", action="store_true", help="never download MNIST")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="simplecnn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train one implementation on MNIST")
    p.add_argument("--impl", choices=IMPLEMENTATIONS, default=None, help="numpy (default) or torch")
    _add_training_options(p, "runs/<impl>", 10)
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the run saved in DIR")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto", help="torch only")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")

    p = sub.add_parser("evaluate", help="test accuracy of a checkpoint, with either implementation")
    p.add_argument("--impl", choices=IMPLEMENTATIONS, default="numpy")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="model.npz (or checkpoint.npz)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--plots", action="store_true",
                   help="also write confusion_matrix.png, conv1_filters.png, misclassified.png")
    p.add_argument("--out", default=None, help="folder for the plots (default: the checkpoint's folder)")
    p.add_argument("--image", type=int, default=0, metavar="INDEX",
                   help="test image whose forward maps and backward gradients --plots draws (default 0)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto", help="torch only")
    p.add_argument("--no-download", action="store_true")

    p = sub.add_parser("compare", help="train both implementations side by side, in lockstep")
    _add_training_options(p, "runs/compare", 1)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")

    p = sub.add_parser("gradcheck", help="every scratch component against torch autograd")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    return parser


def _cmd_train(args) -> int:
    from .run import TrainConfig, config_from_checkpoint, train

    if args.resume is not None:
        if not Path(args.resume).is_dir():
            raise UsageError(f"--resume: {args.resume} is not a folder")
        config = config_from_checkpoint(args.resume)
        config.out = args.out or args.resume
        if args.epochs is not None:  # extend (or shorten) the resumed run
            config.epochs = args.epochs
        if args.impl is not None and args.impl != config.impl:
            raise UsageError(f"--resume: the run in {args.resume} uses --impl {config.impl}, not {args.impl}")
        if args.data_dir is not None:
            config.data_dir = args.data_dir
    else:
        impl = args.impl or "numpy"
        config = TrainConfig(impl=impl, epochs=args.epochs or args.default_epochs,
                             batch_size=args.batch_size, lr=args.lr, val_split=args.val_split,
                             seed=args.seed, data_dir=args.data_dir, out=args.out or f"runs/{impl}",
                             train_limit=args.train_limit,
                             device=args.device, dtype=args.dtype)
    train(config, resume=args.resume)
    return 0


def _cmd_evaluate(args) -> int:
    import numpy as np

    from scratch.data import load_mnist, normalize

    from .backends import make_backend
    from .checkpoint import load_model

    state = load_model(args.checkpoint)
    backend = make_backend(args.impl, seed=0, device=args.device)
    backend.load_model_state(state)
    mnist = load_mnist(args.data_dir)
    test_x = normalize(mnist.test_images, np.float32)
    from .backprop_plots import check_image_index, plot_backward_pass

    if args.plots and (problem := check_image_index(args.image, len(test_x))):
        raise UsageError(problem)
    loss, accuracy, predicted = backend.evaluate(test_x, mnist.test_labels)
    print(f"Test Loss: {loss:.4f}, Test Accuracy: {accuracy:.2f}%")
    if args.plots:
        from .plots import plot_confusion_matrix, plot_filters, plot_misclassified

        out = Path(args.out) if args.out else Path(args.checkpoint).parent
        plot_confusion_matrix(mnist.test_labels, predicted, out / "confusion_matrix.png")
        plot_filters(backend.model_state()["conv1.weight"], out / "conv1_filters.png")
        plot_misclassified(mnist.test_images, mnist.test_labels, predicted, out / "misclassified.png")
        print(f"Wrote confusion_matrix.png, conv1_filters.png, misclassified.png to {out}")
        backprop = plot_backward_pass(backend, test_x, mnist.test_labels, args.image, out)
        print(f"Wrote {len(backprop)} backward-pass figures (backprop_*.png) for test image {args.image}")
    return 0


def _cmd_compare(args) -> int:
    from .compare import CompareConfig, compare

    compare(CompareConfig(epochs=args.epochs or args.default_epochs, batch_size=args.batch_size,
                          lr=args.lr, val_split=args.val_split, seed=args.seed, data_dir=args.data_dir,
                          out=args.out or "runs/compare", train_limit=args.train_limit, dtype=args.dtype))
    return 0


def _cmd_gradcheck(args) -> int:
    from .gradcheck import run

    return run(args.dtype, seed=args.seed)


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "compare": _cmd_compare,
            "gradcheck": _cmd_gradcheck}


def main(argv: list[str] | None = None) -> int:
    from scratch.data import DataError
    from scratch.module import StateDictError
    from scratch.train import NonFiniteLossError

    from .checkpoint import CheckpointError
    from .run import Interrupted

    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "no_download", False):
            import os

            os.environ["SIMPLECNN_NO_DOWNLOAD"] = "1"
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(f"simplecnn: error: {e}", file=sys.stderr)
        return 2
    except CheckpointError as e:
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

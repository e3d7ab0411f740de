"""The guide's script, runnable against either implementation.

    python examples/guide.py [--impl numpy|torch] [--epochs N] [--train-limit N] [--dataset NAME]
                             [--data-dir DIR]

The six lines between the markers are the guide's, unchanged; only the import differs between the two
implementations (tests/test_guide.py runs the same lines).
"""

# ruff: noqa: E501 (the guide's lines are kept exactly as the guide writes them)

from __future__ import annotations

import argparse
import importlib


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--impl", choices=("numpy", "torch"), default="numpy",
                        help="numpy: `from scratch import ...`; torch: `from torch_impl import ...`")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default: 10, the guide's)")
    parser.add_argument("--train-limit", type=int, default=None, metavar="N",
                        help="train on the first N training images only (a quick try)")
    parser.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist, kmnist or idx")
    parser.add_argument("--data-dir", default=None, help="the data folder (default: $SIMPLECNN_DATA or ./data)")
    args = parser.parse_args(argv)
    package = importlib.import_module("scratch" if args.impl == "numpy" else "torch_impl")

    def get_mnist_dataloaders(batch_size, validation_split):
        return package.get_mnist_dataloaders(batch_size, validation_split, data_dir=args.data_dir,
                                             dataset=args.dataset, train_limit=args.train_limit)

    def train_model(*model_and_loaders):
        return package.train_model(*model_and_loaders, epochs=args.epochs)

    _setup_model_for_training = package._setup_model_for_training
    evaluate_model, plot_training_losses = package.evaluate_model, package.plot_training_losses
    num_class, learning_rate, batch_size, validation_split = 10, 1e-3, 64, 0.1

    # --- the guide's script ---
    cnn_model, loss_fn, adam_optimizer, h_device = _setup_model_for_training(num_class, learning_rate)
    train_loader, val_loader, test_loader = get_mnist_dataloaders(batch_size, validation_split)
    train_losses, validation_losses = train_model(cnn_model, loss_fn, adam_optimizer, train_loader, val_loader, h_device)
    test_accuracy, test_loss = evaluate_model(cnn_model, loss_fn, test_loader, h_device)
    print(f"\nTest Loss: {test_loss:.4f},Test Accuracy: {test_accuracy:.2f}%")
    plot_training_losses(train_losses, validation_losses)
    # --- end of the guide's script ---


if __name__ == "__main__":
    main()

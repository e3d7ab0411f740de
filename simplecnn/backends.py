"""One interface over the two implementations, so that training, resuming, evaluating and comparing
are written once. A backend owns a model and its optimizer and speaks NumPy at its edges:
state dicts, optimizer state and batches are NumPy arrays, RNG states are JSON-able.

The optimizer is one of :data:`OPTIMIZERS`, each built with the same hyper-parameters on both sides; the
torch backend converts torch.optim's state to and from the NumPy optimizer's flat keys (``step``,
``<torch state name>.<param>``), so a checkpoint's optimizer state resumes in either implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import scratch
from scratch import train as scratch_train
from scratch.module import check_state_dict

IMPLEMENTATIONS = ("numpy", "torch")


@dataclass(frozen=True)
class OptimizerChoice:
    """One ``--optimizer`` value: the class (same name in ``scratch`` and ``torch.optim``), its
    hyper-parameters besides ``lr``, the learning rate used when ``--lr`` is not given, and the names of
    the per-parameter state arrays (torch.optim's names; ``steps`` says whether torch keeps a step count)."""

    cls: str
    default_lr: float
    kwargs: dict[str, Any] = field(default_factory=dict)
    state: tuple[str, ...] = ()
    steps: bool = True


#: ``--optimizer`` choices. Default learning rates: Adam's 1e-3 (the guide's); plain SGD needs a far larger
#: step than the adaptive methods, momentum 0.9 multiplies the step by ~10, so a tenth of SGD's; Adagrad's is
#: torch's default; RMSprop's torch default (1e-2) diverges on this network, 1e-3 is Keras' and Hinton's.
OPTIMIZERS: dict[str, OptimizerChoice] = {
    "adam": OptimizerChoice("Adam", 1e-3, state=("exp_avg", "exp_avg_sq")),
    "adamw": OptimizerChoice("AdamW", 1e-3, {"weight_decay": 1e-2}, state=("exp_avg", "exp_avg_sq")),
    "sgd": OptimizerChoice("SGD", 0.05, steps=False),
    "momentum": OptimizerChoice("SGD", 0.01, {"momentum": 0.9}, state=("momentum_buffer",), steps=False),
    "adagrad": OptimizerChoice("Adagrad", 0.01, state=("sum",)),
    "rmsprop": OptimizerChoice("RMSprop", 1e-3, state=("square_avg",)),
}


def optimizer_choice(name: str) -> OptimizerChoice:
    if name not in OPTIMIZERS:
        raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name]


def default_lr(optimizer: str) -> float:
    """The learning rate ``optimizer`` trains with when ``--lr`` is not given."""
    return optimizer_choice(optimizer).default_lr


class NumpyBackend:
    impl = "numpy"

    def __init__(self, seed: int, dtype=np.float32, lr: float = 1e-3, device: str = "cpu", *,
                 num_classes: int = 10, activation: str = "relu", pool: str = "max", optimizer: str = "adam"):
        self.dtype = np.dtype(dtype)
        choice = optimizer_choice(optimizer)
        self.model = scratch.SimpleCNN(num_classes, activation=activation, pool=pool, seed=seed, dtype=self.dtype)
        self.optimizer = getattr(scratch, choice.cls)(self.model.parameters(), lr=lr, **choice.kwargs)
        self.loss_fn = scratch.CrossEntropyLoss()
        self.device = "cpu"

    def train_epoch(self, x: np.ndarray, y: np.ndarray, batches: Sequence[np.ndarray], epoch: int,
                    after_step: Callable[[int, float], None] | None = None, first_step: int = 1) -> float:
        return scratch_train.train_one_epoch(self.model, self.loss_fn, self.optimizer,
                                             scratch_train.index_batches(x, y, batches), epoch, after_step,
                                             first_step)

    def train_step(self, x: np.ndarray, y: np.ndarray, dropout_masks=None) -> float:
        self.model.train()
        return scratch_train.train_step(self.model, self.optimizer, x, y, dropout_masks)

    def evaluate(self, x: np.ndarray, y: np.ndarray):
        return scratch_train.evaluate(self.model, x, y)

    def model_state(self) -> dict[str, np.ndarray]:
        return self.model.state_dict()

    def load_model_state(self, state: dict[str, np.ndarray]) -> None:
        self.model.load_state_dict(state)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        self.optimizer.load_state_dict(state)

    def rng_state(self) -> dict:
        return {"numpy_dropout": self.model.dropout_rng.bit_generator.state}

    def set_rng_state(self, state: dict) -> None:
        self.model.dropout_rng.bit_generator.state = state["numpy_dropout"]


class TorchBackend:
    impl = "torch"

    def __init__(self, seed: int, dtype=np.float32, lr: float = 1e-3, device: str = "auto", *,
                 num_classes: int = 10, activation: str = "relu", pool: str = "max", optimizer: str = "adam"):
        import torch

        from torch_impl import SimpleCNN
        from torch_impl import train as torch_train

        self.torch, self.torch_train = torch, torch_train
        self.device = torch_train.resolve_device(device)
        self.dtype = np.dtype(dtype)
        torch.manual_seed(seed)  # PyTorch's own initialization, and its dropout masks
        self.choice = optimizer_choice(optimizer)
        self.model = SimpleCNN(num_classes, activation, pool).to(device=self.device,
                                                                 dtype=getattr(torch, self.dtype.name))
        self.optimizer = getattr(torch.optim, self.choice.cls)(self.model.parameters(), lr=lr, **self.choice.kwargs)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.param_names = [name for name, _ in self.model.named_parameters()]
        # torch's SGD keeps no step count: count steps here, for every optimizer alike
        self.steps = 0
        self.optimizer.register_step_post_hook(self._count_step)

    def _count_step(self, optimizer, args, kwargs) -> None:
        self.steps += 1

    def _tensor(self, a: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def train_epoch(self, x, y, batches, epoch, after_step=None, first_step: int = 1) -> float:
        loader = self.torch_train.make_loader(x, y, batches)
        return self.torch_train.train_one_epoch(self.model, self.loss_fn, self.optimizer, loader, self.device,
                                                epoch, after_step, first_step)

    def train_step(self, x: np.ndarray, y: np.ndarray, dropout_masks=None) -> float:
        masks = {k: self._tensor(v) for k, v in (dropout_masks or {}).items()}
        self.model.train()
        with self.torch_train.fixed_dropout_masks(self.model, masks):
            return self.torch_train.train_step(self.model, self.optimizer, self._tensor(x), self._tensor(y))

    def evaluate(self, x: np.ndarray, y: np.ndarray):
        return self.torch_train.evaluate(self.model, self.torch_train.make_loader(x, y), self.device)

    def model_state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict().items()}

    def load_model_state(self, state: dict[str, np.ndarray]) -> None:
        expected = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        check_state_dict(expected, state, "SimpleCNN")
        current = self.model.state_dict()
        self.model.load_state_dict({k: self.torch.from_numpy(np.asarray(v)).to(current[k].dtype)
                                    for k, v in state.items()})

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """The optimizer's state with the NumPy optimizer's keys (``step``, ``<state name>.<param>``); a state
        torch has not created yet (SGD's momentum buffer before the first step) is zeros, as in NumPy."""
        state = self.optimizer.state_dict()["state"]
        flat = {"step": np.array(self.steps, dtype=np.int64)}
        params = dict(self.model.named_parameters())
        for key in self.choice.state:
            for index, name in enumerate(self.param_names):
                value = state.get(index, {}).get(key)
                flat[f"{key}.{name}"] = (np.zeros(tuple(params[name].shape), self.dtype) if value is None
                                         else value.detach().cpu().numpy().copy())
        return flat

    def load_optimizer_state(self, flat: dict[str, np.ndarray]) -> None:
        params = dict(self.model.named_parameters())
        expected: dict[str, tuple[int, ...]] = {"step": ()}
        for key in self.choice.state:
            expected.update({f"{key}.{name}": tuple(p.shape) for name, p in params.items()})
        check_state_dict(expected, flat, self.choice.cls)
        step = int(flat["step"])
        self.steps = step
        if step == 0:  # nothing has happened yet: torch's fresh state is the right one
            return
        full = self.optimizer.state_dict()
        full["state"] = {}
        for index, name in enumerate(self.param_names):
            entry = {key: self._like(flat[f"{key}.{name}"], params[name]) for key in self.choice.state}
            if self.choice.steps:
                entry["step"] = self.torch.tensor(float(step))
            full["state"][index] = entry
        self.optimizer.load_state_dict(full)

    def _like(self, array: np.ndarray, param):
        return self.torch.from_numpy(np.array(array)).to(device=param.device, dtype=param.dtype)

    def rng_state(self) -> dict:
        state = {"torch_cpu": self.torch.get_rng_state().numpy().tolist()}
        if self.device.type == "cuda":
            state["torch_cuda"] = self.torch.cuda.get_rng_state(self.device).numpy().tolist()
        return state

    def set_rng_state(self, state: dict) -> None:
        self.torch.set_rng_state(self.torch.tensor(state["torch_cpu"], dtype=self.torch.uint8))
        if self.device.type == "cuda" and "torch_cuda" in state:
            self.torch.cuda.set_rng_state(self.torch.tensor(state["torch_cuda"], dtype=self.torch.uint8),
                                          self.device)


def make_backend(impl: str, seed: int = 0, dtype=np.float32, lr: float = 1e-3, device: str = "auto", *,
                 num_classes: int = 10, activation: str = "relu", pool: str = "max", optimizer: str = "adam"):
    choices: dict[str, Any] = {"num_classes": num_classes, "activation": activation, "pool": pool,
                               "optimizer": optimizer}
    if impl == "numpy":
        return NumpyBackend(seed, dtype, lr, **choices)
    if impl == "torch":
        return TorchBackend(seed, dtype, lr, device, **choices)
    raise ValueError(f"--impl must be one of {', '.join(IMPLEMENTATIONS)}, got {impl!r}")

"""One interface over the two implementations, so that training, resuming, evaluating and comparing
are written once. A backend owns a model and its Adam optimizer and speaks NumPy at its edges:
state dicts, optimizer state and batches are NumPy arrays, RNG states are JSON-able.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

import scratch
from scratch import train as scratch_train
from scratch.module import check_state_dict

IMPLEMENTATIONS = ("numpy", "torch")


class NumpyBackend:
    impl = "numpy"

    def __init__(self, seed: int, dtype=np.float32, lr: float = 1e-3, device: str = "cpu", *,
                 num_classes: int = 10):
        self.dtype = np.dtype(dtype)
        self.model = scratch.SimpleCNN(num_classes, seed=seed, dtype=self.dtype)
        self.optimizer = scratch.Adam(self.model.parameters(), lr=lr)
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
                 num_classes: int = 10):
        import torch

        from torch_impl import SimpleCNN
        from torch_impl import train as torch_train

        self.torch, self.torch_train = torch, torch_train
        self.device = torch_train.resolve_device(device)
        self.dtype = np.dtype(dtype)
        torch.manual_seed(seed)  # PyTorch's own initialization, and its dropout masks
        self.model = SimpleCNN(num_classes).to(device=self.device, dtype=getattr(torch, self.dtype.name))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.param_names = [name for name, _ in self.model.named_parameters()]

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
        """Adam's state with the NumPy optimizer's keys (``step``, ``exp_avg.<param>``, ...)."""
        state = self.optimizer.state_dict()["state"]
        flat = {"step": np.array(int(state[0]["step"]) if state else 0, dtype=np.int64)}
        for index, name in enumerate(self.param_names):
            for key in ("exp_avg", "exp_avg_sq"):
                if index in state:
                    flat[f"{key}.{name}"] = state[index][key].detach().cpu().numpy().copy()
        return flat

    def load_optimizer_state(self, flat: dict[str, np.ndarray]) -> None:
        params = dict(self.model.named_parameters())
        expected: dict[str, tuple[int, ...]] = {"step": ()}
        for key in ("exp_avg", "exp_avg_sq"):
            expected.update({f"{key}.{name}": tuple(p.shape) for name, p in params.items()})
        check_state_dict(expected, flat, "Adam")
        step = int(flat["step"])
        if step == 0:
            return
        full = self.optimizer.state_dict()
        full["state"] = {
            index: {"step": self.torch.tensor(float(step)),
                    "exp_avg": self._like(flat[f"exp_avg.{name}"], params[name]),
                    "exp_avg_sq": self._like(flat[f"exp_avg_sq.{name}"], params[name])}
            for index, name in enumerate(self.param_names)}
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
                 num_classes: int = 10):
    if impl == "numpy":
        return NumpyBackend(seed, dtype, lr, num_classes=num_classes)
    if impl == "torch":
        return TorchBackend(seed, dtype, lr, device, num_classes=num_classes)
    raise ValueError(f"--impl must be one of {', '.join(IMPLEMENTATIONS)}, got {impl!r}")

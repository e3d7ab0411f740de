"""Checkpoint files, written atomically so that a crash or Ctrl-C never leaves half a file.

* ``model.npz``: the portable checkpoint, the model's state dict alone, with PyTorch's keys
  (``conv1.weight``, ..., ``batch1.num_batches_tracked``). Either implementation loads it. One extra
  0-d string entry, ``simplecnn.config``, holds the network's choices as JSON (``activation``, ``pool``,
  ``optimizer``, ...), so that ``evaluate`` and ``compare`` rebuild the network it was trained as.
* ``checkpoint.npz``: everything a run needs to continue: ``model.<key>``, ``optim.<key>`` (Adam's
  moments and step) and ``meta``, a JSON document (configuration, epoch and step reached, RNG states,
  metric history).
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

CHECKPOINT_NAME, MODEL_NAME = "checkpoint.npz", "model.npz"
MODEL_CONFIG_KEY = "simplecnn.config"


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or does not fit the model."""


def write_atomically(path: str | os.PathLike, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, flush it to disk, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode (0644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    named: dict[str, Any] = dict(arrays)  # np.savez's stubs type its keyword arrays loosely
    write_atomically(path, lambda f: np.savez(f, **named))


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    _check_format(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable .npz checkpoint ({e})") from None


def _check_format(path: Path) -> None:
    """Name what the file is when it is not an .npz: a PyTorch pickle, another pickle, text, ..."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise CheckpointError(f"{path}: not a readable .npz checkpoint ({e})") from None
        if any(name.endswith("data.pkl") for name in names):
            raise CheckpointError(f"{path}: this is a PyTorch pickle (torch.save), not an .npz; convert it with: "
                                  f"simplecnn convert {shlex.quote(str(path))} model.npz")
        return
    if head.startswith(b"\x80"):
        raise CheckpointError(f"{path}: this is a Python pickle (perhaps an old torch.save file), not an .npz; "
                              f"if it is a PyTorch state dict, convert it with: "
                              f"simplecnn convert {shlex.quote(str(path))} model.npz")
    if not head.startswith(b"\x93NUMPY"):
        kind = "a text file" if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head) else "unknown data"
        raise CheckpointError(f"{path}: not an .npz file (it holds {kind}, not a zip archive of arrays)")


def check_finite_state(state: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """A checkpoint whose weights hold NaN or infinity evaluates to nonsense: refuse it by name."""
    bad = [k for k, v in state.items() if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values ({', '.join(bad[:3])}"
                              f"{', ...' if len(bad) > 3 else ''}); the run that wrote it diverged")


def convert_torch_file(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """A ``torch.save``d state dict (or ``{"state_dict": ...}``) as a portable ``.npz``.

    Read with ``torch.load(weights_only=True)``, which refuses to run code hidden in the pickle.
    """
    import torch

    source, target = Path(source), Path(target)
    if not source.is_file():
        raise CheckpointError(f"not found: {source}")
    if target.exists():
        raise CheckpointError(f"{target} already exists; choose another name or remove it")
    try:
        loaded = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for unsafe or corrupt files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{source}: cannot be read safely as a PyTorch state dict ({first})") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{source}: not a state dict (a dict of tensors)")
    state = {str(k).removeprefix("module."): v.detach().cpu().numpy() for k, v in loaded.items()}
    from scratch import SimpleCNN
    from scratch.module import StateDictError

    try:
        SimpleCNN().load_state_dict(state)
    except StateDictError as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(f"{source}: does not fit SimpleCNN ({first})") from None
    save_model(target, state)


def save_model(path: str | os.PathLike, state: dict[str, np.ndarray], config: dict | None = None) -> None:
    """The state dict, plus ``config`` (JSON) under :data:`MODEL_CONFIG_KEY` when given."""
    arrays = dict(state)
    if config is not None:
        arrays[MODEL_CONFIG_KEY] = np.array(json.dumps(config))
    save_arrays(path, arrays)


def load_model(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A model state dict from ``model.npz`` (its config entry dropped) or from the ``model.*`` part of a
    ``checkpoint.npz``."""
    arrays = load_arrays(path)
    if "meta" in arrays:
        return {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
    arrays.pop(MODEL_CONFIG_KEY, None)
    return arrays


def load_model_config(path: str | os.PathLike) -> dict:
    """The configuration a model file records: its JSON entry, ``meta["config"]`` for a ``checkpoint.npz``,
    ``{}`` for a file written without one (missing keys mean the defaults)."""
    arrays = load_arrays(path)
    key = "meta" if "meta" in arrays else MODEL_CONFIG_KEY
    if key not in arrays:
        return {}
    try:
        document = json.loads(str(arrays[key]))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: corrupt {key!r} entry ({e})") from None
    config = document.get("config", {}) if key == "meta" else document
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: the {key!r} entry is not a JSON object")
    return config


def save_training_checkpoint(directory: str | os.PathLike, model_state: dict[str, np.ndarray],
                             optimizer_state: dict[str, np.ndarray], meta: dict) -> Path:
    arrays = {f"model.{k}": v for k, v in model_state.items()}
    arrays.update({f"optim.{k}": v for k, v in optimizer_state.items()})
    arrays["meta"] = np.array(json.dumps(meta))
    path = Path(directory) / CHECKPOINT_NAME
    save_arrays(path, arrays)
    return path


def load_training_checkpoint(directory: str | os.PathLike):
    """``(model_state, optimizer_state, meta)`` from ``<directory>/checkpoint.npz``."""
    path = Path(directory) / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no resumable checkpoint in {directory} (expected {path})")
    arrays = load_arrays(path)
    if "meta" not in arrays:
        raise CheckpointError(f"{path}: not a training checkpoint (no 'meta' entry)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: corrupt 'meta' entry ({e})") from None
    model = {k[6:]: v for k, v in arrays.items() if k.startswith("model.")}
    optim = {k[6:]: v for k, v in arrays.items() if k.startswith("optim.")}
    return model, optim, meta

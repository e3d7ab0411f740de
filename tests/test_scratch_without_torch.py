"""``scratch`` needs only NumPy: it imports, and trains a step, in a Python where torch cannot be imported."""

import ast
import pathlib
import subprocess
import sys
import textwrap

SCRATCH = pathlib.Path(__file__).resolve().parents[1] / "scratch"

# Run in a fresh interpreter: a meta-path finder placed first refuses torch (and any torch.* submodule),
# then every scratch module is imported and one training step of the network runs.
PROGRAM = textwrap.dedent("""
    import importlib, pkgutil, sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked in this test (import of {name!r})")
            return None

    sys.meta_path.insert(0, NoTorch())
    try:
        import torch
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker did not work: torch imported")

    import numpy as np
    import scratch
    for module in pkgutil.iter_modules(scratch.__path__):
        importlib.import_module(f"scratch.{module.name}")

    model = scratch.SimpleCNN(seed=0)
    optimizer = scratch.Adam(model.parameters())
    images = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    loss, grad = scratch.cross_entropy(model.forward(images), np.array([3, 7]))
    model.backward(grad)
    optimizer.step()
    assert np.isfinite(loss)
    assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules)
    print("ok")
""")


def test_scratch_imports_and_trains_without_torch():
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                            cwd=SCRATCH.parent, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_no_scratch_module_imports_torch():
    """Read every scratch source file: no ``import torch`` / ``from torch ...`` anywhere, even in a function."""
    for path in sorted(SCRATCH.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "torch" or n.startswith("torch.") for n in names), \
                f"{path.name}:{node.lineno} imports torch"

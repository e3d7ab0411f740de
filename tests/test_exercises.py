"""``simplecnn exercise``: for every exercise, the untouched file is "not implemented yet", the reference
passes its own grader, and each typical mistake fails with its minimal example and the intended hint.

The grader runs with few examples here (``SIMPLECNN_EXERCISE_EXAMPLES``): every mistake below is caught
on the first examples already, and the search is derandomized, so the outcome is the same every run.
"""

from __future__ import annotations

import inspect
import textwrap

import pytest

from simplecnn.cli import main
from simplecnn.exercise import NAMES
from simplecnn.exercise.catalog import BY_NAME, EXERCISES


@pytest.fixture(autouse=True)
def few_examples(monkeypatch):
    monkeypatch.setenv("SIMPLECNN_EXERCISE_EXAMPLES", "10")


def start(tmp_path, name: str) -> str:
    assert main(["exercise", "start", name, "--dir", str(tmp_path)]) == 0
    return (tmp_path / f"{name}.py").read_text()


def with_function(tmp_path, name: str, source: str) -> None:
    """The exercise file with the learner's function replaced by ``source`` (the rest as ``start`` wrote it)."""
    exercise = BY_NAME[name]
    template = exercise.template()
    stub = template[template.index(f"def {exercise.function}("):]
    (tmp_path / f"{name}.py").write_text(template.replace(stub, textwrap.dedent(source)))


def check(tmp_path, name: str, capsys) -> tuple[int, str]:
    status = main(["exercise", "check", name, "--dir", str(tmp_path)])
    return status, capsys.readouterr().out


def test_every_exercise_is_listed_in_order():
    assert tuple(e.name for e in EXERCISES) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_untouched_file_is_not_implemented_yet(tmp_path, capsys, name):
    text = start(tmp_path, name)
    exercise = BY_NAME[name]
    assert exercise.chapter in text and f"def {exercise.function}(" in text
    capsys.readouterr()
    status, out = check(tmp_path, name, capsys)
    assert status == 1
    assert "not implemented yet" in out


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_pasted_in_passes(tmp_path, capsys, name):
    start(tmp_path, name)
    with_function(tmp_path, name, inspect.getsource(BY_NAME[name].reference))
    status, out = check(tmp_path, name, capsys)
    assert status == 0, out
    assert "FAIL" not in out and "All" in out and "timing" in out


def test_start_never_overwrites_without_force(tmp_path, capsys):
    start(tmp_path, "relu")
    path = tmp_path / "relu.py"
    path.write_text("my work")
    assert main(["exercise", "start", "relu", "--dir", str(tmp_path)]) == 1
    assert "not overwritten" in capsys.readouterr().out
    assert path.read_text() == "my work"
    assert main(["exercise", "start", "relu", "--dir", str(tmp_path), "--force"]) == 0
    assert "NotImplementedError" in path.read_text()


def test_list_shows_each_status(tmp_path, capsys):
    start(tmp_path, "relu")
    start(tmp_path, "linear")
    with_function(tmp_path, "linear", inspect.getsource(BY_NAME["linear"].reference))
    capsys.readouterr()
    check(tmp_path, "relu", capsys)
    check(tmp_path, "linear", capsys)
    assert main(["exercise", "list", "--dir", str(tmp_path)]) == 0
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line[:3].strip().endswith(".")}
    assert "not implemented yet" in lines["relu"]
    assert "passing" in lines["linear"]
    assert "not started" in lines["adam"]


def test_solution_names_the_reference_and_the_chapter(capsys):
    assert main(["exercise", "solution", "maxpool"]) == 0
    out = capsys.readouterr().out
    assert "scratch/pool.py" in out and "docs/04-max-pooling.md" in out


def test_check_without_a_file_says_how_to_start(tmp_path, capsys):
    status, out = check(tmp_path, "adam", capsys)
    assert status == 1 and "simplecnn exercise start adam" in out


# Typical wrong implementations, each with the hint the grader must give for it.
MISTAKES = {
    "linear": [
        ("""
         def linear_backward(grad_out, cache):
             x, weight, has_bias = cache
             g = grad_out.reshape(-1, weight.shape[0])
             x2 = x.reshape(-1, weight.shape[1])
             return grad_out @ weight, x2.T @ g, g.sum(axis=0) if has_bias else None
         """, "transposed weight gradient"),
        ("""
         def linear_backward(grad_out, cache):
             x, weight, has_bias = cache
             g = grad_out.reshape(-1, weight.shape[0])
             return grad_out @ weight, g.T @ x.reshape(-1, weight.shape[1]), g.mean(axis=0) if has_bias else None
         """, "SUM of g over the batch"),
    ],
    "relu": [
        ("""
         def relu_backward(grad_out, cache):
             return grad_out * (cache >= 0)
         """, "use x > 0, not x >= 0"),
    ],
    "cross_entropy": [
        ("""
         def cross_entropy_backward(cache):
             log_p, targets, reduction = cache
             grad = np.exp(log_p)
             grad[np.arange(len(targets)), targets] -= 1
             return grad
         """, "the 1/N is missing"),
        ("""
         def cross_entropy_backward(cache):
             log_p, targets, reduction = cache
             return np.exp(log_p) / len(targets) if reduction == "mean" else np.exp(log_p)
         """, "one-hot target is missing"),
    ],
    "dropout": [
        ("""
         def dropout_backward(grad_out, cache):
             keep_mask, p = cache
             return grad_out * keep_mask
         """, "without the 1/(1-p) scale"),
        ("""
         def dropout_backward(grad_out, cache):
             keep_mask, p = cache
             return grad_out * keep_mask / grad_out.dtype.type(1 - p)
         """, "p = 1 drops everything"),
    ],
    "maxpool": [
        ("""
         def maxpool2d_backward(grad_out, cache):
             candidates, y, padded_shape, input_shape, kernel, stride, padding, dilation = cache
             is_max = candidates == y
             dx_pad = np.zeros(padded_shape, dtype=grad_out.dtype)
             for k in range(len(candidates)):
                 target = _window_entry(dx_pad, k, kernel, stride, dilation, grad_out.shape[2:])
                 target += grad_out * is_max[k]
             (ph, pw), (h, w) = padding, input_shape[2:]
             return dx_pad[:, :, ph:ph + h, pw:pw + w]
         """, "every tied maximum"),
        ("""
         def maxpool2d_backward(grad_out, cache):
             candidates, y, padded_shape, input_shape, kernel, stride, padding, dilation = cache
             is_winner = _keep_first(candidates == y)
             dx_pad = np.zeros(padded_shape, dtype=grad_out.dtype)
             for k in range(len(candidates)):
                 target = _window_entry(dx_pad, k, kernel, stride, dilation, grad_out.shape[2:])
                 np.copyto(target, grad_out * is_winner[k], where=is_winner[k])
             (ph, pw), (h, w) = padding, input_shape[2:]
             return dx_pad[:, :, ph:ph + h, pw:pw + w]
         """, "must ADD their gradients"),
    ],
    "conv2d_bias": [
        ("""
         def conv2d_bias_grad(grad_out, cache):
             return grad_out.mean(axis=(0, 2, 3))
         """, "SUM of g over n, i and j"),
    ],
    "conv2d_weight": [
        ("""
         def conv2d_weight_grad(grad_out, cache):
             x, weight, stride, padding, dilation = cache
             (ph, pw) = padding
             x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
             cols = im2col(x_pad, weight.shape[2:], stride, dilation, grad_out.shape[2:])
             return np.tensordot(grad_out, cols, axes=([0, 2, 3], [0, 4, 5]))[:, :, ::-1, ::-1]
         """, "the kernel is flipped"),
        ("""
         def conv2d_weight_grad(grad_out, cache):
             x, weight, stride, padding, dilation = cache
             (ph, pw) = padding
             x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
             cols = im2col(x_pad, weight.shape[2:], stride, dilation, grad_out.shape[2:])
             return np.tensordot(cols, grad_out, axes=([0, 4, 5], [0, 2, 3])).transpose(3, 0, 1, 2).swapaxes(0, 1)
         """, "transposed weight gradient"),
    ],
    "conv2d_input": [
        ("""
         def conv2d_input_grad(grad_out, cache):
             x, weight, stride, padding, dilation = cache
             (ph, pw), (h, w) = padding, x.shape[2:]
             dcols = np.tensordot(weight, grad_out, axes=([0], [1])).transpose(3, 0, 1, 2, 4, 5)
             return col2im(np.ascontiguousarray(dcols), (x.shape[0], x.shape[1], h + 2 * ph, w + 2 * pw),
                           stride, dilation)
         """, "crop the padding"),
    ],
    "batchnorm_eval": [
        ("""
         def batchnorm2d_eval_backward(grad_out, cache):
             x_hat, inv_std, gamma, training = cache
             dgamma = (grad_out * x_hat).sum(axis=(0, 2, 3))
             dbeta = grad_out.sum(axis=(0, 2, 3))
             return inv_std.reshape(1, -1, 1, 1) * grad_out, dgamma, dbeta
         """, "carries the factor gamma"),
    ],
    "batchnorm_train": [
        ("""
         def batchnorm2d_train_backward(grad_out, cache):
             x_hat, inv_std, gamma, training = cache
             m = grad_out.size // grad_out.shape[1]
             dgamma = (grad_out * x_hat).sum(axis=(0, 2, 3))
             dbeta = grad_out.sum(axis=(0, 2, 3))
             dx = (gamma * inv_std).reshape(1, -1, 1, 1) * (grad_out - x_hat * (dgamma / m).reshape(1, -1, 1, 1))
             return dx, dgamma, dbeta
         """, "without its mean term"),
        ("""
         def batchnorm2d_train_backward(grad_out, cache):
             x_hat, inv_std, gamma, training = cache
             dgamma = (grad_out * x_hat).sum(axis=(0, 2, 3))
             return (gamma * inv_std).reshape(1, -1, 1, 1) * grad_out, dgamma, grad_out.sum(axis=(0, 2, 3))
         """, "misses both correction terms"),
    ],
    "adam": [
        ("""
         def adam_update(theta, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay):
             beta1, beta2 = betas
             grad = grad + weight_decay * theta
             exp_avg[...] = beta1 * exp_avg + (1 - beta1) * grad
             exp_avg_sq[...] = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
             theta -= lr * exp_avg / (np.sqrt(exp_avg_sq) + eps)
         """, "bias correction is missing"),
        ("""
         def adam_update(theta, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay):
             beta1, beta2 = betas
             grad = grad + weight_decay * theta
             exp_avg[...] = beta1 * exp_avg + (1 - beta1) * grad
             exp_avg_sq[...] = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
             v_hat = exp_avg_sq / (1 - beta2 ** step)
             theta -= lr * exp_avg / (1 - beta1 ** step) / np.sqrt(v_hat + eps)
         """, "eps goes after the square root"),
    ],
    "sigmoid": [
        ("""
         def sigmoid_backward(grad_out, cache):
             return grad_out * cache
         """, "sigma * (1 - sigma)"),
    ],
    "tanh": [
        ("""
         def tanh_backward(grad_out, cache):
             return grad_out * (1 - cache)
         """, "the square is missing"),
    ],
    "leaky_relu": [
        ("""
         def leaky_relu_backward(grad_out, cache):
             x, negative_slope = cache
             return np.where(x >= 0, grad_out, grad_out * negative_slope)
         """, "test x > 0, not x >= 0"),
    ],
    "softmax": [
        ("""
         def softmax_backward(grad_out, cache):
             y, dim = cache
             return grad_out * y
         """, "softmax without its sum term"),
    ],
    "log_softmax": [
        ("""
         def log_softmax_backward(grad_out, cache):
             y, dim = cache
             return grad_out - y * grad_out.sum(axis=dim, keepdims=True)
         """, "the softmax in dL/dx = g - softmax * sum(g) is exp(y)"),
    ],
    "avgpool": [
        ("""
         def avgpool2d_backward(grad_out, cache):
             divisor, padded_shape, input_shape, kernel, stride, (ph, pw) = cache
             dx_pad = np.zeros(padded_shape, dtype=grad_out.dtype)
             for k in range(kernel[0] * kernel[1]):
                 _window_entry(dx_pad, k, kernel, stride, (1, 1), grad_out.shape[2:])[...] += \\
                     grad_out / (kernel[0] * kernel[1])
             h, w = input_shape[2:]
             return dx_pad[:, :, ph:ph + h, pw:pw + w]
         """, "not kh * kw"),
    ],
    "mse": [
        ("""
         def mse_backward(grad_output, cache):
             input, target, reduction = cache
             grad = (input - target) * grad_output
             return grad / input.size if reduction == "mean" else grad
         """, "the factor 2 is missing"),
        ("""
         def mse_backward(grad_output, cache):
             input, target, reduction = cache
             return 2 * (input - target) * grad_output
         """, "the 1/N is missing"),
    ],
    "l1": [
        ("""
         def l1_backward(grad_output, cache):
             input, target, reduction = cache
             grad = np.where(input >= target, 1.0, -1.0) * grad_output
             return grad / input.size if reduction == "mean" else grad
         """, "sign(0) = 0"),
    ],
    "mean_bias_error": [
        ("""
         def mean_bias_error_backward(grad_output, cache):
             input, target, reduction = cache
             return np.ones_like(input) * grad_output
         """, "the 1/N is missing"),
    ],
    "multi_margin": [
        ("""
         def multi_margin_backward(grad_output, cache):
             z, target, p, weight, reduction = cache
             n, classes = z.shape
             rows = np.arange(n)
             g = np.broadcast_to(grad_output, (n,)) / (n if reduction == "mean" else 1)
             scale = (np.ones(n) if weight is None else weight[target]) * g
             active = z > 0
             active[rows, target] = False
             dx = (active if p == 1 else 2 * np.where(active, z, 0)) * scale[:, None]
             dx[rows, target] = -dx.sum(axis=1)
             return dx
         """, "divides by the number of classes C"),
    ],
    "sgd_momentum": [
        ("""
         def sgd_update(theta, grad, momentum_buffer, step, lr, momentum, dampening, weight_decay, nesterov):
             grad = grad + weight_decay * theta
             if momentum:
                 if step == 1:
                     momentum_buffer[...] = grad
                 else:
                     momentum_buffer[...] = momentum * momentum_buffer + (1 - dampening) * grad
                 grad = momentum_buffer
             theta -= lr * grad
         """, "the Nesterov term is missing"),
    ],
    "adagrad": [
        ("""
         def adagrad_update(theta, grad, state_sum, step, lr, lr_decay, weight_decay, eps):
             grad = grad + weight_decay * theta
             state_sum += grad * grad
             theta -= lr / (1 + (step - 1) * lr_decay) * grad / np.sqrt(state_sum + eps)
         """, "sqrt(sum) + eps, not sqrt(sum + eps)"),
    ],
    "rmsprop": [
        ("""
         def rmsprop_update(theta, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
                            momentum, centered):
             grad = grad + weight_decay * theta
             square_avg[...] = alpha * square_avg + (1 - alpha) * grad * grad
             if centered:
                 grad_avg += (1 - alpha) * (grad - grad_avg)
             avg = np.sqrt(square_avg) + eps
             if momentum > 0:
                 momentum_buffer[...] = momentum * momentum_buffer + grad / avg
                 theta -= lr * momentum_buffer
             else:
                 theta -= lr * grad / avg
         """, "the centered term is missing"),
    ],
}


def test_every_exercise_has_typical_mistakes():
    assert set(MISTAKES) == set(NAMES)


@pytest.mark.parametrize("name, source, hint",
                         [(name, source, hint) for name, cases in MISTAKES.items() for source, hint in cases])
def test_a_typical_mistake_fails_with_its_minimal_example_and_hint(tmp_path, capsys, name, source, hint):
    start(tmp_path, name)
    with_function(tmp_path, name, source)
    capsys.readouterr()
    status, out = check(tmp_path, name, capsys)
    assert status == 1, out
    assert "FAIL" in out and "minimal failing example" in out, out
    assert "worst at" in out or "shape" in out or "not finite" in out, out   # which value, and where
    assert "hint: " in out and hint in out, out


def test_the_report_is_deterministic(tmp_path, capsys):
    start(tmp_path, "maxpool")
    source, _ = MISTAKES["maxpool"][0]
    with_function(tmp_path, "maxpool", source)
    capsys.readouterr()
    assert check(tmp_path, "maxpool", capsys) == check(tmp_path, "maxpool", capsys)


def test_a_crash_is_reported_with_its_input_not_a_traceback(tmp_path, capsys):
    start(tmp_path, "relu")
    with_function(tmp_path, "relu", """
        def relu_backward(grad_out, cache):
            return grad_out * cache[0, 0]
        """)
    capsys.readouterr()
    status, out = check(tmp_path, "relu", capsys)
    assert status == 1
    assert "crash: your code raised IndexError" in out and "line" in out and "minimal failing example" in out
    assert "Traceback" not in out


def test_a_wrong_shape_and_nan_are_reported(tmp_path, capsys):
    start(tmp_path, "dropout")
    with_function(tmp_path, "dropout", """
        def dropout_backward(grad_out, cache):
            return grad_out[..., :1] * np.nan
        """)
    capsys.readouterr()
    status, out = check(tmp_path, "dropout", capsys)
    assert status == 1 and ("shape" in out or "not finite" in out), out


def test_a_slow_loop_is_pointed_at_the_vectorization(tmp_path, capsys):
    """A correct ReLU that loops over every element passes every check, and the timing on SimpleCNN's
    shape (1.2 million elements) flags it: hundreds of times slower than one vectorized product."""
    start(tmp_path, "relu")
    with_function(tmp_path, "relu", """
        def relu_backward(grad_out, cache):
            dx = np.zeros_like(grad_out)
            flat_x, flat_g, flat_dx = cache.reshape(-1), grad_out.reshape(-1), dx.reshape(-1)
            for i in range(flat_x.size):
                if flat_x[i] > 0:
                    flat_dx[i] = flat_g[i]
            return dx
        """)
    capsys.readouterr()
    status, out = check(tmp_path, "relu", capsys)
    assert status == 0, out
    assert "correct but slow" in out and "docs/07-linear-and-relu.md" in out


def test_a_file_that_does_not_import_is_reported_in_one_line(tmp_path, capsys):
    start(tmp_path, "linear")
    (tmp_path / "linear.py").write_text("def linear_backward(grad_out, cache):\n    return (\n")
    capsys.readouterr()
    status, out = check(tmp_path, "linear", capsys)
    assert status == 1 and "does not import: SyntaxError" in out and "Traceback" not in out


def test_a_crash_on_the_realistic_float32_inputs_fails(tmp_path, capsys):
    """The checks run in float64; the timing runs SimpleCNN's float32 shapes, and a crash there fails too."""
    start(tmp_path, "relu")
    with_function(tmp_path, "relu", """
        def relu_backward(grad_out, cache):
            if grad_out.dtype != np.float64:
                raise TypeError("float64 only")
            return grad_out * (cache > 0)
        """)
    capsys.readouterr()
    status, out = check(tmp_path, "relu", capsys)
    assert status == 1 and "your code raised TypeError: float64 only" in out and "Traceback" not in out


def _not_written_above(exercise):
    """The indices of the exercise's known mistakes that no learner-file case in MISTAKES covers."""
    covered = [hint for _, hint in MISTAKES[exercise.name]]
    return [i for i, m in enumerate(exercise.mistakes) if not any(hint in m.hint for hint in covered)]


@pytest.mark.parametrize("name, index", [(e.name, i) for e in EXERCISES for i in _not_written_above(e)])
def test_every_known_mistake_is_caught_and_named(tmp_path, name, index):
    """Each mistake the grader knows (beyond those written as learner files above) fails one of its
    exercise's checks, and the hint there is its own (a hint no failing example could reach would be
    dead text)."""
    from simplecnn.exercise.grader import grade_check, load

    exercise = BY_NAME[name]
    mistake = exercise.mistakes[index]
    start(tmp_path, name)
    with_function(tmp_path, name, inspect.getsource(exercise.reference))
    module = load(tmp_path / f"{name}.py", exercise)
    setattr(module, exercise.function, mistake.function)
    for check in exercise.checks:
        result = grade_check(exercise, check, module, tmp_path / f"{name}.py")
        if not result.passed:
            assert result.hint == mistake.hint, (check.title, result.outcome, result.hint)
            return
    pytest.fail(f"no check of {name} catches the mistake {mistake.hint!r}")


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    text = heading.lstrip("#").strip().lower()
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")


@pytest.mark.parametrize("name", NAMES)
def test_the_docs_an_exercise_points_at_exist(name):
    """The chapter ``start`` names and the section a slow solution is pointed at are in docs/."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    exercise = BY_NAME[name]
    assert (root / exercise.chapter).is_file()
    path, _, anchor = exercise.vectorization.partition("#")
    assert path == exercise.chapter
    if anchor:
        headings = [line for line in (root / path).read_text().splitlines() if line.startswith("#")]
        assert anchor in {_github_anchor(h) for h in headings}, headings


def test_every_exercise_file_names_only_what_it_imports(tmp_path):
    """The forward pass copied into a learner's file runs on its own: every name it uses is defined or
    imported there (pyflakes' undefined-name check, through ruff)."""
    import subprocess
    import sys

    for name in NAMES:
        start(tmp_path, name)
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--select", "F821",
                             "--output-format", "concise", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout

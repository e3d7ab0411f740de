"""Grade a learner's exercise file with the shared properties, and write a report a learner can act on.

For every check of the exercise, in order (finite differences, PyTorch, semantic corners), hypothesis
searches for an example on which the learner's implementation fails (:func:`hypothesis.find`,
derandomized, no database: the same code always gets the same report) and shrinks it to a minimal one.
The report then gives, for that example: the shapes and hyper-parameters, what the learner's function
received and returned (the values when small), the value that is wrong and where (the check's own
message: worst index, expected vs got), and a hint when the learner's output equals a known mistake's.

An exception raised by the learner's code is reported as such (type, message, the line of the
learner's file), with the example that caused it, never as a traceback of the grader.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from hypothesis import HealthCheck, find, settings
from hypothesis.errors import HypothesisException, NoSuchExample, Unsatisfiable

from .catalog import FINITE_DIFFERENCES, Check, Exercise

#: How many examples each check tries (before shrinking). The environment variable lets CI use fewer.
DEFAULT_MAX_EXAMPLES = 100
#: A learner's backward slower than this many times the reference's is pointed at the vectorization.
SLOW_FACTOR = 5.0
#: The longest a learner's backward may run on the timing shape before the timing gives up.
TIMING_LIMIT_S = 10.0


def grader_settings() -> settings:
    """The grader's hypothesis settings, in one place (``SIMPLECNN_EXERCISE_EXAMPLES`` overrides the count)."""
    max_examples = int(os.environ.get("SIMPLECNN_EXERCISE_EXAMPLES", DEFAULT_MAX_EXAMPLES))
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)


class LearnerFileError(Exception):
    """The learner's file cannot be graded at all (missing, does not import, lacks the function)."""


class NotImplementedYet(Exception):
    """The learner's function still raises NotImplementedError."""


def load(path: Path, exercise: Exercise) -> ModuleType:
    """Import the learner's file as a fresh module (a syntax error is a :class:`LearnerFileError`)."""
    if not path.is_file():
        raise LearnerFileError(f"no {path}: run `simplecnn exercise start {exercise.name}` first")
    spec = importlib.util.spec_from_file_location(f"_simplecnn_exercise_{exercise.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - anything the learner's file raises on import is reported
        raise LearnerFileError(f"{path} does not import: {_describe_exception(e, path)}") from None
    if not callable(getattr(module, exercise.function, None)):
        raise LearnerFileError(f"{path} has no function {exercise.function}({exercise.signature})")
    return module


# --- running the learner's function ---------------------------------------------------------------

def _copy(value: Any) -> Any:
    """A deep copy of arrays inside tuples/lists/dicts (everything else is kept as is)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


RAISED = object()   # the result of a call that raised


@dataclass
class Call:
    """One call of the learner's function: its arguments before, its result, its arguments after."""

    before: tuple
    result: Any
    after: tuple


class Recorder:
    """Wraps the learner's function: turns NotImplementedError into :class:`NotImplementedYet` and, when
    ``recording``, keeps a copy of every call."""

    def __init__(self, function: Callable[..., Any]):
        self.function = function
        self.recording = False
        self.calls: list[Call] = []

    def __call__(self, *args):
        before = _copy(args) if self.recording else ()
        try:
            result = self.function(*args)
        except NotImplementedError:
            raise NotImplementedYet() from None
        except Exception:
            if self.recording:
                self.calls.append(Call(before, RAISED, ()))
            raise
        if self.recording:
            self.calls.append(Call(before, _copy(result), _copy(args)))
        return result


@dataclass
class Outcome:
    """Why a check failed on one example: ``kind`` is "wrong" (a property's message) or "crash"."""

    kind: str
    message: str


def _learner_frame(tb, path: Path):
    """The last traceback entry inside the learner's file (or None)."""
    found = None
    for frame in traceback.extract_tb(tb):
        if Path(frame.filename).resolve() == path.resolve():
            found = frame
    return found


def _describe_exception(e: BaseException, path: Path) -> str:
    frame = _learner_frame(e.__traceback__, path)
    where = f" (your {path.name}, line {frame.lineno}: {frame.line})" if frame is not None else ""
    return f"{type(e).__name__}: {e}{where}"


def run_check(check: Check, impl, example, path: Path) -> Outcome | None:
    """Run one property on one example; ``None`` when it holds."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            check.run(example, impl)
    except NotImplementedYet:
        raise
    except AssertionError as e:
        return Outcome("wrong", str(e))
    except Exception as e:  # noqa: BLE001 - the learner's code may raise anything
        if _learner_frame(e.__traceback__, path) is not None:
            return Outcome("crash", f"your code raised {_describe_exception(e, path)}")
        return Outcome("crash", f"what your function returned could not be used: {type(e).__name__}: {e} "
                                "(check the number, order and shapes of the values it returns)")
    return None


# --- the report ----------------------------------------------------------------------------------

def _show(value: Any, limit: int = 24) -> str:
    """A value for the report: arrays in full when small (4 significant digits), else shape and dtype."""
    if isinstance(value, np.ndarray):
        if value.size <= limit:
            text = np.array2string(value, precision=4, separator=", ", max_line_width=10_000)
            return f"array({' '.join(text.split())}, dtype={value.dtype})"
        return f"<array shape={value.shape} dtype={value.dtype}>"
    if isinstance(value, tuple):
        inner = ", ".join(_show(v, limit) for v in value)
        return f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v, limit) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_show(v, limit)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


def _same(a: Any, b: Any) -> bool:
    """Equal structure and values (arrays: same shape, close to float64 rounding)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False
        if a.dtype.kind in "fc" or b.dtype.kind in "fc":
            return bool(np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True))
        return bool(np.array_equal(a, b))
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a is b or a == b


def matching_hint(exercise: Exercise, calls: list[Call]) -> str | None:
    """The hint of the first known mistake that returns (and leaves) what the learner's function did on
    every recorded call."""
    if not calls:
        return None
    for mistake in exercise.mistakes:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                matches = True
                for call in calls:
                    args = _copy(call.before)
                    result = mistake.function(*args)
                    if not (_same(result, call.result) and _same(args, call.after)):
                        matches = False
                        break
        except Exception:  # noqa: BLE001 - a mistake that cannot even run on these inputs is not this one
            matches = False
        if matches:
            return mistake.hint
    return None


@dataclass
class CheckResult:
    check: Check
    example: Any = None
    outcome: Outcome | None = None
    calls: tuple[Call, ...] = ()
    hint: str | None = None

    @property
    def passed(self) -> bool:
        return self.outcome is None


def grade_check(exercise: Exercise, check: Check, module: ModuleType, path: Path) -> CheckResult:
    """Search for the minimal example on which ``check`` fails for the learner's function."""
    recorder = Recorder(getattr(module, exercise.function))
    impl = exercise.build(recorder, module)
    try:
        example = find(check.strategy, lambda ex: run_check(check, impl, ex, path) is not None,
                       settings=grader_settings())
    except (NoSuchExample, Unsatisfiable):
        return CheckResult(check)
    except NotImplementedYet:
        raise
    except HypothesisException as e:   # e.g. Flaky: an example that failed, then passed
        return CheckResult(check, None, Outcome("wrong", f"your function does not give the same result twice on the "
                                                         f"same input: does it keep state between calls, or use "
                                                         f"randomness? ({type(e).__name__})"))
    recorder.recording = True
    outcome = run_check(check, impl, example, path)
    recorder.recording = False
    calls = tuple(recorder.calls)
    if outcome is None:  # cannot happen for a deterministic check; say so rather than pass silently
        outcome = Outcome("wrong", "this example failed once and passed when run again: does your code keep state "
                                   "between calls, or use randomness?")
    return CheckResult(check, example, outcome, calls, matching_hint(exercise, list(calls)))


def time_backward(exercise: Exercise, function: Callable[..., Any]) -> tuple[float, float] | None:
    """Best-of-3 seconds of the learner's function and of the reference on the exercise's realistic
    inputs, or None when the learner's takes longer than :data:`TIMING_LIMIT_S`."""
    args = exercise.timing_inputs()

    def best(fn, repeats: int) -> float:
        times = []
        for _ in range(repeats):
            fresh = _copy(args)
            start = time.perf_counter()
            fn(*fresh)
            times.append(time.perf_counter() - start)
        return min(times)

    reference = best(exercise.reference, 3)
    limited = hasattr(signal, "setitimer") and _on_main_thread()

    def too_slow(signum, frame):
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, too_slow) if limited else None
    try:
        if limited:
            signal.setitimer(signal.ITIMER_REAL, TIMING_LIMIT_S)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            learner = best(function, 1)
            if learner < 1.0:
                learner = min(learner, best(function, 2))
    except TimeoutError:
        return None
    finally:
        if limited:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    return learner, reference


def _on_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


PASSING, FAILING, NOT_IMPLEMENTED = "passing", "failing", "not implemented yet"


def grade(exercise: Exercise, path: Path, out=None, timing: bool = True) -> tuple[int, str]:
    """Grade ``path`` and print the report to ``out`` (stdout). Returns the exit status (0 only when every
    check passes) and the verdict (:data:`PASSING`, :data:`FAILING`, :data:`NOT_IMPLEMENTED`)."""
    out = out or sys.stdout

    def say(line: str = "") -> None:
        print(line, file=out)

    try:
        module = load(path, exercise)
    except LearnerFileError as e:
        say(f"{exercise.name}: {e}")
        return 1, FAILING
    say(f"{exercise.name}: {exercise.title} (read {exercise.chapter})")
    results = []
    total = len(exercise.checks)
    for number, check in enumerate(exercise.checks, start=1):
        try:
            result = grade_check(exercise, check, module, path)
        except NotImplementedYet:
            say(f"not implemented yet: {exercise.function} in {path} still raises NotImplementedError. "
                f"Write it, then run `simplecnn exercise check {exercise.name}` again.")
            return 1, NOT_IMPLEMENTED
        results.append(result)
        say(f"[{number}/{total}] {check.stage}: {check.title}: {'pass' if result.passed else 'FAIL'}")
        if not result.passed:
            _report_failure(say, exercise, result)
    failed = sum(not r.passed for r in results)
    if failed:
        say(f"{failed} of {total} checks failed.")
        return 1, FAILING
    if timing:
        try:
            _report_timing(say, exercise, getattr(module, exercise.function))
        except Exception as e:  # noqa: BLE001 - the learner's code, on the realistic float32 inputs
            say(f"timing: on SimpleCNN's shapes (batch 64, float32) your code raised {_describe_exception(e, path)}")
            return 1, FAILING
    say(f"All {total} checks passed.")
    return 0, PASSING


def _report_failure(say, exercise: Exercise, result: CheckResult) -> None:
    assert result.outcome is not None
    example = result.example
    if result.check.labels and isinstance(example, tuple) and len(example) == len(result.check.labels):
        shown = ", ".join(f"{label}={_show(part)}" for label, part in zip(result.check.labels, example, strict=True))
    else:
        shown = _show(example)
    if example is not None:
        say(f"    minimal failing example: {shown}")
    if result.calls:
        call = result.calls[-1]
        names = exercise.signature.split(", ")
        received = ", ".join(f"{name}={_show(arg)}" for name, arg in zip(names, call.before, strict=False))
        say(f"    your {exercise.function} received: {received}")
        if call.result is not RAISED:
            say(f"    and returned: {_show(call.result)}")
    label = "crash" if result.outcome.kind == "crash" else "what is wrong"
    say(f"    {label}: {result.outcome.message}")
    if result.outcome.kind == "wrong":
        if result.check.stage == FINITE_DIFFERENCES:
            say("    ('got' is your implementation's value, 'expected' the central-difference one)")
        else:
            say("    ('ours' is your implementation's value, 'torch' PyTorch's)")
    if result.hint:
        say(f"    hint: {result.hint}")


def _report_timing(say, exercise: Exercise, function) -> None:
    timed = time_backward(exercise, function)
    if timed is None:
        say(f"timing: your {exercise.function} took over {TIMING_LIMIT_S:g} s on SimpleCNN's shapes "
            f"(batch 64); read {exercise.vectorization} on vectorizing it.")
        return
    learner, reference = timed
    ratio = learner / reference if reference > 0 else 1.0
    say(f"timing (SimpleCNN's shapes, batch 64): yours {learner * 1e3:.2f} ms, reference {reference * 1e3:.2f} ms "
        f"({ratio:.1f}x).")
    if ratio > SLOW_FACTOR:
        say(f"    correct but slow: a loop over pixels or images? Read {exercise.vectorization}.")

"""``simplecnn exercise list | start NAME | check NAME | solution NAME [--dir exercises] [--force]``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from . import NAMES

if TYPE_CHECKING:
    from .catalog import Exercise

STATUS_FILE = ".status.json"   # in the exercises folder: the last check's result per exercise


def add_parser(sub) -> None:
    """The ``exercise`` sub-command, added to the CLI's sub-parsers."""
    p = sub.add_parser("exercise", help="write a backward pass yourself, graded by the parity properties")
    p.add_argument("action", choices=("list", "start", "check", "solution"))
    p.add_argument("name", nargs="?", choices=NAMES, metavar="NAME",
                   help="the exercise (see `simplecnn exercise list`)")
    p.add_argument("--dir", default="exercises", help="folder of your exercise files (default ./exercises)")
    p.add_argument("--force", action="store_true",
                   help="start: overwrite your file with a fresh one (default: keep it)")


def _path(args, exercise: Exercise) -> Path:
    return Path(args.dir) / f"{exercise.name}.py"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _statuses(folder: Path) -> dict:
    try:
        return json.loads((folder / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _record(folder: Path, exercise: Exercise, path: Path, status: str) -> None:
    statuses = _statuses(folder)
    statuses[exercise.name] = {"status": status, "sha256": _digest(path)}
    try:
        (folder / STATUS_FILE).write_text(json.dumps(statuses, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # a read-only folder: the status is only a convenience for `list`


def run(args, usage_error: type[Exception]) -> int:
    """Carry out ``args.action``; the exit status."""
    from .catalog import BY_NAME

    if args.action != "list" and args.name is None:
        raise usage_error(f"exercise {args.action}: which exercise? one of {', '.join(NAMES)}")
    if args.action == "list":
        return _list(args)
    exercise = BY_NAME[args.name]
    if args.action == "start":
        return _start(args, exercise)
    if args.action == "check":
        from .grader import grade

        path = _path(args, exercise)
        status, verdict = grade(exercise, path)
        if path.is_file():
            _record(path.parent, exercise, path, verdict)
        return status
    return _solution(exercise)


def _list(args) -> int:
    from .catalog import EXERCISES

    folder = Path(args.dir)
    statuses = _statuses(folder)
    print(f"Exercises (files in {folder}/), in a sensible order:")
    for number, exercise in enumerate(EXERCISES, start=1):
        path = _path(args, exercise)
        if not path.is_file():
            status = "not started"
        else:
            known = statuses.get(exercise.name, {})
            status = known.get("status", "not checked") if known.get("sha256") == _digest(path) else "not checked"
        print(f"{number:2d}. {exercise.name:<16} {status:<20} {exercise.title} ({exercise.chapter})")
    print("Start one with `simplecnn exercise start NAME`, grade it with `simplecnn exercise check NAME`.")
    return 0


def _start(args, exercise: Exercise) -> int:
    path = _path(args, exercise)
    if path.exists() and not args.force:
        print(f"{path} exists already: not overwritten (your work is kept). "
              f"`simplecnn exercise start {exercise.name} --force` starts it over.")
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(exercise.template())
    print(f"Wrote {path}: write {exercise.function}({exercise.signature}) in it, after reading {exercise.chapter}.")
    print(f"Then: simplecnn exercise check {exercise.name}")
    return 0


def _solution(exercise: Exercise) -> int:
    print(f"{exercise.name}: the reference is {exercise.reference_location}.")
    print(f"Its derivation: {exercise.chapter}.")
    return 0


"""Output folders, checked before any work starts, and earlier runs protected from being overwritten.

Every command that writes files calls :func:`check_output_dir` first, so that a bad ``--out`` (an
existing file, a path under a file, ``/dev/null``, a read-only folder, a ``metrics.json`` that is a
folder) ends in one line before a single training step, and nothing is created on the way.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path


class OutputError(Exception):
    """An output folder that cannot be written, or that holds a run we must not overwrite: exit status 2."""


#: What ``train`` leaves in its folder. A folder holding one of the first three holds a run.
RUN_FILES = ("model.npz", "metrics.json", "checkpoint.npz", "losses.png")


def _first_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def check_output_dir(out: str | os.PathLike, files: tuple[str, ...] = (), option: str = "--out") -> Path:
    """Make sure ``out`` is (or can become) a writable folder in which ``files`` can be written.

    Creates nothing: the nearest existing ancestor must be a writable folder (probed by creating and
    removing a temporary file, which is what counts on network and read-only file systems).
    """
    out = Path(out)
    existing = _first_existing(out)
    if existing == out and not out.is_dir():
        raise OutputError(f"{option} {out}: exists and is not a folder")
    if not existing.is_dir():
        raise OutputError(f"{option} {out}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".simplecnn-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{option} {out}: cannot write in {existing} ({e.strerror or e})") from None
    for name in files:
        target = out / name
        if target.exists() and not target.is_file():
            raise OutputError(f"{option} {out}: {target} exists and is not a file; move it away first")
    return out


def existing_run(out: str | os.PathLike) -> list[str]:
    """The run files (``model.npz``, ``metrics.json``, ``checkpoint.npz``) already in ``out``."""
    return [name for name in RUN_FILES[:3] if (Path(out) / name).is_file()]


def refuse_to_overwrite(out: str | os.PathLike, force: bool) -> None:
    """Refuse to start a new run in a folder that holds a finished or resumable one, unless ``force``.

    With ``force``, the earlier run's files are removed first, so that an interrupted new run never
    leaves a mixture of two runs behind.
    """
    found = existing_run(out)
    if not found:
        return
    if not force:
        raise OutputError(f"{out} already holds a run ({', '.join(found)}): continue it with "
                          f"--resume {shlex.quote(str(out))}, replace it with --force, or choose another --out")
    for name in RUN_FILES:
        path = Path(out) / name
        if path.is_file():
            path.unlink()

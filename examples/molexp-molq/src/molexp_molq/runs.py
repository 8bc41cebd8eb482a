"""Run directories and their ``run.json``.

A run directory holds one run of an experiment: ``run.json`` (the run's identity, its
configuration, its status and, once submitted, the normalised executor metadata) and whatever
the run produces (the worker writes ``result.json``). Several processes update ``run.json``:
the submitting command writes the executor block, and the event sink (in whichever process
refreshes the job) writes the status. Every update is a locked read-modify-write followed by an
atomic rename, so readers never see half a file and no update is lost.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "RUN_FILE",
    "RESULT_FILE",
    "RUN_DIR_METADATA_KEY",
    "RunDirError",
    "check_run",
    "create_run",
    "read_run",
    "update_run",
]

RUN_FILE = "run.json"
RESULT_FILE = "result.json"
#: molq job metadata key that links a job to its run directory (read by the event sink).
RUN_DIR_METADATA_KEY = "molexp.run_dir"


def create_run(run_dir: str | Path, config: dict[str, Any] | None = None, *, run_id: str | None = None) -> Path:
    """Create ``run_dir`` with a fresh ``run.json`` (status ``created``); return its absolute path.

    >>> import tempfile
    >>> d = create_run(tempfile.mkdtemp() + "/run-1", {"n": 3})
    >>> read_run(d)["status"]
    'created'
    """
    path = Path(run_dir).absolute()
    path.mkdir(parents=True, exist_ok=True)
    if (path / RUN_FILE).exists():
        raise FileExistsError(f"{path / RUN_FILE} already exists")
    _write(path, {
        "run_id": run_id or uuid.uuid4().hex[:12],
        "status": "created",
        "created_at": time.time(),
        "config": dict(config or {}),
        "history": [],
    })
    return path


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The current ``run.json`` of ``run_dir``."""
    with open(Path(run_dir) / RUN_FILE) as fh:
        return json.load(fh)


class RunDirError(ValueError):
    """A path given as a run directory is not one: no directory, no ``run.json``, or a
    ``run.json`` that is not a run. The message names the path and says what to do."""


def check_run(run_dir: str | Path) -> dict[str, Any]:
    """``run.json`` of ``run_dir`` if it describes a run; :class:`RunDirError` otherwise.

    >>> import tempfile
    >>> try:
    ...     check_run(tempfile.mkdtemp())
    ... except RunDirError as exc:
    ...     print(str(exc).split(": ", 1)[1])  # doctest: +ELLIPSIS
    no run.json (create the run with `molexp-molq init ...`)
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"{run_dir}: not a run directory (no such directory)")
    if not (path / RUN_FILE).is_file():
        raise RunDirError(f"{run_dir}: no {RUN_FILE} (create the run with `molexp-molq init {run_dir}`)")
    try:
        data = read_run(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{run_dir}: cannot read {RUN_FILE}: {exc.__class__.__name__}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{run_dir}: {RUN_FILE} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("run_id"), str) or not data["run_id"]:
        raise RunDirError(f"{run_dir}: {RUN_FILE} has no run_id; it does not describe a run")
    return data


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    # A separate lock file: run.json itself is replaced by rename on every update.
    with open(run_dir / ".run.json.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write(run_dir: Path, data: dict[str, Any]) -> None:
    tmp = run_dir / f".{RUN_FILE}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, run_dir / RUN_FILE)


def update_run(run_dir: str | Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply ``change`` (which edits the dict in place) to ``run.json`` under a lock."""
    path = Path(run_dir)
    with _locked(path):
        data = read_run(path)
        change(data)
        _write(path, data)
    return data

"""The jobs file of ``molq submit --from FILE``: many jobs, read and checked before any is stored.

Three spellings, chosen by the file name:

* ``*.toml`` -- one ``[[job]]`` table per job;
* ``*.json`` -- a list of objects (or ``{"jobs": [...]}``);
* anything else, and ``-`` (standard input) -- one shell command line per line; blank lines
  and lines starting with ``#`` are skipped.

A TOML or JSON job uses the names of ``molq submit``'s options (``cpus``, ``mem``, ``time``,
``partition``, ``array``, ``name``, ``cwd``, ``env``, ``after_success``, ``retries``...) and
says what runs with exactly one of ``command`` (a shell command line), ``argv`` (a program and
its arguments) or ``script`` (a script file). Options given on the command line are every
job's defaults; a job's own keys win.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from molq.errors import ConfigError

__all__ = ["JOB_KEYS", "JobEntry", "read_jobs_file"]

#: Keys a TOML/JSON job may carry, and the kind of value each takes.
JOB_KEYS: dict[str, type | tuple[type, ...]] = {
    "command": str, "argv": list, "script": str,
    "cpus": int, "mem": str, "gpus": int, "gpu_type": str, "time": str,
    "partition": str, "queue": str, "account": str, "qos": str, "nodes": int, "array": (str, int),
    "rerunnable": bool, "directives": list, "name": str, "cwd": str, "env": (dict, list),
    "after_success": list, "after_failure": list, "after_started": list, "after": list,
    "retries": int, "retry_on": (str, list), "grow_memory": (int, float), "grow_max_memory": str,
    "grow_time": (int, float), "grow_max_time": str,
}
_WHAT_RUNS = ("command", "argv", "script")


class JobEntry(dict[str, Any]):
    """One job of the file: its keys, and where it was written (``jobs.toml: job 3``)."""

    where: str = ""


def read_jobs_file(path: str) -> list[JobEntry]:
    """Every job of ``path`` (``-``: standard input), checked; a :class:`ConfigError` names the
    file, the job and the problem. An empty file is an error: nothing would be submitted."""
    label = "standard input" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--from {label}: cannot read it ({exc})") from None
    suffix = "" if path == "-" else Path(path).suffix.lower()
    if suffix == ".toml":
        raw = _toml_jobs(text, label)
    elif suffix == ".json":
        raw = _json_jobs(text, label)
    else:
        raw = [(f"{label}: line {n}", {"command": line.strip()}) for n, line in enumerate(text.splitlines(), 1)
               if line.strip() and not line.lstrip().startswith("#")]
    if not raw:
        raise ConfigError(f"--from {label}: no jobs in it")
    return [_checked(where, job) for where, job in raw]


def _toml_jobs(text: str, label: str) -> list[tuple[str, Mapping[str, Any]]]:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--from {label}: not valid TOML ({exc})") from None
    extra = sorted(set(data) - {"job"})
    if extra:
        raise ConfigError(f"--from {label}: unknown table(s) {', '.join(extra)}; write one [[job]] table per job")
    jobs = data.get("job", [])
    if not isinstance(jobs, list):
        raise ConfigError(f"--from {label}: write one [[job]] table per job (an array of tables)")
    return [(f"{label}: job {n}", job) for n, job in enumerate(jobs, 1)]


def _json_jobs(text: str, label: str) -> list[tuple[str, Mapping[str, Any]]]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--from {label}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and set(data) == {"jobs"}:
        data = data["jobs"]
    if not isinstance(data, list):
        raise ConfigError(f"--from {label}: give a list of jobs (or an object with one key, \"jobs\")")
    return [(f"{label}: job {n}", job) for n, job in enumerate(data, 1)]


def _checked(where: str, job: Any) -> JobEntry:
    if not isinstance(job, Mapping):
        raise ConfigError(f"{where}: a job is a table of keys, got {job!r}")
    unknown = sorted(set(job) - set(JOB_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(sorted(JOB_KEYS))}")
    for key, value in job.items():
        kind = JOB_KEYS[key]
        if isinstance(value, bool) and kind is not bool:
            raise ConfigError(f"{where}: {key} = {value!r} is not a {_kind_name(kind)}")
        if not isinstance(value, kind):
            raise ConfigError(f"{where}: {key} = {value!r} is not a {_kind_name(kind)}")
    runs = [key for key in _WHAT_RUNS if job.get(key)]
    if len(runs) != 1:
        raise ConfigError(f"{where}: give exactly one of command, argv or script"
                          + (f" (got {' and '.join(runs)})" if runs else ""))
    if "argv" in job and not all(isinstance(a, str) for a in job["argv"]):
        raise ConfigError(f"{where}: argv must be a list of strings")
    if "partition" in job and "queue" in job:
        raise ConfigError(f"{where}: partition and queue name the same thing; give one")
    entry = JobEntry(job)
    if "queue" in entry:
        entry["partition"] = entry.pop("queue")
    entry.where = where
    return entry


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "string", int: "whole number", float: "number", bool: "true/false", list: "list", dict: "table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)

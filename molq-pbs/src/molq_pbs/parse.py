"""Pure parsers for PBS command output: ``qstat -f -F json``, ``qstat -f`` text, error lines.

Both qstat formats are read into the same shape, a flat record per job keyed by the job id::

    {"Job_Name": "run1", "job_state": "R", "Resource_List.walltime": "01:00:00", ...}

Nested JSON objects (``Resource_List``, ``resources_used``, ``Variable_List``) become dotted
keys, exactly as ``qstat -f`` prints them in text form, and every value is a string.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "JobRecords",
    "parse_qstat_json",
    "parse_qstat_full",
    "parse_pbs_time",
    "parse_hms",
    "parse_int",
    "variable_list",
    "match_ids",
    "benign_error",
    "job_sequence",
]

#: job id -> flat attribute record
JobRecords = dict[str, dict[str, str]]

_TIME_FORMATS = ("%a %b %d %H:%M:%S %Y", "%a %d %b %Y %H:%M:%S")


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    elif isinstance(value, bool):
        out[prefix] = "True" if value else "False"
    elif isinstance(value, list):
        out[prefix] = ",".join(str(v) for v in value)
    elif value is not None:
        out[prefix] = str(value)


def parse_qstat_json(text: str) -> JobRecords:
    """Jobs of a ``qstat -f -F json`` answer. Raises ValueError on anything that is not the
    PBS JSON document (an object, optionally with a ``Jobs`` object).

    Control characters inside strings are tolerated: PBS Pro copies job attributes (comments,
    environment values) into the document without escaping them.
    """
    doc = json.loads(text, strict=False)
    if not isinstance(doc, dict):
        raise ValueError("qstat JSON is not an object")
    jobs = doc.get("Jobs", {})
    if not isinstance(jobs, dict):
        raise ValueError("qstat JSON 'Jobs' is not an object")
    out: JobRecords = {}
    for job_id, attrs_ in jobs.items():
        if not isinstance(attrs_, dict):
            raise ValueError(f"qstat JSON entry for {job_id} is not an object")
        record: dict[str, str] = {}
        _flatten("", attrs_, record)
        out[str(job_id)] = record
    return out


_ATTR_RE = re.compile(r"^(\s+)([A-Za-z_][\w.\-]*) = ?(.*)$")
_JOBID_RE = re.compile(r"^Job Id:\s*(\S+)\s*$")


def parse_qstat_full(text: str) -> JobRecords:
    """Jobs of a ``qstat -f`` text answer (PBS Pro, Torque and SLURM's Torque wrappers).

    Each job starts with ``Job Id: <id>``; attributes follow as indented ``name = value``
    lines. PBS wraps long values onto continuation lines that start with a tab; when the
    attributes themselves are indented with spaces, any line with another indentation (or
    one that does not look like an attribute) continues the previous value.
    """
    out: JobRecords = {}
    record: dict[str, str] | None = None
    indent: str | None = None
    last_key: str | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        head = _JOBID_RE.match(line)
        if head:
            record = out.setdefault(head.group(1), {})
            indent, last_key = None, None
            continue
        if record is None:
            continue  # banner or noise before the first job
        match = _ATTR_RE.match(line)
        is_attr = match is not None and (indent is None or match.group(1) == indent)
        if is_attr and match is not None:
            indent = indent or match.group(1)
            last_key = match.group(2)
            record[last_key] = match.group(3).rstrip()
        elif last_key is not None and line[:1] in (" ", "\t"):
            # Continuation: PBS breaks after a comma or mid-word; glue the pieces back.
            record[last_key] += line.strip()
    return out


def parse_pbs_time(value: str | None) -> float | None:
    """Epoch seconds from a PBS time: ``"Thu Nov 21 05:30:00 2026"`` (local time, as qstat
    prints it) or a number of seconds since the epoch (Torque's ``start_time``)."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    if not text:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    for fmt in _TIME_FORMATS:
        try:
            return time.mktime(time.strptime(text, fmt))
        except ValueError:
            continue
    return None


def parse_hms(value: str | None) -> int | None:
    """Seconds from ``HH:MM:SS`` / ``MM:SS`` / ``SS`` (walltime values); None if unparsable."""
    if value is None:
        return None
    parts = str(value).strip().split(":")
    if not parts or not all(p.strip().isdigit() for p in parts) or len(parts) > 3:
        return None
    total = 0
    for part in parts:
        total = total * 60 + int(part)
    return total


def parse_int(value: str | None) -> int | None:
    """An integer attribute (``Exit_status``, ``substate``); None when absent or malformed."""
    if value is None:
        return None
    text = str(value).strip()
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else None


def variable_list(record: Mapping[str, str]) -> dict[str, str]:
    """A job's ``Variable_List`` from either form: dotted JSON keys or the text form
    ``NAME=value,NAME=value``."""
    out = {k.split(".", 1)[1]: v for k, v in record.items() if k.startswith("Variable_List.")}
    raw = record.get("Variable_List")
    if raw:
        for item in raw.split(","):
            name, sep, val = item.partition("=")
            if sep and name.strip():
                out.setdefault(name.strip(), val)
    return out


def job_sequence(job_id: str) -> str:
    """The part of a job id before the server name: ``"123[].srv.example"`` -> ``"123[]"``."""
    return job_id.split(".", 1)[0]


def match_ids(requested: Sequence[str], found: Iterable[str]) -> dict[str, str]:
    """Pair the ids molq asked about with the ids qstat answered with.

    qstat may print a longer server name than the one ``qsub`` printed (``123.srv`` vs
    ``123.srv.example.org``), or none at all; ids are matched exactly first, then by sequence
    number when that is unambiguous.
    """
    found = list(found)
    exact = set(found)
    by_seq: dict[str, list[str]] = {}
    for fid in found:
        by_seq.setdefault(job_sequence(fid), []).append(fid)
    out: dict[str, str] = {}
    for rid in requested:
        if rid in exact:
            out[rid] = rid
            continue
        candidates = by_seq.get(job_sequence(rid), [])
        if len(candidates) == 1:
            out[rid] = candidates[0]
    return out


# Per-job messages that are answers, not failures: the job is unknown or already finished.
_BENIGN = [
    re.compile(r"Unknown Job Id", re.IGNORECASE),
    re.compile(r"Job has finished", re.IGNORECASE),
    re.compile(r"has finished", re.IGNORECASE),
    re.compile(r"Request invalid for state of job", re.IGNORECASE),
    re.compile(r"invalid state for job", re.IGNORECASE),
    re.compile(r"already completing or completed", re.IGNORECASE),
    re.compile(r"Invalid job id specified", re.IGNORECASE),
    re.compile(r"^\s*obtain historical job information\s*$", re.IGNORECASE),
]


def benign_error(line: str) -> bool:
    """Whether one stderr line of qstat/qdel only says "that job is unknown or finished".

    >>> benign_error("qstat: Unknown Job Id 12.pbs01")
    True
    >>> benign_error("qstat: cannot connect to server pbs01 (errno=111)")
    False
    """
    return any(p.search(line) for p in _BENIGN)

"""Pure parsers for PBS command output: ``qstat -f -F json``, ``qstat -f`` text, error lines.

Both qstat formats are read into the same shape, a flat record per job keyed by the job id::

    {"Job_Name": "run1", "job_state": "R", "Resource_List.walltime": "01:00:00", ...}

Nested JSON objects (``Resource_List``, ``resources_used``, ``Variable_List``) become dotted
keys, exactly as ``qstat -f`` prints them in text form, and every value is a string. A record
that is present but cannot be trusted (not an object, an attribute given twice, the same job
twice) is kept as ``None``: one bad record costs only that job.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from molq.usage import Usage

__all__ = [
    "JobRecords",
    "parse_qstat_json",
    "parse_qstat_json_answer",
    "parse_qstat_full",
    "parse_pbs_time",
    "parse_hms",
    "parse_int",
    "variable_list",
    "match_ids",
    "benign_error",
    "refusal",
    "job_sequence",
    "ambiguous_ids",
    "array_parts",
    "line_names",
]

#: job id -> flat attribute record (None: the record is there but unreadable)
JobRecords = dict[str, "dict[str, str] | None"]

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


class _Pairs(dict):  # type: ignore[type-arg]
    """A JSON object that remembers the keys it was given more than once."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.repeated = {k for i, (k, _v) in enumerate(pairs) if any(k == k2 for k2, _ in pairs[:i])}


_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_LEADING_ZERO_RE = re.compile(r'(":\s*)(-?0\d+)(\s*[,}\n])')
# PBS pretty-prints every job as a line of its own at 8 spaces: '        "12.srv":{'.
_JSON_JOB_RE = re.compile(r'^ {8}"([^"\n]+)"\s*:\s*\{\s*$', re.MULTILINE)


def _repair_json(text: str) -> str:
    """Undo PBS Pro's known JSON mistakes: backslashes before characters JSON does not escape
    (``\\'``, ``\\,`` from environment values) and numbers with leading zeros (``"foo":005``)."""

    def escape(m: re.Match[str]) -> str:
        return m.group(0) if m.group(1) in '"\\/bfnrtu' else "\\\\" + m.group(1)

    return _LEADING_ZERO_RE.sub(r'\1"\2"\3', _ESCAPE_RE.sub(escape, text))


def _load(text: str) -> Any:
    return json.loads(text, strict=False, object_pairs_hook=_Pairs)


def _job_record(attrs_: Any) -> dict[str, str] | None:
    if not isinstance(attrs_, dict) or getattr(attrs_, "repeated", None):
        return None
    record: dict[str, str] = {}
    _flatten("", attrs_, record)
    return record


def parse_qstat_json(text: str) -> JobRecords:
    """Jobs of a ``qstat -f -F json`` answer. Raises ValueError on anything that is not the
    PBS JSON document (an object, optionally with a ``Jobs`` object).

    Control characters inside strings are tolerated: PBS Pro copies job attributes (comments,
    environment values) into the document without escaping them. When a job's attributes
    still break the document (an unescaped quote in a comment), each job is read on its own
    and only that job's record is lost (``None``); use :func:`parse_qstat_json_answer` to
    also learn whether every job could be attributed.
    """
    return parse_qstat_json_answer(text)[0]


def parse_qstat_json_answer(text: str) -> tuple[JobRecords, bool]:
    """(records, complete) of a ``qstat -f -F json`` answer; ``complete`` is False when the
    document had to be read job by job, so that a job could have been missed."""
    for candidate in (text, _repair_json(text)):
        try:
            doc = _load(candidate)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            raise ValueError("qstat JSON is not an object")
        jobs = doc.get("Jobs", {})
        if not isinstance(jobs, dict):
            raise ValueError("qstat JSON 'Jobs' is not an object")
        out: JobRecords = {str(jid): _job_record(a) for jid, a in jobs.items()}
        for jid in getattr(jobs, "repeated", ()):
            out[str(jid)] = None
        return out, True
    return _jobs_one_by_one(_repair_json(text)), False


def _jobs_one_by_one(text: str) -> JobRecords:
    heads = list(_JSON_JOB_RE.finditer(text))
    if not heads or '"Jobs"' not in text[: heads[0].start()]:
        raise ValueError("qstat's answer is not a PBS JSON document")
    decoder = json.JSONDecoder(strict=False, object_pairs_hook=_Pairs)
    out: JobRecords = {}
    for i, head in enumerate(heads):
        job_id = head.group(1)
        stop = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = text[head.end() - 1 : stop]
        try:
            attrs_, _end = decoder.raw_decode(body)
        except ValueError:
            attrs_ = None
        out[job_id] = None if job_id in out else _job_record(attrs_)
    return out


_ATTR_RE = re.compile(r"^(\s+)([A-Za-z_][\w.\-]*) = ?(.*)$")
_JOBID_RE = re.compile(r"^Job Id:\s*(\S+)\s*$")


def parse_qstat_full(text: str) -> JobRecords:
    """Jobs of a ``qstat -f`` text answer (PBS Pro, Torque and SLURM's Torque wrappers).

    Each job starts with ``Job Id: <id>``; attributes follow as indented ``name = value``
    lines. PBS wraps long values onto continuation lines that start with a tab; when the
    attributes themselves are indented with spaces, any line with another indentation (or
    one that does not look like an attribute) continues the previous value.

    A record naming an attribute twice, or a job id given twice, is unreadable (``None``):
    real qstat never does that, so the text was not what it seems. Raises ValueError when
    the text holds something but no job at all.
    """
    out: JobRecords = {}
    seen: set[str] = set()
    bad: set[str] = set()
    record: dict[str, str] | None = None
    job_id: str | None = None
    indent: str | None = None
    last_key: str | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        head = _JOBID_RE.match(line)
        if head:
            job_id = head.group(1)
            if job_id in seen:
                bad.add(job_id)
            seen.add(job_id)
            record = out.setdefault(job_id, {})
            indent, last_key = None, None
            continue
        if record is None or job_id is None:
            continue  # banner or noise before the first job
        match = _ATTR_RE.match(line)
        is_attr = match is not None and (indent is None or match.group(1) == indent)
        if is_attr and match is not None:
            indent = indent or match.group(1)
            last_key = match.group(2)
            if last_key in record:
                bad.add(job_id)
            record[last_key] = match.group(3).rstrip()
        elif last_key is not None and line[:1] in (" ", "\t"):
            # Continuation: PBS breaks after a comma or mid-word; glue the pieces back.
            record[last_key] += line.strip()
    if not out and text.strip():
        raise ValueError(f"no 'Job Id:' record in qstat's answer: {text.strip()[:200]!r}")
    for job_id in bad:
        out[job_id] = None
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


_PBS_UNITS = {"b": 1, "w": 8, "kb": 1 << 10, "kw": 8 << 10, "mb": 1 << 20, "mw": 8 << 20,
              "gb": 1 << 30, "gw": 8 << 30, "tb": 1 << 40, "tw": 8 << 40}


def parse_size(value: str | None) -> int | None:
    """Bytes of a PBS size (``resources_used.mem = 37428kb``, ``Resource_List.mem = 4gb``)."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?[bw])?\s*", str(value).lower())
    if not match:
        return None
    return int(match.group(1)) * _PBS_UNITS[match.group(2) or "b"]


def _exec_hosts(text: str | None) -> str | None:
    """The hosts of an ``exec_host`` (``n1/0*2+n2/0*2`` on PBS Pro, ``n1/0+n1/1`` on Torque),
    each once: ``n1,n2``."""
    hosts: list[str] = []
    for part in (text or "").split("+"):
        host = part.strip().partition("/")[0]
        if host and host not in hosts:
            hosts.append(host)
    return ",".join(hosts) or None


def usage_from_record(record: Mapping[str, str]) -> Usage | None:
    """What a finished job used, from its ``resources_used.*`` and ``Resource_List.*``."""
    ncpus = parse_int(record.get("resources_used.ncpus") or record.get("Resource_List.ncpus"))
    host = _exec_hosts(record.get("exec_host"))
    usage = Usage(
        elapsed_seconds=parse_hms(record.get("resources_used.walltime")),
        cpu_seconds=parse_hms(record.get("resources_used.cput")),
        cpus=ncpus or None,
        max_rss_bytes=parse_size(record.get("resources_used.mem")),
        requested_memory_bytes=parse_size(record.get("Resource_List.mem")),
        gpus=parse_int(record.get("Resource_List.ngpus")) or None,
        nodes=host,
    )
    return None if usage.is_empty() else usage


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


def ambiguous_ids(requested: Sequence[str], found: Iterable[str]) -> list[str]:
    """Requested ids that qstat's answer does not name exactly and that match several of its
    records by sequence number: their record cannot be told apart."""
    found = list(found)
    exact = set(found)
    counts: dict[str, int] = {}
    for fid in found:
        counts[job_sequence(fid)] = counts.get(job_sequence(fid), 0) + 1
    return [rid for rid in requested if rid not in exact and counts.get(job_sequence(rid), 0) > 1]


def array_parts(parent: str, found: Iterable[str]) -> list[str]:
    """The subjob ids (``12[3].srv``) among ``found`` that belong to array job ``parent``
    (``12[].srv``); empty when ``parent`` is not an array id."""
    seq = job_sequence(parent)
    if not seq.endswith("[]"):
        return []
    server = parent.split(".", 1)[1] if "." in parent else None
    pattern = re.compile(rf"{re.escape(seq[:-2])}\[\d+\]")
    out = []
    for fid in found:
        if pattern.fullmatch(job_sequence(fid)):
            fserver = fid.split(".", 1)[1] if "." in fid else None
            if server is None or fserver is None or fserver == server or fserver.startswith(server + "."):
                out.append(fid)
    return out


def line_names(line: str, job_id: str) -> bool:
    """Whether a qstat/qdel message names ``job_id`` (exactly, or by its sequence number when
    the server part differs: ``12.srv`` vs ``12.srv.example.org``)."""
    seq = re.escape(job_sequence(job_id))
    return re.search(rf"(?<![\w.\[]){seq}(?![\w\[\]])", line) is not None


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


# Messages of a refused request: the job was not touched.
_REFUSAL = re.compile(r"Unauthorized Request|Permission denied|not authorized|Access denied", re.IGNORECASE)


def refusal(line: str) -> bool:
    """Whether one line of qdel's answer says the request was refused.

    >>> refusal("qdel: Unauthorized Request  12.pbs01")
    True
    """
    return _REFUSAL.search(line) is not None


def benign_error(line: str) -> bool:
    """Whether one stderr line of qstat/qdel only says "that job is unknown or finished".

    >>> benign_error("qstat: Unknown Job Id 12.pbs01")
    True
    >>> benign_error("qstat: cannot connect to server pbs01 (errno=111)")
    False
    """
    return any(p.search(line) for p in _BENIGN)

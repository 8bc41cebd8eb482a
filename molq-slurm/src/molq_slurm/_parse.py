"""Small pure helpers shared by the SLURM parsers: times, exit codes, scontrol records."""

from __future__ import annotations

import functools
import re
from datetime import datetime

from molq import wrapper
from molq.causes import EndCause
from molq.model import JobState, SchedulerStatus
from molq.usage import Usage

from molq_slurm.states import (
    END_CAUSES,
    FAILURE_DESCRIPTIONS,
    STATE_MAP,
    is_known_state,
    map_state,
    normalize_state,
    sub_state_of,
)

#: Values SLURM prints for "no time" / "no value".
_EMPTY = {"", "N/A", "NONE", "UNKNOWN", "(NULL)", "INVALID"}

#: Highest real signal number (Linux SIGRTMAX); larger "signals" are SLURM markers.
_MAX_SIGNAL = 64

#: What SLURM puts in the signal half of an exit field when it ended a job at its time limit.
_TIMEOUT_MARK = 1

#: Reasons that add nothing to the state they come with.
_PLAIN_REASONS = {"NONE", "(NULL)", "NONZEROEXITCODE", "TIMELIMIT", "N/A", ""}


def blank(value: str | None) -> bool:
    """Whether SLURM printed "nothing" (``N/A``, ``None``, ``(null)``, ``Unknown``)."""
    return value is None or value.strip().upper() in _EMPTY


def parse_time(value: str | None) -> float | None:
    """An epoch timestamp from a SLURM time field.

    molq's SLURM scheduler sets ``SLURM_TIME_FORMAT=%s`` so times arrive as epoch seconds.
    Without it SLURM prints ``2024-05-01T12:00:00`` in the cluster's local time; that is read
    in this process's local time zone (right when both agree, as they do on a login node).
    """
    if blank(value):
        return None
    assert value is not None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
        return seconds if seconds > 0 else None
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).timestamp()
        except ValueError:
            continue
    return None


def exit_from_wait_status(status: int) -> tuple[int | None, int | None]:
    """(exit code, signal) from a raw wait status (``squeue -O exit_code``: 1792 = exit 7)."""
    sig = status & 0x7F
    if sig > _MAX_SIGNAL:
        return None, None  # SLURM's markers (OOM is 125), not a signal; the state says it all
    if sig:
        return 128 + sig, sig
    code = (status >> 8) & 0xFF
    return code, wrapper.describe_exit(code)[0]


def exit_from_pair(text: str | None) -> tuple[int | None, int | None]:
    """(exit code, signal) from SLURM's ``N:S`` (``sacct ExitCode``, ``scontrol ExitCode=``).

    ``S`` > 0 means the batch script was killed by signal S; molq then reports the exit code a
    shell would (128 + S), like the wrapper's exit-code file does. ``N`` >= 129 written by the
    wrapper after its command died of a signal is read the same way.
    """
    if blank(text):
        return None, None
    assert text is not None
    match = re.fullmatch(r"\s*(-?\d+)(?::(\d+))?\s*", text)
    if not match:
        return None, None
    code = int(match.group(1))
    sig = int(match.group(2) or 0)
    if sig > _MAX_SIGNAL:
        return None, None  # e.g. 0:125 for OUT_OF_MEMORY: a SLURM marker, not a signal
    if sig and code == 0:
        return 128 + sig, sig
    if sig:
        return code, sig
    return code, wrapper.describe_exit(code)[0]


def describe(raw_state: str, slurm_reason: str | None, exit_code: int | None, exit_signal: int | None) -> str | None:
    """A short human reason for a status (None for a plain success or a plain wait)."""
    name = normalize_state(raw_state)
    state = map_state(name)
    parts: list[str] = []
    if name in FAILURE_DESCRIPTIONS:
        parts.append(FAILURE_DESCRIPTIONS[name])
    elif state == JobState.CANCELLED:
        who = raw_state.strip().split(" by ", 1)
        parts.append(f"cancelled by uid {who[1].strip()}" if len(who) == 2 else "cancelled")
    elif not is_known_state(name) and name:
        parts.append(f"SLURM state {name}")
    reason = (slurm_reason or "").strip()
    said = "".join(parts).replace(" ", "").lower()
    if reason.upper() not in _PLAIN_REASONS and state != JobState.CANCELLED and reason.lower() not in said:
        parts.append(reason)
    if state.is_terminal and state != JobState.SUCCEEDED:
        if exit_signal:
            parts.append(wrapper.describe_exit(128 + exit_signal)[1] or f"signal {exit_signal}")
        elif exit_code:
            parts.append(f"exited with code {exit_code}")
    return "; ".join(parts) or None


_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def _memory(text: str | None, default_unit: str) -> tuple[int | None, str]:
    if blank(text):
        return None, ""
    assert text is not None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)([KMGTP]?)([cn]?)\s*", text)
    if not match:
        return None, ""
    unit = match.group(2) or default_unit
    return int(float(match.group(1)) * _UNITS.get(unit, 1)), match.group(3)


def parse_rss(text: str | None) -> int | None:
    """MaxRSS in bytes (sacct prints ``204800K``; a bare number is bytes)."""
    return _memory(text, "")[0]


def parse_req_mem(text: str | None, cpus: int | None, nodes: int = 1) -> int | None:
    """The job's requested memory in bytes, for all its CPUs or nodes."""
    value, per = _memory(text, "M")
    if value is None or value == 0:
        return None
    if per == "c":
        return value * (cpus or 1)
    return value * max(nodes, 1)


def requested_memory(req_mem: str | None, cpus: int | None, tres: str | None) -> int | None:
    """The job's requested memory in bytes: ``ReqMem``, or else the ``mem`` of its allocated
    TRES. Right after a job ends, SLURM 22.05's sacct may print a ReqMem such as ``16?`` (seen
    live) while AllocTRES already says ``mem=128M``."""
    asked = parse_req_mem(req_mem, cpus, tres_count(tres, "node") or 1)
    if asked is not None or blank(tres):
        return asked
    for item in (tres or "").split(","):
        key, _, value = item.partition("=")
        if key.strip() == "mem":
            return _memory(value, "M")[0] or None
    return None


def parse_duration(text: str | None) -> float | None:
    """Seconds of a SLURM duration: ``MM:SS.mmm``, ``HH:MM:SS``, ``D-HH:MM:SS`` (TotalCPU,
    Elapsed) or plain seconds (ElapsedRaw)."""
    if blank(text):
        return None
    assert text is not None
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", text)
    if not match:
        return None
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def tres_count(tres: str | None, name: str) -> int | None:
    """The count of ``name`` (``gres/gpu``, ``node``) in a TRES list ``cpu=2,gres/gpu=1``."""
    if blank(tres):
        return None
    assert tres is not None
    total = None
    for item in tres.split(","):
        key, _, value = item.partition("=")
        if (key == name or key.startswith(name + ":")) and value.isdigit():
            if key == name:
                return int(value)
            total = (total or 0) + int(value)  # only typed entries (gres/gpu:a100=2)
    return total


def make_usage(
    *, elapsed: str | None, total_cpu: str | None, cpus: str | None, req_mem: str | None,
    max_rss: int | None, tres: str | None, nodes: str | None,
) -> Usage | None:
    """A job's usage from its sacct allocation record and the peak RSS of its steps."""
    ncpus = int(cpus) if cpus and cpus.strip().isdigit() else None
    usage = Usage(
        elapsed_seconds=parse_duration(elapsed),
        cpu_seconds=parse_duration(total_cpu),
        cpus=ncpus or None,
        max_rss_bytes=max_rss,
        requested_memory_bytes=requested_memory(req_mem, ncpus, tres),
        gpus=tres_count(tres, "gres/gpu"),
        nodes=None if blank(nodes) or (nodes or "").strip() == "None assigned" else (nodes or "").strip(),
    )
    return None if usage.is_empty() else usage


def make_status(
    raw_state: str,
    *,
    reason: str | None = None,
    exit_code: int | None = None,
    exit_signal: int | None = None,
    start: str | None = None,
    end: str | None = None,
    end_cause: EndCause | None = None,
    usage: Usage | None = None,
) -> SchedulerStatus:
    """One job's status from the fields every SLURM command prints. ``end_cause`` is the
    caller's reading of the evidence only accounting has (see :func:`states.end_cause`); the
    state's own cause (:data:`states.END_CAUSES`) is used without it."""
    started_at = parse_time(start)
    finished_at = parse_time(end)
    name = normalize_state(raw_state)
    state = map_state(name, started=started_at is not None)
    if state == JobState.QUEUED:
        # For a pending job SLURM's start time is a forecast, not a fact.
        started_at = None
    if not state.is_terminal:
        # ... and its end time is the time limit's projection.
        finished_at = None
        exit_code = exit_signal = None
    if state == JobState.TIMED_OUT and exit_signal == _TIMEOUT_MARK:
        # sacct/scontrol print 0:1 and squeue a raw status of 1 for a job SLURM ended at its
        # time limit: the 1 marks the timeout, it is not SIGHUP. The job's own exit code is
        # unknown (the wrapper's exit-code file may still tell).
        exit_code = exit_signal = None
    if state.is_terminal and state != JobState.SUCCEEDED and not exit_code and not exit_signal:
        # SLURM prints 0:0 for jobs it ended itself (cancelled while pending, TIMEOUT in
        # sacct, NODE_FAIL...): no exit code is known, and 0 would read as success.
        exit_code = exit_signal = None
        if state == JobState.CANCELLED and started_at is not None and started_at == finished_at:
            # Cancelled before it ran: SLURM stamps start = end = the cancel time.
            started_at = None
    never = name == "PENDING" and "DEPENDENCYNEVERSATISFIED" in (reason or "").upper()
    if not state.is_terminal:
        end_cause = usage = None
    elif end_cause is None:
        end_cause = END_CAUSES.get(name)
    sub = None if state.is_terminal else sub_state_of(raw_state, reason)
    text = describe(raw_state, reason, exit_code, exit_signal)
    if end_cause == EndCause.OUT_OF_MEMORY and name != "OUT_OF_MEMORY":
        # An OverMemoryKill end: the job's own record says only "killed by signal 9".
        text = "; ".join(part for part in (FAILURE_DESCRIPTIONS["OUT_OF_MEMORY"], text) if part)
    return SchedulerStatus(
        state=state,
        raw_state=raw_state.strip(),
        exit_code=exit_code,
        exit_signal=exit_signal,
        reason=text,
        started_at=started_at,
        finished_at=finished_at,
        dependency_never_satisfied=never,
        end_cause=end_cause,
        usage=usage,
        sub_state=sub,
        sub_state_reason=None if sub is None or blank(reason) else (reason or "").strip(),
    )



@functools.lru_cache(maxsize=256)
def _live_state(raw_state: str) -> JobState | None:
    """The molq state of a known, not final SLURM state (None: final or unknown)."""
    state = STATE_MAP.get(normalize_state(raw_state))
    return None if state is None or state.is_terminal else state


def squeue_status(raw_state: str, reason: str, code: str, start: str, end: str) -> SchedulerStatus:
    """:func:`make_status` for one squeue row (``code``: the raw wait status). Rows that mean
    the same share one status: a pending job's start time is a forecast and a live job's end
    time and exit status projections, which make_status drops, so they are left out of the
    key -- thousands of queued jobs are then a handful of distinct statuses to build."""
    live = _live_state(raw_state)
    if live is not None:
        code = end = ""
        if live == JobState.QUEUED:
            start = ""
    return _squeue_status(raw_state, reason, code, start, end)


@functools.lru_cache(maxsize=4096)
def _squeue_status(raw_state: str, reason: str, code: str, start: str, end: str) -> SchedulerStatus:
    exit_code, exit_signal = (None, None)
    if code.lstrip("-").isdigit():
        exit_code, exit_signal = exit_from_wait_status(int(code))
    return make_status(raw_state, reason=reason, exit_code=exit_code, exit_signal=exit_signal, start=start, end=end)

# -- scontrol ------------------------------------------------------------------------------------

_NAME_END = re.compile(r" UserId=\S*\(\d+\) GroupId=")
_PAIR = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=(\S*)")


def parse_scontrol_record(line: str) -> dict[str, str]:
    """Key/value pairs of one ``scontrol show job -o`` line.

    The job name is free text (spaces, ``=``) and comes right after ``JobId=``; it is cut out
    first, up to the ``UserId=user(uid) GroupId=`` that always follows it. Paths (Command,
    WorkDir, StdOut...) may hold spaces too, but every field molq reads comes before them and
    the first occurrence of a key wins.
    """
    fields: dict[str, str] = {}
    rest = line.strip()
    start = rest.find("JobName=")
    if start >= 0:
        end = _NAME_END.search(rest, start)
        if end is not None:
            fields["JobName"] = rest[start + len("JobName=") : end.start()]
            rest = rest[:start] + rest[end.start() + 1 :]
    for match in _PAIR.finditer(rest):
        fields.setdefault(match.group(1), match.group(2))
    return fields

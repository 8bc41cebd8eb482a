"""Small pure helpers shared by the SLURM parsers: times, exit codes, scontrol records."""

from __future__ import annotations

import re
from datetime import datetime

from molq import wrapper
from molq.model import JobState, SchedulerStatus

from molq_slurm.states import FAILURE_DESCRIPTIONS, is_known_state, map_state, normalize_state, sub_state_of

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


def make_status(
    raw_state: str,
    *,
    reason: str | None = None,
    exit_code: int | None = None,
    exit_signal: int | None = None,
    start: str | None = None,
    end: str | None = None,
) -> SchedulerStatus:
    """One job's status from the fields every SLURM command prints."""
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
    sub = None if state.is_terminal else sub_state_of(raw_state, reason)
    return SchedulerStatus(
        state=state,
        raw_state=raw_state.strip(),
        exit_code=exit_code,
        exit_signal=exit_signal,
        reason=describe(raw_state, reason, exit_code, exit_signal),
        started_at=started_at,
        finished_at=finished_at,
        dependency_never_satisfied=never,
        sub_state=sub,
        sub_state_reason=None if sub is None or blank(reason) else (reason or "").strip(),
    )


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

"""Parsers for what ``bsub``, ``bjobs -o ... -json`` and ``bkill`` print. Pure functions, no I/O.

Formats (IBM Spectrum LSF 10.1):

* ``bsub``: ``Job <123> is submitted to queue <normal>.`` (or ``to default queue <normal>.``);
  refusals end with ``Job not submitted.`` and exit 255.
* ``bjobs -o "jobid stat ..." -json``: ``{"COMMAND":"bjobs","JOBS":N,"RECORDS":[{...}]}``, one
  record per job (one per element for job arrays, sharing JOBID, with JOBINDEX and
  ``name[index]`` as JOB_NAME). Every value is a string; empty means "not applicable". A job
  id LSF does not know is reported as ``Job <123> is not found`` (on stderr, or as an
  ``ERROR`` record in JSON mode).
* Time stamps look like ``Dec 28 19:56`` (no year), optionally followed by a flag letter.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence

import attrs
from molq import wrapper
from molq.errors import SchedulerError, SubmitError, TransientSchedulerError
from molq.model import TERMINAL_STATES, JobState, SchedulerStatus

from molq_lsf.states import LSF_STATES, classify_exit, is_known_state, map_state

__all__ = [
    "BjobsRecord",
    "parse_submit_output",
    "parse_lsf_time",
    "parse_bjobs_json",
    "record_status",
    "aggregate_status",
    "statuses_by_job",
    "not_found_ids",
    "TRANSIENT_MARKERS",
]

_SUBMITTED_RE = re.compile(r"Job <(\d+)> is submitted to (?:default )?queue <([^>]*)>")
_NOT_FOUND_RE = re.compile(r"Job <([^>]+)> is not found")
_NEVER_RE = re.compile(r"Dependency condition invalid or never satisfied", re.IGNORECASE)
_NO_JOBS_RE = re.compile(r"^No (?:unfinished |matching )?job(?:s)? found\.?$", re.IGNORECASE)

#: Messages of LSF clients that mean "the batch system did not answer; try again".
TRANSIENT_MARKERS: tuple[str, ...] = (
    "lsf is down",
    "please wait",
    "batch system daemon not responding",
    "batch daemon not responding",
    "failed in an lsf library call",
    "cannot connect to lsf",
    "lim is down",
    "mbatchd is down",
    "communication time out",
    "timeout on connect",
    "slave lim configuration is not ready",
    "master lim",
)


def parse_submit_output(returncode: int, stdout: str, stderr: str) -> str:
    """The job id from ``bsub``'s answer.

    Raises :class:`SubmitError` carrying LSF's own message when the job was refused, and
    :class:`SchedulerError` when the answer cannot be understood.

    >>> parse_submit_output(0, "Job <42> is submitted to default queue <normal>.\\n", "")
    '42'
    """
    match = _SUBMITTED_RE.search(stdout) or _SUBMITTED_RE.search(stderr)
    if match and returncode == 0:
        return match.group(1)
    message = _clean_message(stderr) or _clean_message(stdout)
    if returncode != 0 or "job not submitted" in (stdout + stderr).lower():
        raise SubmitError(
            f"lsf refused the job: {message or f'bsub exited with code {returncode}'}",
            stderr=stderr,
        )
    raise SchedulerError(
        f"lsf: cannot read the job id from bsub's answer: {message or '(no output)'}",
        stderr=stderr,
    )


def _clean_message(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
)}
_TIME_RE = re.compile(
    r"^([A-Za-z]{3})\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s+(\d{4}))?(?:\s+[A-Za-z])?$"
)


def parse_lsf_time(text: str | None, *, now: float | None = None) -> float | None:
    """Epoch seconds of an LSF time stamp such as ``Dec 28 19:56`` (local time).

    LSF omits the year: the most recent such date that is not in the future is taken.
    A trailing flag letter (``E`` for estimated...) is ignored. Unreadable text gives None.
    """
    if not text:
        return None
    match = _TIME_RE.match(text.strip())
    if not match:
        return None
    mon_s, day_s, hour_s, min_s, sec_s, year_s = match.groups()
    month = _MONTHS.get(mon_s.lower())
    if month is None:
        return None
    now = time.time() if now is None else now
    fields = (int(day_s), int(hour_s), int(min_s), int(sec_s or 0))

    def stamp(year: int) -> float:
        day, hour, minute, sec = fields
        return time.mktime((year, month, day, hour, minute, sec, 0, 0, -1))

    try:
        if year_s:
            return stamp(int(year_s))
        year = time.localtime(now).tm_year
        value = stamp(year)
        # Clocks differ a little between hosts: only a date well in the future is last year's.
        if value > now + 2 * 86400:
            value = stamp(year - 1)
        return value
    except (OverflowError, ValueError):
        return None


@attrs.frozen
class BjobsRecord:
    """One row of ``bjobs -o ... -json`` (one job, or one element of a job array)."""

    job_id: str
    index: int = 0
    name: str = ""
    stat: str = ""
    exit_code: str = ""
    exit_reason: str = ""
    pend_reason: str = ""
    user: str = ""
    queue: str = ""
    description: str = ""
    submit_time: str = ""
    start_time: str = ""
    finish_time: str = ""

    @property
    def element_id(self) -> str:
        """``123`` for a plain job, ``123[4]`` for element 4 of an array."""
        return f"{self.job_id}[{self.index}]" if self.index else self.job_id


_FIELD_KEYS = {
    "name": "JOB_NAME",
    "stat": "STAT",
    "exit_code": "EXIT_CODE",
    "exit_reason": "EXIT_REASON",
    "pend_reason": "PEND_REASON",
    "user": "USER",
    "queue": "QUEUE",
    "description": "JOB_DESCRIPTION",
    "submit_time": "SUBMIT_TIME",
    "start_time": "START_TIME",
    "finish_time": "FINISH_TIME",
}


def _text(value: object) -> str:
    if value is None:
        return ""
    text = str(value).strip()
    # Text-mode bjobs writes "-" for "not applicable"; accept it in JSON too.
    return "" if text == "-" else text


def not_found_ids(text: str) -> list[str]:
    """Job ids named in ``Job <123> is not found`` messages."""
    return _NOT_FOUND_RE.findall(text)


def parse_bjobs_json(returncode: int, stdout: str, stderr: str) -> tuple[list[BjobsRecord], list[str]]:
    """Records and not-found job ids from ``bjobs -o ... -json``.

    Raises :class:`SchedulerError` when bjobs failed (anything on stderr other than "not
    found"/"no job found" with a non-zero exit, unreadable JSON, an unexplained ERROR record):
    a failed query must never look like an empty queue.
    """
    missing = not_found_ids(stderr)
    problems = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and not _NOT_FOUND_RE.search(line) and not _NO_JOBS_RE.match(line.strip())
    ]
    body = stdout.strip()
    empty = not body or bool(_NO_JOBS_RE.match(body))
    if returncode != 0 and (problems or (empty and not stderr.strip())):
        raise SchedulerError(
            f"bjobs failed (exit {returncode}): {' '.join(problems) or '(no output)'}", stderr=stderr
        )
    if empty and any(m in line.lower() for line in problems for m in TRANSIENT_MARKERS):
        # An LSF client that gave up waiting for mbatchd but still exited 0.
        raise TransientSchedulerError(f"bjobs got no answer: {' '.join(problems)}", stderr=stderr)
    records: list[BjobsRecord] = []
    if empty:
        return records, missing
    start = body.find("{")
    try:
        data = json.loads(body[start:]) if start >= 0 else None
    except json.JSONDecodeError as exc:
        raise SchedulerError(f"bjobs printed unreadable JSON: {exc}", stderr=stderr) from exc
    if not isinstance(data, dict) or not isinstance(data.get("RECORDS", []), list):
        raise SchedulerError("bjobs printed JSON without a RECORDS list", stderr=stderr)
    for raw in data.get("RECORDS", []):
        if not isinstance(raw, dict):
            raise SchedulerError(f"bjobs printed a malformed record: {raw!r}", stderr=stderr)
        error = _text(raw.get("ERROR"))
        if error:
            ids = not_found_ids(error)
            if not ids:
                raise SchedulerError(f"bjobs reported an error: {error}", stderr=stderr)
            missing.extend(ids)
            continue
        job_id = _text(raw.get("JOBID"))
        if not job_id:
            raise SchedulerError(f"bjobs record without JOBID: {raw!r}", stderr=stderr)
        index_text = _text(raw.get("JOBINDEX"))
        # Some LSF versions print array elements as JOBID "123[4]".
        bracket = re.fullmatch(r"(\d+)\[(\d+)\]", job_id)
        if bracket:
            job_id, index_text = bracket.group(1), index_text or bracket.group(2)
        values = {attr: _text(raw.get(key)) for attr, key in _FIELD_KEYS.items()}
        values["stat"] = values["stat"].upper()
        records.append(
            BjobsRecord(
                job_id=job_id,
                index=int(index_text) if index_text.isdigit() else 0,
                **values,
            )
        )
    return records, missing


def record_status(rec: BjobsRecord, *, now: float | None = None) -> SchedulerStatus:
    """The molq status of one job or array element."""
    started_at = parse_lsf_time(rec.start_time, now=now)
    finished_at = parse_lsf_time(rec.finish_time, now=now)
    raw = rec.stat
    code: int | None = int(rec.exit_code) if re.fullmatch(r"-?\d+", rec.exit_code) else None
    signal: int | None = None
    reason: str | None = None
    if raw == "EXIT":
        state = classify_exit(rec.exit_reason)
        if code is not None:
            signal, described = wrapper.describe_exit(code)
            reason = rec.exit_reason or described
        else:
            reason = rec.exit_reason or "exited (LSF reported no exit code)"
    elif raw == "DONE":
        state, code = JobState.SUCCEEDED, 0
    else:
        state = map_state(raw, started=bool(started_at) or raw in ("RUN",))
        code = None
        if not is_known_state(raw):
            reason = f"unknown LSF state {raw!r}"
        elif state == JobState.QUEUED:
            # bjobs ends each pending reason with ";".
            reason = rec.pend_reason.rstrip("; ") or None
        elif raw != "RUN":
            reason = LSF_STATES[raw][1]
    return SchedulerStatus(
        state=state,
        raw_state=raw,
        exit_code=code,
        exit_signal=signal,
        reason=reason,
        started_at=started_at,
        finished_at=finished_at if state in TERMINAL_STATES else None,
        # LSF keeps such a job pending forever; the engine cancels it and says why.
        dependency_never_satisfied=state == JobState.QUEUED and _NEVER_RE.search(rec.pend_reason) is not None,
    )


# When array elements end differently, the most telling outcome describes the whole array.
_TERMINAL_PRIORITY = (JobState.CANCELLED, JobState.TIMED_OUT, JobState.FAILED, JobState.SUCCEEDED)


def aggregate_status(records: Sequence[BjobsRecord], *, now: float | None = None) -> SchedulerStatus:
    """One status for a job from all its records (one, or one per array element).

    An array is active while any element is; it is RUNNING once any element started. When
    every element ended it takes the worst outcome: CANCELLED, then TIMED_OUT, then FAILED
    (with the exit code of the first such element), else SUCCEEDED.
    """
    if not records:
        raise ValueError("aggregate_status needs at least one record")
    ordered = sorted(records, key=lambda r: r.index)
    statuses = [record_status(r, now=now) for r in ordered]
    if len(statuses) == 1:
        return statuses[0]
    counts: dict[str, int] = {}
    for st in statuses:
        counts[st.raw_state] = counts.get(st.raw_state, 0) + 1
    order = list(LSF_STATES)
    raw = ",".join(
        f"{name}:{counts[name]}"
        for name in sorted(counts, key=lambda n: (order.index(n) if n in order else len(order), n))
    )
    starts = [s.started_at for s in statuses if s.started_at is not None]
    started_at = min(starts) if starts else None
    active = [s for s in statuses if s.state not in TERMINAL_STATES]
    if active:
        began = any(s.state not in (JobState.QUEUED,) for s in statuses)
        state = JobState.RUNNING if began else JobState.QUEUED
        pending = next((s.reason for s in statuses if s.state == JobState.QUEUED and s.reason), None)
        return SchedulerStatus(
            state=state,
            raw_state=raw,
            reason=f"{len(active)} of {len(statuses)} array elements active"
            + (f"; pending: {pending}" if pending else ""),
            started_at=started_at,
            dependency_never_satisfied=all(s.dependency_never_satisfied for s in active),
        )
    for outcome in _TERMINAL_PRIORITY:
        chosen = [(r, s) for r, s in zip(ordered, statuses) if s.state == outcome]
        if chosen:
            break
    first_rec, first = chosen[0]
    finishes = [s.finished_at for s in statuses if s.finished_at is not None]
    if outcome == JobState.SUCCEEDED:
        reason = None
    else:
        reason = (
            f"{len(chosen)} of {len(statuses)} array elements {outcome.value} "
            f"(first: index {first_rec.index}: {first.reason or first.raw_state})"
        )
    return SchedulerStatus(
        state=outcome,
        raw_state=raw,
        exit_code=first.exit_code,
        exit_signal=first.exit_signal,
        reason=reason,
        started_at=started_at,
        finished_at=max(finishes) if finishes else None,
    )


def statuses_by_job(
    records: Iterable[BjobsRecord], wanted: Sequence[str], *, now: float | None = None
) -> dict[str, SchedulerStatus]:
    """Aggregate records per job id, keeping only the ids in ``wanted``."""
    wanted_set = set(wanted)
    grouped: dict[str, list[BjobsRecord]] = {}
    for rec in records:
        if rec.job_id in wanted_set:
            grouped.setdefault(rec.job_id, []).append(rec)
    return {sid: aggregate_status(recs, now=now) for sid, recs in grouped.items()}

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
* Usage fields: ``cpu_used`` ``0.3 second(s)`` (one decimal) and ``run_time`` ``12 second(s)``,
  or ``hh:mm:ss`` under ``-hms``/``LSB_HMS_TIME_FORMAT``; ``max_mem``/``memlimit`` a number
  and a binary unit (``12 Mbytes``, ``5.2 Gbytes``, ``522 MBytes``; a bare number is in the
  cluster's ``LSF_UNIT_FOR_LIMITS``); ``exec_host`` the hosts, ``:``-separated, each
  optionally ``N*host``; ``slots`` the slots the job was given.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence

import attrs
from molq import wrapper
from molq.errors import SchedulerError, SubmitError, TransientSchedulerError
from molq.evidence import SourceAnswer, aggregate_parts
from molq.model import TERMINAL_STATES, JobState, SchedulerStatus
from molq.usage import Usage

from molq_lsf.states import LSF_STATES, classify_exit, end_cause, is_known_state, map_state, sub_state_of

__all__ = [
    "BjobsRecord",
    "parse_submit_output",
    "parse_lsf_time",
    "parse_bjobs_json",
    "record_status",
    "BjobsAnswer",
    "statuses_by_job",
    "not_found_ids",
    "TRANSIENT_MARKERS",
    "parse_lsf_duration",
    "parse_lsf_memory",
    "record_usage",
]

_SUBMITTED_RE = re.compile(r"Job <(\d+)> is submitted\b")
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
    cpu_used: str = ""
    run_time: str = ""
    max_mem: str = ""
    memlimit: str = ""
    exec_host: str = ""
    slots: str = ""

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
    "cpu_used": "CPU_USED",
    "run_time": "RUN_TIME",
    "max_mem": "MAX_MEM",
    "memlimit": "MEMLIMIT",
    "exec_host": "EXEC_HOST",
    "slots": "SLOTS",
}

_SECONDS_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:second\(s\)|seconds?|sec|s)?$", re.IGNORECASE)
_HMS_RE = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTPE]?)(?:bytes?|b)?$", re.IGNORECASE)
_MEMORY_SCALE = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


def parse_lsf_duration(text: str | None) -> float | None:
    """Seconds of a bjobs duration: ``0.3 second(s)``, ``12 second(s)`` or ``00:01:02``.

    >>> parse_lsf_duration("0.3 second(s)"), parse_lsf_duration("01:00:02")
    (0.3, 3602.0)
    """
    text = _text(text)
    match = _SECONDS_RE.match(text)
    if match:
        return float(match.group(1))
    match = _HMS_RE.match(text)
    if match:
        return int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3))
    return None


def parse_lsf_memory(text: str | None, default_unit: str = "KB") -> int | None:
    """Bytes of a bjobs memory amount: ``12 Mbytes``, ``1.2 Gbytes``, ``522 MBytes``, ``4 G``.
    LSF's units are binary; a bare number is in ``default_unit`` (``LSF_UNIT_FOR_LIMITS``).

    >>> parse_lsf_memory("12 Mbytes"), parse_lsf_memory("2048")
    (12582912, 2097152)
    """
    match = _MEMORY_RE.match(_text(text))
    if not match:
        return None
    unit = match.group(2).upper() or default_unit.strip().upper()[:1]
    if unit not in _MEMORY_SCALE:
        return None
    return int(round(float(match.group(1)) * 1024 ** _MEMORY_SCALE[unit]))


def _hosts(text: str) -> str | None:
    """``hostA:hostA:hostB`` or ``2*hostA:hostB`` as ``hostA,hostB`` (each host once)."""
    hosts: list[str] = []
    for item in re.split(r"[:\s]+", _text(text)):
        host = item.partition("*")[2] if "*" in item else item
        if host and host not in hosts:
            hosts.append(host)
    return ",".join(hosts) or None


def record_usage(rec: BjobsRecord, *, memory_unit: str = "KB") -> Usage | None:
    """What one job or element used, from the usage fields of its bjobs record (None: LSF
    reported none of them)."""
    slots = rec.slots if rec.slots.isdigit() else ""
    usage = Usage(
        elapsed_seconds=parse_lsf_duration(rec.run_time),
        cpu_seconds=parse_lsf_duration(rec.cpu_used),
        cpus=int(slots) if slots else None,
        max_rss_bytes=parse_lsf_memory(rec.max_mem, memory_unit),
        requested_memory_bytes=parse_lsf_memory(rec.memlimit, memory_unit),
        nodes=_hosts(rec.exec_host),
    )
    return None if usage.is_empty() else usage


def _text(value: object) -> str:
    if value is None:
        return ""
    text = str(value).strip()
    # Text-mode bjobs writes "-" for "not applicable"; accept it in JSON too.
    return "" if text == "-" else text


def not_found_ids(text: str) -> list[str]:
    """Job ids named in ``Job <123> is not found`` messages."""
    return _NOT_FOUND_RE.findall(text)


@attrs.frozen
class BjobsAnswer:
    """What one ``bjobs -o ... -json`` answer says.

    ``records``: the readable records. ``missing``: ids bjobs says it does not know.
    ``unreadable``: ids whose record was present but could not be read (no evidence for
    them). ``complete``: False when some record could not even be attributed to an id.
    """

    records: tuple[BjobsRecord, ...] = ()
    missing: tuple[str, ...] = ()
    unreadable: frozenset[str] = frozenset()
    complete: bool = True


_JOBID_RE = re.compile(r"^(\d+)(?:\[(\d+)\])?$")
# A record's id, looked for in the text of a record that is not valid JSON.
_RAW_JOBID_RE = re.compile(r'"JOBID"\s*:\s*"(\d+)')
_JOB_IN_TEXT_RE = re.compile(r"Job <(\d+)(?:\[\d+\])?>")


def _raw_records(body: str, stderr: str) -> tuple[list[object], set[str], bool]:
    """The items of the RECORDS list, record by record: a record that is not valid JSON
    costs only itself (its id, when it can still be read, becomes unreadable)."""
    start = body.find("{")
    if start < 0:
        raise SchedulerError(f"bjobs printed no JSON: {body[:200]!r}", stderr=stderr)
    try:
        data = json.loads(body[start:])
    except json.JSONDecodeError:
        pass
    else:
        if not isinstance(data, dict) or not isinstance(data.get("RECORDS", []), list):
            raise SchedulerError("bjobs printed JSON without a RECORDS list", stderr=stderr)
        return list(data.get("RECORDS", [])), set(), True
    # Not valid JSON as a whole: read the records one at a time.
    head = re.search(r'"RECORDS"\s*:\s*\[', body)
    if head is None:
        raise SchedulerError("bjobs printed unreadable JSON (no RECORDS list)", stderr=stderr)
    decoder = json.JSONDecoder()
    items: list[object] = []
    unreadable: set[str] = set()
    complete = True
    pos = head.end()
    while True:
        while pos < len(body) and body[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(body) or body[pos] == "]":
            break
        try:
            item, pos = decoder.raw_decode(body, pos)
        except json.JSONDecodeError:
            # Skip to the start of the next record; what lies between is the bad record.
            nxt = re.search(r"\}\s*,\s*(?=\{)", body[pos:])
            chunk = body[pos: pos + nxt.start() if nxt else len(body)]
            ident = _RAW_JOBID_RE.search(chunk)
            if ident:
                unreadable.add(ident.group(1))
            else:
                complete = False
            if nxt is None:
                if "]" not in body[pos:]:
                    complete = False  # cut short: more records may be lost
                break
            pos += nxt.end()
            continue
        items.append(item)
    return items, unreadable, complete


def parse_bjobs_json(returncode: int, stdout: str, stderr: str) -> BjobsAnswer:
    """Records, not-found ids and unreadable records of ``bjobs -o ... -json``.

    Raises :class:`SchedulerError` when bjobs failed as a whole (anything on stderr other
    than "not found"/"no job found" with a non-zero exit, no JSON at all): a failed query
    must never look like an empty queue. One bad record only costs that record.
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
    if empty:
        return BjobsAnswer(missing=tuple(missing))
    raw_records, unreadable, complete = _raw_records(body, stderr)
    records: list[BjobsRecord] = []
    for raw in raw_records:
        if not isinstance(raw, dict):
            complete = False
            continue
        error = _text(raw.get("ERROR"))
        if error:
            ids = not_found_ids(error)
            if ids:
                missing.extend(ids)
            elif any(m in error.lower() for m in TRANSIENT_MARKERS):
                raise TransientSchedulerError(f"bjobs got no answer: {error}", stderr=stderr)
            else:
                named = _JOB_IN_TEXT_RE.findall(error)
                if named:
                    unreadable.update(named)
                else:
                    complete = False
            continue
        ident = _JOBID_RE.match(_text(raw.get("JOBID")))
        if ident is None:
            complete = False
            continue
        # Some LSF versions print array elements as JOBID "123[4]".
        job_id, index_text = ident.group(1), _text(raw.get("JOBINDEX")) or (ident.group(2) or "")
        values = {attr: _text(raw.get(key)) for attr, key in _FIELD_KEYS.items()}
        values["stat"] = values["stat"].upper()
        if (index_text and not index_text.isdigit()) or not re.fullmatch(r"[A-Z]+", values["stat"]):
            unreadable.add(job_id)
            continue
        records.append(BjobsRecord(job_id=job_id, index=int(index_text or 0), **values))
    return BjobsAnswer(tuple(records), tuple(missing), frozenset(unreadable), complete)


def record_status(rec: BjobsRecord, *, now: float | None = None, memory_unit: str = "KB") -> SchedulerStatus:
    """The molq status of one job or array element (with its usage once it has ended)."""
    started_at = parse_lsf_time(rec.start_time, now=now)
    finished_at = parse_lsf_time(rec.finish_time, now=now)
    raw = rec.stat
    code: int | None = int(rec.exit_code) if re.fullmatch(r"-?\d+", rec.exit_code) else None
    signal: int | None = None
    reason: str | None = None
    requeued = False
    if raw == "EXIT" and classify_exit(rec.exit_reason) != JobState.QUEUED:
        state = classify_exit(rec.exit_reason)
        if code is not None:
            signal, described = wrapper.describe_exit(code)
            reason = rec.exit_reason or described or f"EXIT with exit code {code}"
        else:
            reason = rec.exit_reason or "exited (LSF reported no exit code)"
    elif raw == "EXIT":
        # Killed and requeued (brequeue): the job is pending again, not finished.
        state, code, reason = JobState.QUEUED, None, f"requeued ({rec.exit_reason})"
        requeued = True
    elif raw == "DONE":
        state, code = JobState.SUCCEEDED, 0
    else:
        state = map_state(raw, started=bool(started_at) or raw in ("RUN",))
        code = None
        if not is_known_state(raw):
            reason = f"unknown LSF state {raw!r}"
        elif state == JobState.QUEUED:
            # bjobs ends each pending reason with ";".
            reason = rec.pend_reason.rstrip("; ") or (LSF_STATES[raw][1] if raw != "PEND" else None)
        elif raw != "RUN":
            reason = LSF_STATES[raw][1]
    sub = None if state in TERMINAL_STATES else sub_state_of(raw, rec.pend_reason, requeued=requeued)
    sub_reason = (rec.exit_reason if requeued else rec.pend_reason.rstrip("; ")) if sub else None
    return SchedulerStatus(
        state=state,
        raw_state=raw,
        exit_code=code,
        exit_signal=signal,
        reason=reason,
        started_at=started_at,
        finished_at=finished_at if state in TERMINAL_STATES else None,
        end_cause=end_cause(raw, rec.exit_reason, code, signal) if state in TERMINAL_STATES else None,
        usage=record_usage(rec, memory_unit=memory_unit) if state in TERMINAL_STATES else None,
        sub_state=sub,
        sub_state_reason=sub_reason or None,
        # LSF keeps such a job pending forever; the engine cancels it and says why.
        dependency_never_satisfied=state == JobState.QUEUED and _NEVER_RE.search(rec.pend_reason) is not None,
    )


def statuses_by_job(
    answer: BjobsAnswer, wanted: Sequence[str], *, now: float | None = None, memory_unit: str = "KB"
) -> SourceAnswer:
    """One status per job id in ``wanted``: a job's records (one, or one per array element)
    are combined by core's part policy. A job with any unreadable record has no status."""
    wanted_set = set(wanted)
    grouped: dict[str, list[BjobsRecord]] = {}
    for rec in answer.records:
        if rec.job_id in wanted_set:
            grouped.setdefault(rec.job_id, []).append(rec)
    unreadable = set(sid for sid in answer.unreadable if sid in wanted_set)
    statuses = {}
    for sid, recs in grouped.items():
        if sid in unreadable:
            continue
        status = aggregate_parts(
            [(rec.element_id, record_status(rec, now=now, memory_unit=memory_unit)) for rec in sorted(recs, key=lambda r: r.index)],
            kind="array element",
        )
        if status.state.is_terminal and not answer.complete and any(rec.index for rec in recs):
            # A record that names no job may be one of this array's elements: an array's end
            # is only drawn from all of its elements.
            unreadable.add(sid)
            continue
        statuses[sid] = status
    return SourceAnswer(statuses, frozenset(unreadable), answer.complete)

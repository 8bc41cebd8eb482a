"""``SlurmDialect``: the SLURM job script, command lines and output parsers. No I/O here.

Commands (one of each per refresh, whatever the number of jobs):

* submit  -- ``sbatch --parsable job.sh`` (directives live in job.sh)
* status  -- ``squeue --noheader --states=all --jobs=1,2,3 --Format=...``: active jobs, plus
  jobs that ended less than ``MinJobAge`` ago, with their exit status
* final   -- ``sacct --parsable2 --noheader --allocations --jobs=... --starttime=...`` for jobs
  that left squeue; when accounting is disabled, ``scontrol show job -o``; then the
  wrapper's exit-code file (done by the shared runner)
* cancel  -- ``scancel 1 2 3``
* queue   -- ``squeue --noheader --me --Format=...``
* adopt   -- ``squeue --noheader --me --states=all --Format=JobID,...,Comment``

Every ``--Format`` field ends with ``|`` and at most one free-text field (job name or
comment) is printed, always last, so names with spaces, ``|`` or any other character cannot
shift the columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

from molq import wrapper
from molq.batch import AccountingUnavailable, BatchDialect
from molq.errors import ConfigError, SchedulerError, SubmitError, TransientSchedulerError
from molq.model import (
    CompiledDependency,
    DependencyCondition,
    JobSpec,
    JobState,
    QueueEntry,
    SchedulerCapabilities,
    SchedulerStatus,
)
from molq.transport import CommandResult

from molq_slurm._parse import (
    aggregate,
    blank,
    exit_from_pair,
    exit_from_wait_status,
    make_status,
    parse_scontrol_record,
    parse_time,
)
from molq_slurm.options import SlurmOptions
from molq_slurm.states import map_state, normalize_state

__all__ = ["SlurmDialect", "DEPENDENCY_KEYWORDS", "SLURM_JOB_ID_FILE"]

#: molq dependency condition -> SLURM ``--dependency`` keyword.
DEPENDENCY_KEYWORDS: dict[str, str] = {
    "after_success": "afterok",
    "after_failure": "afternotok",
    "after_started": "after",
    "after": "afterany",
}

#: File in the job directory where the wrapper records ``$SLURM_JOB_ID`` (array: the array id).
SLURM_JOB_ID_FILE = "slurm_job_id"

SEP = "|"

STATUS_FIELDS = ("JobID", "ArrayJobID", "ArrayTaskID", "State", "Reason", "exit_code", "StartTime", "EndTime")
QUEUE_FIELDS = ("JobID", "ArrayJobID", "ArrayTaskID", "UserName", "Partition", "State", "SubmitTime", "StartTime", "Name")
ADOPT_FIELDS = ("JobID", "ArrayJobID", "ArrayTaskID", "State", "Comment")
SACCT_FIELDS = ("JobID", "JobIDRaw", "State", "ExitCode", "Start", "End", "Reason")


def _format(fields: Sequence[str]) -> str:
    # "Field:|" = no padding, no truncation, "|" after the value (squeue --Format syntax).
    # The last field is free text and gets no separator after it.
    *head, last = fields
    return ",".join([*(f"{f}:{SEP}" for f in head), f"{last}:"])


# Messages that mean "the controller (or database) did not answer; try again".
_TRANSIENT = re.compile(
    r"socket timed out|timed out on send/recv|unable to contact slurm controller|"
    r"not responding|zero bytes were transmitted or received|"
    r"communication connection failure|connection refused|connection timed out|"
    r"connection reset|transport endpoint is not connected|backup controller in standby mode|"
    r"temporarily unable to accept job|resource temporarily unavailable|"
    r"problem talking to the database|slurmdbd.*(?:not responding|unavailable)|"
    r"unable to connect to database|try again later|slurm_persist_conn_open",
    re.IGNORECASE,
)
# The subset for sbatch that proves the job was NOT accepted (so resubmitting cannot duplicate
# it): the connection never opened, or the controller said "not now".
_SUBMIT_SAFE_RETRY = re.compile(
    r"unable to contact slurm controller \(connect failure\)|connection refused|"
    r"backup controller in standby mode|temporarily unable to accept job|"
    r"resource temporarily unavailable|try again later",
    re.IGNORECASE,
)
_INVALID_JOB_ID = re.compile(r"invalid job id specified", re.IGNORECASE)
_ACCOUNTING_DISABLED = re.compile(r"accounting storage is disabled", re.IGNORECASE)
# scancel messages for jobs that already ended: not a failure of the cancel.
_CANCEL_FINISHED = re.compile(
    r"already completing or completed|job has already finished|invalid job id specified|"
    r"job/step already completing",
    re.IGNORECASE,
)
# Characters that may appear unquoted in a #SBATCH value.
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_\-.,:/=+%@?\[\]]+$")


def _error_text(result: CommandResult) -> str:
    return result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}"


def _lines(text: str) -> list[str]:
    """Output lines. Only ``\n`` ends a line: str.splitlines() would also split a job name
    holding \x0b, \x1c or \u2028."""
    return text.split("\n")


def _rows(result: CommandResult, width: int, program: str, *, rest_in_last: bool = False) -> Iterator[list[str]]:
    """The ``SEP``-separated rows of a command's output, ``width`` columns each (blank lines
    skipped). With ``rest_in_last`` the last column keeps any further separators (a job name).
    A short row means output we cannot trust: raise rather than guess."""
    for line in _lines(result.stdout):
        if not line.strip():
            continue
        cols = line.split(SEP, width - 1) if rest_in_last else line.split(SEP)
        if len(cols) < width:
            raise SchedulerError(f"{program}: cannot read line {line!r}", stderr=result.stderr)
        yield cols[:width]


def _id_key(sid: str) -> tuple[int, str]:
    head = re.match(r"\d+", sid)
    return (int(head.group()) if head else 1 << 62, sid)


def _is_submit(argv: Sequence[str]) -> bool:
    return bool(argv) and ("--parsable" in argv or argv[0].rsplit("/", 1)[-1].endswith("sbatch"))


class SlurmDialect(BatchDialect):
    """SLURM for :class:`~molq.batch.BatchScheduler`.

    ``default_partition``/``default_account`` fill jobs that name none; ``use_accounting``
    is ``None`` (try sacct, fall back when accounting is disabled), ``True`` or ``False``
    (never call sacct); ``mail_type`` is the ``--mail-type`` sent with ``scheduling.email``.

    >>> SlurmDialect().native_condition("after_success", "123")
    'afterok:123'
    """

    name = "slurm"
    # SLURM's --priority is reserved to operators and --nice runs the other way round (a
    # higher value means *lower* priority) and only lowers it for normal users: neither
    # honours a portable "priority", so molq refuses the field instead of guessing.
    capabilities = SchedulerCapabilities.all_except("priority")

    def __init__(
        self,
        *,
        default_partition: str | None = None,
        default_account: str | None = None,
        use_accounting: bool | None = None,
        mail_type: str = "END,FAIL",
    ) -> None:
        self.default_partition = default_partition
        self.default_account = default_account
        self.use_accounting = use_accounting
        self.mail_type = mail_type

    @classmethod
    def from_options(cls, options: SlurmOptions | None) -> SlurmDialect:
        options = options or SlurmOptions()
        return cls(
            default_partition=options.default_partition,
            default_account=options.default_account,
            use_accounting=options.use_accounting,
            mail_type=options.mail_type,
        )

    def __repr__(self) -> str:
        return (
            f"SlurmDialect(default_partition={self.default_partition!r}, "
            f"default_account={self.default_account!r}, use_accounting={self.use_accounting!r})"
        )

    # -- script ------------------------------------------------------------------------------
    @staticmethod
    def directive(option: str, value: str | None = None) -> str:
        """One ``#SBATCH`` line. Values sbatch would split (spaces, quotes, ``#``) are put in
        double quotes with ``"`` and ``\\`` escaped, which is how sbatch reads directives."""
        if value is None:
            return f"#SBATCH {option}"
        if "\n" in value or "\r" in value or "\x00" in value:
            raise ConfigError(f"SLURM option {option} cannot hold a newline or NUL byte: {value!r}")
        if not _PLAIN_VALUE.match(value):
            value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"#SBATCH {option}={value}"

    @staticmethod
    def _literal_path(path: str) -> str:
        """A path sbatch must not expand: SLURM treats ``%j``, ``%a``... as patterns unless the
        name holds a backslash, in which case it drops the backslashes and expands nothing."""
        if "%" in path and "\\" not in path:
            return path.replace("%", "\\%")
        return path

    def render_directives(self, spec: JobSpec, job_dir: str) -> list[str]:
        d = self.directive
        res, sch, exe = spec.resources, spec.scheduling, spec.execution
        lines = [d("--job-name", spec.name), d("--comment", spec.tag)]
        out = wrapper.stdout_path(spec, job_dir)
        err = wrapper.stderr_path(spec, job_dir)
        # molq's own default files are literal paths; a user's output_file may use SLURM's
        # patterns (%j, %A_%a) on purpose and is passed through.
        lines.append(d("--output", out if exe.output_file else self._literal_path(out)))
        lines.append(d("--error", err if exe.error_file else self._literal_path(err)))
        cwd = spec.cwd or exe.cwd
        if cwd:
            lines.append(d("--chdir", cwd))
        partition = sch.partition or self.default_partition
        if partition:
            lines.append(d("--partition", partition))
        account = sch.account or self.default_account
        if account:
            lines.append(d("--account", account))
        if sch.qos:
            lines.append(d("--qos", sch.qos))
        if sch.reservation:
            lines.append(d("--reservation", sch.reservation))
        if res.time_limit is not None:
            lines.append(d("--time", res.time_limit.to_slurm()))
        if sch.node_count is not None:
            lines.append(d("--nodes", str(sch.node_count)))
        if res.cpu_count is not None:
            # cpu_count is CPUs for the one task the wrapper runs, not a task count.
            lines.append(d("--cpus-per-task", str(res.cpu_count)))
        if res.memory is not None:
            lines.append(d("--mem", res.memory.to_slurm()))
        if res.gpu_count is not None:
            gres = f"gpu:{res.gpu_type}:{res.gpu_count}" if res.gpu_type else f"gpu:{res.gpu_count}"
            lines.append(d("--gres", gres))
        if sch.exclusive_node:
            lines.append(d("--exclusive"))
        if sch.array_spec:
            lines.append(d("--array", sch.array_spec.replace(" ", "")))
            # Every task writes the same default files; append instead of truncating.
            lines.append(d("--open-mode", "append"))
        if sch.email:
            lines.append(d("--mail-user", sch.email))
            lines.append(d("--mail-type", self.mail_type))
        dependency = self._dependency(spec)
        if dependency:
            lines.append(d("--dependency", dependency))
        return lines

    def _dependency(self, spec: JobSpec) -> str | None:
        compiled = self.compile_dependencies(spec.dependencies) if spec.dependencies else None
        raw = spec.scheduling.dependency
        if raw and compiled:
            if "?" in raw:
                raise ConfigError(
                    "a raw SLURM dependency using '?' (any of) cannot be combined with molq "
                    "dependencies, which must all hold"
                )
            return f"{raw},{compiled}"
        return raw or compiled

    def wrapper_pre_run(self, spec: JobSpec) -> str:
        # Record which SLURM job this directory belongs to, for people and for recovery.
        return (
            f'printf "%s\\n" "${{SLURM_ARRAY_JOB_ID:-${{SLURM_JOB_ID:-}}}}" '
            f'> "$molq_dir/{SLURM_JOB_ID_FILE}" 2>/dev/null || true'
        )

    # -- submission --------------------------------------------------------------------------
    def submit_argv(self, script_path: str, spec: JobSpec) -> list[str]:
        return ["sbatch", "--parsable", script_path]

    def submit_stdin_argv(self, spec: JobSpec) -> list[str]:
        # sbatch reads the script from stdin when given no file (directives included).
        return ["sbatch", "--parsable"]

    def parse_submit(self, result: CommandResult) -> str:
        """The job id from ``sbatch --parsable`` (``123`` or ``123;cluster``)."""
        if result.returncode != 0:
            message = _error_text(result)
            if _TRANSIENT.search(message) and not _SUBMIT_SAFE_RETRY.search(message):
                # A timeout after the request left: SLURM may have queued the job. molq must
                # not call it failed (it could run) nor resubmit it (it could run twice); the
                # job carries its molq tag, so a later adoption pass can find it.
                raise TransientSchedulerError(
                    f"sbatch: no answer from SLURM, the job may or may not be queued: {message}",
                    stderr=result.stderr,
                    command=list(result.argv),
                )
            raise SubmitError(f"sbatch refused the job: {message}", stderr=result.stderr, command=list(result.argv))
        for line in _lines(result.stdout):
            text = line.strip()
            match = re.fullmatch(r"(\d+)(?:;\S+)?", text) or re.fullmatch(r"Submitted batch job (\d+)(?: on cluster \S+)?", text)
            if match:
                return match.group(1)
        raise SchedulerError(
            f"sbatch succeeded but printed no job id: {result.stdout.strip()!r}",
            stderr=result.stderr,
            command=list(result.argv),
        )

    # -- status ------------------------------------------------------------------------------
    def status_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        return [
            "squeue",
            "--noheader",
            "--states=all",
            "--jobs=" + ",".join(scheduler_ids),
            "--Format=" + _format(STATUS_FIELDS),
        ]

    def parse_status(self, result: CommandResult, scheduler_ids: Sequence[str]) -> dict[str, SchedulerStatus]:
        if result.returncode != 0:
            text = _error_text(result)
            if len(scheduler_ids) == 1 and _INVALID_JOB_ID.search(text):
                # squeue looks a single id up directly and fails when the controller no longer
                # knows it: a successful answer meaning "not in the queue". (With several ids
                # it filters and simply omits unknown ones.)
                return {}
            self._raise(result, "squeue")
        wanted = set(scheduler_ids)
        tasks: dict[str, list[tuple[str, SchedulerStatus]]] = {}
        for cols in _rows(result, len(STATUS_FIELDS), "squeue"):
            job_id, array_id, task_id, state, reason, code, start, end = (c.strip() for c in cols)
            key = self._owner(job_id, array_id, task_id, wanted)
            if key is None:
                continue
            exit_code, exit_signal = (None, None)
            if code.lstrip("-").isdigit():
                exit_code, exit_signal = exit_from_wait_status(int(code))
            status = make_status(state, reason=reason, exit_code=exit_code, exit_signal=exit_signal, start=start, end=end)
            tasks.setdefault(key, []).append((task_id if not blank(task_id) else job_id, status))
        return {sid: aggregate(rows) for sid, rows in tasks.items()}

    @staticmethod
    def _owner(job_id: str, array_id: str, task_id: str, wanted: set[str]) -> str | None:
        """Which requested id a row belongs to: the job itself, or the array it is a task of."""
        if job_id in wanted and blank(task_id):
            return job_id
        if not blank(task_id) and array_id in wanted:
            return array_id
        if job_id in wanted:
            return job_id
        return None

    # -- final states: sacct, then scontrol --------------------------------------------------
    @staticmethod
    def _starttime(since: float | None) -> str:
        # sacct reads --starttime in the cluster's local time, which molq does not know; two
        # days of margin covers every time-zone offset. Without a hint, look back far: the
        # --jobs filter keeps the answer small anyway.
        if since is None:
            return "2000-01-01T00:00:00"
        moment = datetime.fromtimestamp(max(since - 2 * 86400, 946684800), tz=timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S")

    def terminal_argv(self, scheduler_ids: Sequence[str], since: float | None) -> list[str] | None:
        if self.use_accounting is False:
            # No accounting on this cluster: the controller's memory is the only final source.
            return self.fallback_argv(scheduler_ids)
        return [
            "sacct",
            "--parsable2",
            "--noheader",
            "--allocations",
            "--jobs=" + ",".join(scheduler_ids),
            "--starttime=" + self._starttime(since),
            "--format=" + ",".join(SACCT_FIELDS),
        ]

    def parse_terminal(self, result: CommandResult, scheduler_ids: Sequence[str]) -> dict[str, SchedulerStatus]:
        if self.use_accounting is False:
            return self.parse_fallback_terminal(result, scheduler_ids)
        return self.parse_sacct(result, scheduler_ids)

    def parse_sacct(self, result: CommandResult, scheduler_ids: Sequence[str]) -> dict[str, SchedulerStatus]:
        """Final statuses from ``sacct --parsable2`` (jobs still active are left out)."""
        if result.returncode != 0:
            if _ACCOUNTING_DISABLED.search(_error_text(result)):
                raise AccountingUnavailable(
                    "slurm: accounting storage is disabled on this cluster", stderr=result.stderr,
                    command=list(result.argv),
                )
            self._raise(result, "sacct")
        wanted = set(scheduler_ids)
        tasks: dict[str, list[tuple[str, SchedulerStatus]]] = {}
        for cols in _rows(result, len(SACCT_FIELDS), "sacct"):
            job_id, raw_id, state, exit_pair, start, end, reason = (c.strip() for c in cols)
            if "." in job_id:
                continue  # a step (123.batch); --allocations normally hides them
            base, _, task = job_id.partition("_")
            base = base.split("+", 1)[0]
            if base in wanted:
                key = base
            elif raw_id in wanted:
                key = raw_id
            else:
                continue
            exit_code, exit_signal = exit_from_pair(exit_pair)
            status = make_status(state, reason=reason, exit_code=exit_code, exit_signal=exit_signal, start=start, end=end)
            tasks.setdefault(key, []).append((task or job_id, status))
        out = {}
        for sid, rows in tasks.items():
            status = aggregate(rows)
            if status.state.is_terminal:
                out[sid] = status
        return out

    def fallback_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        """``scontrol show job -o``: it accepts one id at most, so several jobs mean one call
        listing every job the controller still remembers, filtered here."""
        if len(scheduler_ids) == 1:
            return ["scontrol", "show", "job", "-o", scheduler_ids[0]]
        return ["scontrol", "show", "job", "-o"]

    def fallback_terminal_argv(self, scheduler_ids: Sequence[str]) -> list[str] | None:
        if self.use_accounting is False:
            return None  # terminal_argv already asked scontrol
        return self.fallback_argv(scheduler_ids)

    def parse_fallback_terminal(self, result: CommandResult, scheduler_ids: Sequence[str]) -> dict[str, SchedulerStatus]:
        """Final statuses from ``scontrol show job -o`` (one line per job or array task)."""
        if result.returncode != 0:
            if _INVALID_JOB_ID.search(_error_text(result)):
                return {}  # the controller has forgotten the job(s)
            self._raise(result, "scontrol")
        wanted = set(scheduler_ids)
        tasks: dict[str, list[tuple[str, SchedulerStatus]]] = {}
        for line in _lines(result.stdout):
            if not line.startswith("JobId="):
                continue  # "No jobs in the system", blank lines
            rec = parse_scontrol_record(line)
            job_id = rec.get("JobId", "")
            array_id = rec.get("ArrayJobId", "")
            task_id = rec.get("ArrayTaskId", "")
            key = self._owner(job_id, array_id, task_id, wanted)
            if key is None:
                continue
            exit_code, exit_signal = exit_from_pair(rec.get("ExitCode"))
            status = make_status(
                rec.get("JobState", ""),
                reason=rec.get("Reason"),
                exit_code=exit_code,
                exit_signal=exit_signal,
                start=rec.get("StartTime"),
                end=rec.get("EndTime"),
            )
            tasks.setdefault(key, []).append((task_id if not blank(task_id) else job_id, status))
        out = {}
        for sid, rows in tasks.items():
            status = aggregate(rows)
            if status.state.is_terminal:
                out[sid] = status
        return out

    # -- cancel ------------------------------------------------------------------------------
    def cancel_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        return ["scancel", *scheduler_ids]

    def cancel_line_is_benign(self, line: str) -> bool:
        """scancel's word for a job that already ended is not a failed cancel."""
        return bool(_CANCEL_FINISHED.search(line))

    # -- queue -------------------------------------------------------------------------------
    def queue_argv(self, user: str | None) -> list[str]:
        who = f"--user={user}" if user else "--me"
        return ["squeue", "--noheader", who, "--Format=" + _format(QUEUE_FIELDS)]

    def parse_queue(self, result: CommandResult) -> list[QueueEntry]:
        if result.returncode != 0:
            self._raise(result, "squeue")
        entries = []
        for cols in _rows(result, len(QUEUE_FIELDS), "squeue", rest_in_last=True):
            job_id, array_id, task_id, user, partition, state, submit, start, name = cols
            job_id, array_id, task_id = job_id.strip(), array_id.strip(), task_id.strip()
            display_id = f"{array_id}_{task_id if task_id.isdigit() else '[' + task_id + ']'}" if not blank(task_id) else job_id
            started = parse_time(start)
            molq_state = map_state(state, started=started is not None)
            entries.append(
                QueueEntry(
                    scheduler_job_id=display_id,
                    name=name if name != "" else None,
                    user=None if blank(user) else user.strip(),
                    state=molq_state,
                    raw_state=normalize_state(state),
                    partition=None if blank(partition) else partition.strip(),
                    submit_time=parse_time(submit),
                    # A pending job's start time is only SLURM's forecast.
                    start_time=None if molq_state == JobState.QUEUED else started,
                )
            )
        return entries

    # -- adoption ----------------------------------------------------------------------------
    def adopt_argv(self, tags: Sequence[str]) -> list[str] | None:
        # The controller's table (queued, running, and ended less than MinJobAge ago) is where
        # a job submitted just before a crash is; its comment holds the molq tag.
        return ["squeue", "--noheader", "--me", "--states=all", "--Format=" + _format(ADOPT_FIELDS)]

    def parse_adopt(self, result: CommandResult, tags: Sequence[str]) -> dict[str, str]:
        if result.returncode != 0:
            self._raise(result, "squeue")
        wanted = set(tags)
        found: dict[str, str] = {}
        for line in _lines(result.stdout):
            cols = line.split(SEP, len(ADOPT_FIELDS) - 1)
            if len(cols) < len(ADOPT_FIELDS):
                continue
            job_id, array_id, task_id, _state, comment = (c.strip() for c in cols)
            if comment not in wanted:
                continue
            sid = array_id if not blank(task_id) and array_id else job_id
            # Two jobs with one tag means a duplicated submission; the first one is molq's.
            if comment not in found or _id_key(sid) < _id_key(found[comment]):
                found[comment] = sid
        return found

    # -- dependencies ------------------------------------------------------------------------
    def native_condition(self, condition: DependencyCondition, scheduler_job_id: str) -> str:
        try:
            return f"{DEPENDENCY_KEYWORDS[condition]}:{scheduler_job_id}"
        except KeyError:
            raise ConfigError(f"unknown dependency condition {condition!r}") from None

    def compile_dependencies(self, deps: Sequence[CompiledDependency]) -> str | None:
        """``afterok:1:2,afterany:3`` -- all must hold (SLURM's ``,``)."""
        groups: dict[str, list[str]] = {}
        for dep in deps:
            keyword = DEPENDENCY_KEYWORDS.get(dep.condition)
            if keyword is None:
                raise ConfigError(f"unknown dependency condition {dep.condition!r}")
            ids = groups.setdefault(keyword, [])
            if dep.scheduler_job_id not in ids:
                ids.append(dep.scheduler_job_id)
        if not groups:
            return None
        return ",".join(f"{kw}:{':'.join(ids)}" for kw, ids in groups.items())

    # -- errors ------------------------------------------------------------------------------
    def is_transient(self, result: CommandResult) -> bool:
        if result.returncode == 0:
            return False
        text = result.stderr + "\n" + result.stdout
        if _is_submit(result.argv):
            return bool(_SUBMIT_SAFE_RETRY.search(text))
        if _INVALID_JOB_ID.search(text) or _ACCOUNTING_DISABLED.search(text):
            return False
        return bool(_TRANSIENT.search(text))

    def _raise(self, result: CommandResult, command: str) -> None:
        message = f"{command} failed: {_error_text(result)}"
        if self.is_transient(result):
            raise TransientSchedulerError(message, stderr=result.stderr, command=list(result.argv))
        raise SchedulerError(message, stderr=result.stderr, command=list(result.argv))


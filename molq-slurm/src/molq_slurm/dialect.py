"""``SlurmDialect``: the SLURM job script, command lines and output parsers. No I/O here.

Commands (one of each per refresh, whatever the number of jobs):

* submit  -- ``sbatch --parsable job.sh`` (directives live in job.sh)
* status  -- ``squeue --noheader --states=all --jobs=1,2,3 --Format=...``: active jobs, plus
  jobs that ended less than ``MinJobAge`` ago, with their exit status
* final   -- ``sacct --parsable2 --noheader --duplicates --jobs=... --starttime=...`` for jobs
  that left squeue (with their steps: the batch step's state and peak memory tell an
  out-of-memory kill apart from any other signal); when accounting is disabled, ``scontrol show job -o``; then the
  wrapper's exit-code file (done by the shared runner)
* cancel  -- ``scancel 1 2 3``
* queue   -- ``squeue --noheader --me --Format=...``
* adopt   -- ``squeue --noheader --me --states=all --Format=JobID,...,Comment``

Every ``--Format`` field ends with ``|`` and at most one free-text field (job name or
comment) is printed, always last, so names with spaces, ``|`` or any other character cannot
shift the columns.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import datetime, timezone

import attrs
from molq import wrapper
from molq.arrays import PART_SEPARATOR, array_indices, owner_of
from molq.batch import (
    PACK_TAG_PREFIX,
    AccountingUnavailable,
    BatchDialect,
    PartitionLimits,
    SubmitLimit,
    SubmitLimits,
)
from molq.causes import EndCause
from molq.errors import ConfigError, SchedulerError, SubmitError, TransientSchedulerError
from molq.evidence import CancelOutcome, SourceAnswer, aggregate_parts
from molq.model import (
    CompiledDependency,
    DependencyCondition,
    JobSpec,
    JobState,
    QueueEntry,
    SchedulerCapabilities,
    SchedulerStatus,
    check_extra_directives,
)
from molq.scheduler import TrackedJob
from molq.transport import CommandResult

from molq_slurm._parse import (
    blank,
    exit_from_pair,
    make_status,
    make_usage,
    parse_duration,
    parse_rss,
    parse_scontrol_record,
    parse_time,
    requested_memory,
    squeue_status,
)
from molq_slurm.options import SlurmOptions
from molq_slurm.privacy import PRIVATE_UMASK, restore_umask_line
from molq_slurm.states import StepEvidence, end_cause, map_state, normalize_state, sub_state_of

__all__ = ["SlurmDialect", "DEPENDENCY_KEYWORDS", "SLURM_JOB_ID_FILE"]

#: molq dependency condition -> SLURM ``--dependency`` keyword.
DEPENDENCY_KEYWORDS: dict[str, str] = {
    "after_success": "afterok",
    "after_failure": "afternotok",
    "after_started": "after",
    "after": "afterany",
}

#: File in the job directory where the wrapper records ``$SLURM_JOB_ID`` (array: the array id;
#: a packed job: its task, ``<array id>_<index>``).
SLURM_JOB_ID_FILE = "slurm_job_id"
#: Set by a pack's dispatcher for the job it runs: that job's own scheduler id (the wrapper
#: records it, then unsets it so that nothing the job submits inherits it).
PACKED_ID_ENV = "MOLQ_SLURM_JOB_ID"
#: Directives that differ between the jobs of one pack: the dispatcher does their work itself.
_PER_JOB_DIRECTIVES = ("--job-name=", "--comment=", "--output=", "--error=", "--chdir=")
#: What SLURM tells an array task about its array: a packed job is no array task.
_ARRAY_ENV = ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
              "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP")

SEP = "|"

STATUS_FIELDS = (
    "JobID", "ArrayJobID", "ArrayTaskID", "HetJobID", "HetJobOffset", "State", "Reason", "exit_code",
    "StartTime", "EndTime", "SubmitTime", "Comment",
)
QUEUE_FIELDS = (
    "JobID", "ArrayJobID", "ArrayTaskID", "UserName", "Partition", "State", "Reason", "SubmitTime", "StartTime", "Name",
)
ADOPT_FIELDS = ("JobID", "ArrayJobID", "ArrayTaskID", "State", "Comment")
SACCT_FIELDS = (
    "JobID", "JobIDRaw", "State", "ExitCode", "Start", "End", "Reason", "Submit",
    # why it ended and what it used: read from the same call (steps included)
    "DerivedExitCode", "UID", "ReqMem", "MaxRSS", "ElapsedRaw", "TotalCPU", "AllocCPUS", "AllocTRES", "NodeList",
    "Comment",
)


#: sbatch options molq writes itself (tracking, files, dependencies): an extra directive must
#: not override them.
_RESERVED_OPTIONS: dict[str, str] = {
    **dict.fromkeys(("-J", "--job-name"), "execution.job_name"),
    "--comment": "nothing (molq's tag for this job lives there)",
    **dict.fromkeys(("-o", "--output"), "execution.output_file"),
    **dict.fromkeys(("-e", "--error"), "execution.error_file"),
    "--open-mode": "nothing (molq chooses it)",
    **dict.fromkeys(("-D", "--chdir"), "execution.cwd"),
    **dict.fromkeys(("-d", "--dependency"), "scheduling.dependency or dependencies"),
    **dict.fromkeys(("--requeue", "--no-requeue"), "scheduling.rerunnable"),
    "--wrap": "a command or script",
}


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
# sbatch's refusal for a submit-count limit: slurmctld names the limit on a line of its own
# ("sbatch: error: QOSMaxSubmitJobPerUserLimit") before the generic ESLURM_ACCOUNTING_POLICY
# line. That generic line alone also covers size and time limits (QOSMaxWallDurationPerJobLimit,
# QOSGrpGRES...), which no waiting cures: only the named submit limits count.
_SUBMIT_LIMIT = re.compile(
    r"\b(?:QOSMaxSubmitJobPerUserLimit|QOSMaxSubmitJobPerAccountLimit|QOSGrpSubmitJobsLimit|"
    r"AssocMaxSubmitJobLimit|AssocGrpSubmitJobsLimit)\b")
# sacctmgr where the cluster keeps no accounting database: no limits to read (cached).
_NO_ACCOUNTING_STORAGE = re.compile(r"not running a supported accounting_storage plugin", re.IGNORECASE)
#: ``sacctmgr show assoc`` / ``show qos`` fields molq reads (names as sacctmgr 22.05 takes them).
ASSOC_LIMIT_FIELDS = ("Account", "QOS", "DefaultQOS", "MaxSubmit", "GrpSubmit")
QOS_LIMIT_FIELDS = ("Name", "MaxSubmitPU", "MaxSubmitPA", "GrpSubmit")
#: Between the association and QOS parts of the submit limits' reading.
LIMITS_MARKER = "--molq-qos--"
_INVALID_JOB_ID = re.compile(r"invalid job id specified", re.IGNORECASE)
_ACCOUNTING_DISABLED = re.compile(r"accounting storage is disabled", re.IGNORECASE)
# The accounting database (slurmdbd) did not answer: no evidence, never "no accounting".
_DATABASE_ERROR = re.compile(
    r"problem talking to the database|slurm_persist_conn_open|slurmdbd|unable to connect to database|"
    r"sending persistinit msg",
    re.IGNORECASE,
)
# scancel's progress lines (with -v, or before an error): no outcome in them.
_CANCEL_PROGRESS = re.compile(r"^scancel: (?:terminating job|signal \d+ to (?:job|step)|sending signal)", re.IGNORECASE)
# The id an scancel error line is about: "Kill job error on job id 8: ...".
_CANCEL_JOB_ID = re.compile(r"job id (\d+(?:_\d+|\+\d+)?)\b", re.IGNORECASE)
# scancel refusals, printed even with exit status 0 by older versions.
_CANCEL_REFUSED = re.compile(r"access/permission denied|permission denied|not authorized|access denied", re.IGNORECASE)
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


# A record starts with a job id (123, 123_4, 123_[1-5%2], 123+1, 123.batch) and a separator;
# any other line continues the free-text last field of the record before it (a comment or
# name holding a newline).
_ROW_START = re.compile(r"^\s*\d+(?:_(?:\d+|\[[^\]|]*\]))?(?:\+\d+)?(?:\.[^|\s]+)?\s*\|")


@attrs.frozen
class _Rows:
    """The records of one command's output: ``rows`` with ``width`` columns each (the last one
    keeps any further separators and newlines), ``short`` the ids of records cut short, and
    ``stray`` the number of lines that belong to no record."""

    rows: list[list[str]]
    short: list[str]
    stray: int


def _read_rows(result: CommandResult, width: int, program: str) -> _Rows:
    """The ``SEP``-separated records of a command's output. One bad record costs only that
    record; output in which no line is a record at all is not an answer and raises."""
    rows: list[list[str]] = []
    short: list[str] = []
    stray = 0
    for line in _lines(result.stdout):
        if not line.strip():
            continue
        if _ROW_START.match(line):
            cols = line.split(SEP, width - 1)
            if len(cols) < width:
                short.append(cols[0].strip())
            else:
                rows.append(cols)
        elif rows:
            rows[-1][-1] += "\n" + line
        else:
            stray += 1
    if stray and not rows and not short:
        raise SchedulerError(f"{program}: cannot read its answer: {result.stdout.strip()[:200]!r}",
                             stderr=result.stderr, command=list(result.argv))
    return _Rows(rows, short, stray)


#: A record submitted this much earlier than molq submitted the job is another job that had
#: the same id (ids restart after a scheduler state reset). Generous: clocks may disagree.
ID_REUSE_SLACK = 3600.0


@attrs.frozen
class _Expected:
    """What molq knows about the job behind one scheduler id."""

    tag: str
    submitted_at: float | None
    #: The id is a packed job's task: its record carries its pack's tag, not the job's.
    packed: bool = False


def _latest(records: list[tuple[float | None, int, SchedulerStatus]]) -> SchedulerStatus:
    """Of several records of one job (a requeued job's attempts), the latest: by submit time
    (a requeue stamps the new attempt with the requeue time), then by record order."""
    return max(records, key=lambda r: (r[0] if r[0] is not None else float("-inf"), r[1]))[2]


_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_/]*)=")


def _tightest(values: Sequence[str], where: str) -> SubmitLimit | None:
    """The smallest of sacctmgr's submit-limit cells (blank or -1: none) as one limit."""
    numbers = [int(v) for v in (v.strip() for v in values) if v.lstrip("-").isdigit() and int(v) >= 0]
    return SubmitLimit(min(numbers), where) if numbers else None


def _key_values(line: str) -> dict[str, str]:
    """``Key=value`` pairs of one ``scontrol --oneliner`` line; a value runs up to the next
    `` Key=`` (it may hold spaces, or ``=`` as in ``TRES=cpu=16,mem=8G``)."""
    keys = list(_KEY.finditer(line))
    out: dict[str, str] = {}
    for k, match in enumerate(keys):
        end = keys[k + 1].start() if k + 1 < len(keys) else len(line)
        out.setdefault(match.group(1), line[match.end():end].strip())
    return out


def _max_time(text: str | None) -> int | None:
    """Seconds of a partition's MaxTime (``1-00:00:00``, ``04:00:00``); None: unlimited, or
    a value molq cannot read (then the scheduler's own check is the only one)."""
    if text is None or text.strip().upper() in ("UNLIMITED", "INFINITE", "NONE", ""):
        return None
    seconds = parse_duration(text)
    return int(seconds) if seconds else None


def _split_job_id(job_id: str) -> tuple[str, str, str]:
    """(job id, kind of part, part) of a sacct JobID: ``123_4`` is task 4 of array 123,
    ``123+1`` component 1 of heterogeneous job 123, ``123`` the job itself."""
    base, _, task = job_id.partition("_")
    if task:
        return base, "array task", task
    head, plus, offset = job_id.partition("+")
    if plus:
        return head, "het job component", offset
    return job_id, "array task", job_id


def _packed_ids(wanted: set[str]) -> dict[str, dict[int, str]]:
    """The packed jobs among ``wanted`` (``123_4``): array id -> task index -> id."""
    out: dict[str, dict[int, str]] = {}
    for sid in wanted:
        base, sep, task = sid.partition("_")
        if sep and task.isdigit():
            out.setdefault(base, {})[int(task)] = sid
    return out


def _task_owners(array_id: str, task: str, packed: Mapping[str, Mapping[int, str]]) -> list[str]:
    """The packed jobs a record of array ``array_id`` is about: its task (``4``), or every
    wanted task of a collapsed record (``[0-7%2]``, ``0-1,3``: pending tasks, or ones
    cancelled before they started)."""
    tasks = packed.get(array_id.strip())
    text = task.strip().strip("[]")
    if not tasks or not text or text == "N/A":
        return []
    if text.isdigit():
        sid = tasks.get(int(text))
        return [sid] if sid else []
    try:
        indices, _throttle = array_indices(text)
    except ConfigError:
        return []  # not a task list molq can read: no evidence
    return [tasks[i] for i in indices if i in tasks]


def _base_id(job_id: str) -> str:
    return re.split(r"[_+.]", job_id, maxsplit=1)[0]


def _id_key(sid: str) -> tuple[int, str]:
    head = re.match(r"\d+", sid)
    return (int(head.group()) if head else 1 << 62, sid)


def _maybe_memory_kill(status: SchedulerStatus) -> bool:
    """A final FAILED status with SIGKILL and no cause of its own: how an OverMemoryKill looks
    from squeue (the job's own record; the step that says more is in accounting only)."""
    return (status.state == JobState.FAILED and status.exit_signal == 9 and status.end_cause is None
            and normalize_state(status.raw_state) == "FAILED")


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
        user_umask: Callable[[], int | None] | None = None,
    ) -> None:
        self.default_partition = default_partition
        self.default_account = default_account
        self.use_accounting = use_accounting
        # squeue shows no usage; sacct (steps included) does, unless the profile turned it off.
        self.accounting_reports_usage = use_accounting is not False
        self.mail_type = mail_type
        # Set: output files are private (sbatch runs with SLURM_UMASK=0077) and the wrapper
        # gives the user's command this umask back (see molq_slurm.privacy).
        self.user_umask = user_umask
        self._expected: Mapping[str, _Expected] = {}

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
        if sch.rerunnable is not None:
            lines.append(d("--requeue" if sch.rerunnable else "--no-requeue"))
        extra = check_extra_directives(sch.extra_directives, _RESERVED_OPTIONS, "SLURM")
        # Already checked to be one line starting with '-': a comment line to bash.
        lines += [f"#SBATCH {text}" for text in extra]
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
        line = (
            f'printf "%s\\n" "${{{PACKED_ID_ENV}:-${{SLURM_ARRAY_JOB_ID:-${{SLURM_JOB_ID:-}}}}}}" '
            f'> "$molq_dir/{SLURM_JOB_ID_FILE}" 2>/dev/null || true; unset {PACKED_ID_ENV}'
        )
        mask = self.user_umask() if self.user_umask is not None else None
        return line if mask is None else line + "\n" + restore_umask_line(mask)

    def command_env(self) -> dict[str, str]:
        return {"SLURM_UMASK": PRIVATE_UMASK} if self.user_umask is not None else {}

    # -- packing a bulk submission into one array (molq.batch.packing) -----------------------
    can_pack = True

    def pack_key(self, spec: JobSpec, job_dir: str) -> Hashable | None:
        """The job's directives without the per-job ones, or None when it does not pack: an
        output file using SLURM's patterns (``%j``: only sbatch expands them, the dispatcher
        opens the files itself) or mail (SLURM would mail once for the whole array)."""
        exe = spec.execution
        if "%" in (exe.output_file or "") or "%" in (exe.error_file or "") or spec.scheduling.email:
            return None
        return tuple(self._shared_directives(spec, job_dir))

    def _shared_directives(self, spec: JobSpec, job_dir: str) -> list[str]:
        return [line for line in self.render_directives(spec, job_dir)
                if not line.startswith(tuple(f"#SBATCH {o}" for o in _PER_JOB_DIRECTIVES))]

    def render_pack(self, tag: str, members: Sequence[tuple[JobSpec, str]]) -> str:
        """The dispatcher: one array, task ``k`` runs member ``k``'s job.sh with that job's
        output files, working directory and name, and without SLURM's array variables (the
        job was not submitted as an array task). The array's own output goes to /dev/null:
        every job writes its own files. Every path and name is quoted."""
        d, q = self.directive, shlex.quote
        first, first_dir = members[0]
        lines = [
            self.shebang,
            d("--job-name", first.name), d("--comment", tag),
            d("--output", "/dev/null"), d("--error", "/dev/null"),
            d("--array", f"0-{len(members) - 1}"),
            *self._shared_directives(first, first_dir),
            'molq_k="${SLURM_ARRAY_TASK_ID:-}"',
            f'export {PACKED_ID_ENV}="${{SLURM_ARRAY_JOB_ID:-}}_$molq_k"',
            "unset " + " ".join(_ARRAY_ENV),
            'case "$molq_k" in',
        ]
        for k, (spec, job_dir) in enumerate(members):
            out, err = wrapper.stdout_path(spec, job_dir), wrapper.stderr_path(spec, job_dir)
            cwd = spec.cwd or spec.execution.cwd
            enter = f"cd {q(cwd)} 2>/dev/null || cd /tmp; " if cwd else ""  # as slurmstepd does
            files = f"> {q(out)} 2>&1" if out == err else f"> {q(out)} 2> {q(err)}"
            script = q(wrapper.join_path(job_dir, wrapper.SCRIPT_FILE))
            lines.append(f"{k}) export SLURM_JOB_NAME={q(spec.name or '')}; {enter}exec /bin/bash {script} {files} ;;")
        lines += ['*) echo "molq: no job for array task $molq_k" >&2; exit 1 ;;', "esac"]
        return "\n".join(lines) + "\n"

    def pack_member_id(self, array_id: str, index: int) -> str:
        return f"{array_id}_{int(index)}"

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

    # -- arrays beyond MaxArraySize (molq.array_runner) --------------------------------------
    def limits_argv(self) -> list[str]:
        return ["scontrol", "show", "config"]

    def parse_max_array_size(self, result: CommandResult) -> int | None:
        """``MaxArraySize = 1001`` from ``scontrol show config`` (the largest index + 1)."""
        if result.returncode != 0:
            self._raise(result, "scontrol")
        match = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)\s*$", result.stdout, re.MULTILINE)
        if match is None:
            raise SchedulerError("scontrol show config printed no MaxArraySize",
                                 stderr=result.stderr, command=list(result.argv))
        return int(match.group(1))

    # -- partition limits (a grown retry stops at MaxTime) -----------------------------------
    # -- submit-count limits (molq.engine.room) -----------------------------------------------

    def submit_limits_argvs(self) -> list[list[str]]:
        # One command (one round trip over SSH): the login user's associations (-n: no header,
        # -P: '|'-separated), a marker line, then every QOS. A failed step fails it all.
        assoc = f"format={','.join(ASSOC_LIMIT_FIELDS)}"
        qos = f"format={','.join(QOS_LIMIT_FIELDS)}"
        script = (f'u=$(id -un) || exit 1; sacctmgr -nP show assoc where user="$u" {assoc} || exit 1; '
                  f"echo {LIMITS_MARKER}; exec sacctmgr -nP show qos {qos}")
        return [["sh", "-c", script]]

    def parse_submit_limits(self, results: Sequence[CommandResult]) -> SubmitLimits | None:
        """The association's MaxSubmitJobs/GrpSubmitJobs per account and each QOS's
        MaxSubmitJobsPerUser/PerAccount/GrpSubmitJobs (blank: no limit). A job naming no QOS
        gets its association's default QOS, else the association's only QOS, else ``normal``
        (as slurmctld picks it). No accounting storage: no limits (None)."""
        (result,) = results
        if result.returncode != 0:
            if _NO_ACCOUNTING_STORAGE.search(_error_text(result)):
                return None
            self._raise(result, "sacctmgr")
        assoc_text, marker, qos_text = result.stdout.partition(f"{LIMITS_MARKER}\n")
        if not marker:
            raise SchedulerError("the submit limits' reading printed no QOS part", stderr=result.stderr)
        by_account: dict[str, SubmitLimit] = {}
        defaults: set[str] = set()
        for line in _lines(assoc_text):
            if not line.strip():
                continue
            fields = line.split("|")
            if len(fields) != len(ASSOC_LIMIT_FIELDS):
                raise SchedulerError(f"sacctmgr show assoc printed an unexpected line: {line!r}")
            account, qos_list, default_qos = fields[0], fields[1], fields[2]
            names = [n for n in qos_list.split(",") if n]
            defaults.add(default_qos or (names[0] if len(names) == 1 else "normal"))
            limit = _tightest(fields[3:], f"association in account {account}")
            if limit is not None:
                previous = by_account.get(account)
                by_account[account] = limit if previous is None or limit.jobs < previous.jobs else previous
        by_qos: dict[str, SubmitLimit] = {}
        for line in _lines(qos_text):
            if not line.strip():
                continue
            fields = line.split("|")
            if len(fields) != len(QOS_LIMIT_FIELDS):
                raise SchedulerError(f"sacctmgr show qos printed an unexpected line: {line!r}")
            limit = _tightest(fields[1:], f"QOS {fields[0]}")
            if limit is not None:
                by_qos[fields[0]] = limit
        return SubmitLimits(by_account, by_qos, frozenset(defaults))

    def is_submit_limit(self, result: CommandResult) -> bool:
        return result.returncode != 0 and _SUBMIT_LIMIT.search(result.stderr + "\n" + result.stdout) is not None

    def partition_limits_argv(self) -> list[str]:
        # --all: hidden partitions too (a job may name one it is allowed to use).
        return ["scontrol", "--all", "--oneliner", "show", "partition"]

    def parse_partition_limits(self, result: CommandResult) -> PartitionLimits:
        """Each partition's ``MaxTime`` (``UNLIMITED``/``INFINITE``: none) and which one is
        ``Default=YES``, from one ``key=value`` line per partition. A name may hold spaces
        (``PartitionName=CPU nodes (amd)``): a value runs up to the next `` Key=``."""
        if result.returncode != 0:
            self._raise(result, "scontrol")
        limits: dict[str, int | None] = {}
        default = None
        for line in _lines(result.stdout):
            fields = _key_values(line)
            name = fields.get("PartitionName")
            if not name:
                continue
            limits[name] = _max_time(fields.get("MaxTime"))
            if fields.get("Default", "").upper() == "YES" and default is None:
                default = name
        return PartitionLimits(limits, default)

    def job_partition(self, partition: str | None) -> str | None:
        return partition or self.default_partition

    def array_offset_line(self, offset: int) -> str:
        # Before the wrapper reads the index: the job and molq's per-task files see the index
        # the user asked for, not the part's shifted one.
        return (f'[ -z "${{SLURM_ARRAY_TASK_ID:-}}" ] || '
                f'export SLURM_ARRAY_TASK_ID=$((SLURM_ARRAY_TASK_ID + {int(offset)}))')

    # -- identity ----------------------------------------------------------------------------
    def for_jobs(self, jobs: Sequence[TrackedJob]) -> SlurmDialect:
        """A copy whose parsers drop records of other jobs under the same ids: a record whose
        comment is another molq tag, or that was submitted well before molq submitted the job."""
        bound = copy.copy(self)
        bound._expected = {
            j.scheduler_job_id: _Expected(f"molq-{owner_of(j.job_id)}", j.submitted_at,
                                          packed=bool(_packed_ids({j.scheduler_job_id})))
            for j in jobs if j.scheduler_job_id
        }
        return bound

    def _foreign(self, sid: str, submit: str, comment: str) -> bool:
        """Whether a record under ``sid`` belongs to another job than the one molq tracks."""
        expected = self._expected.get(sid)
        if expected is None:
            return False
        text = comment.strip()
        if expected.packed and text.startswith(PACK_TAG_PREFIX):
            pass  # a pack's tag names its first job only: the submit time below decides
        elif text.startswith("molq-"):
            return text != expected.tag
        submitted = parse_time(submit)
        return (
            expected.submitted_at is not None
            and submitted is not None
            and submitted < expected.submitted_at - ID_REUSE_SLACK
        )

    # -- status ------------------------------------------------------------------------------
    def status_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        # A packed job is one task of an array: --array lists pending tasks one per row
        # instead of the array's collapsed record (the parser reads that one too).
        packed = ["--array"] if _packed_ids(set(scheduler_ids)) else []
        return [
            "squeue",
            "--noheader",
            *packed,
            "--states=all",
            "--jobs=" + ",".join(scheduler_ids),
            "--Format=" + _format(STATUS_FIELDS),
        ]

    def parse_status(self, result: CommandResult, scheduler_ids: Sequence[str]) -> SourceAnswer:
        """What squeue says about ``scheduler_ids``: array tasks and heterogeneous-job
        components are combined into their job with core's policy."""
        if result.returncode != 0:
            text = _error_text(result)
            if len(scheduler_ids) == 1 and _INVALID_JOB_ID.search(text):
                # squeue looks a single id up directly and fails when the controller no longer
                # knows it: a successful answer meaning "not in the queue". (With several ids
                # it filters and simply omits unknown ones.)
                return SourceAnswer()
            self._raise(result, "squeue")
        wanted = set(scheduler_ids)
        packed = _packed_ids(wanted)
        read = _read_rows(result, len(STATUS_FIELDS), "squeue")
        parts: dict[str, dict[str, list[SchedulerStatus]]] = {}
        kinds: dict[str, str] = {}
        for cols in read.rows:
            job_id, array_id, task_id, het_id, het_offset, state, reason, code, start, end, submit = map(
                str.strip, cols[:-1]
            )
            for sid, part, kind in self._owners(job_id, array_id, task_id, het_id, het_offset, wanted, packed):
                if self._foreign(sid, submit, cols[-1]):
                    continue
                status = squeue_status(state, reason, code, start, end)
                parts.setdefault(sid, {}).setdefault(part, []).append(status)
                kinds[sid] = kind
        # squeue prints one row per job, task and component: two rows for one of them mean
        # the output cannot be trusted for that job (a free-text field mimicking a record).
        doubtful = {sid for sid, by_part in parts.items() if any(len(recs) > 1 for recs in by_part.values())}
        statuses = {
            sid: aggregate_parts([(p, recs[0]) for p, recs in by_part.items()], kind=kinds[sid])
            for sid, by_part in parts.items()
            if sid not in doubtful
        }
        # A job squeue shows FAILED by SIGKILL may have been killed over its memory by
        # OverMemoryKill (no cgroup): only accounting's steps (state, MaxRSS) tell, so such a job
        # is "ended" here and accounting says how -- the one case where this refresh asks sacct
        # for a job squeue still lists. Without accounting squeue's word stands.
        killed = {sid for sid, st in statuses.items() if self.use_accounting is not False and _maybe_memory_kill(st)}
        statuses = {sid: st for sid, st in statuses.items() if sid not in killed}
        answer = self._answer(statuses, read, wanted)
        if killed:
            answer = attrs.evolve(answer, ended=answer.ended | frozenset(killed))
        return attrs.evolve(answer, unreadable=answer.unreadable | doubtful) if doubtful else answer

    @classmethod
    def _owners(cls, job_id: str, array_id: str, task_id: str, het_id: str, het_offset: str, wanted: set[str],
                packed: Mapping[str, Mapping[int, str]]) -> list[tuple[str, str, str]]:
        """Which requested ids a row is about: the packed jobs it covers (a task, or several in
        a collapsed record), else :meth:`_owner`'s one."""
        tasks = _task_owners(array_id, task_id, packed) if packed else []
        if tasks:
            return [(sid, sid, "array task") for sid in tasks]
        owner = cls._owner(job_id, array_id, task_id, het_id, het_offset, wanted)
        return [] if owner is None else [owner]

    @staticmethod
    def _answer(statuses: dict[str, SchedulerStatus], read: _Rows, wanted: set[str]) -> SourceAnswer:
        unreadable = ({_base_id(sid) for sid in read.short} | set(read.short)) & wanted
        return SourceAnswer(statuses, frozenset(unreadable - set(statuses)), complete=read.stray == 0)

    @staticmethod
    def _owner(
        job_id: str, array_id: str, task_id: str, het_id: str, het_offset: str, wanted: set[str]
    ) -> tuple[str, str, str] | None:
        """Which requested id a row belongs to, as (id, part, kind of part): the job itself,
        the array it is a task of, or the heterogeneous job it is a component of."""
        # "N/A" first: what a plain job's row holds, without blank()'s normalising.
        if het_id != "N/A" and not blank(het_id) and het_id in wanted:
            return het_id, het_offset if not blank(het_offset) else job_id, "het job component"
        if task_id != "N/A" and not blank(task_id) and array_id in wanted:
            return array_id, task_id, "array task"
        if job_id in wanted:
            return job_id, job_id, "array task"
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
            # Steps too (no --allocations): only they carry MaxRSS and, on older SLURM, the
            # OUT_OF_MEMORY of a job whose allocation says FAILED or COMPLETED.
            # Every record of each id: a requeued job's attempts, and jobs that had the id
            # before a state reset. The parser keeps the one that is molq's job's latest.
            "--duplicates",
            "--jobs=" + ",".join(scheduler_ids),
            "--starttime=" + self._starttime(since),
            "--format=" + ",".join(SACCT_FIELDS),
        ]

    def parse_terminal(self, result: CommandResult, scheduler_ids: Sequence[str]) -> SourceAnswer:
        if self.use_accounting is False:
            return self.parse_fallback_terminal(result, scheduler_ids)
        return self.parse_sacct(result, scheduler_ids)

    def parse_sacct(self, result: CommandResult, scheduler_ids: Sequence[str]) -> SourceAnswer:
        """Statuses from ``sacct --parsable2``. A job accounting still shows active is kept
        as such: it is alive, not unknown.

        Several records under one job or task id are attempts of it (a requeued job): the
        latest counts. Records under ``123_4`` or ``123+1`` are parts of job 123.
        """
        text = _error_text(result)
        if _ACCOUNTING_DISABLED.search(text) and result.returncode != 0:
            raise AccountingUnavailable(
                "slurm: accounting storage is disabled on this cluster", stderr=result.stderr,
                command=list(result.argv),
            )
        if result.returncode != 0:
            self._raise(result, "sacct")
        if _DATABASE_ERROR.search(result.stderr):
            # Some versions print the database error and still exit 0: not an answer.
            raise TransientSchedulerError(f"sacct: the accounting database did not answer: {result.stderr.strip()}",
                                          stderr=result.stderr, command=list(result.argv))
        wanted = set(scheduler_ids)
        read = _read_rows(result, len(SACCT_FIELDS), "sacct")
        attempts: dict[str, dict[str, list[tuple[float | None, int, SchedulerStatus]]]] = {}
        kinds: dict[str, str] = {}
        # Each allocation record with the steps printed after it (sacct lists a job's steps
        # right below it; a reused id's older job comes with its own steps).
        records: list[tuple[list[str], list[list[str]]]] = []
        for cols in read.rows:
            job_id = cols[0].strip()
            if "." in job_id:
                head = job_id.split(".", 1)[0]
                if records and records[-1][0][0].strip() == head:
                    records[-1][1].append(cols)
                continue
            records.append((cols, []))
        packed = _packed_ids(wanted)
        for order, (cols, steps) in enumerate(records):
            (job_id, raw_id, state, exit_pair, start, end, reason, submit, derived, uid, req_mem, _rss,
             elapsed, total_cpu, cpus, tres, nodes) = (c.strip() for c in cols[:-1])
            base, kind, part = _split_job_id(job_id)
            # A packed job is one task (123_4), or one of a collapsed record's (123_[0-7]).
            targets = [(sid, "array task", sid) for sid in
                       (_task_owners(base, job_id.partition("_")[2], packed) if packed else [])]
            if targets:
                pass
            elif base in wanted:
                targets = [(base, kind, part)]
            elif raw_id in wanted:
                targets = [(raw_id, "array task", raw_id)]
            else:
                continue
            targets = [t for t in targets if not self._foreign(t[0], submit, cols[-1])]
            if not targets:
                continue
            exit_code, exit_signal = exit_from_pair(exit_pair)
            if exit_signal is None:
                # The highest exit of the job's steps: a step killed by SIGKILL while the
                # batch script carried on shows here only.
                exit_signal_of_steps = exit_from_pair(derived)[1]
            else:
                exit_signal_of_steps = exit_signal
            evidence = [StepEvidence(s[2].strip(), parse_rss(s[11].strip())) for s in steps]
            rss = [e.max_rss_bytes for e in evidence if e.max_rss_bytes is not None]
            ncpus = int(cpus) if cpus.isdigit() else None
            cause = end_cause(
                state, reason=reason, exit_signal=exit_signal_of_steps, owner_uid=uid, steps=evidence,
                requested_memory_bytes=requested_memory(req_mem, ncpus, tres),
            )
            usage = make_usage(elapsed=elapsed, total_cpu=total_cpu, cpus=cpus, req_mem=req_mem,
                               max_rss=max(rss) if rss else None, tres=tres, nodes=nodes)
            status = make_status(state, reason=reason, exit_code=exit_code, exit_signal=exit_signal, start=start,
                                 end=end, end_cause=cause, usage=usage)
            for sid, kind, part in targets:
                attempts.setdefault(sid, {}).setdefault(part, []).append((parse_time(submit), order, status))
                kinds[sid] = kind
        statuses = {
            sid: aggregate_parts([(p, _latest(recs)) for p, recs in by_part.items()], kind=kinds[sid])
            for sid, by_part in attempts.items()
        }
        return self._answer(statuses, read, wanted)

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

    def parse_fallback_terminal(self, result: CommandResult, scheduler_ids: Sequence[str]) -> SourceAnswer:
        """Statuses from ``scontrol show job -o`` (one line per job, array task or
        heterogeneous-job component); an active job is kept as such, like in sacct."""
        if result.returncode != 0:
            if _INVALID_JOB_ID.search(_error_text(result)):
                return SourceAnswer()  # the controller has forgotten the job(s)
            self._raise(result, "scontrol")
        wanted = set(scheduler_ids)
        packed = _packed_ids(wanted)
        parts: dict[str, dict[str, SchedulerStatus]] = {}
        kinds: dict[str, str] = {}
        unreadable: set[str] = set()
        for line in _lines(result.stdout):
            if not line.startswith("JobId="):
                continue  # "No jobs in the system", blank lines, a name's continuation
            rec = parse_scontrol_record(line)
            owners = self._owners(rec.get("JobId", ""), rec.get("ArrayJobId", ""), rec.get("ArrayTaskId", ""),
                                  rec.get("HetJobId", ""), rec.get("HetJobOffset", ""), wanted, packed)
            for sid, part, kind in owners:
                if "JobState" not in rec:
                    unreadable.add(sid)
                    continue
                if self._foreign(sid, rec.get("SubmitTime", ""), rec.get("Comment", "")):
                    continue
                exit_code, exit_signal = exit_from_pair(rec.get("ExitCode"))
                parts.setdefault(sid, {})[part] = make_status(
                    rec.get("JobState", ""),
                    reason=rec.get("Reason"),
                    exit_code=exit_code,
                    exit_signal=exit_signal,
                    start=rec.get("StartTime"),
                    end=rec.get("EndTime"),
                )
                kinds[sid] = kind
        statuses = {sid: aggregate_parts(list(by_part.items()), kind=kinds[sid]) for sid, by_part in parts.items()}
        return SourceAnswer(statuses, frozenset(unreadable - set(statuses)))

    # -- exit codes ----------------------------------------------------------------------------
    def exit_code_ambiguous(self, status: SchedulerStatus) -> bool:
        """sacct prints ``ExitCode`` minus 128 for codes of 128 and above (exit 137 shows as
        ``9:0``), so a FAILED job with a code below 128 may really have ended with that code
        + 128 -- what the wrapper reports when the user's command died of a signal."""
        return (
            status.state == JobState.FAILED
            and status.raw_state != "exit_code_file"
            and status.exit_signal is None
            and status.exit_code is not None
            and 0 < status.exit_code < 128
        )

    def refine_exit(self, status: SchedulerStatus, from_file: SchedulerStatus) -> SchedulerStatus:
        if from_file.exit_code is None or status.exit_code is None or from_file.exit_code != status.exit_code + 128:
            return status
        signal, text = wrapper.describe_exit(from_file.exit_code)
        cause = status.end_cause
        if signal is not None and cause in (None, EndCause.EXIT_CODE):
            cause = EndCause.SIGNAL  # the command died of a signal, it did not exit with a code
        return attrs.evolve(status, exit_code=from_file.exit_code, exit_signal=signal, reason=text or status.reason,
                            end_cause=cause)

    # -- cancel ------------------------------------------------------------------------------
    def cancel_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        return ["scancel", *scheduler_ids]

    def cancel_line_is_benign(self, line: str) -> bool:
        """scancel's word for a job that already ended is not a failed cancel."""
        return bool(_CANCEL_FINISHED.search(line))

    def cancel_line_is_refusal(self, line: str) -> bool:
        """Older scancel prints "Access/permission denied" and still exits 0."""
        return bool(_CANCEL_REFUSED.search(line))

    def parse_cancel(self, result: CommandResult, scheduler_ids: Sequence[str]) -> dict[str, CancelOutcome]:
        """scancel's answer per id. It names the id in each error ("Kill job error on job id
        8: Job/step already completing or completed"); progress lines ("Terminating job 8")
        say nothing about the outcome. A refusal, even with exit status 0, raises; so does a
        failure with any other error line, or a silent one."""
        lines = [ln.strip() for ln in (result.stderr + "\n" + result.stdout).split("\n") if ln.strip()]
        refusals = [ln for ln in lines if self.cancel_line_is_refusal(ln)]
        if refusals:
            raise SchedulerError(f"scancel refused: {'; '.join(refusals)}", stderr=result.stderr,
                                 command=list(result.argv))
        out = {sid: CancelOutcome.REQUESTED for sid in scheduler_ids}
        problems = []
        for line in lines:
            if _CANCEL_PROGRESS.search(line):
                continue
            if not self.cancel_line_is_benign(line):
                problems.append(line)
                continue
            match = _CANCEL_JOB_ID.search(line)
            named = [match.group(1)] if match else (list(scheduler_ids) if len(scheduler_ids) == 1 else [])
            for sid in named:
                if sid in out:
                    out[sid] = CancelOutcome.ALREADY_ENDED
        if result.returncode != 0 and (problems or not lines):
            raise SchedulerError(
                f"scancel failed (exit {result.returncode}): {'; '.join(problems) or '(no output)'}",
                stderr=result.stderr, command=list(result.argv),
            )
        return out

    # -- queue -------------------------------------------------------------------------------
    def queue_argv(self, user: str | None) -> list[str]:
        who = f"--user={user}" if user else "--me"
        return ["squeue", "--noheader", who, "--Format=" + _format(QUEUE_FIELDS)]

    def parse_queue(self, result: CommandResult) -> list[QueueEntry]:
        if result.returncode != 0:
            self._raise(result, "squeue")
        entries = []
        for cols in _read_rows(result, len(QUEUE_FIELDS), "squeue").rows:
            job_id, array_id, task_id, user, partition, state, reason, submit, start, name = cols
            job_id, array_id, task_id = job_id.strip(), array_id.strip(), task_id.strip()
            display_id = f"{array_id}_{task_id if task_id.isdigit() else '[' + task_id + ']'}" if not blank(task_id) else job_id
            started = parse_time(start)
            molq_state = map_state(state, started=started is not None)
            sub = None if molq_state.is_terminal else sub_state_of(state, reason)
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
                    sub_state=sub,
                    sub_state_reason=None if sub is None or blank(reason) else reason.strip(),
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
        jobs: dict[str, set[str]] = {}
        arrays: dict[str, set[str]] = {}
        for cols in _read_rows(result, len(ADOPT_FIELDS), "squeue").rows:
            job_id, array_id, task_id, _state, comment = (c.strip() for c in cols)
            if comment not in wanted:
                continue
            if not blank(task_id) and array_id:
                arrays.setdefault(comment, set()).add(array_id)
            else:
                jobs.setdefault(comment, set()).add(job_id)
        found: dict[str, str] = {}
        for tag in jobs.keys() | arrays.keys():
            if tag in arrays and tag not in jobs:
                # Several arrays under one tag are the parts of a split array (the runner
                # checks them against the plan in the job directory), in submission order.
                found[tag] = PART_SEPARATOR.join(sorted(arrays[tag], key=_id_key))
            else:
                # Two jobs with one tag means a duplicated submission; the first one is molq's.
                found[tag] = min(jobs[tag] | arrays.get(tag, set()), key=_id_key)
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


"""The dialect protocol: what a batch scheduler backend provides, as pure functions.

A backend (SLURM, PBS, LSF...) subclasses :class:`BatchDialect`: render the job script, build
command lines, parse ``(returncode, stdout, stderr)``. No I/O here; :mod:`molq.batch.runner`
executes what a dialect builds.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence

from molq import wrapper
from molq.batch.site_limits import PartitionLimits, SubmitLimits
from molq.errors import SchedulerError
from molq.evidence import CancelOutcome, SourceAnswer
from molq.model import (
    CompiledDependency,
    DependencyCondition,
    JobSpec,
    QueueEntry,
    SchedulerCapabilities,
    SchedulerStatus,
)
from molq.scheduler import TrackedJob
from molq.transport import CommandResult


class AccountingUnavailable(SchedulerError):
    """The scheduler says it keeps no accounting at all (e.g. SLURM's "accounting storage is
    disabled"); the runner uses the fallback source instead.

    Raise this only for that explicit answer. A failed accounting query (database down,
    connection refused, timeout) is a plain :class:`SchedulerError`: no evidence, never "this
    cluster has no accounting" -- the jobs it was asked about stay as they are until it answers.
    """


def _mentions(line: str, sid: str) -> bool:
    """Whether ``line`` names scheduler id ``sid`` as a whole token."""
    return re.search(rf"(?<![\w.]){re.escape(sid)}(?![\w])", line) is not None


class BatchDialect:
    """What a batch scheduler backend provides. Pure functions only: no I/O here.

    Subclasses set :attr:`name` and :attr:`capabilities` and implement the ``*_argv`` builders
    and ``parse_*`` parsers. Parsers raise :class:`TransientSchedulerError` for failures worth a
    retry, :class:`SubmitError` for refused submissions and :class:`SchedulerError` otherwise.
    """

    name: str = "batch"
    capabilities: SchedulerCapabilities = SchedulerCapabilities()
    shebang: str = "#!/bin/bash"
    #: Command-line budget for one status/accounting/cancel command.
    max_command_chars: int = 60_000
    #: Whether a cancel command that fails without printing anything counts as failed.
    silent_cancel_failure_is_error: bool = True

    # -- script ------------------------------------------------------------------------------
    def render_directives(self, spec: JobSpec, job_dir: str) -> list[str]:
        """Directive lines (``#SBATCH ...``) for ``spec``."""
        raise NotImplementedError

    def wrapper_pre_run(self, spec: JobSpec) -> str:
        """Extra shell placed before the user's command (e.g. record the scheduler job id)."""
        return ""

    def render_script(self, spec: JobSpec, job_dir: str) -> str:
        lines = [self.shebang, *self.render_directives(spec, job_dir)]
        return "\n".join(lines) + "\n" + wrapper.read_whole(wrapper.render_wrapper_body(
            spec, job_dir, pre_run=self.wrapper_pre_run(spec)
        ))

    # -- submission --------------------------------------------------------------------------
    def submit_argv(self, script_path: str, spec: JobSpec) -> list[str]:
        raise NotImplementedError

    def submit_stdin_argv(self, spec: JobSpec) -> list[str] | None:
        """The submit command when the job script is given on standard input, or None when the
        scheduler must read it from ``job.sh`` (the default). With a command line here, the
        runner starts the submission first and writes its own copy of ``job.sh`` while the
        scheduler answers, which takes the file write off every submission's critical path."""
        return None

    def parse_submit(self, result: CommandResult) -> str:
        raise NotImplementedError

    # -- submit-count limits (molq.engine.room) -----------------------------------------------
    def submit_limits_argvs(self) -> list[list[str]] | None:
        """The commands that show the login user's submit-count limits, or None (none known).
        Read once per scheduler object, before the first submission: keep it to one command
        (one round trip on a remote cluster)."""
        return None

    def parse_submit_limits(self, results: Sequence[CommandResult]) -> SubmitLimits | None:
        """The limits from :meth:`submit_limits_argvs`' answers (None: the site has none to
        tell); raise :class:`SchedulerError` when the read failed (asked again later)."""
        return None

    def is_submit_limit(self, result: CommandResult) -> bool:
        """Whether a refused submission was refused for a submit-count limit (the job then
        waits in molq for room instead of failing)."""
        return False

    # -- arrays beyond the site's limit (molq.array_runner) ----------------------------------
    def limits_argv(self) -> list[str] | None:
        """The command that shows the site's array limit, or None (never split)."""
        return None

    def parse_max_array_size(self, result: CommandResult) -> int | None:
        """The largest array index + 1 the site accepts, from :meth:`limits_argv`'s answer."""
        return None

    # -- packing a bulk submission into one array (molq.batch.packing) -----------------------
    #: Whether this scheduler can run several jobs as the tasks of one array (``pack_bulk``).
    can_pack: bool = False

    def pack_key(self, spec: JobSpec, job_dir: str) -> Hashable | None:
        """What must be equal for jobs to share one array: their directives without the per-job
        ones (name, output files, working directory, tag); None when ``spec`` does not pack."""
        return None

    def render_pack(self, tag: str, members: Sequence[tuple[JobSpec, str]]) -> str:
        """The dispatcher script of one pack: an array of ``len(members)`` tasks carrying
        ``tag``, task ``k`` running member ``k``'s ``job.sh`` as if it had been submitted alone."""
        raise NotImplementedError

    def pack_member_id(self, array_id: str, index: int) -> str:
        """The scheduler id of the pack member that is task ``index`` of array ``array_id``."""
        raise NotImplementedError

    # -- partition limits (a grown retry stops at them) -------------------------------------
    def partition_limits_argv(self) -> list[str] | None:
        """The command that shows the partitions' (queues') time limits, or None (no cap)."""
        return None

    def parse_partition_limits(self, result: CommandResult) -> PartitionLimits | None:
        """The partitions' limits from :meth:`partition_limits_argv`'s answer."""
        return None

    def job_partition(self, partition: str | None) -> str | None:
        """The partition a job that names ``partition`` (None: none) is submitted to, as far
        as the dialect itself decides it (a profile's default partition); None: the site's
        default."""
        return partition

    #: The smallest array index the scheduler accepts; a split part's indices start here.
    lowest_array_index = 0

    def array_offset_line(self, offset: int) -> str | None:
        """Shell that adds ``offset`` to the scheduler's task index of a split array's part,
        or None when this scheduler's arrays are never split."""
        return None

    def split_part(self, spec: JobSpec, job_dir: str, k: int, offset: int) -> tuple[JobSpec, list[str]]:
        """What part ``k`` of a split array is submitted as: ``spec`` (its array already the
        part's shifted one) and the shell lines placed before the wrapper reads the task index.
        Default: the spec as it is, and :meth:`array_offset_line`. A scheduler that names each
        task's files by its own index overrides it, or the parts' tasks would share files."""
        line = self.array_offset_line(offset)
        return spec, ([] if line is None else [line])

    # -- identity ----------------------------------------------------------------------------
    def for_jobs(self, jobs: Sequence[TrackedJob]) -> BatchDialect:
        """This dialect, told which jobs the next status/accounting/fallback answers are about
        (their molq tag ``molq-<job id>`` and submit time), so that its parsers can drop records
        of another job that reuses a scheduler id (e.g. after a scheduler state reset). The
        runner calls it once per observation and parses with the result. Pure: return a new
        object, never change ``self``. Default: ``self`` (ids alone identify jobs)."""
        return self

    # -- status ------------------------------------------------------------------------------
    def status_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def parse_status(
        self, result: CommandResult, scheduler_ids: Sequence[str]
    ) -> Mapping[str, SchedulerStatus] | SourceAnswer:
        """Statuses of jobs still known to the queue, keyed by scheduler id."""
        raise NotImplementedError

    def terminal_argv(self, scheduler_ids: Sequence[str], since: float | None) -> list[str] | None:
        """Accounting query for jobs that left the queue (None if the scheduler has none)."""
        return None

    def parse_terminal(
        self, result: CommandResult, scheduler_ids: Sequence[str]
    ) -> Mapping[str, SchedulerStatus] | SourceAnswer:
        raise NotImplementedError

    #: Whether :meth:`parse_terminal`'s statuses carry usage while the queue's do not: a job
    #: the queue reports final then gets its usage from the refresh's one accounting call
    #: (and from later refreshes' while accounting lags). False: the queue's word is all there is.
    accounting_reports_usage: bool = False

    def fallback_terminal_argv(self, scheduler_ids: Sequence[str]) -> list[str] | None:
        """A second source of final states when accounting is unavailable
        (e.g. ``scontrol show job``). None if there is none."""
        return None

    def parse_fallback_terminal(
        self, result: CommandResult, scheduler_ids: Sequence[str]
    ) -> Mapping[str, SchedulerStatus] | SourceAnswer:
        raise NotImplementedError

    # -- cancel, queue, adoption -------------------------------------------------------------
    def cancel_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def cancel_argv_for(self, jobs: Sequence[TrackedJob]) -> list[str]:
        """The cancel command for ``jobs`` (all with a scheduler id). Override when the cancel
        needs more than the ids (e.g. the job directories); the default is :meth:`cancel_argv`."""
        return self.cancel_argv([j.scheduler_job_id for j in jobs if j.scheduler_job_id])

    def cancel_cost(self, job: TrackedJob) -> int:
        """Characters ``job`` adds to the cancel command line (to split big cancels); the
        default counts its id. Override when :meth:`cancel_argv_for` adds more per job."""
        return len(job.scheduler_job_id or "") + 1

    def cancel_line_is_refusal(self, line: str) -> bool:
        """Whether one output line of a cancel command that exited 0 says the cancel was refused
        (older scancel prints "Access/permission denied" with status 0)."""
        return False

    def parse_cancel(self, result: CommandResult, scheduler_ids: Sequence[str]) -> dict[str, CancelOutcome]:
        """What the cancel command's answer says about each id.

        The default: a refusal line (even with status 0) or a failure that is not only benign
        lines raises :class:`SchedulerError`; benign lines ("already completed", "unknown job")
        mark the ids they name ALREADY_ENDED (every id when they name none and only one was
        asked about); every other id is REQUESTED. Dialects override this when their output
        attributes outcomes to ids differently.
        """
        lines = [ln.strip() for ln in (result.stderr + "\n" + result.stdout).splitlines() if ln.strip()]
        refusals = [ln for ln in lines if self.cancel_line_is_refusal(ln)]
        if refusals:
            program = result.argv[0].rsplit("/", 1)[-1] if result.argv else "cancel"
            raise SchedulerError(f"{program} refused: {'; '.join(refusals)}", stderr=result.stderr,
                                 command=list(result.argv))
        self.check_cancel(result, scheduler_ids)
        out = {sid: CancelOutcome.REQUESTED for sid in scheduler_ids}
        benign = [ln for ln in lines if self.cancel_line_is_benign(ln)]
        for line in benign:
            named = [sid for sid in scheduler_ids if _mentions(line, sid)]
            if not named and len(scheduler_ids) == 1:
                named = list(scheduler_ids)
            for sid in named:
                out[sid] = CancelOutcome.ALREADY_ENDED
        return out

    def cancel_line_is_benign(self, line: str) -> bool:
        """Whether one output line of a failed cancel only says "that job already ended or is
        unknown" (cancelling a finished job is not an error)."""
        return False

    def check_cancel(self, result: CommandResult, scheduler_ids: Sequence[str]) -> None:
        """Raise unless the cancel command succeeded or every line it printed is benign."""
        if result.returncode == 0:
            return
        lines = [ln.strip() for ln in (result.stderr + "\n" + result.stdout).splitlines() if ln.strip()]
        problems = [ln for ln in lines if not self.cancel_line_is_benign(ln)]
        if problems or (not lines and self.silent_cancel_failure_is_error):
            program = result.argv[0].rsplit("/", 1)[-1] if result.argv else "cancel"
            raise SchedulerError(
                f"{program} failed (exit {result.returncode}): {'; '.join(problems) or '(no output)'}",
                stderr=result.stderr,
                command=list(result.argv),
            )

    #: Whether the queue command cannot filter by user itself: the runner then keeps only the
    #: entries of ``user`` (default: the user the transport logs in as).
    queue_filters_user_itself: bool = True

    def queue_argv(self, user: str | None) -> list[str]:
        raise NotImplementedError

    def parse_queue(self, result: CommandResult) -> list[QueueEntry]:
        raise NotImplementedError

    def adopt_argv(self, tags: Sequence[str]) -> list[str] | None:
        """A query listing scheduler jobs carrying molq tags (``molq-<job id>``)."""
        return None

    def parse_adopt(self, result: CommandResult, tags: Sequence[str]) -> dict[str, str]:
        """tag -> scheduler job id."""
        return {}

    #: A file the job writes into its job directory holding its scheduler job id (see
    #: :meth:`wrapper_pre_run`), read to recover a submission interrupted by a crash.
    job_id_file: str | None = None

    # -- dependencies ------------------------------------------------------------------------
    def native_condition(self, condition: DependencyCondition, scheduler_job_id: str) -> str:
        raise NotImplementedError

    def compile_dependencies(self, deps: Sequence[CompiledDependency]) -> str | None:
        raise NotImplementedError

    # -- environment -------------------------------------------------------------------------
    def command_env(self) -> dict[str, str]:
        """Environment variables every scheduler command runs with (e.g. a time format)."""
        return {}

    # -- errors ------------------------------------------------------------------------------
    def is_transient(self, result: CommandResult) -> bool:
        """Whether a failed command is worth retrying (timeouts, controller not answering)."""
        return False

    # -- exit codes ----------------------------------------------------------------------------
    #: After the accounting query raised :class:`AccountingUnavailable`, final states skip it
    #: for this long (the answer comes from the cluster's configuration; asking now and then
    #: lets a long-running daemon notice accounting switched on).
    accounting_recheck_seconds: float = 3600.0

    def exit_code_ambiguous(self, status: SchedulerStatus) -> bool:
        """Whether an accounting status's exit code may be inexact, so that the wrapper's
        exit-code file should be read to refine it (e.g. sacct prints codes of 128 and above
        minus 128)."""
        return False

    def refine_exit(self, status: SchedulerStatus, from_file: SchedulerStatus) -> SchedulerStatus:
        """``status`` from accounting, corrected with the wrapper's exit-code file."""
        return status

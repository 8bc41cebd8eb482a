"""The shared batch runner: one engine for every batch scheduler, driven by an I/O-free dialect.

A backend (SLURM, PBS, LSF...) subclasses :class:`BatchDialect` with pure functions: render the
job script, build command lines, parse ``(returncode, stdout, stderr)``. :class:`BatchScheduler`
executes those command lines through the cluster's transport, batching many jobs into one
command, retrying transient failures, and falling back to the wrapper's exit-code file when the
scheduler has no accounting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from molq import wrapper
from molq.errors import SchedulerError, SubmitError, TransientSchedulerError, TransportError
from molq.model import (
    CompiledDependency,
    DependencyCondition,
    JobSpec,
    JobState,
    QueueEntry,
    SchedulerCapabilities,
    SchedulerStatus,
)
from molq.scheduler import SchedulerBase, TrackedJob
from molq.transport import CommandResult, Transport

log = logging.getLogger("molq.batch")

__all__ = ["BatchDialect", "BatchScheduler", "RetrySettings", "chunk_ids", "AccountingUnavailable"]


class AccountingUnavailable(SchedulerError):
    """The scheduler keeps no accounting (e.g. SLURM without slurmdbd); fall back."""


@attrs.frozen
class RetrySettings:
    """How transient scheduler failures are retried inside one operation."""

    attempts: int = 3
    initial_delay: float = 0.5
    factor: float = 2.0
    command_timeout: float = 60.0


def chunk_ids(ids: Sequence[str], *, max_chars: int = 60_000, max_count: int = 5000) -> list[list[str]]:
    """Split ids so that no command line grows past ``max_chars`` (ARG_MAX is far larger, but
    remote shells and ``ssh`` add their own limits)."""
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for sid in ids:
        if current and (size + len(sid) + 1 > max_chars or len(current) >= max_count):
            chunks.append(current)
            current, size = [], 0
        current.append(sid)
        size += len(sid) + 1
    if current:
        chunks.append(current)
    return chunks


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
        return "\n".join(lines) + "\n" + wrapper.render_wrapper_body(
            spec, job_dir, pre_run=self.wrapper_pre_run(spec)
        )

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

    # -- status ------------------------------------------------------------------------------
    def status_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def parse_status(self, result: CommandResult, scheduler_ids: Sequence[str]) -> dict[str, SchedulerStatus]:
        """Statuses of jobs still known to the queue, keyed by scheduler id."""
        raise NotImplementedError

    def terminal_argv(self, scheduler_ids: Sequence[str], since: float | None) -> list[str] | None:
        """Accounting query for jobs that left the queue (None if the scheduler has none)."""
        return None

    def parse_terminal(self, result: CommandResult, scheduler_ids: Sequence[str]) -> dict[str, SchedulerStatus]:
        raise NotImplementedError

    def fallback_terminal_argv(self, scheduler_ids: Sequence[str]) -> list[str] | None:
        """A second source of final states when accounting is unavailable
        (e.g. ``scontrol show job``). None if there is none."""
        return None

    def parse_fallback_terminal(self, result: CommandResult, scheduler_ids: Sequence[str]) -> dict[str, SchedulerStatus]:
        raise NotImplementedError

    # -- cancel, queue, adoption -------------------------------------------------------------
    def cancel_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        raise NotImplementedError

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


def _status_from_exit_file(text: str | None) -> SchedulerStatus | None:
    code = wrapper.parse_exit_code(text)
    if code is None:
        return None
    sig, reason = wrapper.describe_exit(code)
    return SchedulerStatus(
        state=JobState.SUCCEEDED if code == 0 else JobState.FAILED,
        raw_state="exit_code_file",
        exit_code=code,
        exit_signal=sig,
        reason=reason,
    )


def read_exit_files(transport: Transport, jobs: Sequence[TrackedJob]) -> dict[str, SchedulerStatus]:
    """Final statuses from the wrapper's exit-code files, read with one transport call."""
    if not jobs:
        return {}
    paths = [wrapper.join_path(job.job_dir, wrapper.EXIT_CODE_FILE) for job in jobs]
    contents = transport.read_many(paths)
    out = {}
    for job, path in zip(jobs, paths):
        status = _status_from_exit_file(contents.get(path))
        if status is not None:
            out[job.job_id] = status
    return out


def _run_meanwhile(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception as exc:  # the command may already have done its work: never fail it
        log.warning("%s", exc)


class BatchScheduler(SchedulerBase):
    """Runs a :class:`BatchDialect` through a transport.

    ``binaries`` maps command names to paths on the cluster (``{"sbatch": "/opt/slurm/bin/sbatch"}``);
    ``extra_submit_args`` are placed before the script path of every submission.
    """

    def __init__(
        self,
        dialect: BatchDialect,
        transport: Transport,
        *,
        binaries: dict[str, str] | None = None,
        extra_submit_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        retry: RetrySettings = RetrySettings(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.dialect = dialect
        self.transport = transport
        self.name = dialect.name
        self.binaries = dict(binaries or {})
        self.extra_submit_args = tuple(extra_submit_args)
        self.env = {**dialect.command_env(), **dict(env or {})}
        self.retry = retry
        self._sleep = sleep
        #: Every command this scheduler ran, for benchmarks and tests: (argv[0], duration).
        self.command_log: list[tuple[str, float]] = []

    def __repr__(self) -> str:
        return f"BatchScheduler({self.dialect.name!r}, transport={self.transport!r})"

    # -- plumbing ----------------------------------------------------------------------------
    def _argv(self, argv: Sequence[str]) -> list[str]:
        argv = list(argv)
        if argv and argv[0] in self.binaries:
            argv[0] = self.binaries[argv[0]]
        return argv

    def run(
        self,
        argv: Sequence[str],
        *,
        retry_transient: bool = True,
        is_submission: bool = False,
        input: str | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> CommandResult:
        """Run one scheduler command, retrying transient failures with backoff.

        Returns the last result (successful or not); raises :class:`TransientSchedulerError`
        when the command kept failing transiently. A submission is never resent after a
        transport failure: the command may have reached the scheduler before the connection
        dropped, and resending could run the job twice (adoption finds it instead).

        ``input`` goes to the command's standard input. ``meanwhile`` runs once, while the
        first attempt is under way when the transport can start a command without waiting
        for it (else just before it); its errors are logged, never raised, because the
        command may already have done its work.
        """
        delay = self.retry.initial_delay
        attempts = self.retry.attempts if retry_transient else 1
        last: CommandResult | None = None
        for attempt in range(1, attempts + 1):
            try:
                result = self._run_once(argv, input, meanwhile if attempt == 1 else None)
            except TransportError as exc:
                if is_submission:
                    raise TransientSchedulerError(
                        f"{argv[0]}: the connection failed while submitting; the job may or may not "
                        f"have been accepted ({exc})", command=list(argv)) from exc
                result = CommandResult(tuple(argv), 255, "", str(exc))
                transient = True
            else:
                transient = result.returncode != 0 and self.dialect.is_transient(result)
            self.command_log.append((argv[0], result.duration))
            last = result
            if not transient:
                return result
            log.warning("%s: transient failure (attempt %d/%d): %s", argv[0], attempt, attempts, result.stderr.strip())
            if attempt < attempts:
                self._sleep(delay)
                delay *= self.retry.factor
        assert last is not None
        if is_submission:
            # The dialect called these failures transient because the scheduler refused the
            # job before accepting it: the submission definitely did not happen.
            raise SubmitError(f"{argv[0]} failed: {last.stderr.strip() or last.returncode}",
                              stderr=last.stderr, command=list(argv))
        raise TransientSchedulerError(
            f"{argv[0]} kept failing: {last.stderr.strip() or last.returncode}",
            stderr=last.stderr,
            command=list(argv),
        )

    def _run_once(self, argv: Sequence[str], input: str | None, meanwhile: Callable[[], None] | None) -> CommandResult:
        kwargs: dict[str, Any] = {"env": self.env or None, "timeout": self.retry.command_timeout}
        if input is not None:
            kwargs["input"] = input
        start = getattr(self.transport, "start", None) if meanwhile is not None else None
        if start is None:
            if meanwhile is not None:
                _run_meanwhile(meanwhile)
            return self.transport.run(self._argv(argv), **kwargs)
        running = start(self._argv(argv), **kwargs)
        try:
            _run_meanwhile(meanwhile)
        finally:
            result = running.wait()
        return result

    # -- Scheduler protocol ------------------------------------------------------------------
    def capabilities(self) -> SchedulerCapabilities:
        return self.dialect.capabilities

    def native_condition(self, condition: DependencyCondition, scheduler_job_id: str) -> str:
        return self.dialect.native_condition(condition, scheduler_job_id)

    def compile_dependencies(self, deps: Sequence[CompiledDependency]) -> str | None:
        return self.dialect.compile_dependencies(deps) if deps else None

    def write_job_files(self, spec: JobSpec, job_dir: str) -> str:
        """Write job.sh (and the inline script) into ``job_dir``; return the job.sh path."""
        self._write_inline_script(spec, job_dir)
        return self._write_job_sh(job_dir, self.dialect.render_script(spec, job_dir))

    def _write_inline_script(self, spec: JobSpec, job_dir: str) -> None:
        """The user's inline script, which job.sh runs from the job directory."""
        if spec.script is not None and spec.script.variant == "inline":
            self.transport.write_text(wrapper.inline_script_path(job_dir), spec.script.text, mode=0o700)

    def _write_job_sh(self, job_dir: str, script: str) -> str:
        path = wrapper.join_path(job_dir, wrapper.SCRIPT_FILE)
        create = getattr(self.transport, "create_text", None) or self.transport.write_text
        create(path, script, mode=0o700)
        return path

    def submit(self, spec: JobSpec, job_dir: str) -> str:
        # A submission is not retried blindly: a timeout may hide an accepted job. Only
        # failures the dialect calls transient (refused before acceptance) are retried.
        stdin_argv = self.dialect.submit_stdin_argv(spec)
        if stdin_argv is None:
            path = self.write_job_files(spec, job_dir)
            result = self.run(self._with_extra(self.dialect.submit_argv(path, spec)), is_submission=True)
            return self.dialect.parse_submit(result)
        # The script travels on stdin; job.sh in the job directory is molq's copy for people
        # and tools, written while the scheduler answers. An inline script is different: the
        # job runs it from the job directory, so it is in place before anything is submitted.
        self._write_inline_script(spec, job_dir)
        script = self.dialect.render_script(spec, job_dir)

        def keep_copy() -> None:
            try:
                self._write_job_sh(job_dir, script)
            except (TransportError, OSError) as exc:
                log.warning("job %s was submitted, but molq's copy of its script could not be written "
                            "to %s: %s", spec.job_id, wrapper.join_path(job_dir, wrapper.SCRIPT_FILE), exc)

        result = self.run(self._with_extra(stdin_argv), is_submission=True, input=script, meanwhile=keep_copy)
        return self.dialect.parse_submit(result)

    def _with_extra(self, argv: list[str]) -> list[str]:
        """The profile's extra submit flags, right after the command name."""
        if self.extra_submit_args:
            return [argv[0], *self.extra_submit_args, *argv[1:]]
        return argv

    def poll_many(self, jobs: Sequence[TrackedJob]) -> dict[str, SchedulerStatus]:
        by_sid = {j.scheduler_job_id: j for j in jobs if j.scheduler_job_id}
        found: dict[str, SchedulerStatus] = {}
        for chunk in chunk_ids(list(by_sid), max_chars=self.dialect.max_command_chars):
            result = self.run(self.dialect.status_argv(chunk))
            found.update(self.dialect.parse_status(result, chunk))
        return {by_sid[sid].job_id: st for sid, st in found.items() if sid in by_sid}

    def resolve_terminal_many(
        self, jobs: Sequence[TrackedJob], *, since: float | None = None
    ) -> dict[str, SchedulerStatus]:
        by_sid = {j.scheduler_job_id: j for j in jobs if j.scheduler_job_id}
        resolved: dict[str, SchedulerStatus] = {}
        pending = list(by_sid)
        # No accounting query at all counts as "accounting unavailable": use the fallback.
        accounting_ok = not pending or self.dialect.terminal_argv(pending, since) is not None
        if pending and accounting_ok:
            try:
                for chunk in chunk_ids(pending, max_chars=self.dialect.max_command_chars):
                    argv = self.dialect.terminal_argv(chunk, since)
                    assert argv is not None
                    result = self.run(argv)
                    resolved.update(self.dialect.parse_terminal(result, chunk))
            except AccountingUnavailable:
                accounting_ok = False
            except SchedulerError as exc:
                accounting_ok = False
                log.warning("%s accounting query failed: %s", self.name, exc)
        pending = [sid for sid in pending if sid not in resolved]
        if pending and not accounting_ok and self.dialect.fallback_terminal_argv(pending) is not None:
            try:
                for chunk in chunk_ids(pending, max_chars=self.dialect.max_command_chars):
                    argv = self.dialect.fallback_terminal_argv(chunk)
                    assert argv is not None
                    result = self.run(argv)
                    resolved.update(self.dialect.parse_fallback_terminal(result, chunk))
            except SchedulerError as exc:
                log.warning("%s fallback status query failed: %s", self.name, exc)
        pending = [sid for sid in pending if sid not in resolved]
        # The wrapper's exit-code file: exact code when the scheduler has nothing, and a
        # cross-check that completes a partial answer.
        file_jobs = [by_sid[sid] for sid in pending]
        from_files = read_exit_files(self.transport, file_jobs)
        out = {by_sid[sid].job_id: st for sid, st in resolved.items() if sid in by_sid}
        out.update(from_files)
        return out

    def cancel_many(self, jobs: Sequence[TrackedJob]) -> None:
        sids = [j.scheduler_job_id for j in jobs if j.scheduler_job_id]
        for chunk in chunk_ids(sids, max_chars=self.dialect.max_command_chars):
            result = self.run(self.dialect.cancel_argv(chunk))
            self.dialect.check_cancel(result, chunk)

    def find_adoptable(self, jobs: Sequence[TrackedJob]) -> dict[str, str]:
        tags = {f"molq-{j.job_id}": j.job_id for j in jobs}
        argv = self.dialect.adopt_argv(list(tags))
        if argv is None:
            return {}
        result = self.run(argv)
        found = self.dialect.parse_adopt(result, list(tags))
        return {tags[tag]: sid for tag, sid in found.items() if tag in tags}

    def list_queue(self, *, user: str | None = None) -> list[QueueEntry]:
        result = self.run(self.dialect.queue_argv(user))
        return self.dialect.parse_queue(result)


def options_kwargs(options: Any) -> dict[str, Any]:
    """Common BatchScheduler keyword arguments from a backend's options object."""
    out: dict[str, Any] = {}
    for key in ("binaries", "extra_submit_args", "env"):
        value = getattr(options, key, None)
        if value:
            out[key] = dict(value) if isinstance(value, dict) else value
    return out

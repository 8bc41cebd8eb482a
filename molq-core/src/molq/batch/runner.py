"""The scheduler runner: :class:`BatchScheduler` executes a :class:`~molq.batch.BatchDialect`'s
command lines through the cluster's transport, batching many jobs into one command, retrying
transient failures, and falling back to the wrapper's exit-code file when the scheduler has no
accounting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from molq import array_runner, wrapper
from molq.arrays import array_indices, part_ids
from molq.batch import bulk, packing
from molq.batch.chunking import _chunk_by_cost, chunk_ids
from molq.batch.dialect import AccountingUnavailable, BatchDialect
from molq.batch.exit_files import read_exit_files
from molq.batch.site_limits import SubmitLimit, site_reading, site_value
from molq.errors import (
    ConfigError,
    SchedulerError,
    SubmitError,
    SubmitLimitReached,
    TransientSchedulerError,
    TransportError,
)
from molq.evidence import CancelOutcome, Observation, SourceAnswer, as_answer
from molq.model import (
    CompiledDependency,
    DependencyCondition,
    JobSpec,
    QueueEntry,
    SchedulerCapabilities,
    SchedulerStatus,
)
from molq.pacing import PacingPolicy
from molq.scheduler import SchedulerBase, TrackedJob
from molq.transport import CommandResult, Transport
from molq.usage import Usage

log = logging.getLogger("molq.batch")


@attrs.frozen
class RetrySettings:
    """How transient scheduler failures are retried inside one operation."""

    attempts: int = 3
    initial_delay: float = 0.5
    factor: float = 2.0
    command_timeout: float = 60.0


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
        pacing: PacingPolicy | None = None,
        array_limit: int | None = None,
        pack_bulk: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if pack_bulk and not dialect.can_pack:
            # Refused rather than ignored: the option changes what the queue shows and how
            # many submit commands run, and a profile that asks for it must not silently differ.
            raise ConfigError(f"{dialect.name}: pack_bulk is not supported by this scheduler "
                              f"(only SLURM packs a bulk submission into one array)")
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
        self._accounting_unavailable_at: float | None = None
        self._login_user: str | None = None
        self._found_programs: set[str] = set()
        #: The cluster's polling limits shared across processes (None: every refresh polls).
        self.pacing = pacing
        #: The array limit from the profile, instead of the site's (molq.array_runner).
        self.array_limit = array_limit
        #: submit_many packs like jobs into one array (molq.batch.packing); the engine then
        #: hands it whole batches even on a local transport.
        self.packs_bulk = pack_bulk

    def __repr__(self) -> str:
        return f"BatchScheduler({self.dialect.name!r}, transport={self.transport!r})"

    @property
    def job_id_file(self) -> str | None:
        return self.dialect.job_id_file

    @property
    def submit_in_flight_seconds(self) -> float:
        """How long a submit command may still reach the scheduler after its submitter died
        (a killed process does not take its sbatch/qsub with it): the command's time limit."""
        return self.retry.command_timeout

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
        assert meanwhile is not None
        running = start(self._argv(argv), **kwargs)
        try:
            _run_meanwhile(meanwhile)
        finally:
            result = running.wait()
        return result

    # -- Scheduler protocol ------------------------------------------------------------------
    def capabilities(self) -> SchedulerCapabilities:
        return self.dialect.capabilities

    def max_time_limit(self, partition: str | None) -> float | None:
        """The longest time limit a job in ``partition`` may ask for (seconds; None: no limit
        told), from the partitions' limits read once per scheduler object."""
        limits = site_value(self, "partition limits", self.dialect.partition_limits_argv(),
                            self.dialect.parse_partition_limits)
        return None if limits is None else limits.max_time_of(self.dialect.job_partition(partition))

    def submit_limit(self, account: str | None, qos: str | None) -> SubmitLimit | None:
        """The tightest submit-count limit for a job of ``account`` and ``qos``, from the
        user's limits read once per scheduler object (None: none known, or the read failed)."""
        limits = site_reading(self, "submit limits", self.dialect.submit_limits_argvs(),
                              self.dialect.parse_submit_limits)
        return None if limits is None else limits.for_job(account, qos)

    def _parse_submit(self, result: CommandResult) -> str:
        """The scheduler id from a submit command's answer; a refusal for a submit-count limit
        is :class:`SubmitLimitReached` (the job waits in molq), any other the dialect's error."""
        if result.returncode != 0 and self.dialect.is_submit_limit(result):
            raise SubmitLimitReached(f"{result.argv[0] if result.argv else 'submit'} refused the job for the "
                                     f"site's submit limit: {result.stderr.strip()}",
                                     stderr=result.stderr, command=list(result.argv))
        return self.dialect.parse_submit(result)

    def render_script(self, spec: JobSpec, job_dir: str) -> str:
        return self.dialect.render_script(spec, job_dir)

    def validate(self, spec: JobSpec) -> None:
        """Refuse a job whose submit command does not exist on the cluster, before the job is
        stored (asked once per scheduler object: one ``command -v`` over the transport).

        The directives are rendered first (pure, no I/O): a value the dialect refuses, such as
        an extra directive overriding molq's own, is a ConfigError before anything is stored."""
        self.dialect.render_directives(spec, "/nonexistent/molq-job")
        lowest = self.dialect.lowest_array_index
        if spec.scheduling.array_spec and lowest > 0:
            first = array_indices(spec.scheduling.array_spec)[0][0]
            if first < lowest:
                raise ConfigError(f"array_spec {spec.scheduling.array_spec!r}: index {first} is below {lowest}, "
                                  f"the lowest index {self.name} accepts")
        raw = self.dialect.submit_stdin_argv(spec) or self.dialect.submit_argv("job.sh", spec)
        program = self._argv(raw)[0]
        if program in self._found_programs:
            return
        check = ["test", "-x", program] if "/" in program else ["sh", "-c", 'command -v "$1" >/dev/null', "sh", program]
        result = self.transport.run(check, env=self.env or None, timeout=self.retry.command_timeout)
        if result.returncode == 0:
            self._found_programs.add(program)
            return
        if result.returncode in (1, 127):
            where = " on the cluster's login node" if self.transport.is_remote else ""
            raise ConfigError(
                f"{self.name}: the submit command {program!r} was not found{where}; install the "
                f"scheduler's client commands or give its path in the profile (binaries.{raw[0].rsplit('/', 1)[-1]})"
            )
        # The check itself failed (connection trouble): the submission will say more.

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
            self.transport.write_text(wrapper.inline_script_path(job_dir), spec.script.text or "", mode=0o700)

    def _write_job_sh(self, job_dir: str, script: str, name: str = wrapper.SCRIPT_FILE) -> str:
        path = wrapper.join_path(job_dir, name)
        create = getattr(self.transport, "create_text", None) or self.transport.write_text
        create(path, script, mode=0o700)
        return path

    def submit(self, spec: JobSpec, job_dir: str, *, script: str | None = None,
               script_name: str = wrapper.SCRIPT_FILE) -> str:
        # A submission is not retried blindly: a timeout may hide an accepted job. Only
        # failures the dialect calls transient (refused before acceptance) are retried.
        if script is None:
            parts = array_runner.plan(self, spec)  # an array above the site's limit: several
            if parts is not None:
                return array_runner.submit_parts(self, spec, job_dir, parts)
        stdin_argv = self.dialect.submit_stdin_argv(spec)
        if stdin_argv is None:
            if script is not None:
                self._write_inline_script(spec, job_dir)
                path = self._write_job_sh(job_dir, script, script_name)
            else:
                path = self.write_job_files(spec, job_dir)
            result = self.run(self._with_extra(self.dialect.submit_argv(path, spec)), is_submission=True)
            return self._parse_submit(result)
        # The script travels on stdin; job.sh in the job directory is molq's copy for people
        # and tools, written while the scheduler answers. An inline script is different: the
        # job runs it from the job directory, so it is in place before anything is submitted.
        self._write_inline_script(spec, job_dir)
        script = script if script is not None else self.dialect.render_script(spec, job_dir)

        def keep_copy() -> None:
            try:
                self._write_job_sh(job_dir, script, script_name)
            except (TransportError, OSError) as exc:
                log.warning("job %s was submitted, but molq's copy of its script could not be written "
                            "to %s: %s", spec.job_id, wrapper.join_path(job_dir, script_name), exc)

        result = self.run(self._with_extra(stdin_argv), is_submission=True, input=script, meanwhile=keep_copy)
        return self._parse_submit(result)

    #: submit_many sends a whole batch in one command (molq.batch.bulk).
    bulk_submission = True

    def submit_many(self, items: Sequence[tuple[JobSpec, str]]) -> list[str | BaseException]:
        """Submit several jobs (their directories exist) in one command, however many they
        are: it writes every job's files and runs every submit command, printing each job's
        answer, which the dialect's ``parse_submit`` reads as if the command had run alone.
        Jobs it did not reach within half the submit time limit come back as
        :class:`~molq.errors.SubmissionDeferred` (not submitted; the engine sends them again).
        Failures the dialect calls transient (refused before acceptance) are sent again
        together, as :meth:`run` does for one job. A split array goes part by part
        (:mod:`molq.array_runner`). One result (id or error) per item."""
        out: list[str | BaseException | None] = [None] * len(items)
        entries: dict[int, bulk.Entry] = {}
        # An entry's key is its first item; a pack's entry stands for all of its members.
        members: dict[int, list[int]] = {}
        for pack in self._packs(items):
            try:
                entries[pack[0]] = self._pack_entry([items[i] for i in pack])
            except Exception as exc:  # noqa: BLE001 - reported per item
                for i in pack:
                    out[i] = exc
            members[pack[0]] = pack
        packed = {i for pack in members.values() for i in pack}
        for i, (spec, job_dir) in enumerate(items):
            if i in packed:
                continue
            try:
                if array_runner.plan(self, spec) is not None:
                    out[i] = self.submit(spec, job_dir)
                else:
                    entries[i] = self._bulk_entry(spec, job_dir)
            except Exception as exc:  # noqa: BLE001 - reported per item
                out[i] = exc
        delay = self.retry.initial_delay
        for attempt in range(1, self.retry.attempts + 1):
            if not entries:
                break
            todo = list(entries)
            answers = self._run_bulk([entries[i] for i in todo])
            retry: dict[int, bulk.Entry] = {}
            for i, answer in zip(todo, answers, strict=True):
                group = members.get(i, [i])
                if isinstance(answer, BaseException):
                    for m in group:
                        out[m] = answer
                    continue
                transient = answer.returncode != 0 and self.dialect.is_transient(answer)
                if transient and attempt < self.retry.attempts:
                    retry[i] = entries[i]
                    continue
                try:
                    sid = self._parse_bulk_answer(answer, transient=transient)
                except Exception as exc:  # noqa: BLE001 - reported per item
                    for m in group:
                        out[m] = exc
                    continue
                if i in members:
                    for k, m in enumerate(group):
                        out[m] = self.dialect.pack_member_id(sid, k)
                    log.info("%s: %d jobs submitted as the array %s", self.name, len(group), sid)
                else:
                    out[i] = sid
            entries = retry
            if entries:
                log.warning("%s: %d submissions failed transiently (attempt %d/%d); sending them again",
                            self.name, len(entries), attempt, self.retry.attempts)
                self._sleep(delay)
                delay *= self.retry.factor
        assert all(o is not None for o in out)
        return [o for o in out if o is not None]

    def _packs(self, items: Sequence[tuple[JobSpec, str]]) -> list[list[int]]:
        """The packs among ``items`` (none unless ``pack_bulk``), at most the site's array
        limit each."""
        if not self.packs_bulk or len(items) < 2:
            return []
        limit = array_runner.max_array_size(self)
        # The limit bounds the largest index: an array of n tasks uses indices 0..n-1.
        max_tasks = (limit - self.dialect.lowest_array_index) if limit else packing.DEFAULT_MAX_TASKS
        return packing.groups(items, self.dialect.pack_key, max_tasks)

    def _pack_entry(self, group: Sequence[tuple[JobSpec, str]]) -> bulk.Entry:
        """One submit command for a pack: every member's files (job.sh as if alone, and the
        pack file recovery reads), then the dispatcher, submitted as one array."""
        first_spec, first_dir = group[0]
        if not first_dir:
            raise SubmitError("a packed job needs a job directory")
        tag = packing.pack_tag(first_spec.job_id)
        files: list[tuple[str, str, int]] = []
        for k, (spec, job_dir) in enumerate(group):
            files.append((wrapper.join_path(job_dir, packing.PACK_FILE), packing.pack_file_text(tag, k), 0o600))
            if spec.script is not None and spec.script.variant == "inline":
                files.append((wrapper.inline_script_path(job_dir), spec.script.text or "", 0o700))
            files.append((wrapper.join_path(job_dir, wrapper.SCRIPT_FILE),
                          self.dialect.render_script(spec, job_dir), 0o700))
        path = wrapper.join_path(first_dir, packing.DISPATCHER_FILE)
        files.append((path, self.dialect.render_pack(tag, group), 0o700))
        argv = self._with_extra(self.dialect.submit_argv(path, first_spec))
        return bulk.Entry(tuple(files), tuple(self._argv(argv)), None)

    def _bulk_entry(self, spec: JobSpec, job_dir: str) -> bulk.Entry:
        """What the bulk program does for one job: the same files and command as :meth:`submit`."""
        script = self.dialect.render_script(spec, job_dir)
        path = wrapper.join_path(job_dir, wrapper.SCRIPT_FILE)
        files: list[tuple[str, str, int]] = []
        if spec.script is not None and spec.script.variant == "inline":
            files.append((wrapper.inline_script_path(job_dir), spec.script.text or "", 0o700))
        files.append((path, script, 0o700))
        stdin_argv = self.dialect.submit_stdin_argv(spec)
        if stdin_argv is None:
            argv = self._with_extra(self.dialect.submit_argv(path, spec))
            return bulk.Entry(tuple(files), tuple(self._argv(argv)), None)
        return bulk.Entry(tuple(files), tuple(self._argv(self._with_extra(stdin_argv))), path)

    def _run_bulk(self, entries: Sequence[bulk.Entry]) -> list[CommandResult | BaseException]:
        # Half the time a submit command may still be under way after its submitter died:
        # later jobs wait for the next round, when the engine has marked them again.
        program = bulk.program_for(entries, self.env or None, deadline=max(1, int(self.submit_in_flight_seconds / 2)))
        # Each submission gets the time limit one submit command has on its own.
        timeout = self.retry.command_timeout * max(1, len(entries))
        started = time.monotonic()
        try:
            result = self.transport.run(program.argv(), input=program.text(), timeout=timeout)
        except TransportError as exc:
            # Some submit commands may have run before the connection failed: uncertain, never
            # sent again (adoption finds what the scheduler accepted).
            self.command_log.append(("bulk-submit", time.monotonic() - started))
            return bulk.results_of(entries, None, program.nonce, failure=str(exc))
        self.command_log.append(("bulk-submit", result.duration))
        return bulk.results_of(entries, result, program.nonce)

    def _parse_bulk_answer(self, answer: CommandResult, *, transient: bool) -> str:
        if transient:
            # As in run(): refused before acceptance every time, so definitely not submitted.
            raise SubmitError(f"{answer.argv[0]} failed: {answer.stderr.strip() or answer.returncode}",
                              stderr=answer.stderr, command=list(answer.argv))
        return self._parse_submit(answer)

    def _with_extra(self, argv: list[str]) -> list[str]:
        """The profile's extra submit flags, right after the command name."""
        if self.extra_submit_args:
            return [argv[0], *self.extra_submit_args, *argv[1:]]
        return argv

    def _ask(
        self,
        argv_for: Callable[[list[str]], list[str] | None],
        parse: Callable[[CommandResult, Sequence[str]], Any],
        sids: Sequence[str],
    ) -> SourceAnswer:
        """One source's answer about ``sids``, chunked for the command line; raises
        :class:`SchedulerError` when any chunk fails (a partial answer is no answer)."""
        answer = SourceAnswer()
        for chunk in chunk_ids(list(sids), max_chars=self.dialect.max_command_chars):
            argv = argv_for(chunk)
            assert argv is not None
            answer = answer.merged(as_answer(parse(self.run(argv), chunk)))
        return answer

    def _accounting_known_unavailable(self) -> bool:
        at = self._accounting_unavailable_at
        return at is not None and time.monotonic() - at < self.dialect.accounting_recheck_seconds

    def observe(self, jobs: Sequence[TrackedJob], *, since: float | None = None) -> Observation:
        """Evidence about ``jobs`` from every source: the queue, then for jobs the queue does
        not know, accounting (or the fallback source when the scheduler keeps no accounting)
        and the wrapper's exit-code files. Never raises for a failed query: it is reported in
        ``problems`` and its jobs get no evidence."""
        split = array_runner.expand(jobs)  # a split array: evidence per part, then per job
        if split is not None:
            return array_runner.combine_observation(self.observe(split[0], since=since), split[1])
        by_sid = {j.scheduler_job_id: j for j in jobs if j.scheduler_job_id}
        if not by_sid:
            return Observation()
        dialect = self.dialect.for_jobs(list(by_sid.values()))
        try:
            queue = self._ask(dialect.status_argv, dialect.parse_status, list(by_sid))
        except (SchedulerError, TransportError) as exc:
            return Observation(problems=(f"{self.name} status query failed: {exc}",))
        found = {sid: st for sid, st in queue.statuses.items() if sid in by_sid}
        # A job whose queue record could not be read still has the other sources (accounting,
        # the wrapper's exit-code file); it is only never "absent": the queue mentioned it.
        left = [sid for sid in by_sid if sid not in found]
        ended: set[str] = set(queue.ended)
        # A job the queue already reports final carries no usage there: it is read from the
        # same accounting call as the final states of the jobs that left the queue.
        usage_of = [by_sid[sid] for sid, st in found.items() if self._wants_usage(dialect, st)]
        final, absent, problems, usage = self._final_states(
            [by_sid[sid] for sid in left], since, dialect, ended, usage_of=usage_of)
        for sid, used in usage.items():
            found[sid] = attrs.evolve(found[sid], usage=used)
        absent -= set(queue.unreadable) | ended
        if not queue.complete:
            absent = set()
        found.update(final)
        return Observation(
            {by_sid[sid].job_id: st for sid, st in found.items()},
            frozenset(by_sid[sid].job_id for sid in absent),
            tuple(problems),
            frozenset(by_sid[sid].job_id for sid in ended if sid in by_sid and sid not in found),
            usage_pending=frozenset(by_sid[sid].job_id for sid, st in found.items() if self._wants_usage(dialect, st)),
        )

    def _wants_usage(self, dialect: BatchDialect, status: SchedulerStatus) -> bool:
        """Whether ``status`` is final without usage, for a job that started, on a scheduler
        whose accounting reports usage. (SLURM gives a job cancelled while pending a start time
        equal to its end, like a job that ran for under a second: both are asked about.)"""
        if not status.state.is_terminal or (status.usage is not None and not status.usage.is_empty()):
            return False
        return (status.started_at is not None and dialect.accounting_reports_usage
                and not self._accounting_known_unavailable())

    def _final_states(
        self, jobs: Sequence[TrackedJob], since: float | None, dialect: BatchDialect | None = None,
        ended: set[str] | None = None, *, usage_of: Sequence[TrackedJob] = (),
    ) -> tuple[dict[str, SchedulerStatus], set[str], list[str], dict[str, Usage]]:
        """Statuses (by scheduler id) of jobs that left the queue, the ids every source proved
        unknown, the problems met on the way, and the usage accounting reports for the jobs
        ``usage_of`` (ended, still in the queue), asked in the same accounting call."""
        by_sid = {j.scheduler_job_id: j for j in jobs if j.scheduler_job_id}
        sids = list(by_sid)
        usage_sids = [j.scheduler_job_id for j in usage_of if j.scheduler_job_id and j.scheduler_job_id not in by_sid]
        usage: dict[str, Usage] = {}
        if not sids and not usage_sids:
            return {}, set(), [], usage
        dialect = dialect or self.dialect.for_jobs([*by_sid.values(), *usage_of])
        problems: list[str] = []
        resolved: dict[str, SchedulerStatus] = {}
        absent: set[str] = set()
        use_fallback = True
        fallback_proves = True
        asked = sids + usage_sids
        if dialect.terminal_argv(asked, since) is not None and not self._accounting_known_unavailable():
            try:
                answer = self._ask(lambda c: dialect.terminal_argv(c, since), dialect.parse_terminal, asked)
            except AccountingUnavailable:
                self._accounting_unavailable_at = time.monotonic()
            except (SchedulerError, TransportError) as exc:
                # Accounting exists but did not answer: nobody may count as unknown. The
                # fallback may still know how some jobs ended.
                problems.append(f"{self.name} accounting query failed: {exc}")
                fallback_proves = False
            else:
                use_fallback = False
                resolved.update({sid: st for sid, st in answer.statuses.items() if sid in by_sid})
                absent = {sid for sid in sids if answer.proves_absent(sid)}
                if ended is not None:
                    ended |= answer.ended & set(sids)
                for sid in usage_sids:
                    st = answer.statuses.get(sid)
                    # Only a final record's usage is final: one accounting still shows running
                    # (it lags the queue) is left for a later refresh.
                    if st is not None and st.state.is_terminal and st.usage is not None and not st.usage.is_empty():
                        usage[sid] = st.usage
        if not sids:
            return resolved, absent, problems, usage
        if use_fallback:
            if dialect.fallback_terminal_argv(sids) is None:
                absent = set(sids) if fallback_proves else set()
            else:
                try:
                    answer = self._ask(dialect.fallback_terminal_argv, dialect.parse_fallback_terminal, sids)
                except (SchedulerError, TransportError) as exc:
                    problems.append(f"{self.name} fallback status query failed: {exc}")
                    absent = set()
                else:
                    resolved.update(answer.statuses)
                    absent = {sid for sid in sids if answer.proves_absent(sid)} if fallback_proves else set()
                    if ended is not None:
                        ended |= answer.ended
        # The wrapper's exit-code files: the exact code where the scheduler has nothing, and
        # a cross-check of accounting codes the dialect calls ambiguous.
        unresolved = [sid for sid in sids if sid not in resolved]
        ambiguous = [sid for sid, st in resolved.items() if st.state.is_terminal and dialect.exit_code_ambiguous(st)]
        # Accounting is written after the controller lets a job go: for a moment it can still
        # say PENDING/RUNNING for a job that has left the queue. The wrapper's exit file (emptied
        # when an attempt starts) then tells the end the accounting will record.
        lagging = [sid for sid, st in resolved.items() if not st.state.is_terminal]
        wanted = [by_sid[sid] for sid in unresolved + ambiguous + lagging]
        try:
            files = read_exit_files(self.transport, wanted)
        except (TransportError, OSError) as exc:
            problems.append(f"{self.name}: could not read exit-code files: {exc}")
            return resolved, set(), problems, usage
        for sid in unresolved:
            from_file = files.get(by_sid[sid].job_id)
            if from_file is not None:
                resolved[sid] = from_file
                absent.discard(sid)
        for sid in ambiguous:
            from_file = files.get(by_sid[sid].job_id)
            if from_file is not None:
                resolved[sid] = dialect.refine_exit(resolved[sid], from_file)
        for sid in lagging:
            from_file = files.get(by_sid[sid].job_id)
            if from_file is not None:
                resolved[sid] = from_file
        return resolved, absent, problems, usage

    def poll_many(self, jobs: Sequence[TrackedJob]) -> dict[str, SchedulerStatus]:
        by_sid = {j.scheduler_job_id: j for j in jobs if j.scheduler_job_id}
        dialect = self.dialect.for_jobs(list(by_sid.values()))
        answer = self._ask(dialect.status_argv, dialect.parse_status, list(by_sid))
        return {by_sid[sid].job_id: st for sid, st in answer.statuses.items() if sid in by_sid}

    def resolve_terminal_many(
        self, jobs: Sequence[TrackedJob], *, since: float | None = None
    ) -> dict[str, SchedulerStatus]:
        by_sid = {j.scheduler_job_id: j for j in jobs if j.scheduler_job_id}
        resolved, _absent, _problems, _usage = self._final_states(jobs, since)
        return {by_sid[sid].job_id: st for sid, st in resolved.items() if sid in by_sid}

    def cancel_many(self, jobs: Sequence[TrackedJob]) -> dict[str, CancelOutcome]:
        """Ask the scheduler to stop ``jobs``; what it answered, by molq job id. Raises
        :class:`SchedulerError` when the cancel failed or was refused."""
        split = array_runner.expand(jobs)
        if split is not None:
            return array_runner.combine_cancel(self.cancel_many(split[0]), split[1])
        by_sid = {j.scheduler_job_id: j for j in jobs if j.scheduler_job_id}
        out: dict[str, CancelOutcome] = {}
        for chunk in _chunk_by_cost(list(by_sid.values()), self.dialect):
            result = self.run(self.dialect.cancel_argv_for([by_sid[sid] for sid in chunk]))
            for sid, outcome in self.dialect.parse_cancel(result, chunk).items():
                if sid in by_sid:
                    out[by_sid[sid].job_id] = outcome
        return out

    def find_adoptable(self, jobs: Sequence[TrackedJob]) -> dict[str, str]:
        tags = {f"molq-{j.job_id}": j.job_id for j in jobs}
        packs = self._pack_files(jobs)
        asked = list(tags) + sorted({tag for tag, _k in packs.values()})
        argv = self.dialect.adopt_argv(asked)
        if argv is None:
            return {}
        result = self.run(argv)
        found = self.dialect.parse_adopt(result, asked)
        by_job = {tags[tag]: sid for tag, sid in found.items() if tag in tags}
        for job_id, (tag, k) in packs.items():
            # A packed job was submitted as task k of its pack's array, never on its own.
            if job_id not in by_job and tag in found:
                array = (part_ids(found[tag]) or [found[tag]])[0]
                by_job[job_id] = self.dialect.pack_member_id(array, k)
        return array_runner.check_adopted(self, jobs, by_job)

    def _pack_files(self, jobs: Sequence[TrackedJob]) -> dict[str, tuple[str, int]]:
        """molq job id -> (pack tag, task index) of the jobs whose directory says they were
        packed (:mod:`molq.batch.packing`); read whether or not packing is on now, since the
        process that submitted them may have had it on."""
        if not self.dialect.can_pack:
            return {}
        paths = {j.job_id: wrapper.join_path(j.job_dir, packing.PACK_FILE) for j in jobs if j.job_dir}
        if not paths:
            return {}
        contents = self.transport.read_many(list(paths.values()))
        out: dict[str, tuple[str, int]] = {}
        for job_id, path in paths.items():
            entry = packing.read_pack_file(contents.get(path))
            if entry is not None:
                out[job_id] = entry
        return out

    def list_queue(self, *, user: str | None = None) -> list[QueueEntry]:
        result = self.run(self.dialect.queue_argv(user))
        entries = self.dialect.parse_queue(result)
        if not self.dialect.queue_filters_user_itself:
            who = user or self.login_user()
            entries = [e for e in entries if e.user == who]
        return entries

    def login_user(self) -> str:
        """The user name on the cluster side (``id -un``, asked once)."""
        if self._login_user is None:
            result = self.transport.run(["id", "-un"], timeout=self.retry.command_timeout)
            name = result.stdout.strip()
            if result.returncode != 0 or not name:
                raise SchedulerError(f"{self.name}: cannot find the login user: {result.stderr.strip()}")
            self._login_user = name
        return self._login_user


def options_kwargs(options: Any) -> dict[str, Any]:
    """Common BatchScheduler keyword arguments from a backend's options object."""
    out: dict[str, Any] = {}
    for key in ("binaries", "extra_submit_args", "env"):
        value = getattr(options, key, None)
        if value:
            out[key] = dict(value) if isinstance(value, dict) else value
    return out

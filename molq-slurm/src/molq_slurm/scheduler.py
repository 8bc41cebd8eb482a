"""``SlurmScheduler``: the shared batch runner configured for SLURM from :class:`SlurmOptions`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from molq import wrapper
from molq.batch import BatchScheduler, RetrySettings, read_exit_files
from molq.errors import TransportError
from molq.model import JobState, SchedulerStatus
from molq.scheduler import TrackedJob
from molq.transport import CommandResult, Transport

from molq_slurm.dialect import _ACCOUNTING_DISABLED, SlurmDialect
from molq_slurm.options import SlurmOptions

__all__ = ["SlurmScheduler", "TIME_FORMAT_ENV"]

log = logging.getLogger("molq.slurm")

#: Environment every SLURM command gets unless the options override it: times as epoch
#: seconds, so no parser has to guess the cluster's time zone.
TIME_FORMAT_ENV = {"SLURM_TIME_FORMAT": "%s"}

#: After sacct answered "accounting storage is disabled", final states skip sacct for this long.
#: The answer comes from the cluster's slurm.conf, so asking on every refresh only adds a
#: command; asking again now and then lets a long-running daemon notice accounting switched on.
ACCOUNTING_RECHECK_SECONDS = 3600.0


class SlurmScheduler(BatchScheduler):
    """A :class:`~molq.batch.BatchScheduler` running :class:`SlurmDialect`.

    >>> from molq.transport import LocalTransport
    >>> sched = SlurmScheduler(LocalTransport(), SlurmOptions(default_partition="debug"))
    >>> sched.name
    'slurm'
    """

    def __init__(
        self,
        transport: Transport,
        options: SlurmOptions | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        options = options or SlurmOptions()
        self.options = options
        super().__init__(
            SlurmDialect.from_options(options),
            transport,
            binaries=dict(options.binaries),
            extra_submit_args=options.extra_sbatch_args,
            env={**TIME_FORMAT_ENV, **options.env},
            retry=RetrySettings(
                attempts=options.retry_attempts,
                initial_delay=options.retry_initial_delay,
                factor=options.retry_factor,
                command_timeout=options.command_timeout,
            ),
            sleep=sleep,
        )
        self._configured_dialect = self.dialect
        self._no_accounting_dialect = SlurmDialect.from_options(attrs.evolve(options, use_accounting=False))
        self._accounting_disabled_at: float | None = None

    def __repr__(self) -> str:
        return f"SlurmScheduler(transport={self.transport!r}, options={self.options!r})"

    def resolve_terminal_many(
        self, jobs: Sequence[TrackedJob], *, since: float | None = None
    ) -> dict[str, SchedulerStatus]:
        """Final states (see :class:`~molq.batch.BatchScheduler`), with sacct's exit codes
        made exact.

        sacct prints ``ExitCode`` minus 128 for codes of 128 and above (exit 137 shows as
        ``9:0``), so a FAILED job with a code below 128 may really have ended with that code
        + 128 -- which is what the wrapper reports when the user's command died of a signal.
        The wrapper's exit-code file tells which; it is read (one call) only for such jobs.
        """
        # On a cluster known to keep no accounting, go straight to scontrol: one command fewer.
        known_disabled = (
            self.options.use_accounting is None
            and self._accounting_disabled_at is not None
            and time.monotonic() - self._accounting_disabled_at < ACCOUNTING_RECHECK_SECONDS
        )
        self.dialect = self._no_accounting_dialect if known_disabled else self._configured_dialect
        out = super().resolve_terminal_many(jobs, since=since)
        ambiguous = [job for job in jobs if _ambiguous(out.get(job.job_id))]
        if not ambiguous:
            return out
        try:
            files = read_exit_files(self.transport, ambiguous)
        except TransportError as exc:
            log.warning("slurm: could not read exit-code files to check sacct's exit codes: %s", exc)
            return out
        for job in ambiguous:
            status, from_file = out[job.job_id], files.get(job.job_id)
            if from_file is None or from_file.exit_code is None or status.exit_code is None:
                continue
            if from_file.exit_code == status.exit_code + 128:
                signal, text = wrapper.describe_exit(from_file.exit_code)
                out[job.job_id] = attrs.evolve(
                    status, exit_code=from_file.exit_code, exit_signal=signal, reason=text or status.reason
                )
        return out

    def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        """:meth:`BatchScheduler.run`, remembering when sacct says accounting is disabled."""
        result = super().run(argv, **kwargs)
        if (
            argv
            and argv[0] == "sacct"
            and result.returncode != 0
            and _ACCOUNTING_DISABLED.search(result.stderr + "\n" + result.stdout)
        ):
            self._accounting_disabled_at = time.monotonic()
        return result


def _ambiguous(status: SchedulerStatus | None) -> bool:
    return (
        status is not None
        and status.state == JobState.FAILED
        and status.raw_state != "exit_code_file"
        and status.exit_signal is None
        and status.exit_code is not None
        and 0 < status.exit_code < 128
    )

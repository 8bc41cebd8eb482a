"""The ``at`` scheduler: molq's shared batch runner driving :class:`~molq_at.dialect.AtDialect`.

Two operations need more than the runner gives a dialect, because they need the job
directories and not only at's job ids: cancelling a *running* job (atrm cannot stop one; the
job's session has to be signalled, and its leader's pid is in the job directory) and listing
the queue of one user (atq has no user filter).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from molq.batch import BatchScheduler, RetrySettings, chunk_ids
from molq.errors import ConfigError, SchedulerError
from molq.model import QueueEntry
from molq.scheduler import TrackedJob

from molq_at.dialect import AtDialect
from molq_at.options import AtOptions

__all__ = ["AtScheduler", "build_scheduler"]


class AtScheduler(BatchScheduler):
    """:class:`~molq.batch.BatchScheduler` plus at's cancel and queue listing."""

    dialect: AtDialect

    def cancel_many(self, jobs: Sequence[TrackedJob]) -> None:
        """Remove waiting jobs with atrm and stop running ones (SIGTERM to the job's process
        group, SIGKILL after ``term_grace_seconds``): one command for all of them."""
        pairs = {j.scheduler_job_id: j.job_dir for j in jobs if j.scheduler_job_id and j.job_dir}
        # Each job costs its id and its directory on the command line: bound the count so
        # that even the longest pairs fit in the command-line budget.
        widest = max((len(s) + len(d) + 2 for s, d in pairs.items()), default=1)
        per_call = max(1, self.dialect.max_command_chars // widest)
        for chunk in chunk_ids(list(pairs), max_count=per_call):
            result = self.run(self.dialect.cancel_jobs_argv([(sid, pairs[sid]) for sid in chunk]),
                              retry_transient=False)
            if result.returncode != 0:
                raise SchedulerError(f"at: cancel failed: {result.stderr.strip()}", stderr=result.stderr)

    def list_queue(self, *, user: str | None = None) -> list[QueueEntry]:
        """atq's jobs; only ``user``'s when given (atq itself shows root every user's jobs)."""
        entries = super().list_queue(user=user)
        if user:
            entries = [e for e in entries if e.user == user]
        return entries


def build_scheduler(transport: Any, options: AtOptions | None = None, **kwargs: Any) -> AtScheduler:
    """An :class:`AtScheduler` over ``transport``; ``kwargs`` go to the runner (``sleep=``...).

    >>> from molq.transport import LocalTransport
    >>> build_scheduler(LocalTransport()).name
    'at'
    """
    if options is None:
        options = AtOptions()
    elif not isinstance(options, AtOptions):
        raise ConfigError(f"the at scheduler takes AtOptions, got {type(options).__name__}")
    # Cancel waits up to term_grace_seconds inside one command: leave it room.
    timeout = max(options.command_timeout, options.term_grace_seconds + 15)
    kwargs.setdefault("retry", RetrySettings(command_timeout=timeout))
    return AtScheduler(
        AtDialect(options),
        transport,
        binaries={k: v for k, v in options.binaries.items() if k in ("at", "atq", "atrm")},
        env=options.env,
        **kwargs,
    )

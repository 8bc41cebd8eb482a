"""The PBS scheduler: :class:`molq.batch.BatchScheduler` plus a per-user queue filter.

``qstat -u`` switches qstat to a fixed-width table that truncates names and drops times, so
the queue is read as ``qstat -f`` (JSON on PBS Pro) for every user and filtered on
``Job_Owner`` here.

TEMPORARY: this subclass exists only because :meth:`BatchDialect.parse_queue` does not receive
the user. Once core passes ``user`` to ``parse_queue`` (or filters entries by ``QueueEntry.user``
itself), :class:`PbsScheduler` can go and the factory can build a plain ``BatchScheduler``.
"""

from __future__ import annotations

from molq.batch import BatchScheduler
from molq.errors import SchedulerError
from molq.model import QueueEntry

__all__ = ["PbsScheduler"]


class PbsScheduler(BatchScheduler):
    """A :class:`BatchScheduler` whose :meth:`list_queue` keeps one user's jobs (default: the
    user the transport logs in as)."""

    _login_user: str | None = None

    def list_queue(self, *, user: str | None = None) -> list[QueueEntry]:
        entries = super().list_queue(user=user)
        who = user or self.login_user()
        return [e for e in entries if e.user == who]

    def login_user(self) -> str:
        """The user name on the cluster side (``id -un``, asked once)."""
        if self._login_user is None:
            result = self.transport.run(["id", "-un"], timeout=self.retry.command_timeout)
            name = result.stdout.strip()
            if result.returncode != 0 or not name:
                raise SchedulerError(f"pbs: cannot find the login user: {result.stderr.strip()}")
            self._login_user = name
        return self._login_user

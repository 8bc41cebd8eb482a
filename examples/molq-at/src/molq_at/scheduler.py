"""The ``at`` scheduler: molq's shared batch runner driving :class:`~molq_at.dialect.AtDialect`.

There is no at subclass of the runner. The two things at needs beyond the usual command lines
are dialect hooks: the cancel command takes the job directories as well as at's ids
(:meth:`~molq_at.dialect.AtDialect.cancel_argv_for`: atrm cannot stop a running job, its
session has to be signalled, and its leader's pid is in the job directory), and atq cannot
list one user's jobs, so the runner keeps them (``queue_filters_user_itself = False``).
"""

from __future__ import annotations

from typing import Any

from molq.batch import BatchScheduler, RetrySettings
from molq.errors import ConfigError
from molq.transport import Transport

from molq_at.dialect import AtDialect
from molq_at.options import AtOptions

__all__ = ["AtScheduler", "build_scheduler"]


def build_scheduler(transport: Transport, options: AtOptions | None = None, **kwargs: Any) -> BatchScheduler:
    """The batch runner with :class:`AtDialect` over ``transport``; ``kwargs`` go to the runner
    (``sleep=``...).

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
    return BatchScheduler(
        AtDialect(options),
        transport,
        binaries={k: v for k, v in options.binaries.items() if k in ("at", "atq", "atrm")},
        env=options.env,
        **kwargs,
    )


#: The name earlier releases exported (then a subclass of the runner); builds the same scheduler.
AtScheduler = build_scheduler

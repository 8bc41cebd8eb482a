"""``SlurmScheduler``: the shared batch runner configured for SLURM from :class:`SlurmOptions`.

Everything SLURM-specific lives in :class:`~molq_slurm.dialect.SlurmDialect` (exit-code
refinement, what "accounting disabled" means, which records are one job): the runner is core's
plain :class:`~molq.batch.BatchScheduler`, the same for every batch scheduler.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from molq.batch import BatchScheduler
from molq.transport import Transport

from molq_slurm.dialect import SlurmDialect
from molq_slurm.options import SlurmOptions
from molq_slurm.privacy import LoginUmask

__all__ = ["SlurmScheduler", "TIME_FORMAT_ENV"]

#: Environment every SLURM command gets unless the options override it: times as epoch
#: seconds, so no parser has to guess the cluster's time zone.
TIME_FORMAT_ENV = {"SLURM_TIME_FORMAT": "%s"}


def SlurmScheduler(  # noqa: N802 -- the public name of what used to be a class
    transport: Transport,
    options: SlurmOptions | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchScheduler:
    """A :class:`~molq.batch.BatchScheduler` running :class:`SlurmDialect` with ``options``.

    >>> from molq.transport import LocalTransport
    >>> sched = SlurmScheduler(LocalTransport(), SlurmOptions(default_partition="debug"))
    >>> sched.name, type(sched.dialect).__name__
    ('slurm', 'SlurmDialect')
    """
    options = options or SlurmOptions()
    dialect = SlurmDialect.from_options(options)
    if options.private_outputs and "SLURM_UMASK" not in options.env:
        dialect.user_umask = LoginUmask(transport)
    scheduler = BatchScheduler(
        dialect,
        transport,
        binaries=dict(options.binaries),
        extra_submit_args=options.extra_sbatch_args,
        env={**TIME_FORMAT_ENV, **options.env},
        array_limit=options.max_array_size,
        sleep=sleep,
        **options.runner_settings(),
    )
    return scheduler

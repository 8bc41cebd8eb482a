"""Build the LSF scheduler: the shared batch runner driving :class:`~molq_lsf.dialect.LsfDialect`."""

from __future__ import annotations

from typing import Any

from molq.batch import BatchScheduler
from molq.errors import ConfigError

from molq_lsf.dialect import LsfDialect
from molq_lsf.options import LsfOptions

__all__ = ["build_scheduler", "LSFScheduler"]


def build_scheduler(transport: Any, options: LsfOptions | None = None, **kwargs: Any) -> BatchScheduler:
    """A :class:`~molq.batch.BatchScheduler` for LSF over ``transport``.

    ``kwargs`` go to :class:`~molq.batch.BatchScheduler` (e.g. ``sleep=`` in tests).

    >>> from molq.transport import LocalTransport
    >>> build_scheduler(LocalTransport(), LsfOptions(default_queue="short")).name
    'lsf'
    """
    if options is None:
        options = LsfOptions()
    elif not isinstance(options, LsfOptions):
        raise ConfigError(f"the lsf scheduler takes LsfOptions, got {type(options).__name__}")
    kwargs = {**options.runner_settings(), "array_limit": options.array_limit, **kwargs}
    return BatchScheduler(
        LsfDialect(options),
        transport,
        binaries=options.binaries,
        extra_submit_args=options.extra_bsub_args,
        env=options.env,
        **kwargs,
    )


#: The public name of the LSF scheduler: a factory of plain
#: :class:`~molq.batch.BatchScheduler` objects driving an :class:`~molq_lsf.dialect.LsfDialect`.
LSFScheduler = build_scheduler

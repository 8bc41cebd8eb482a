"""molq backend: IBM Spectrum LSF.

>>> from molq_lsf import LsfDialect, LsfOptions
>>> LsfDialect(LsfOptions(unit_for_limits="MB")).name
'lsf'
"""

from __future__ import annotations

from typing import Any

from molq_lsf._version import __version__
from molq_lsf.options import LsfOptions
from molq_lsf.states import LSF_STATES, classify_exit, map_state

__all__ = [
    "__version__",
    "LsfOptions",
    "LsfDialect",
    "build_scheduler",
    "LSFScheduler",
    "LSF_STATES",
    "map_state",
    "classify_exit",
]


def __getattr__(name: str) -> Any:
    # The dialect and runner import more of molq; load them only when asked for.
    if name == "LsfDialect":
        from molq_lsf.dialect import LsfDialect

        return LsfDialect
    if name in ("build_scheduler", "LSFScheduler"):
        from molq_lsf import scheduler

        return getattr(scheduler, name)
    raise AttributeError(f"module 'molq_lsf' has no attribute {name!r}")


def LSFScheduler(transport: Any, options: LsfOptions | None = None, **kwargs: Any) -> Any:
    """The LSF scheduler for ``transport``, built as ``Cluster(..., "lsf")`` builds it.

    The name the API reference uses for the LSF implementation: molq's batch runner with
    :class:`LsfDialect` (see ``build_scheduler``).

    >>> from molq.transport import LocalTransport
    >>> LSFScheduler(LocalTransport(), LsfOptions(default_queue="short")).name
    'lsf'
    """
    from molq_lsf.scheduler import build_scheduler

    return build_scheduler(transport, options, **kwargs)

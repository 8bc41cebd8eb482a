"""molq-at: an example third-party molq scheduler for the ``batch`` queue of ``at``.

``pip install molq-at`` and ``Cluster("box", "at")`` submits jobs with ``at -q b``: they run
when the machine's load average allows (atd's ``-l`` limit).

>>> from molq_at import AtOptions
>>> AtOptions().queue
'b'
"""

from __future__ import annotations

from typing import Any

from molq_at.options import AtOptions
from molq_at.states import AT_STATES, map_state

__version__ = "0.1.0"

__all__ = ["__version__", "AtOptions", "AtDialect", "AtScheduler", "build_scheduler", "AT_STATES", "map_state"]


def __getattr__(name: str) -> Any:
    # The dialect and the runner import more of molq: load them only when asked for.
    if name == "AtDialect":
        from molq_at.dialect import AtDialect

        return AtDialect
    if name in ("AtScheduler", "build_scheduler"):
        from molq_at import scheduler

        return getattr(scheduler, name)
    raise AttributeError(f"module 'molq_at' has no attribute {name!r}")

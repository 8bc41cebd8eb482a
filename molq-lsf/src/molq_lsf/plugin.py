"""Registers the LSF backend with molq (entry point group "molq").

Heavy modules (the dialect, the batch runner) are imported inside the factory so that
discovering plugins stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from molq.hookspecs import hookimpl
from molq.plugin_types import SchedulerPlugin

from molq_lsf.options import LsfOptions

MOLQ_PLUGIN_API = 1


def _factory(transport: Any, options: LsfOptions | None) -> Any:
    from molq_lsf.scheduler import build_scheduler

    return build_scheduler(transport, options)


@hookimpl
def molq_register_schedulers() -> Iterator[SchedulerPlugin]:
    """The ``lsf`` scheduler (IBM Spectrum LSF 10.1+)."""
    yield SchedulerPlugin(
        name="lsf",
        factory=_factory,
        options_type=LsfOptions,
        description="IBM Spectrum LSF (bsub / bjobs -json / bkill)",
    )

"""Registers the PBS backend with molq (entry point group "molq").

``Cluster("hpc", "pbs", scheduler_options=PbsOptions(flavor="torque"))``; the dialect modules
are imported only when a scheduler is built.
"""

from __future__ import annotations

from typing import Any

from molq.hookspecs import hookimpl
from molq.plugin_types import SchedulerPlugin

from molq_pbs.options import PbsOptions

MOLQ_PLUGIN_API = 1


def build_scheduler(transport: Any, options: PbsOptions | None = None) -> Any:
    """A PBS scheduler for ``transport``: the PBS Pro or Torque dialect run by molq's batch
    runner, configured from ``options``."""
    from molq_pbs.scheduler import build_scheduler as build

    return build(transport, options)


@hookimpl
def molq_register_schedulers():  # type: ignore[no-untyped-def]
    """The ``pbs`` scheduler (PBS Pro / OpenPBS and Torque)."""
    yield SchedulerPlugin(
        name="pbs",
        factory=build_scheduler,
        options_type=PbsOptions,
        description="PBS Professional / OpenPBS and Torque (qsub, qstat, qdel)",
    )

"""Registers the SLURM backend with molq (entry point group "molq").

Only light modules are imported here; the dialect and runner load when a cluster needs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from molq.hookspecs import hookimpl
from molq.plugin_types import SchedulerPlugin

MOLQ_PLUGIN_API = 1


def _make_scheduler(transport: Any, options: Any) -> Any:
    from molq_slurm.scheduler import SlurmScheduler

    return SlurmScheduler(transport, options)


@hookimpl
def molq_register_schedulers() -> Iterator[SchedulerPlugin]:
    from molq_slurm.options import SlurmOptions

    yield SchedulerPlugin(
        name="slurm",
        factory=_make_scheduler,
        options_type=SlurmOptions,
        description="SLURM (sbatch, squeue, sacct, scontrol, scancel)",
    )

"""Registers the ``at`` scheduler with molq.

This module is what the entry point names (``[project.entry-points.molq] at =
"molq_at.plugin"``). molq imports it the first time it looks for plugins, so it imports as
little as possible: the dialect and the runner load inside the factory, when a Cluster using
``"at"`` first needs its scheduler.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from molq.hookspecs import hookimpl
from molq.plugin_types import SchedulerPlugin

from molq_at.options import AtOptions

#: The plugin API this module was written for; molq refuses to load it under another one.
MOLQ_PLUGIN_API = 1


def _factory(transport: Any, options: AtOptions | None) -> Any:
    from molq_at.scheduler import build_scheduler

    return build_scheduler(transport, options)


@hookimpl
def molq_register_schedulers() -> Iterator[SchedulerPlugin]:
    """The ``at`` scheduler: jobs go to atd's batch queue."""
    yield SchedulerPlugin(
        name="at",
        factory=_factory,
        options_type=AtOptions,
        description="Debian at/batch queue (at -f, atq, atrm)",
    )

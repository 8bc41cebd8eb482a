"""molq plugin module of molexp-molq (entry point ``molexp`` in the ``molq`` group).

It provides one event sink, which writes job state changes into the run directories' run.json.
"""

from __future__ import annotations

from collections.abc import Iterator

from molq.hookspecs import hookimpl
from molq.plugin_types import EventSink

MOLQ_PLUGIN_API = 1


def _handle(payload: object) -> None:
    # Imported on the first event, not when molq discovers plugins.
    from molexp_molq.sink import on_event

    on_event(payload)


@hookimpl
def molq_register_event_sinks() -> Iterator[EventSink]:
    """Keeps each molexp run's run.json status in step with its molq job."""
    yield EventSink(name="molexp-runs", handler=_handle,
                    description="updates run.json of molexp run directories")

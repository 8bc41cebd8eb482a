"""Lifecycle events: an in-process :class:`EventBus` plus every event-sink plugin.

>>> bus = EventBus()
>>> seen = []
>>> bus.on(EventType.JOB_COMPLETED, seen.append)
>>> bus.emit(EventType.JOB_COMPLETED, EventPayload(EventType.JOB_COMPLETED, job_id="abc"))
>>> seen[0].job_id
'abc'
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from typing import Any

import attrs

from molq.model import JobRecord, StatusTransition

log = logging.getLogger("molq.events")

__all__ = ["EventType", "EventPayload", "EventBus", "Handler"]


class EventType(str, enum.Enum):
    """What happened to a job."""

    STATUS_CHANGE = "status_change"
    JOB_SUBMITTED = "job_submitted"
    JOB_STARTED = "job_started"
    JOB_COMPLETED = "job_completed"
    JOB_FAILED = "job_failed"
    JOB_CANCELLED = "job_cancelled"
    JOB_TIMEOUT = "job_timeout"
    JOB_TIMED_OUT = "job_timed_out"
    JOB_LOST = "job_lost"
    JOB_RETRYING = "job_retrying"
    ALL_COMPLETED = "all_completed"


@attrs.frozen
class EventPayload:
    """One event: which job, the transition that caused it and the record after it."""

    event: EventType
    job_id: str | None = None
    transition: StatusTransition | None = None
    record: JobRecord | None = None
    data: dict[str, Any] = attrs.field(factory=dict, hash=False)


Handler = Callable[[EventPayload], None]


class EventBus:
    """Publish/subscribe for lifecycle events. Handler errors are logged, never raised into
    the lifecycle engine."""

    def __init__(self) -> None:
        self._handlers: dict[EventType, list[Handler]] = {}
        self._lock = threading.Lock()

    def on(self, event: EventType | str, handler: Handler) -> None:
        event = EventType(event)
        with self._lock:
            self._handlers.setdefault(event, []).append(handler)

    def off(self, event: EventType | str, handler: Handler) -> None:
        event = EventType(event)
        with self._lock:
            handlers = self._handlers.get(event, [])
            if handler in handlers:
                handlers.remove(handler)

    def has_handlers(self) -> bool:
        return any(self._handlers.values())

    def emit(self, event: EventType | str, data: EventPayload | dict[str, Any] | None = None) -> None:
        event = EventType(event)
        payload = data if isinstance(data, EventPayload) else EventPayload(event, data=dict(data or {}))
        with self._lock:
            handlers = list(self._handlers.get(event, ()))
        for handler in handlers:
            try:
                handler(payload)
            except Exception:  # noqa: BLE001
                log.exception("event handler %r failed for %s", handler, event.value)


def events_for_transition(new_state: Any, old_state: Any) -> list[EventType]:
    """The specific events a state change raises (besides STATUS_CHANGE)."""
    from molq.model import JobState

    out = [EventType.STATUS_CHANGE]
    if new_state == JobState.SUBMITTED:
        out.append(EventType.JOB_SUBMITTED)
    elif new_state == JobState.RUNNING:
        out.append(EventType.JOB_STARTED)
    elif new_state == JobState.SUCCEEDED:
        out.append(EventType.JOB_COMPLETED)
    elif new_state == JobState.FAILED:
        out.append(EventType.JOB_FAILED)
    elif new_state == JobState.CANCELLED:
        out.append(EventType.JOB_CANCELLED)
    elif new_state == JobState.TIMED_OUT:
        out += [EventType.JOB_TIMEOUT, EventType.JOB_TIMED_OUT]
    elif new_state == JobState.LOST:
        out.append(EventType.JOB_LOST)
    return out

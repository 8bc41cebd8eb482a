"""How often molq may ask a cluster's scheduler about jobs, and what every process knows about it.

A cluster's status commands (``squeue``, ``sacct``...) are shared by every molq process on a
store: one process polls, writes what it decided, and records the poll in the store; the others
find that record and use the stored states instead of polling again. :class:`PacingPolicy` is a
cluster's limits (set by the scheduler backend from its options); :class:`ClusterPace` is the
shared record, one per cluster, that the store keeps as one row and updates by compare-and-set.

The decisions built on them live in :mod:`molq.engine.shared_poll`.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from molq.errors import ConfigError

__all__ = ["PacingPolicy", "ClusterPace", "BUDGET_WINDOW"]

#: The command budget counts commands per window of this many seconds.
BUDGET_WINDOW = 60.0


def _positive(name: str) -> Any:
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{name} must be a positive number, got {value!r}")

    return check


@attrs.frozen
class PacingPolicy:
    """A cluster's polling limits.

    * ``min_interval`` -- seconds between two polls of the cluster, whichever process runs them;
      the interval right after a submission or a state change.
    * ``max_interval`` -- the longest interval, reached while nothing moves (x1.5 per quiet poll).
    * ``commands_per_minute`` -- status commands all processes together may run in one minute;
      past it, refreshes use the stored states until the minute is over.
    * ``backoff_initial`` / ``backoff_max`` -- the circuit breaker: after a poll in which the
      scheduler failed, nobody polls for ``backoff_initial`` seconds, doubled after every further
      failure up to ``backoff_max``; then one process probes, and polling resumes when it succeeds.
    """

    min_interval: float = attrs.field(default=2.0, validator=_positive("poll_interval"))
    max_interval: float = attrs.field(default=30.0, validator=_positive("poll_interval_max"))
    commands_per_minute: int = attrs.field(default=60, validator=_positive("commands_per_minute"))
    backoff_initial: float = attrs.field(default=5.0, validator=_positive("backoff_initial"))
    backoff_max: float = attrs.field(default=300.0, validator=_positive("backoff_max"))

    def __attrs_post_init__(self) -> None:
        if self.max_interval < self.min_interval:
            raise ConfigError(f"poll_interval_max ({self.max_interval:g}) must be at least "
                              f"poll_interval ({self.min_interval:g})")
        if self.backoff_max < self.backoff_initial:
            raise ConfigError("backoff_max must be at least backoff_initial")


@attrs.frozen
class ClusterPace:
    """What every process knows about the last polls of one cluster (wall-clock epoch seconds).

    ``polled_at`` is when the last successful poll started and ``written_at`` when its decisions
    were committed: a job not updated since ``written_at`` is described by the store as that
    poll found it. ``claimed_by``/``claimed_until``: a process polling right now, so the others
    wait for its answer. ``window_start``/``window_commands``: the command budget's current
    minute. ``failures``/``paused_until``/``last_error``: the circuit breaker.
    """

    polled_at: float | None = None
    written_at: float | None = None
    interval: float = 0.0
    claimed_by: str | None = None
    claimed_until: float = 0.0
    window_start: float = 0.0
    window_commands: int = 0
    failures: int = 0
    paused_until: float = 0.0
    last_error: str | None = None

    def budget_spent(self, now: float, per_minute: int) -> bool:
        """Whether the current window's command budget is used up (a window that is over
        has its whole budget again)."""
        return now - self.window_start < BUDGET_WINDOW and self.window_commands >= per_minute

    def in_window(self, now: float) -> ClusterPace:
        """This record with a new budget window opened at ``now`` when the last one is over."""
        if now - self.window_start < BUDGET_WINDOW:
            return self
        return attrs.evolve(self, window_start=now, window_commands=0)

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> ClusterPace:
        """A stored record; an unreadable one (another molq version, damage) is a fresh start:
        it only paces polling, it never decides a job's state."""
        try:
            data = json.loads(text or "{}")
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        known = {a.name for a in attrs.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError:
            return cls()

"""Fresh state for the commands that show jobs: refresh a cluster when its stored state is
stale, say how old the state shown is, and when it was last confirmed (``state_confirmed_at``)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import click

from molq.cli import render
from molq.cli.common import store_url
from molq.errors import MolqError


def needs_refresh(rec: Any) -> bool:
    """Whether the scheduler may know more than the stored record: an active job, or one
    whose retry is still to come."""
    return rec.state.value not in render.TERMINAL_STATES or (rec.next_retry_at is not None and rec.retried_by is None)


class Warnings:
    """Collects what the engine warns about during one refresh (an unanswered scheduler
    query), instead of letting Python print it raw."""

    def __init__(self) -> None:
        import logging

        self.messages: list[str] = []
        self._handler = logging.Handler(logging.WARNING)
        self._handler.emit = lambda record: self.messages.append(record.getMessage())  # type: ignore[method-assign]

    def __enter__(self) -> Warnings:
        import logging

        logging.getLogger("molq").addHandler(self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        import logging

        logging.getLogger("molq").removeHandler(self._handler)


def fresh_state(sess: Any, names: Iterable[str], *, no_refresh: bool = False) -> dict[str, float | None]:
    """Bring the clusters about to be shown up to date, when their stored state is stale.

    Local jobs on this host are always refreshed (it costs a few file reads); another
    cluster is refreshed (one scheduler query) when nobody did in the last
    :data:`molq.daemon.FRESH_SECONDS` seconds, a daemon included. Returns when each cluster's
    state was last confirmed (None: not known). When a cluster is not refreshed (``no_refresh``,
    or it cannot be reached) one line on stderr says how old its state is."""
    from molq.daemon import FRESH_SECONDS, daemon_files, note_refreshed, refreshed_at

    files = daemon_files(store_url())
    known = refreshed_at(files)
    confirmed: dict[str, float | None] = {}
    for name in dict.fromkeys(names):
        last = known.get(name)
        if no_refresh:
            confirmed[name] = last
            click.echo(f"molq: {name}: not refreshed (--no-refresh); {age_text(last)}", err=True)
            continue
        now = time.time()
        with Warnings() as warned:
            try:
                sub = sess.submitor(name)
                here = sub.target.scheduler == "local" and not sub.target.transport.is_remote
                if not here and last is not None and now - last < FRESH_SECONDS:
                    confirmed[name] = last
                    continue
                sub.refresh_jobs()
                problem = warned.messages[0] if warned.messages else None
            except MolqError as exc:
                problem = str(exc)
        if problem is None:
            note_refreshed(files, name, now)
            confirmed[name] = now
        else:
            from molq.cli.errors import one_line

            confirmed[name] = last
            click.echo(f"molq: {name}: could not refresh ({one_line(problem)}); {age_text(last)}", err=True)
    return confirmed


def age_text(last: float | None) -> str:
    if last is None:
        return "the state shown is as last recorded"
    return f"the state shown was confirmed {render.ago(last)}"


def confirmed_json(data: dict[str, Any], rec: Any, confirmed: dict[str, float | None]) -> dict[str, Any]:
    """``state_confirmed_at``: when the state in ``data`` was last known true: the last
    refresh of its cluster for a job that may still change, else its last recorded change."""
    when = rec.updated_at
    if needs_refresh(rec):
        last = confirmed.get(rec.cluster_name)
        if last is not None:
            when = max(last, when or 0.0)
    data["state_confirmed_at"] = render.iso(when)
    return data

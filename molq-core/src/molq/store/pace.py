"""The SQL side of the shared polling record (:class:`molq.pacing.ClusterPace`), one row per
cluster in ``molq_pace``.

:func:`update_pace` is a read-modify-write in one write transaction (SQLite: ``BEGIN
IMMEDIATE``; PostgreSQL: ``SELECT ... FOR UPDATE``), checked once more by the row's version, so
two processes deciding at once never both take the same poll.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from molq.pacing import ClusterPace
from molq.store.tables import pace_table

__all__ = ["read_pace", "update_pace"]

_c = pace_table.c


def read_pace(conn: sa.engine.Connection, cluster_name: str) -> ClusterPace:
    row = conn.execute(sa.select(_c.pace_json).where(_c.cluster_name == cluster_name)).first()
    return ClusterPace.from_json(row[0] if row else None)


def update_pace(
    conn: sa.engine.Connection, cluster_name: str, change: Callable[[ClusterPace], ClusterPace | None]
) -> tuple[ClusterPace, ClusterPace | None]:
    """Apply ``change`` to the cluster's record inside the caller's write transaction: (the
    record before, the record written or None when ``change`` wrote nothing or lost a race)."""
    row = conn.execute(
        sa.select(_c.version, _c.pace_json).where(_c.cluster_name == cluster_name).with_for_update()
    ).first()
    before = ClusterPace.from_json(row[1] if row else None)
    after = change(before)
    if after is None:
        return before, None
    text = after.to_json()
    if row is None:
        try:
            with conn.begin_nested():  # a concurrent first insert must not abort the transaction
                conn.execute(pace_table.insert().values(cluster_name=cluster_name, version=1, pace_json=text))
        except sa.exc.IntegrityError:
            return before, None
        return before, after
    done = conn.execute(
        pace_table.update().where(_c.cluster_name == cluster_name).where(_c.version == row[0])
        .values(version=row[0] + 1, pace_json=text)
    ).rowcount
    return before, (after if done == 1 else None)

"""Read-only listing of a SQLite store with the standard library alone: a second reader of
the one schema (:mod:`molq.store.schema`), so ``molq list`` does not pay for importing
SQLAlchemy. Writes always go through the SQL store."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from molq._states import ACTIVE_STATES, JobState
from molq.errors import StoreError
from molq.store.records import JOBS_TABLE, RECORD_COLUMNS, LiteRecord, row_to_lite, row_to_record
from molq.store.schema import LATE_RECORD_COLUMNS

if TYPE_CHECKING:
    from molq.model import JobRecord

__all__ = ["list_jobs", "sqlite_path"]


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///path`` URL, or None for any other store."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    path = url[len(prefix):]
    return path if path and path != ":memory:" else None


def list_jobs(
    path: str,
    cluster_name: str | None,
    *,
    include_terminal: bool = False,
    states: Sequence[JobState] | None = None,
    limit: int | None = None,
    newest_first: bool = True,
    lite: bool = False,
) -> list[JobRecord] | list[LiteRecord]:
    """Records from the SQLite file at ``path`` (read-only). ``lite=True`` returns
    :class:`~molq.store.records.LiteRecord` objects, which need no :mod:`molq.model` import.

    Raises :class:`~molq.errors.StoreError` for a file that is unreadable, not a SQLite
    database, damaged, or lacks the jobs table or one of its columns."""
    where: list[str] = []
    params: list[Any] = []
    if cluster_name is not None:
        where.append("cluster_name = ?")
        params.append(cluster_name)
    wanted = [s.value for s in states] if states else (None if include_terminal else [s.value for s in ACTIVE_STATES])
    if wanted is not None:
        where.append(f"state IN ({', '.join('?' * len(wanted))})")
        params.extend(wanted)
    sql = f"SELECT {{columns}} FROM {JOBS_TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY created_at {'DESC' if newest_first else 'ASC'}, job_id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    convert = row_to_lite if lite else row_to_record
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the job store {path}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute(sql.format(columns=", ".join(RECORD_COLUMNS)), params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such column" not in str(exc):
                raise
            # A store from before the sub-state columns, not yet migrated (this reader never
            # writes): list it without them.
            older = [c for c in RECORD_COLUMNS if c not in LATE_RECORD_COLUMNS]
            rows = conn.execute(sql.format(columns=", ".join(older)), params).fetchall()
        return [convert(row) for row in rows]  # type: ignore[return-value]
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot read the job store {path}: {exc} (run `molq store check` to diagnose it)"
        ) from exc
    finally:
        conn.close()

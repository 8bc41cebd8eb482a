"""Read-only listing of a store without SQLAlchemy: a second reader of the one schema
(:mod:`molq.store.schema`), so ``molq list`` does not pay for importing SQLAlchemy, the model
and the plugins. A SQLite file is read with the standard library, a PostgreSQL store with
psycopg alone. Writes always go through the SQL store."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from molq._states import ACTIVE_STATES, JobState
from molq.errors import StoreError
from molq.store.records import JOBS_TABLE, RECORD_COLUMNS, LiteRecord, row_to_lite, row_to_record

if TYPE_CHECKING:
    from molq.model import JobRecord

__all__ = ["list_jobs", "lite_location", "sqlite_path", "store_absent"]

_PG_SCHEMES = ("postgresql://", "postgresql+psycopg://", "postgres://")


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///path`` URL, or None for any other store."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    path = url[len(prefix):]
    return path if path and path != ":memory:" else None


def _pg_uri(url: str) -> str | None:
    """The libpq URI of a PostgreSQL store URL (psycopg 3, the driver molq uses), or None."""
    for scheme in _PG_SCHEMES:
        if url.startswith(scheme):
            return "postgresql://" + url[len(scheme):]
    return None


def lite_location(url: str) -> str | None:
    """What :func:`list_jobs` can read for the store ``url``: a SQLite file's path, a
    PostgreSQL store's libpq URI, or None (use the full store)."""
    return sqlite_path(url) or _pg_uri(url)


def store_absent(location: str) -> bool:
    """Whether the store at ``location`` certainly holds nothing: a SQLite file not created
    yet (listing it must not create it). A database server is never known to be absent."""
    return _pg_uri(location) is None and not os.path.exists(location)


def _hide_password(uri: str) -> str:
    return re.sub(r"^(\w+://[^:/@]*):[^@/]*@", r"\1:***@", uri)


def _pg_list(uri: str, sql: str, params: list[Any], convert: Any, query: dict[str, Any],
             cluster_name: str | None) -> list[Any]:
    try:
        import psycopg
    except ImportError:
        psycopg = None  # type: ignore[assignment]
    if psycopg is not None:
        try:
            conn = psycopg.connect(uri, connect_timeout=30)
        except psycopg.OperationalError as exc:
            # unreachable, refused, wrong credentials: the full store would say no more
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"the job store {_hide_password(uri)} failed: {text}") from None
        except psycopg.Error:
            conn = None  # a URI libpq does not take (an option only SQLAlchemy knows): full store
        if conn is not None:
            try:
                with conn.transaction():
                    conn.execute("SET TRANSACTION READ ONLY")
                    cur = conn.execute(sql.replace("?", "%s"), params)
                    names = [d.name for d in cur.description or ()]
                    rows = cur.fetchall()  # tuples in one call: far cheaper than a row factory
            except psycopg.errors.UndefinedTable:
                return []  # a database molq has not used yet: nothing to list, nothing created
            except psycopg.Error:
                pass  # an older schema (the full store migrates it) or a hiccup: full store
            else:
                return [convert(dict(zip(names, row))) for row in rows]
            finally:
                conn.close()
    # The full store: it says what to install, migrates an older schema, or names the fault.
    from molq.store.read import list_records

    return list_records(uri, cluster_name, lite=False, **query)


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
    """Records from the SQLite file at ``path``, or the PostgreSQL store at the libpq URI
    ``path`` (see :func:`lite_location`), read-only. ``lite=True`` returns
    :class:`~molq.store.records.LiteRecord` objects, which need no :mod:`molq.model` import
    (a PostgreSQL store this reader cannot read, say one of an older schema, is listed
    through the full store instead, as :class:`~molq.model.JobRecord` objects).

    Raises :class:`~molq.errors.StoreError` for a file that is unreadable, not a SQLite
    database, damaged, or lacks the jobs table or one of its columns, and for a database
    server that cannot be reached or refuses the login."""
    where: list[str] = []
    params: list[Any] = []
    if cluster_name is not None:
        where.append("cluster_name = ?")
        params.append(cluster_name)
    wanted = [s.value for s in states] if states else (None if include_terminal else [s.value for s in ACTIVE_STATES])
    if wanted is not None:
        where.append(f"state IN ({', '.join('?' * len(wanted))})")
        params.extend(wanted)
    sql = f"SELECT {', '.join(RECORD_COLUMNS)} FROM {JOBS_TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY created_at {'DESC' if newest_first else 'ASC'}, job_id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    convert = row_to_lite if lite else row_to_record
    uri = _pg_uri(path)
    if uri is not None:
        query: dict[str, Any] = dict(include_terminal=include_terminal, states=states, limit=limit,
                                     newest_first=newest_first)
        return _pg_list(uri, sql, params, convert, query, cluster_name)  # type: ignore[return-value]
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the job store {path}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        try:
            return [convert(row) for row in conn.execute(sql, params)]  # type: ignore[return-value]
        except sqlite3.OperationalError as exc:
            if "no such column" not in str(exc):
                raise
        # A store of an older schema, not migrated yet (this reader never writes): the columns
        # added since read as NULL.
        present = {r[1] for r in conn.execute(f"PRAGMA table_info({JOBS_TABLE})")}
        cols = [c if c in present else f"NULL AS {c}" for c in RECORD_COLUMNS]
        sql = sql.replace(", ".join(RECORD_COLUMNS), ", ".join(cols), 1)
        return [convert(row) for row in conn.execute(sql, params)]  # type: ignore[return-value]
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot read the job store {path}: {exc} (run `molq store check` to diagnose it)"
        ) from exc
    finally:
        conn.close()

"""The SQL job store: every job record, transition and dependency edge, on SQLAlchemy Core.

Default: SQLite at ``~/.molq/jobs.db`` (WAL, busy timeout and ``BEGIN IMMEDIATE`` for writes,
set on the store's own engine; folder 0700, file 0600). Any SQLAlchemy URL selects another
database, e.g. ``postgresql://molq@db/molq`` (psycopg 3) for a team sharing one store.

A state change and its transition row are written in one transaction, as a compare-and-set on
the old state: concurrent refreshers (daemons on several hosts, the CLI, user scripts) can never
apply the same transition twice or lose one.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from molq import serde
from molq.errors import StoreError
from molq.identity import host_identity
from molq.model import (
    ALLOWED_TRANSITIONS,
    JobDependency,
    JobRecord,
    JobState,
    StatusTransition,
)
from molq.store.engine import make_engine, normalize_url, sqlite_file, stamp_verified
from molq.store.migrate import init_schema
from molq.store.queries import ACTIVE_COLUMNS, ACTIVE_VALUES, SqlReads
from molq.store.records import RECORD_COLUMNS
from molq.store.schema import SCHEMA_VERSION
from molq.store.tables import (
    dependencies_table,
    jobs_table,
    leases_table,
    meta_table,
    metadata,
    transitions_table,
)
from molq.store.types import RELEASING, NewSubmission

if TYPE_CHECKING:
    from molq.pacing import ClusterPace

__all__ = ["SCHEMA_VERSION", "SqlJobStore", "default_store_url"]

def default_store_url() -> str:
    """``$MOLQ_STORE_URL``, or the SQLite file ``jobs.db`` in molq's home folder."""
    from molq.store.opening import default_store_url as _default

    return _default()


@functools.lru_cache(maxsize=64)
def _cas_update(columns: tuple[str, ...]) -> Any:
    """UPDATE ... WHERE job_id, cluster and state match, for a given set of columns (cached)."""
    return (
        jobs_table.update()
        .where(jobs_table.c.job_id == sa.bindparam("w_job_id"))
        .where(jobs_table.c.cluster_name == sa.bindparam("w_cluster"))
        .where(jobs_table.c.state == sa.bindparam("w_state"))
        .values({name: sa.bindparam(name) for name in columns})
    )


def _encode(fields: dict[str, Any]) -> dict[str, Any]:
    """Domain values that are stored as JSON text (``usage`` -> ``usage_json``): the JSON
    columns never leave the store package."""
    if "usage" not in fields:
        return fields
    out = dict(fields)
    usage = out.pop("usage")
    out["usage_json"] = None if usage is None or usage.is_empty() else json.dumps(usage.to_dict())
    return out


def _check_columns(table: sa.Table, columns: tuple[str, ...] | list[str]) -> None:
    unknown = [c for c in columns if c not in table.c]
    if unknown:
        raise ValueError(f"unknown columns for {table.name}: {unknown}")


@functools.lru_cache(maxsize=64)
def _sqlite_insert_sql(table: str, columns: tuple[str, ...]) -> str:
    _check_columns(metadata.tables[table], columns)
    names = ", ".join(columns)
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({names}) VALUES ({marks})"


@functools.lru_cache(maxsize=64)
def _sqlite_cas_sql(columns: tuple[str, ...]) -> str:
    _check_columns(jobs_table, columns)
    sets = ", ".join(f"{c} = ?" for c in columns)
    return f"UPDATE {jobs_table.name} SET {sets} WHERE job_id = ? AND cluster_name = ? AND state = ?"


@functools.lru_cache(maxsize=1)
def _sqlite_active_sql() -> str:
    _check_columns(jobs_table, ACTIVE_COLUMNS)
    columns = ", ".join(f"{c} IS NOT NULL" if c == "retry_json" else c for c in ACTIVE_COLUMNS)
    marks = ", ".join("?" * len(ACTIVE_VALUES))
    return f"SELECT {columns} FROM {jobs_table.name} WHERE cluster_name = ? AND state IN ({marks})"


def _oldest_first(row: Sequence[Any]) -> tuple[float, str]:
    return (row[7] or 0.0, row[0])  # created_at, job_id (see ACTIVE_COLUMNS)


def _record_from_values(row: dict[str, Any]) -> JobRecord:
    data: dict[str, Any] = {name: row.get(name) for name in RECORD_COLUMNS
                            if name not in ("metadata_json", "usage_json")}
    data["state"] = JobState(data["state"])
    data["metadata"] = json.loads(row.get("metadata_json") or "{}")
    data["usage"] = row.get("usage_json")  # JobRecord decodes the JSON text
    data["attempt"] = data["attempt"] or 1
    data["command_display"] = data["command_display"] or ""
    return JobRecord(**data)


def _store_error(url: str, exc: BaseException) -> StoreError:
    """One clear line for a store that cannot be used (locked, full, read-only, unreachable,
    damaged), instead of a driver traceback."""
    detail = getattr(exc, "orig", None) or exc
    text = str(detail).strip().splitlines()[0] if str(detail).strip() else type(detail).__name__
    hint = ""
    if "malformed" in text or "not a database" in text:
        from molq.store.engine import RECOVERY_HINT

        hint = "; " + RECOVERY_HINT
    return StoreError(f"the job store {url} failed: {text}{hint}")


def _is_operational(exc: BaseException) -> bool:
    """Errors of the store's environment (not of molq's statements): wrapped as StoreError.
    Integrity errors (a duplicate job id) keep their type."""
    if isinstance(exc, (sa.exc.IntegrityError, sqlite3.IntegrityError)):
        return False
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.InternalError)):
        return True
    if isinstance(exc, sa.exc.DatabaseError) and isinstance(getattr(exc, "orig", None), sqlite3.DatabaseError):
        return True
    return isinstance(exc, (sqlite3.OperationalError, sqlite3.DatabaseError)) and not isinstance(
        exc, sqlite3.ProgrammingError)


class SqlJobStore(SqlReads):
    """Persistent job records on SQLAlchemy. ``JobStore()`` opens ``~/.molq/jobs.db``.

    Accepts a SQLAlchemy URL or an existing :class:`sqlalchemy.engine.Engine` (which the store
    will not dispose of).
    """

    def __init__(self, url: str | Path | sa.engine.Engine | None = None) -> None:
        self._local = threading.local()
        if isinstance(url, sa.engine.Engine):
            self.engine = url
            self._owns_engine = False
            self.url = url.url.render_as_string(hide_password=True)
        else:
            if url is None:
                url = default_store_url()
            elif isinstance(url, Path) or (isinstance(url, str) and "://" not in url):
                url = f"sqlite:///{Path(url).expanduser()}"
            url = normalize_url(str(url))
            self.engine = make_engine(url)
            self.url = self.engine.url.render_as_string(hide_password=True)
            self._owns_engine = True
        # The raw fast path relies on our own connect listener (WAL, busy timeout), and on a
        # connection of this thread's own, which an in-memory store (one shared connection)
        # cannot give.
        self._raw_file_sqlite = (
            self._owns_engine
            and self.engine.dialect.name == "sqlite"
            and not isinstance(self.engine.pool, sa.pool.StaticPool)
        )
        self._raw_lock = threading.Lock()
        self._raw_pid = os.getpid()
        self._raws: list[Any] = []  # every DBAPI connection _raw_sqlite made in this process
        self._raw_free: list[Any] = []
        try:
            self._init_schema()
        except BaseException:
            if self._owns_engine:
                self.engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"JobStore({self.url!r})"

    # -- transactions ------------------------------------------------------------------------
    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            if _is_operational(exc):
                raise _store_error(self.url, exc) from exc
            raise

    @contextmanager
    def _write(self) -> Iterator[sa.engine.Connection]:
        batch = getattr(self._local, "conn", None)
        if batch is not None:
            yield batch
            return
        with self._guard(), self.engine.connect().execution_options(molq_write=True) as conn:
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.engine.Connection]:
        batch = getattr(self._local, "conn", None)
        if batch is not None:
            yield batch  # see our own uncommitted writes
            return
        with self._guard(), self.engine.connect() as conn:
            with conn.begin():
                yield conn

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run every store call of this thread inside one write transaction (committed at
        the end, rolled back on error). A refresh applies all its transitions this way: one
        commit instead of one per job."""
        if getattr(self._local, "conn", None) is not None:
            yield  # already batching
            return
        with self._guard(), self.engine.connect().execution_options(molq_write=True) as conn:
            with conn.begin():
                self._local.conn = conn
                try:
                    yield
                finally:
                    self._local.conn = None

    def _init_schema(self) -> None:
        with self._guard(), self._write() as conn:
            init_schema(conn, self.url)

    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar_one())

    def close(self) -> None:
        with self._raw_lock:
            if self._raw_pid == os.getpid():  # a connection inherited across fork() belongs to the parent
                for dbapi in self._raws:
                    dbapi.close()
            self._raws, self._raw_free = [], []
        if self._owns_engine:
            self.engine.dispose()
            path = sqlite_file(self.engine.url)
            if path is not None and path.exists():
                stamp_verified(path)

    # -- jobs --------------------------------------------------------------------------------
    def insert_job(
        self,
        values: dict[str, Any],
        dependencies: Sequence[JobDependency] = (),
        *,
        reason: str | None = None,
    ) -> JobRecord:
        """Insert a new job (state ``created``) with its dependency edges and first transition."""
        now = time.time()
        row = {
            "state": JobState.CREATED.value,
            "created_at": now,
            "updated_at": now,
            "attempt": 1,
            "command_display": "",
            "metadata_json": "{}",
            "spec_json": "{}",
            "missing_count": 0,
            "submit_pid": os.getpid(),
            **values,
        }
        # Every record names its host: only that host can see a local job (issue: several
        # hosts sharing one store must not declare each other's jobs lost).
        if not row.get("submit_host"):
            row["submit_host"] = host_identity()
        row.setdefault("root_job_id", row["job_id"])
        # Statements with bound parameters (not .values(...)) reuse SQLAlchemy's compiled cache.
        first = {"job_id": row["job_id"], "old_state": None, "new_state": row["state"], "timestamp": now,
                 "reason": reason}
        deps = [
            {
                "job_id": d.job_id,
                "dependency_job_id": d.dependency_job_id,
                "dependency_type": d.dependency_type,
                "scheduler_dependency": d.scheduler_dependency,
            }
            for d in dependencies
        ]
        if self._raw_file_sqlite:
            with self._sqlite_txn() as cur:
                cols = tuple(row)
                cur.execute(_sqlite_insert_sql(jobs_table.name, cols), [row[c] for c in cols])
                cur.execute(_sqlite_insert_sql(transitions_table.name, tuple(first)), list(first.values()))
                if deps:
                    cur.executemany(_sqlite_insert_sql(dependencies_table.name, tuple(deps[0])),
                                    [list(d.values()) for d in deps])
        else:
            with self._write() as conn:
                conn.execute(jobs_table.insert(), row)
                conn.execute(transitions_table.insert(), first)
                if deps:
                    conn.execute(dependencies_table.insert(), deps)
        return _record_from_values(row)

    def transition(
        self,
        cluster_name: str,
        job_id: str,
        old_state: JobState,
        new_state: JobState,
        *,
        reason: str | None = None,
        **fields: Any,
    ) -> StatusTransition | None:
        """Move ``job_id`` from ``old_state`` to ``new_state`` (compare-and-set), updating
        ``fields`` and appending the transition, in one transaction. Returns None if the job was
        no longer in ``old_state`` (someone else moved it first)."""
        if new_state not in ALLOWED_TRANSITIONS[old_state]:
            raise ValueError(f"illegal transition {old_state.value} -> {new_state.value}")
        now = time.time()
        values = {**_encode(fields), "state": new_state.value, "updated_at": now}
        columns = tuple(sorted(values))
        _check_columns(jobs_table, columns)
        row = {"job_id": job_id, "old_state": old_state.value, "new_state": new_state.value,
               "timestamp": now, "reason": reason}
        if self._raw_file_sqlite:
            with self._sqlite_txn() as cur:
                cur.execute(_sqlite_cas_sql(columns),
                            [values[c] for c in columns] + [job_id, cluster_name, old_state.value])
                if cur.rowcount != 1:
                    return None
                cur.execute(_sqlite_insert_sql(transitions_table.name, tuple(row)), list(row.values()))
        else:
            with self._write() as conn:
                result = conn.execute(_cas_update(columns), {
                    **values, "w_job_id": job_id, "w_cluster": cluster_name, "w_state": old_state.value,
                })
                if result.rowcount != 1:
                    return None
                conn.execute(transitions_table.insert(), row)
        return StatusTransition(job_id, old_state, new_state, now, reason)

    @contextmanager
    def _sqlite_txn(self) -> Iterator[Any]:
        """A DBAPI cursor in a write transaction, for the statements of every submission and
        state change on a SQLite file: SQLAlchemy's connection checkout, begin event and
        per-statement machinery cost many times the SQLite work itself there. Inside
        :meth:`batch` the batch's transaction is used; otherwise one of the store's own
        connections (:meth:`_raw_sqlite`) runs BEGIN IMMEDIATE ... COMMIT."""
        batch = getattr(self._local, "conn", None)
        if batch is not None:
            yield batch.connection.dbapi_connection.cursor()
            return
        with self._raw_sqlite() as dbapi, self._guard():
            cur = dbapi.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                if dbapi.in_transaction:
                    dbapi.rollback()
                raise

    @contextmanager
    def _raw_sqlite(self) -> Iterator[Any]:
        """A DBAPI connection to the SQLite file for one statement or transaction, from the
        store's own free list. Each was made by the engine (its connect listener set WAL,
        autocommit and the busy timeout), then detached from the engine's pool: holding one
        per thread in the pool exhausted it once bulk submissions had started more threads
        than the pool's limit, and a free list keeps only as many as ran at once."""
        pid = os.getpid()
        with self._raw_lock:
            if self._raw_pid != pid:  # inherited across fork(): the parent's, never used here
                self._raw_pid, self._raws, self._raw_free = pid, [], []
            dbapi = self._raw_free.pop() if self._raw_free else None
        if dbapi is None:
            with self._guard():
                fairy = self.engine.raw_connection()
                fairy.detach()
            dbapi = fairy.dbapi_connection
            assert dbapi is not None  # a live connection
            with self._raw_lock:
                self._raws.append(dbapi)
        try:
            yield dbapi
        finally:
            with self._raw_lock:
                if self._raw_pid == pid:
                    self._raw_free.append(dbapi)

    def _active_rows(self, cluster_name: str) -> Sequence[Sequence[Any]]:
        if not self._raw_file_sqlite:
            return super()._active_rows(cluster_name)
        # One statement outside a transaction is one consistent snapshot (WAL). The rows are
        # sorted here: SQLite's ORDER BY over the index's right part (a temporary B-tree)
        # doubled the query's cost.
        query = (_sqlite_active_sql(), (cluster_name, *ACTIVE_VALUES))
        batch = getattr(self._local, "conn", None)
        rows: list[tuple[Any, ...]]
        if batch is not None:
            with self._guard():
                rows = batch.connection.dbapi_connection.cursor().execute(*query).fetchall()
        else:
            with self._raw_sqlite() as dbapi, self._guard():
                rows = dbapi.execute(*query).fetchall()
        rows.sort(key=_oldest_first)
        return rows

    # -- domain-typed interface ----------------------------------------------------------------
    def add_submission(self, sub: NewSubmission) -> JobRecord:
        """Record a new job (state ``created``) with its dependency edges and first transition."""
        values: dict[str, Any] = {
            "job_id": sub.job_id,
            "cluster_name": sub.cluster_name,
            "scheduler": sub.scheduler,
            "command_type": sub.command_type,
            "command_display": sub.command_display,
            "job_name": sub.job_name,
            "profile_name": sub.profile_name,
            "cwd": sub.cwd,
            "job_dir": sub.job_dir,
            "metadata_json": json.dumps(dict(sub.metadata)),
            "spec_json": json.dumps(dict(sub.spec)),
            "retry_json": json.dumps(serde.unstructure(sub.retry)) if sub.retry is not None else None,
            "target_json": json.dumps(sub.target.to_dict(), default=str) if sub.target is not None else None,
            "root_job_id": sub.root_job_id or sub.job_id,
            "attempt": sub.attempt,
            "previous_attempt_job_id": sub.previous_attempt_job_id,
            "retry_group_id": sub.retry_group_id,
        }
        if sub.held is not None:
            values["held"] = sub.held
        return self.insert_job(values, sub.dependencies, reason=sub.reason)

    # -- column-level interface (the engine's current calls) -------------------------------
    def update_job(
        self, cluster_name: str, job_id: str, *, expect_state: JobState | None = None, **fields: Any
    ) -> bool:
        """Update non-state fields; with ``expect_state``, only while the job is in that state."""
        if "state" in fields:
            raise ValueError("use transition() to change a job's state")
        fields = _encode(fields)
        _check_columns(jobs_table, list(fields))
        stmt = (
            jobs_table.update()
            .where(jobs_table.c.job_id == job_id)
            .where(jobs_table.c.cluster_name == cluster_name)
            .values(**fields, updated_at=time.time())
        )
        if expect_state is not None:
            stmt = stmt.where(jobs_table.c.state == expect_state.value)
        with self._write() as conn:
            return conn.execute(stmt).rowcount == 1

    def claim_held(self, cluster_name: str, job_id: str, *, host: str, pid: int) -> bool:
        """Atomically take a held submission for release (only one process wins): it becomes an
        in-flight submission of ``host``/``pid``, its ``held`` column ``releasing:<host>:<pid>``
        until it is submitted, so an interrupted release is recovered, not lost."""
        with self._write() as conn:
            result = conn.execute(
                jobs_table.update()
                .where(jobs_table.c.job_id == job_id)
                .where(jobs_table.c.cluster_name == cluster_name)
                .where(jobs_table.c.state == JobState.CREATED.value)
                .where(jobs_table.c.held.is_not(None))
                .where(jobs_table.c.held.not_like(f"{RELEASING}%"))
                .values(held=f"{RELEASING}{host}:{pid}", submit_host=host, submit_pid=pid, updated_at=time.time())
            )
            return result.rowcount == 1

    def claim_retry(self, cluster_name: str, job_id: str, new_job_id: str) -> bool:
        """Atomically mark ``job_id`` as retried by ``new_job_id`` (only one process wins)."""
        with self._write() as conn:
            result = conn.execute(
                jobs_table.update()
                .where(jobs_table.c.job_id == job_id)
                .where(jobs_table.c.cluster_name == cluster_name)
                .where(jobs_table.c.retried_by.is_(None))
                .values(retried_by=new_job_id, next_retry_at=None, updated_at=time.time())
            )
            return result.rowcount == 1

    def delete_jobs(self, cluster_name: str, job_ids: Sequence[str]) -> int:
        if not job_ids:
            return 0
        with self._write() as conn:
            conn.execute(transitions_table.delete().where(transitions_table.c.job_id.in_(job_ids)))
            conn.execute(dependencies_table.delete().where(dependencies_table.c.job_id.in_(job_ids)))
            result = conn.execute(
                jobs_table.delete()
                .where(jobs_table.c.cluster_name == cluster_name)
                .where(jobs_table.c.job_id.in_(job_ids))
            )
            return result.rowcount

    # -- leases (one daemon per store) -------------------------------------------------------
    def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Take ``name`` (free, expired, or already ours) for ``ttl`` seconds. One conditional
        statement each way, so two contenders can never both win, on any database: the
        update succeeds only for the holder or over an expired lease, the insert only where
        no row exists."""
        now = time.time()
        c = leases_table.c
        with self._write() as conn:
            taken = conn.execute(
                leases_table.update()
                .where(c.name == name)
                .where(sa.or_(c.owner == owner, c.expires_at < now))
                .values(owner=owner, expires_at=now + ttl)
            ).rowcount
            if taken == 1:
                return True
            return self._insert_lease(conn, name, owner, now + ttl)

    @staticmethod
    def _insert_lease(conn: sa.engine.Connection, name: str, owner: str, expires_at: float) -> bool:
        values = {"name": name, "owner": owner, "expires_at": expires_at}
        dialect = conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            from sqlalchemy.dialects import postgresql, sqlite

            insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
            stmt = (insert(leases_table).values(**values).on_conflict_do_nothing(index_elements=["name"])
                    .returning(leases_table.c.name))  # rowcount is not reliable here on psycopg
            return conn.execute(stmt).first() is not None
        try:
            with conn.begin_nested():  # a failed insert must not abort the outer transaction
                conn.execute(leases_table.insert().values(**values))
        except sa.exc.IntegrityError:
            return False
        return True

    # -- shared polling record (molq.engine.shared_poll) -----------------------------------
    def read_pace(self, cluster_name: str) -> ClusterPace:
        """The cluster's shared polling record (a fresh one if none was written yet)."""
        from molq.store.pace import read_pace

        with self._read() as conn:
            return read_pace(conn, cluster_name)

    def update_pace(
        self, cluster_name: str, change: Callable[[ClusterPace], ClusterPace | None]
    ) -> tuple[ClusterPace, ClusterPace | None]:
        """Read-modify-write of the cluster's polling record, atomically (see
        :func:`molq.store.pace.update_pace`)."""
        from molq.store.pace import update_pace

        with self._write() as conn:
            return update_pace(conn, cluster_name, change)

    def release_lease(self, name: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute(
                leases_table.delete().where(leases_table.c.name == name).where(leases_table.c.owner == owner)
            )

"""The job store: every job record, transition and dependency edge, on SQLAlchemy Core.

Default: SQLite at ``~/.molq/jobs.db`` (WAL, busy timeout and ``BEGIN IMMEDIATE`` for writes,
set on the store's own engine; folder 0700, file 0600). Any SQLAlchemy URL selects another
database, e.g. ``postgresql+psycopg://molq@db/molq`` for a team sharing one store.

A state change and its transition row are written in one transaction, as a compare-and-set on
the old state: concurrent refreshers (a daemon, the CLI, user scripts) can never apply the same
transition twice or lose one.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy import event

from molq.errors import AmbiguousJobIdError, JobNotFoundError, StoreError
from molq.identity import host_name
from molq.model import (
    ACTIVE_STATES,
    ALLOWED_TRANSITIONS,
    JobDependency,
    JobRecord,
    JobState,
    StatusTransition,
)

__all__ = ["JobStore", "ActiveRow", "SCHEMA_VERSION", "default_store_url"]

SCHEMA_VERSION = 3

metadata = sa.MetaData()

meta_table = sa.Table(
    "molq_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

jobs_table = sa.Table(
    "molq_jobs",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("cluster_name", sa.String(255), nullable=False),
    sa.Column("scheduler", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("raw_state", sa.String(255)),
    sa.Column("root_job_id", sa.String(64), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, default=1),
    sa.Column("previous_attempt_job_id", sa.String(64)),
    sa.Column("retry_group_id", sa.String(64)),
    sa.Column("profile_name", sa.String(255)),
    sa.Column("scheduler_job_id", sa.String(255)),
    sa.Column("created_at", sa.Float),
    sa.Column("submitted_at", sa.Float),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("updated_at", sa.Float),
    sa.Column("exit_code", sa.Integer),
    sa.Column("exit_signal", sa.Integer),
    sa.Column("failure_reason", sa.Text),
    sa.Column("cwd", sa.Text),
    sa.Column("job_dir", sa.Text),
    sa.Column("command_type", sa.String(16), nullable=False),
    sa.Column("command_display", sa.Text, nullable=False, default=""),
    sa.Column("job_name", sa.Text),
    sa.Column("metadata_json", sa.Text, nullable=False, default="{}"),
    sa.Column("spec_json", sa.Text, nullable=False, default="{}"),
    sa.Column("retry_json", sa.Text),
    sa.Column("next_retry_at", sa.Float),
    sa.Column("retried_by", sa.String(64)),
    sa.Column("missing_count", sa.Integer, nullable=False, default=0),
    sa.Column("missing_since", sa.Float),
    sa.Column("target_json", sa.Text),  # how to rebuild the Cluster: scheduler, host, options
    sa.Column("submit_host", sa.String(255)),
    sa.Column("submit_pid", sa.Integer),
    sa.Column("cleaned_at", sa.Float),
    # When molq asked the scheduler to stop the job; the stop is recorded once confirmed.
    sa.Column("cancel_requested_at", sa.Float),
    # When a scheduler answer last confirmed the stored state.
    sa.Column("confirmed_at", sa.Float),
    # Why molq holds the submission back itself (waiting for an upstream's retries); NULL for
    # a job handed to the scheduler as soon as it was stored.
    sa.Column("held", sa.Text),
)
sa.Index("ix_molq_jobs_cluster_state", jobs_table.c.cluster_name, jobs_table.c.state)
sa.Index("ix_molq_jobs_root", jobs_table.c.root_job_id)
sa.Index("ix_molq_jobs_created", jobs_table.c.cluster_name, jobs_table.c.created_at)

transitions_table = sa.Table(
    "molq_transitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(64), sa.ForeignKey("molq_jobs.job_id", ondelete="CASCADE"), nullable=False),
    sa.Column("old_state", sa.String(16)),
    sa.Column("new_state", sa.String(16), nullable=False),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("reason", sa.Text),
)
sa.Index("ix_molq_transitions_job", transitions_table.c.job_id)

dependencies_table = sa.Table(
    "molq_dependencies",
    metadata,
    sa.Column("job_id", sa.String(64), sa.ForeignKey("molq_jobs.job_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("dependency_job_id", sa.String(64), primary_key=True),
    sa.Column("dependency_type", sa.String(16), primary_key=True),
    sa.Column("scheduler_dependency", sa.Text),
)
sa.Index("ix_molq_dependencies_upstream", dependencies_table.c.dependency_job_id)

leases_table = sa.Table(
    "molq_leases",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

def _add_missing_columns(conn: sa.engine.Connection) -> None:
    """Add the jobs-table columns a store created by an older molq-core lacks."""
    present = {c["name"] for c in sa.inspect(conn).get_columns(jobs_table.name)}
    for column in jobs_table.columns:
        if column.name in present:
            continue
        ddl = column.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {jobs_table.name} ADD COLUMN {column.name} {ddl}")


# Forward migrations: version -> function upgrading a connection from that version to the next.
MIGRATIONS: dict[int, Any] = {
    # 1 -> 2: target_json (how to rebuild a job's Cluster) and missing_since (LOST timing).
    1: _add_missing_columns,
    # 2 -> 3: cancel_requested_at (cancels recorded once confirmed), confirmed_at, held.
    2: _add_missing_columns,
}

from molq._records import RECORD_COLUMNS as _RECORD_COLUMNS  # noqa: E402
from molq._records import row_to_record  # noqa: E402

_SELECT_RECORD = [jobs_table.c[name] for name in _RECORD_COLUMNS]


def open_store(url: str | None = None) -> Any:
    """Open the job store for ``url`` (default: ``$MOLQ_STORE_URL`` or ``~/.molq/jobs.db``)
    through the store plugin that handles its scheme (the built-in SQL store for SQLAlchemy
    URLs)."""
    url = url or default_store_url()
    if "://" not in url:
        return JobStore(url)
    from molq.plugins import get_plugin_manager

    return get_plugin_manager().store_for_url(url).factory(url)


def default_store_url() -> str:
    env = os.environ.get("MOLQ_STORE_URL")
    if env:
        return env
    from molq.config import molq_home

    return f"sqlite:///{molq_home() / 'jobs.db'}"


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


def _check_columns(table: sa.Table, columns: tuple[str, ...]) -> None:
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


def _record_from_values(row: dict[str, Any]) -> JobRecord:
    data = {name: row.get(name) for name in _RECORD_COLUMNS if name != "metadata_json"}
    data["state"] = JobState(data["state"])
    data["metadata"] = json.loads(row.get("metadata_json") or "{}")
    data["attempt"] = data["attempt"] or 1
    data["command_display"] = data["command_display"] or ""
    return JobRecord(**data)


def _row_to_record(row: Any) -> JobRecord:
    return row_to_record(row._mapping)


#: The ``held`` column of a held job being released (followed by ``<host>:<pid>``).
RELEASING = "releasing:"


@attrs.frozen
class ActiveRow:
    """An active job as a refresh needs it: a light record plus the engine's own columns."""

    record: JobRecord
    has_retry: bool = False
    missing_count: int = 0
    missing_since: float | None = None
    cancel_requested_at: float | None = None
    held: str | None = None


class JobStore:
    """Persistent job records. ``JobStore()`` opens ``~/.molq/jobs.db``.

    Accepts a SQLAlchemy URL or an existing :class:`sqlalchemy.engine.Engine` (which the store
    will not dispose of).
    """

    def __init__(self, url: str | Path | sa.engine.Engine | None = None) -> None:
        import threading

        self._local = threading.local()
        if isinstance(url, sa.engine.Engine):
            self.engine = url
            self._owns_engine = False
            self.url = str(url.url)
        else:
            if url is None:
                url = default_store_url()
            elif isinstance(url, Path) or (isinstance(url, str) and "://" not in url):
                url = f"sqlite:///{Path(url).expanduser()}"
            self.url = str(url)
            self.engine = self._make_engine(self.url)
            self._owns_engine = True
        # The raw fast path relies on our own connect listener (WAL, busy timeout), and on a
        # connection of this thread's own, which an in-memory store (one shared connection)
        # cannot give.
        self._raw_file_sqlite = (
            self._owns_engine
            and self.engine.dialect.name == "sqlite"
            and not isinstance(self.engine.pool, sa.pool.StaticPool)
        )
        self._raws: list[Any] = []
        self._init_schema()

    def __repr__(self) -> str:
        return f"JobStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- engine ------------------------------------------------------------------------------
    @staticmethod
    def _make_engine(url: str) -> sa.engine.Engine:
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return sa.create_engine(url, pool_pre_ping=True, future=True)
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if not in_memory:
            path = Path(database).expanduser()
            # Private to the owner: jobs hold command lines, paths and environments.
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                os.close(fd)
            else:
                try:
                    if path.stat().st_mode & 0o077:
                        os.chmod(path, 0o600)
                except OSError:
                    pass
        kwargs: dict[str, Any] = {"future": True}
        if in_memory:
            kwargs["poolclass"] = sa.pool.StaticPool
            kwargs["connect_args"] = {"check_same_thread": False}
        else:
            kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
        engine = sa.create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let us issue BEGIN ourselves (pysqlite's implicit transactions defer locking).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            if not in_memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                # A checkpoint fsyncs the WAL and the database file. Every submission writes a
                # dozen pages, so SQLite's default (every 1000 pages) meant two fsyncs per ~80
                # jobs, which stall a busy filesystem (and the scheduler daemons sharing it)
                # for milliseconds. Checkpoint every ~40 MB instead, and cut the WAL file back
                # to 64 MB afterwards. Durability is unchanged: commits are in the WAL either way.
                cur.execute("PRAGMA wal_autocheckpoint=10000")
                cur.execute("PRAGMA journal_size_limit=67108864")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: sa.engine.Connection) -> None:
            # Writers take the write lock up front: no read-to-write upgrade, so no deadlock and
            # the busy timeout applies instead of an immediate "database is locked".
            if conn.get_execution_options().get("molq_write"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")

        return engine

    @contextmanager
    def _write(self) -> Iterator[sa.engine.Connection]:
        batch = getattr(self._local, "conn", None)
        if batch is not None:
            yield batch
            return
        with self.engine.connect().execution_options(molq_write=True) as conn:
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.engine.Connection]:
        batch = getattr(self._local, "conn", None)
        if batch is not None:
            yield batch  # see our own uncommitted writes
            return
        with self.engine.connect() as conn:
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
        with self.engine.connect().execution_options(molq_write=True) as conn:
            with conn.begin():
                self._local.conn = conn
                try:
                    yield
                finally:
                    self._local.conn = None

    def _init_schema(self) -> None:
        try:
            with self._write() as conn:
                metadata.create_all(conn, checkfirst=True)
                row = conn.execute(
                    sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
                ).first()
                if row is None:
                    conn.execute(meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
                    return
                version = int(row[0])
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"the job store {self.url} has schema version {version}, newer than this "
                        f"molq-core understands ({SCHEMA_VERSION}); upgrade molq-core"
                    )
                while version < SCHEMA_VERSION:
                    MIGRATIONS[version](conn)
                    version += 1
                conn.execute(
                    meta_table.update().where(meta_table.c.key == "schema_version").values(value=str(version))
                )
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot open the job store {self.url}: {exc}") from exc

    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar_one())

    def close(self) -> None:
        pid = os.getpid()
        for raw, owner in self._raws:
            if owner == pid:  # a connection inherited across fork() belongs to the parent
                raw.close()
        self._raws.clear()
        if self._owns_engine:
            self.engine.dispose()

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
            "metadata_json": "{}",
            "spec_json": "{}",
            "missing_count": 0,
            "submit_host": host_name(),
            "submit_pid": os.getpid(),
            **values,
        }
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
        values = {**fields, "state": new_state.value, "updated_at": now}
        columns = tuple(sorted(values))
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
        :meth:`batch` the batch's transaction is used; otherwise this thread's own connection
        (taken from the engine's pool once, so its connect listener has set WAL and the busy
        timeout) runs BEGIN IMMEDIATE ... COMMIT."""
        batch = getattr(self._local, "conn", None)
        if batch is not None:
            yield batch.connection.dbapi_connection.cursor()
            return
        raw = getattr(self._local, "raw", None)
        if raw is None or raw[1] != os.getpid():
            raw = (self.engine.raw_connection(), os.getpid())
            self._local.raw = raw
            self._raws.append(raw)
        dbapi = raw[0].dbapi_connection
        cur = dbapi.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            if dbapi.in_transaction:
                dbapi.rollback()
            raise

    def update_job(
        self, cluster_name: str, job_id: str, *, expect_state: JobState | None = None, **fields: Any
    ) -> bool:
        """Update non-state fields; with ``expect_state``, only while the job is in that state."""
        if "state" in fields:
            raise ValueError("use transition() to change a job's state")
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

    def get_job(self, cluster_name: str, job_id: str) -> JobRecord:
        with self._read() as conn:
            row = conn.execute(
                sa.select(*_SELECT_RECORD)
                .where(jobs_table.c.cluster_name == cluster_name)
                .where(jobs_table.c.job_id == job_id)
            ).first()
        if row is None:
            raise JobNotFoundError(f"no job {job_id!r} in cluster {cluster_name!r}")
        return _row_to_record(row)

    def _records_in(self, cluster_name: str, column: Any, values: Sequence[str]) -> list[JobRecord]:
        """Records whose ``column`` is one of ``values``, a few hundred per query."""
        unique = list(dict.fromkeys(values))
        out: list[JobRecord] = []
        with self._read() as conn:
            for start in range(0, len(unique), 500):
                rows = conn.execute(
                    sa.select(*_SELECT_RECORD)
                    .where(jobs_table.c.cluster_name == cluster_name)
                    .where(column.in_(unique[start:start + 500]))
                ).all()
                out.extend(_row_to_record(row) for row in rows)
        return out

    def get_jobs(self, cluster_name: str, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """Several records in one query (missing ids are left out)."""
        return {rec.job_id: rec for rec in self._records_in(cluster_name, jobs_table.c.job_id, job_ids)}

    def get_internal(self, cluster_name: str, job_id: str) -> dict[str, Any]:
        """Columns that are not part of :class:`JobRecord` (spec, retry policy, counters)."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(jobs_table.c.spec_json, jobs_table.c.retry_json, jobs_table.c.missing_count,
                          jobs_table.c.missing_since, jobs_table.c.cancel_requested_at, jobs_table.c.held,
                          jobs_table.c.submit_host, jobs_table.c.submit_pid, jobs_table.c.target_json)
                .where(jobs_table.c.cluster_name == cluster_name)
                .where(jobs_table.c.job_id == job_id)
            ).first()
        if row is None:
            raise JobNotFoundError(f"no job {job_id!r} in cluster {cluster_name!r}")
        m = row._mapping
        return {
            "spec": json.loads(m["spec_json"] or "{}"),
            "retry": json.loads(m["retry_json"]) if m["retry_json"] else None,
            "missing_count": m["missing_count"],
            "missing_since": m["missing_since"],
            "cancel_requested_at": m["cancel_requested_at"],
            "held": m["held"],
            "submit_host": m["submit_host"],
            "submit_pid": m["submit_pid"],
            "target": json.loads(m["target_json"]) if m["target_json"] else None,
        }

    def cluster_targets(self) -> dict[str, tuple[dict[str, Any] | None, str | None]]:
        """For each cluster name in the store: the newest record's target description and
        profile name (used to rebuild a Cluster for the CLI and the daemon)."""
        c = jobs_table.c
        out: dict[str, tuple[dict[str, Any] | None, str | None]] = {}
        with self._read() as conn:
            rows = conn.execute(
                sa.select(c.cluster_name, c.target_json, c.profile_name).order_by(c.created_at)
            ).all()
        for name, target, profile in rows:
            out[name] = (json.loads(target) if target else None, profile)
        return out

    def resolve_job_id(self, cluster_name: str | None, prefix: str) -> tuple[str, str]:
        """Full (cluster, job id) for an id or unique id prefix; ``cluster_name=None`` searches
        every cluster."""
        prefix = prefix.strip()
        if not prefix:
            raise JobNotFoundError("empty job id")
        stmt = sa.select(jobs_table.c.job_id, jobs_table.c.cluster_name).where(
            jobs_table.c.job_id.startswith(prefix, autoescape=True)
        ).limit(11)
        if cluster_name is not None:
            stmt = stmt.where(jobs_table.c.cluster_name == cluster_name)
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        exact = [r for r in rows if r[0] == prefix]
        if exact:
            return exact[0][1], exact[0][0]
        if not rows:
            where = f" in cluster {cluster_name!r}" if cluster_name else ""
            raise JobNotFoundError(f"no job matches {prefix!r}{where}")
        if len(rows) > 1:
            raise AmbiguousJobIdError(prefix, sorted(r[0] for r in rows)[:10])
        return rows[0][1], rows[0][0]

    def list_jobs(
        self,
        cluster_name: str | None,
        *,
        include_terminal: bool = False,
        states: Sequence[JobState] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[JobRecord]:
        stmt = sa.select(*_SELECT_RECORD)
        if cluster_name is not None:
            stmt = stmt.where(jobs_table.c.cluster_name == cluster_name)
        if states:
            stmt = stmt.where(jobs_table.c.state.in_([s.value for s in states]))
        elif not include_terminal:
            stmt = stmt.where(jobs_table.c.state.in_([s.value for s in ACTIVE_STATES]))
        order = jobs_table.c.created_at.desc() if newest_first else jobs_table.c.created_at
        stmt = stmt.order_by(order, jobs_table.c.job_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as conn:
            return [_row_to_record(r) for r in conn.execute(stmt)]

    def list_active_light(self, cluster_name: str) -> list[tuple[JobRecord, bool, int]]:
        """Active jobs with just what a refresh needs, plus whether each has a retry policy and
        how many successful queries in a row missed it.

        Cheaper than :meth:`list_jobs` (no metadata, fewer columns); refresh runs it often.
        """
        c = jobs_table.c
        stmt = (
            sa.select(c.job_id, c.scheduler, c.state, c.root_job_id, c.attempt, c.scheduler_job_id,
                      c.raw_state, c.created_at, c.submitted_at, c.started_at, c.job_dir,
                      c.retry_json.is_not(None), c.missing_count)
            .where(c.cluster_name == cluster_name)
            .where(c.state.in_([s.value for s in ACTIVE_STATES]))
            .order_by(c.created_at)
        )
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        return [
            (JobRecord(job_id=r[0], cluster_name=cluster_name, scheduler=r[1], state=JobState(r[2]),
                       root_job_id=r[3], attempt=r[4], scheduler_job_id=r[5], raw_state=r[6],
                       created_at=r[7], submitted_at=r[8], started_at=r[9], job_dir=r[10]), bool(r[11]), r[12] or 0)
            for r in rows
        ]

    def list_refresh_views(self, cluster_name: str) -> list[ActiveRow]:
        """Every active job of ``cluster_name`` with what a refresh needs (one query)."""
        c = jobs_table.c
        stmt = (
            sa.select(c.job_id, c.scheduler, c.state, c.root_job_id, c.attempt, c.scheduler_job_id,
                      c.raw_state, c.created_at, c.submitted_at, c.started_at, c.job_dir,
                      c.retry_json.is_not(None), c.missing_count, c.missing_since, c.cancel_requested_at,
                      c.held, c.updated_at)
            .where(c.cluster_name == cluster_name)
            .where(c.state.in_([s.value for s in ACTIVE_STATES]))
            .order_by(c.created_at)
        )
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        return [
            ActiveRow(JobRecord(job_id=r[0], cluster_name=cluster_name, scheduler=r[1], state=JobState(r[2]),
                                root_job_id=r[3], attempt=r[4], scheduler_job_id=r[5], raw_state=r[6],
                                created_at=r[7], submitted_at=r[8], started_at=r[9], job_dir=r[10],
                                updated_at=r[16]),
                      bool(r[11]), r[12] or 0, r[13], r[14], r[15])
            for r in rows
        ]

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

    def list_pending_retries(self, cluster_name: str) -> list[JobRecord]:
        stmt = (
            sa.select(*_SELECT_RECORD)
            .where(jobs_table.c.cluster_name == cluster_name)
            .where(jobs_table.c.next_retry_at.is_not(None))
            .where(jobs_table.c.retried_by.is_(None))
            .order_by(jobs_table.c.next_retry_at)
        )
        with self._read() as conn:
            return [_row_to_record(r) for r in conn.execute(stmt)]

    def list_clusters(self) -> list[tuple[str, str, str | None]]:
        """(cluster name, scheduler, profile name) of every cluster that has active jobs or
        pending retries."""
        stmt = (
            sa.select(jobs_table.c.cluster_name, jobs_table.c.scheduler, jobs_table.c.profile_name)
            .where(sa.or_(
                jobs_table.c.state.in_([s.value for s in ACTIVE_STATES]),
                sa.and_(jobs_table.c.next_retry_at.is_not(None), jobs_table.c.retried_by.is_(None)),
            ))
            .distinct()
        )
        with self._read() as conn:
            return [tuple(r) for r in conn.execute(stmt)]  # type: ignore[misc]

    def all_cluster_names(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute(sa.select(jobs_table.c.cluster_name).distinct())]

    def get_retry_family(self, cluster_name: str, root_job_id: str) -> list[JobRecord]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(*_SELECT_RECORD)
                .where(jobs_table.c.cluster_name == cluster_name)
                .where(jobs_table.c.root_job_id == root_job_id)
                .order_by(jobs_table.c.attempt)
            ).all()
        return [_row_to_record(r) for r in rows]

    def latest_attempts(self, cluster_name: str, root_job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """root job id -> its latest attempt, for many retry families in few queries."""
        out: dict[str, JobRecord] = {}
        for rec in self._records_in(cluster_name, jobs_table.c.root_job_id, root_job_ids):
            best = out.get(rec.root_job_id)
            if best is None or rec.attempt > best.attempt:
                out[rec.root_job_id] = rec
        return out

    def get_transitions(self, cluster_name: str, job_id: str) -> list[StatusTransition]:
        self.get_job(cluster_name, job_id)
        with self._read() as conn:
            rows = conn.execute(
                sa.select(transitions_table)
                .where(transitions_table.c.job_id == job_id)
                .order_by(transitions_table.c.id)
            ).all()
        return [
            StatusTransition(
                r.job_id, JobState(r.old_state) if r.old_state else None, JobState(r.new_state), r.timestamp, r.reason
            )
            for r in rows
        ]

    def get_dependencies(self, cluster_name: str, job_id: str) -> list[JobDependency]:
        return self._deps(cluster_name, dependencies_table.c.job_id == job_id)

    def get_dependents(self, cluster_name: str, job_id: str) -> list[JobDependency]:
        return self._deps(cluster_name, dependencies_table.c.dependency_job_id == job_id)

    def _deps(self, cluster_name: str, cond: Any) -> list[JobDependency]:
        stmt = (
            sa.select(dependencies_table)
            .join(jobs_table, jobs_table.c.job_id == dependencies_table.c.job_id)
            .where(jobs_table.c.cluster_name == cluster_name)
            .where(cond)
        )
        with self._read() as conn:
            return [
                JobDependency(r.job_id, r.dependency_job_id, r.dependency_type, r.scheduler_dependency)
                for r in conn.execute(stmt)
            ]

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
        now = time.time()
        with self._write() as conn:
            row = conn.execute(sa.select(leases_table).where(leases_table.c.name == name)).first()
            if row is None:
                conn.execute(leases_table.insert().values(name=name, owner=owner, expires_at=now + ttl))
                return True
            if row.owner == owner or row.expires_at < now:
                conn.execute(
                    leases_table.update().where(leases_table.c.name == name)
                    .values(owner=owner, expires_at=now + ttl)
                )
                return True
            return False

    def lease_owner(self, name: str) -> tuple[str, float] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(leases_table).where(leases_table.c.name == name)).first()
        return None if row is None else (row.owner, row.expires_at)

    def release_lease(self, name: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute(
                leases_table.delete().where(leases_table.c.name == name).where(leases_table.c.owner == owner)
            )

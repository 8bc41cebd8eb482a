"""Moving a store (SQLite <-> PostgreSQL, or any two SQL stores) and checking one.

:func:`copy_store` copies every record, transition and dependency edge (leases are not state
worth moving: whoever runs a daemon on the new store takes them anew), in one transaction on
the destination, then compares the row counts. :func:`check_store` verifies the file (SQLite),
the schema version and the integrity of every job's transition history.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from molq.errors import StoreError
from molq.model import ALLOWED_TRANSITIONS, JobState
from molq.store.engine import normalize_url, sqlite_file
from molq.store.migrate import schema_problems
from molq.store.schema import SCHEMA_VERSION
from molq.store.sql import SqlJobStore
from molq.store.tables import dependencies_table, jobs_table, leases_table, meta_table, transitions_table

__all__ = ["CheckReport", "check_store", "copy_store", "count_rows"]

_CHUNK = 1000
_COPIED = (jobs_table, transitions_table, dependencies_table)


def _open(store: SqlJobStore | str) -> tuple[SqlJobStore, bool]:
    if isinstance(store, SqlJobStore):
        return store, False
    if "://" in store and sa.engine.make_url(normalize_url(store)).get_backend_name() not in (
            "sqlite", "postgresql", "mysql", "mariadb"):
        raise StoreError(f"copying and checking work on SQL stores only, not {store.split(':', 1)[0]!r}")
    return SqlJobStore(store), True


def count_rows(store: SqlJobStore) -> dict[str, int]:
    """Rows per copied table."""
    with store.engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in _COPIED}


def _rows(conn: sa.engine.Connection, table: sa.Table, columns: list[str], order: list[Any]) -> Iterator[list[dict[str, Any]]]:
    result = conn.execution_options(stream_results=True).execute(
        sa.select(*(table.c[c] for c in columns)).order_by(*order))
    while True:
        chunk = result.fetchmany(_CHUNK)
        if not chunk:
            return
        yield [dict(r._mapping) for r in chunk]


def copy_store(src: SqlJobStore | str, dst: SqlJobStore | str, *, force: bool = False) -> dict[str, int]:
    """Copy ``src`` into ``dst`` (URLs or open SQL stores); returns the rows copied per table.

    Refuses a destination that already holds jobs unless ``force`` (which replaces them).
    Raises :class:`StoreError` when the counts after the copy differ from the source's."""
    source, close_src = _open(src)
    try:
        target, close_dst = _open(dst)
        try:
            return _copy(source, target, force)
        finally:
            if close_dst:
                target.close()
    finally:
        if close_src:
            source.close()


def _copy(source: SqlJobStore, target: SqlJobStore, force: bool) -> dict[str, int]:
    if source.url == target.url:
        raise StoreError("the source and the destination are the same store")
    existing = count_rows(target)
    if any(existing.values()) and not force:
        raise StoreError(
            f"the destination {target.url} is not empty ({existing[jobs_table.name]} jobs, "
            f"{existing[transitions_table.name]} transitions); use --force to replace its contents"
        )
    expected = count_rows(source)
    job_cols = [c.name for c in jobs_table.columns]
    # Transition ids are left to the destination (its own sequence); copying in id order keeps
    # every job's history in order.
    tr_cols = [c.name for c in transitions_table.columns if c.name != "id"]
    dep_cols = [c.name for c in dependencies_table.columns]
    with source.engine.connect() as read, target.engine.connect().execution_options(molq_write=True) as write:
        with read.begin(), write.begin():
            for table in (transitions_table, dependencies_table, leases_table, jobs_table):
                write.execute(table.delete())
            for table, cols, order in (
                (jobs_table, job_cols, [jobs_table.c.job_id]),
                (transitions_table, tr_cols, [transitions_table.c.id]),
                (dependencies_table, dep_cols, [dependencies_table.c.job_id, dependencies_table.c.dependency_job_id]),
            ):
                for chunk in _rows(read, table, cols, order):
                    write.execute(table.insert(), chunk)
    copied = count_rows(target)
    if copied != expected:
        raise StoreError(f"the copy is incomplete: source {expected}, destination {copied}")
    return copied


@dataclass
class CheckReport:
    url: str
    schema_version: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _sqlite_integrity(path: Path) -> list[str]:
    try:
        with open(path, "rb") as f:
            if not f.read(16).startswith(b"SQLite format 3"):
                return [f"{path} is not a SQLite database (truncated, zeroed or overwritten)"]
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as exc:
        return [f"cannot check {path}: {exc}"]
    return [] if rows == ["ok"] else [f"integrity check: {r}" for r in rows]


def _history_problems(conn: sa.engine.Connection) -> list[str]:
    problems: list[str] = []
    states = dict(conn.execute(sa.select(jobs_table.c.job_id, jobs_table.c.state)).all())
    t = transitions_table.c
    history: dict[str, list[tuple[str | None, str]]] = {}
    for job_id, old, new in conn.execute(sa.select(t.job_id, t.old_state, t.new_state).order_by(t.job_id, t.id)):
        history.setdefault(job_id, []).append((old, new))
    for job_id in history.keys() - states.keys():
        problems.append(f"transitions of a job that does not exist: {job_id}")
    for job_id, state in states.items():
        steps = history.get(job_id)
        if not steps:
            problems.append(f"job {job_id} has no transition history")
            continue
        if steps[0] != (None, JobState.CREATED.value):
            problems.append(f"job {job_id}: history starts with {steps[0][0]} -> {steps[0][1]}, not -> created")
        for (_, prev), (old, new) in zip(steps, steps[1:]):
            try:
                legal = old == prev and JobState(new) in ALLOWED_TRANSITIONS[JobState(old)]  # type: ignore[arg-type]
            except ValueError:
                legal = False
            if not legal:
                problems.append(f"job {job_id}: transition {old} -> {new} after {prev}")
        if steps[-1][1] != state:
            problems.append(f"job {job_id}: state {state} but its last transition leads to {steps[-1][1]}")
    d = dependencies_table.c
    for (job_id,) in conn.execute(sa.select(d.job_id).where(d.job_id.not_in(sa.select(jobs_table.c.job_id)))):
        problems.append(f"dependency edge of a job that does not exist: {job_id}")
    return problems


def check_store(url: str) -> CheckReport:
    """Verify the store at ``url``: the file (SQLite integrity check), the schema version and
    the tables, and every job's transition history (starts at created, follows the allowed
    transitions, ends in the job's state). Never writes; never raises for a damaged store."""
    url = normalize_url(url if "://" in url else f"sqlite:///{Path(url).expanduser()}")
    report = CheckReport(url=url.split("@")[-1] if "@" in url else url)
    path = sqlite_file(sa.engine.make_url(url))
    if path is not None:
        if not path.exists():
            report.problems.append(f"{path} does not exist")
            return report
        report.problems.extend(_sqlite_integrity(path))
        if report.problems:
            return report
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    try:
        engine = sa.create_engine(url)
    except ImportError as exc:
        report.problems.append(f"missing database driver ({exc.name}); pip install 'molq-core[postgresql]'")
        return report
    try:
        with engine.connect() as conn:
            problems = schema_problems(conn)
            if meta_table.name in sa.inspect(conn).get_table_names():
                row = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).first()
                report.schema_version = int(row[0]) if row and row[0].isdigit() else None
            if report.schema_version != SCHEMA_VERSION:
                report.problems.append(
                    f"schema version {report.schema_version}, this molq-core writes {SCHEMA_VERSION}"
                    + (" (opening the store with molq migrates it)" if (report.schema_version or 0) < SCHEMA_VERSION else ""))
            elif problems:
                report.problems.extend(problems)
            if not problems:
                report.counts = {
                    tb.name: conn.execute(sa.select(sa.func.count()).select_from(tb)).scalar_one() for tb in _COPIED}
                report.problems.extend(_history_problems(conn))
    except sa.exc.SQLAlchemyError as exc:
        report.problems.append(f"cannot read the store: {str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}")
    finally:
        engine.dispose()
    return report

"""Creating the schema, forward migrations, and the check that a store's tables match the
schema version it claims."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from molq.errors import StoreError
from molq.store import schema
from molq.store.tables import jobs_table, meta_table, metadata

__all__ = ["MIGRATIONS", "init_schema", "schema_problems"]


def _add_missing_columns(conn: sa.engine.Connection) -> None:
    """Add the jobs-table columns a store created by an older molq-core lacks (every column
    added since the first release is nullable or has a default)."""
    present = {c["name"] for c in sa.inspect(conn).get_columns(jobs_table.name)}
    for column in jobs_table.columns:
        if column.name in present:
            continue
        ddl = column.type.compile(dialect=conn.dialect)
        default = column.default.arg if column.default is not None else None  # type: ignore[attr-defined]
        extra = ""
        if not column.nullable:
            extra = f" NOT NULL DEFAULT {default!r}" if isinstance(default, (int, float)) else " NOT NULL DEFAULT ''"
        conn.exec_driver_sql(f"ALTER TABLE {jobs_table.name} ADD COLUMN {column.name} {ddl}{extra}")


# version -> function upgrading a connection from that version to the next.
MIGRATIONS: dict[int, Callable[[sa.engine.Connection], None]] = {
    1: _add_missing_columns,  # 1 -> 2: target_json, missing_since
    2: _add_missing_columns,  # 2 -> 3: cancel_requested_at, confirmed_at, held
    3: _add_missing_columns,  # 3 -> 4: end_cause, usage_json
    4: _add_missing_columns,  # 4 -> 5: the molq_pace table (made by create_all before migrating)
    5: _add_missing_columns,  # 5 -> 6: sub_state, sub_state_reason
}


def schema_problems(conn: sa.engine.Connection, *, tables_exist: bool = False) -> list[str]:
    """What the tables lack compared with :mod:`molq.store.schema` (empty when they match).
    One empty SELECT per table: cheaper than reflection on every open, on every database."""
    tables = None if tables_exist else set(sa.inspect(conn).get_table_names())
    problems = []
    for decl in schema.TABLES:
        if tables is not None and decl.name not in tables:
            problems.append(f"table {decl.name} is missing")
            continue
        present = set(conn.exec_driver_sql(f"SELECT * FROM {decl.name} WHERE 1 = 0").keys())
        missing = [name for name in decl.column_names() if name not in present]
        if missing:
            problems.append(f"table {decl.name} lacks column(s) {', '.join(missing)}")
    return problems


def init_schema(conn: sa.engine.Connection, url: str) -> None:
    """Create a new store's tables, or migrate an older one forward, then verify the tables
    match the version (a dropped column is refused here, not met as a failed query later)."""
    metadata.create_all(conn, checkfirst=True)
    row = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).first()
    if row is None:
        conn.execute(meta_table.insert().values(key="schema_version", value=str(schema.SCHEMA_VERSION)))
        return
    try:
        version = int(row[0])
    except ValueError:
        raise StoreError(f"the job store {url} has an unreadable schema version {row[0]!r}") from None
    if version > schema.SCHEMA_VERSION:
        raise StoreError(
            f"the job store {url} has schema version {version}, newer than this molq-core "
            f"understands ({schema.SCHEMA_VERSION}); upgrade molq-core"
        )
    if version < 1:
        raise StoreError(f"the job store {url} has an invalid schema version {version}")
    while version < schema.SCHEMA_VERSION:
        MIGRATIONS[version](conn)
        version += 1
        conn.execute(meta_table.update().where(meta_table.c.key == "schema_version").values(value=str(version)))
    problems = schema_problems(conn, tables_exist=True)  # create_all made every table
    if problems:
        raise StoreError(
            f"the job store {url} does not match its schema version {version}: {'; '.join(problems)} "
            f"(run `molq store check`; restore a backup or copy the store with `molq store copy`)"
        )

"""SQLAlchemy Core tables, derived from the one declaration in :mod:`molq.store.schema`."""

from __future__ import annotations

import sqlalchemy as sa

from molq.store import schema

__all__ = [
    "dependencies_table", "jobs_table", "leases_table", "meta_table", "metadata", "pace_table", "table_for",
    "transitions_table",
]

metadata = sa.MetaData()

_TYPES = {"text": sa.Text, "int": sa.Integer, "float": sa.Float}


def _column(col: schema.Column, table: schema.Table) -> sa.Column:  # type: ignore[type-arg]
    type_: sa.types.TypeEngine = sa.String(col.length) if col.type == "str" else _TYPES[col.type]()  # type: ignore[type-arg]
    args: list[object] = [col.name, type_]
    if col.references:
        args.append(sa.ForeignKey(col.references, ondelete="CASCADE"))
    kwargs: dict[str, object] = {"primary_key": col.primary_key, "nullable": col.nullable}
    if col.default is not None:
        kwargs["default"] = col.default
    if table.autoincrement == col.name:
        kwargs["autoincrement"] = True
    return sa.Column(*args, **kwargs)  # type: ignore[arg-type]


def _table(decl: schema.Table) -> sa.Table:
    table = sa.Table(decl.name, metadata, *(_column(c, decl) for c in decl.columns))
    for index in decl.indexes:
        sa.Index(index.name, *(table.c[name] for name in index.columns))
    return table


meta_table = _table(schema.META)
jobs_table = _table(schema.JOBS)
transitions_table = _table(schema.TRANSITIONS)
dependencies_table = _table(schema.DEPENDENCIES)
leases_table = _table(schema.LEASES)
pace_table = _table(schema.PACE)


def table_for(decl: schema.Table) -> sa.Table:
    return metadata.tables[decl.name]

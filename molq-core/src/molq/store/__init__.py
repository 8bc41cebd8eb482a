"""The job store: one schema, one interface, the SQL implementation, the CLI's read path.

=================================  ==========================================================
:mod:`molq.store.schema`           the schema, declared once (stdlib only)
:mod:`molq.store.tables`           SQLAlchemy tables derived from it
:mod:`molq.store.migrate`          creation, forward migrations, schema/version check
:mod:`molq.store.engine`           engines: SQLite file privacy and settings, drivers, corruption check
:mod:`molq.store.protocol`         the :class:`JobStoreProtocol` interface
:mod:`molq.store.types`            domain values crossing it (NewSubmission, ActiveJob...)
:mod:`molq.store.sql`              the SQL implementation (:class:`JobStore`): writes, transactions
:mod:`molq.store.queries`          its read-only queries
:mod:`molq.store.records`          row -> record conversion (stdlib only)
:mod:`molq.store.lite`             read-only SQLite reader of the same schema (stdlib only)
:mod:`molq.store.read`             the CLI's listing path for any URL
:mod:`molq.store.opening`          :func:`open_store`: a URL to a store (plugins)
:mod:`molq.store.transfer`         copying a store, checking one
=================================  ==========================================================

Names are loaded on first use, so ``import molq.store.lite`` stays free of SQLAlchemy and of
the model. ``JobStore`` is the SQL store (the public constructor: ``JobStore()`` opens
``~/.molq/jobs.db``); the interface every store implements is ``JobStoreProtocol``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from molq.store.migrate import MIGRATIONS
    from molq.store.opening import default_store_url, open_store
    from molq.store.protocol import JobStore as JobStoreProtocol
    from molq.store.schema import SCHEMA_VERSION
    from molq.store.sql import SqlJobStore
    from molq.store.sql import SqlJobStore as JobStore
    from molq.store.tables import (
        dependencies_table,
        jobs_table,
        leases_table,
        meta_table,
        metadata,
        transitions_table,
    )
    from molq.store.types import RELEASING, ActiveJob, JobInternals, NewSubmission, StoredTarget

_LAZY = {
    "JobStore": ("molq.store.sql", "SqlJobStore"),
    "SqlJobStore": ("molq.store.sql", "SqlJobStore"),
    "JobStoreProtocol": ("molq.store.protocol", "JobStore"),
    "open_store": ("molq.store.opening", "open_store"),
    "default_store_url": ("molq.store.opening", "default_store_url"),
    "SCHEMA_VERSION": ("molq.store.schema", "SCHEMA_VERSION"),
    "MIGRATIONS": ("molq.store.migrate", "MIGRATIONS"),
    "metadata": ("molq.store.tables", "metadata"),
    "meta_table": ("molq.store.tables", "meta_table"),
    "jobs_table": ("molq.store.tables", "jobs_table"),
    "transitions_table": ("molq.store.tables", "transitions_table"),
    "dependencies_table": ("molq.store.tables", "dependencies_table"),
    "leases_table": ("molq.store.tables", "leases_table"),
    "ActiveJob": ("molq.store.types", "ActiveJob"),
    "JobInternals": ("molq.store.types", "JobInternals"),
    "NewSubmission": ("molq.store.types", "NewSubmission"),
    "StoredTarget": ("molq.store.types", "StoredTarget"),
    "RELEASING": ("molq.store.types", "RELEASING"),
}

__all__ = [
    "MIGRATIONS", "SCHEMA_VERSION", "ActiveJob", "JobInternals", "JobStore", "JobStoreProtocol",
    "NewSubmission", "RELEASING", "SqlJobStore", "StoredTarget", "default_store_url", "dependencies_table",
    "jobs_table", "leases_table", "meta_table", "metadata", "open_store", "transitions_table",
]
assert sorted(__all__) == sorted(_LAZY)


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'molq.store' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

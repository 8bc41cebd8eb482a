"""Former home of the read-only SQLite reader, now :mod:`molq.store.lite` (kept so existing
imports go on working)."""

from molq.store.lite import list_jobs, sqlite_path

__all__ = ["list_jobs", "sqlite_path"]

"""Choosing a store for a URL: the built-in SQL store or a store plugin.

Kept apart from the SQL implementation so that the import graph has no circle: this module
uses :mod:`molq.plugins`, whose built-in plugin module imports :mod:`molq.store.sql`, which
imports nothing from here.
"""

from __future__ import annotations

import os
from typing import Any

from molq.identity import molq_home_dir

__all__ = ["default_store_url", "open_store"]


def default_store_url() -> str:
    """``$MOLQ_STORE_URL``, or the SQLite file ``jobs.db`` in molq's home folder."""
    return os.environ.get("MOLQ_STORE_URL") or f"sqlite:///{os.path.join(molq_home_dir(), 'jobs.db')}"


def open_store(url: str | None = None) -> Any:
    """Open the job store for ``url`` (default: :func:`default_store_url`) through the store
    plugin that handles its scheme (the built-in SQL store for SQLAlchemy URLs). A path
    without a scheme is a SQLite file."""
    url = url or default_store_url()
    if "://" not in url:
        from molq.store.sql import SqlJobStore

        return SqlJobStore(url)
    from molq.plugins import get_plugin_manager

    return get_plugin_manager().store_for_url(url).factory(url)

"""The command line's read path: job listings from any store URL.

A SQLite file is read with the standard library (:mod:`molq.store.lite`, no SQLAlchemy and no
model import: ``molq list`` starts fast); any other URL goes through :func:`open_store`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from molq._states import JobState
from molq.store.lite import list_jobs as _lite_list
from molq.store.lite import sqlite_path
from molq.store.opening import default_store_url, open_store

__all__ = ["list_records"]


def list_records(
    url: str | None,
    cluster_name: str | None,
    *,
    include_terminal: bool = False,
    states: Sequence[JobState] | None = None,
    limit: int | None = None,
    newest_first: bool = True,
    lite: bool = True,
) -> list[Any]:
    """Records of the store at ``url`` (default store when None), newest first by default.
    With ``lite`` (the default) a SQLite file yields :class:`~molq.store.records.LiteRecord`
    objects; other stores always yield :class:`~molq.model.JobRecord`. Both have the same
    attributes. An absent SQLite file lists nothing (it is not created)."""
    url = url or default_store_url()
    query: dict[str, Any] = dict(include_terminal=include_terminal, states=states, limit=limit,
                                 newest_first=newest_first)
    path = sqlite_path(url)
    if path is not None:
        if not os.path.exists(path):
            return []
        return list(_lite_list(path, cluster_name, lite=lite, **query))
    store = open_store(url)
    try:
        return list(store.list_jobs(cluster_name, **query))
    finally:
        store.close()

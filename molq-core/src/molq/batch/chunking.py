"""Splitting many scheduler ids into command lines that stay within a length budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from molq.scheduler import TrackedJob

if TYPE_CHECKING:
    from molq.batch.dialect import BatchDialect


def chunk_ids(ids: Sequence[str], *, max_chars: int = 60_000, max_count: int = 5000) -> list[list[str]]:
    """Split ids so that no command line grows past ``max_chars`` (ARG_MAX is far larger, but
    remote shells and ``ssh`` add their own limits)."""
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for sid in ids:
        if current and (size + len(sid) + 1 > max_chars or len(current) >= max_count):
            chunks.append(current)
            current, size = [], 0
        current.append(sid)
        size += len(sid) + 1
    if current:
        chunks.append(current)
    return chunks


def _chunk_by_cost(jobs: Sequence[TrackedJob], dialect: BatchDialect) -> list[list[str]]:
    """Scheduler ids of ``jobs`` in chunks whose cancel command fits the dialect's budget."""
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for job in jobs:
        cost = dialect.cancel_cost(job)
        if current and size + cost > dialect.max_command_chars:
            chunks.append(current)
            current, size = [], 0
        current.append(job.scheduler_job_id or "")
        size += cost
    if current:
        chunks.append(current)
    return chunks

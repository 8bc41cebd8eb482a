"""Retention: removing old job directories and records."""

from __future__ import annotations

import logging
import time

from molq.engine.context import EngineContext
from molq.engine.retry import retry_pending
from molq.errors import TransportError
from molq.model import JobState, RetentionPolicy

log = logging.getLogger("molq.engine")

__all__ = ["cleanup_jobs"]


def cleanup_jobs(ctx: EngineContext, policy: RetentionPolicy, *, dry_run: bool = False) -> dict[str, list[str]]:
    """Remove job directories and records that ``policy`` no longer keeps.

    Returns ``{"job_dirs": [...removed dirs], "records": [...deleted job ids]}``.
    """
    now = time.time()
    dirs: list[str] = []
    records: list[str] = []
    dir_cutoff = now - policy.keep_job_dirs_for_days * 86400
    rec_cutoff = now - policy.keep_terminal_records_for_days * 86400
    transport = ctx.target.transport
    for rec in ctx.store.list_jobs(ctx.cluster_name, include_terminal=True):
        if not rec.is_terminal or retry_pending(rec):
            continue
        finished = rec.finished_at or rec.updated_at or now
        delete_record = finished < rec_cutoff
        failed = rec.state != JobState.SUCCEEDED
        remove_dir = bool(rec.job_dir) and rec.cleaned_at is None and (
            delete_record or (finished < dir_cutoff and not (failed and policy.keep_failed_job_dirs))
        )
        if remove_dir and rec.job_dir:
            dirs.append(rec.job_dir)
            if not dry_run:
                try:
                    transport.remove(rec.job_dir, recursive=True)
                except TransportError as exc:
                    log.warning("could not remove %s: %s", rec.job_dir, exc)
                    continue
                if rec.scheduler_job_id:
                    ctx.scheduler.forget(rec.scheduler_job_id)
                ctx.store.update_job(ctx.cluster_name, rec.job_id, cleaned_at=now)
        if delete_record:
            records.append(rec.job_id)
    if records and not dry_run:
        ctx.store.delete_jobs(ctx.cluster_name, records)
    return {"job_dirs": dirs, "records": records}

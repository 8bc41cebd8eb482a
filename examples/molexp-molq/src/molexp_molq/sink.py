"""The event sink that keeps ``run.json`` in step with the molq job running it.

molq calls :func:`on_event` for every lifecycle event of every :class:`molq.Submitor` in the
process (the plugin registers it through the ``molq_register_event_sinks`` hook). The adapter
therefore never polls for status itself: whoever refreshes the job -- this package's
``submit --block``, ``molq watch``, ``molq daemon`` or a script -- moves the run along.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from molexp_molq.runs import RUN_DIR_METADATA_KEY, RUN_FILE, update_run

log = logging.getLogger("molexp_molq")

__all__ = ["on_event", "executor_info"]

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out", "lost"})


def executor_info(record: Any) -> dict[str, Any]:
    """The normalised executor metadata of a molq job record (or handle): what the rest of
    molexp reads instead of molq's object model."""
    return {
        "backend": "molq",
        "scheduler": record.scheduler,
        "cluster": record.cluster_name,
        "job_id": getattr(record, "root_job_id", None) or record.job_id,
        "scheduler_job_id": record.scheduler_job_id,
    }


# --8<-- [start:sink]
def on_event(payload: Any) -> None:
    """Record one state change of a job that runs a molexp run directory."""
    from molq import EventType

    # Every transition raises STATUS_CHANGE once (plus a specific event): one update each.
    if payload.event != EventType.STATUS_CHANGE or payload.record is None:
        return
    record = payload.record
    run_dir = (record.metadata or {}).get(RUN_DIR_METADATA_KEY)
    if not run_dir or not (Path(run_dir) / RUN_FILE).exists():
        return  # not ours, or the run directory is not on this machine
    transition = payload.transition
    at = transition.timestamp if transition is not None else None

    def change(run: dict[str, Any]) -> None:
        executor = run.get("executor") or {}
        if executor.get("job_id") not in (None, record.root_job_id):
            return  # the run was submitted again since; this job is not its executor any more
        info = executor_info(record)
        # The job id stays the root of the retry family; the scheduler id follows the attempt.
        executor.update({k: v for k, v in info.items() if v is not None})
        run["executor"] = executor
        run.setdefault("history", []).append({
            "state": record.state.value,
            "at": at,
            "reason": transition.reason if transition is not None else None,
            "job_id": record.job_id,
        })
        # Events from several processes may arrive out of order: the latest transition wins.
        if at is None or at >= run.get("status_at", 0):
            run["status"] = record.state.value
            run["status_at"] = at
            if record.state.value in TERMINAL:
                run["exit_code"] = record.exit_code
                run["failure_reason"] = record.failure_reason

    try:
        update_run(run_dir, change)
    except OSError as exc:  # a sink must never break the lifecycle engine
        log.warning("cannot update %s/%s: %s", run_dir, RUN_FILE, exc)
# --8<-- [end:sink]

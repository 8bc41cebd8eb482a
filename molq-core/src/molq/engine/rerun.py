"""Re-running only the failed tasks of an array job, in one call.

The tasks come from what each one wrote into the job directory (``exit_code.<index>``, by the
wrapper): a task that wrote 0 succeeded; any other code, or no code at all (killed, timed
out, cancelled, never started), is re-run. The re-run is the job's next attempt, so the job's
id, history and dependents follow it as they follow an automatic retry.
"""

from __future__ import annotations

import attrs

from molq import wrapper
from molq.arrays import array_indices, compress_indices
from molq.engine.context import EngineContext
from molq.engine.prepare import stored_request
from molq.engine.retry import resubmit
from molq.errors import ConfigError, MolqError
from molq.model import JobRecord

__all__ = ["failed_tasks", "rerun_failed_tasks"]


def failed_tasks(ctx: EngineContext, record: JobRecord) -> tuple[list[int], str]:
    """The indices of ``record``'s array tasks that did not succeed, and its array spec."""
    request = stored_request(ctx, record.job_id)
    spec = request.scheduling.array_spec if request.scheduling else None
    if not spec:
        raise ConfigError(f"job {record.job_id} is not an array job; use a plain retry")
    indices, _throttle = array_indices(spec)
    if not record.job_dir:
        raise MolqError(f"job {record.job_id} has no job directory to read its tasks' exit codes from")
    paths = {i: wrapper.join_path(record.job_dir, f"{wrapper.EXIT_CODE_FILE}.{i}") for i in indices}
    found = ctx.target.transport.read_many(list(paths.values()))
    # Complete only with its newline (the wrapper writes "<code>\n" in one write).
    return [i for i, path in paths.items() if (found.get(path) or "") != "0\n"], spec


def rerun_failed_tasks(ctx: EngineContext, job_id: str) -> JobRecord:
    """Submit the next attempt of ``job_id`` (its latest attempt, which must have ended) with
    only the tasks that did not succeed; the new attempt's record."""
    record = ctx.latest_attempt(job_id)
    if not record.is_terminal:
        raise MolqError(f"job {record.job_id} is {record.state.value}; its tasks can be re-run once it ended")
    failed, spec = failed_tasks(ctx, record)
    if not failed:
        raise MolqError(f"every task of job {record.job_id} ({spec}) succeeded; nothing to re-run")
    throttle = spec.partition("%")[2]
    narrowed = compress_indices(failed) + (f"%{throttle}" if throttle else "")
    request = stored_request(ctx, record.job_id)
    assert request.scheduling is not None
    request = attrs.evolve(request, scheduling=attrs.evolve(request.scheduling, array_spec=narrowed))
    new = resubmit(ctx, record, request)
    if new is None:
        raise MolqError(f"job {record.job_id} is already being retried (or cannot be); see `molq show`")
    return new

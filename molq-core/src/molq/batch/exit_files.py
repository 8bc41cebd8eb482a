"""The fallback source of final states: the wrapper's exit-code files in the job directories."""

from __future__ import annotations

from collections.abc import Sequence

from molq import wrapper
from molq.model import JobState, SchedulerStatus
from molq.scheduler import TrackedJob
from molq.transport import Transport


def _status_from_exit_file(text: str | None) -> SchedulerStatus | None:
    code = wrapper.parse_exit_code(text)
    if code is None:
        return None
    sig, reason = wrapper.describe_exit(code)
    return SchedulerStatus(
        state=JobState.SUCCEEDED if code == 0 else JobState.FAILED,
        raw_state="exit_code_file",
        exit_code=code,
        exit_signal=sig,
        reason=reason,
    )


def read_exit_files(transport: Transport, jobs: Sequence[TrackedJob]) -> dict[str, SchedulerStatus]:
    """Final statuses from the wrapper's exit-code files, read with one transport call."""
    if not jobs:
        return {}
    paths = [wrapper.join_path(job.job_dir, wrapper.EXIT_CODE_FILE) for job in jobs]
    contents = transport.read_many(paths)
    out = {}
    for job, path in zip(jobs, paths):
        status = _status_from_exit_file(contents.get(path))
        if status is not None:
            out[job.job_id] = status
    return out

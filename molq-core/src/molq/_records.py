"""Column names of the jobs table and row -> record conversion, without SQLAlchemy.

Shared by :mod:`molq.store` and the read-only SQLite fast path of the command line
(:mod:`molq.store_lite`), so that ``molq list`` need not import SQLAlchemy, nor (with
:class:`LiteRecord`) :mod:`molq.model`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from molq._states import JobState

if TYPE_CHECKING:
    from molq.model import JobRecord

JOBS_TABLE = "molq_jobs"

RECORD_COLUMNS = [
    "job_id", "cluster_name", "scheduler", "state", "root_job_id", "attempt",
    "previous_attempt_job_id", "retry_group_id", "profile_name", "scheduler_job_id", "raw_state",
    "created_at", "submitted_at", "started_at", "finished_at", "updated_at", "exit_code",
    "exit_signal", "failure_reason", "cwd", "job_dir", "command_type", "command_display",
    "job_name", "metadata_json", "next_retry_at", "retried_by", "cleaned_at",
]


def _fields(m: Mapping[str, Any]) -> dict[str, Any]:
    data = {name: m[name] for name in RECORD_COLUMNS if name != "metadata_json"}
    data["state"] = JobState(data["state"])
    data["metadata"] = json.loads(m["metadata_json"] or "{}")
    return data


def row_to_record(m: Mapping[str, Any]) -> JobRecord:
    from molq.model import JobRecord

    return JobRecord(**_fields(m))


class LiteRecord:
    """A read-only job record with the attributes of :class:`~molq.model.JobRecord`, for
    printing listings without importing the model."""

    __slots__ = (*(c for c in RECORD_COLUMNS if c != "metadata_json"), "metadata")

    def __init__(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("LiteRecord is read-only")

    def __repr__(self) -> str:
        return f"LiteRecord(job_id={self.job_id!r}, state={self.state.value!r})"  # type: ignore[attr-defined]


def row_to_lite(m: Mapping[str, Any]) -> LiteRecord:
    return LiteRecord(**_fields(m))

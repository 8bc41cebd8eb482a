"""Column names of the jobs table and row -> JobRecord conversion, without SQLAlchemy.

Shared by :mod:`molq.store` and the read-only SQLite fast path of the command line
(:mod:`molq.store_lite`), so that ``molq list`` need not import SQLAlchemy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from molq.model import JobRecord, JobState

JOBS_TABLE = "molq_jobs"

RECORD_COLUMNS = [
    "job_id", "cluster_name", "scheduler", "state", "root_job_id", "attempt",
    "previous_attempt_job_id", "retry_group_id", "profile_name", "scheduler_job_id", "raw_state",
    "created_at", "submitted_at", "started_at", "finished_at", "updated_at", "exit_code",
    "exit_signal", "failure_reason", "cwd", "job_dir", "command_type", "command_display",
    "job_name", "metadata_json", "next_retry_at", "retried_by", "cleaned_at",
]


def row_to_record(m: Mapping[str, Any]) -> JobRecord:
    data = {name: m[name] for name in RECORD_COLUMNS if name != "metadata_json"}
    data["state"] = JobState(data["state"])
    data["metadata"] = json.loads(m["metadata_json"] or "{}")
    return JobRecord(**data)

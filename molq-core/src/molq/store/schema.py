"""The job store's schema, declared once.

Standard library only: the SQLAlchemy tables (:mod:`molq.store.tables`) and the read-only
SQLite reader of the command line (:mod:`molq.store.lite`) are both derived from these
declarations, so a column is added in one place. Bump :data:`SCHEMA_VERSION` with every change
and add the forward migration in :mod:`molq.store.migrate`.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

__all__ = [
    "DEPENDENCIES", "JOBS", "LATE_RECORD_COLUMNS", "LEASES", "META", "PACE", "RECORD_COLUMNS", "SCHEMA_VERSION",
    "TABLES",
    "Column", "Index", "Table",
]

# 1: first release. 2: target_json, missing_since. 3: cancel_requested_at, confirmed_at, held.
# 4: end_cause, usage_json. 5: molq_pace (one row per cluster: shared polls, command budget,
# circuit breaker). 6: sub_state, sub_state_reason.
SCHEMA_VERSION = 6

ColumnType = Literal["str", "text", "int", "float"]


# NamedTuples, not dataclasses: this module is on `molq list`'s start-up path, and importing
# dataclasses costs more than the listing.
class Column(NamedTuple):
    name: str
    type: ColumnType
    length: int | None = None  # for "str"
    nullable: bool = True
    primary_key: bool = False
    default: object = None  # Python-side default on insert
    references: str | None = None  # "table.column", deleted with the referenced row


class Index(NamedTuple):
    name: str
    columns: tuple[str, ...]


class Table(NamedTuple):
    name: str
    columns: tuple[Column, ...]
    indexes: tuple[Index, ...] = ()
    autoincrement: str | None = None  # the integer key the database numbers

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _s(name: str, length: int, **kw: Any) -> Column:
    return Column(name, "str", length, **kw)


def _t(name: str, **kw: Any) -> Column:
    return Column(name, "text", **kw)


def _i(name: str, **kw: Any) -> Column:
    return Column(name, "int", **kw)


def _f(name: str, **kw: Any) -> Column:
    return Column(name, "float", **kw)


META = Table("molq_meta", (
    _s("key", 64, primary_key=True, nullable=False),
    _t("value", nullable=False),
))

JOBS = Table(
    "molq_jobs",
    (
        _s("job_id", 64, primary_key=True, nullable=False),
        _s("cluster_name", 255, nullable=False),
        _s("scheduler", 64, nullable=False),
        _s("state", 16, nullable=False),
        _s("raw_state", 255),
        _s("root_job_id", 64, nullable=False),
        _i("attempt", nullable=False, default=1),
        _s("previous_attempt_job_id", 64),
        _s("retry_group_id", 64),
        _s("profile_name", 255),
        _s("scheduler_job_id", 255),
        _f("created_at"),
        _f("submitted_at"),
        _f("started_at"),
        _f("finished_at"),
        _f("updated_at"),
        _i("exit_code"),
        _i("exit_signal"),
        _t("failure_reason"),
        _t("cwd"),
        _t("job_dir"),
        _s("command_type", 16, nullable=False),
        _t("command_display", nullable=False, default=""),
        _t("job_name"),
        _t("metadata_json", nullable=False, default="{}"),
        _t("spec_json", nullable=False, default="{}"),
        _t("retry_json"),
        _f("next_retry_at"),
        _s("retried_by", 64),
        _i("missing_count", nullable=False, default=0),
        _f("missing_since"),
        _t("target_json"),  # how to rebuild the Cluster: scheduler, host, options
        _s("submit_host", 255),
        _i("submit_pid"),
        _f("cleaned_at"),
        # when molq asked the scheduler to stop the job, before the stop was confirmed
        _f("cancel_requested_at"),
        # when a scheduler answer last confirmed the stored state
        _f("confirmed_at"),
        # why molq holds the submission back itself (an upstream may still retry); NULL for a
        # job handed to the scheduler as soon as it was stored
        _t("held"),
        # why a terminal job ended (molq.causes.EndCause), and what it used (molq.usage.Usage)
        _s("end_cause", 32),
        _t("usage_json"),
        # held / suspended / requeued / waiting_* beside the state, and the scheduler's reason
        _s("sub_state", 32),
        _t("sub_state_reason"),
    ),
    (
        Index("ix_molq_jobs_cluster_state", ("cluster_name", "state")),
        Index("ix_molq_jobs_root", ("root_job_id",)),
        Index("ix_molq_jobs_created", ("cluster_name", "created_at")),
    ),
)

TRANSITIONS = Table(
    "molq_transitions",
    (
        _i("id", primary_key=True, nullable=False),
        _s("job_id", 64, nullable=False, references="molq_jobs.job_id"),
        _s("old_state", 16),
        _s("new_state", 16, nullable=False),
        _f("timestamp", nullable=False),
        _t("reason"),
    ),
    (Index("ix_molq_transitions_job", ("job_id",)),),
    autoincrement="id",
)

DEPENDENCIES = Table(
    "molq_dependencies",
    (
        _s("job_id", 64, primary_key=True, nullable=False, references="molq_jobs.job_id"),
        _s("dependency_job_id", 64, primary_key=True, nullable=False),
        _s("dependency_type", 16, primary_key=True, nullable=False),
        _t("scheduler_dependency"),
    ),
    (Index("ix_molq_dependencies_upstream", ("dependency_job_id",)),),
)

LEASES = Table("molq_leases", (
    _s("name", 255, primary_key=True, nullable=False),
    _s("owner", 255, nullable=False),
    _f("expires_at", nullable=False),
))

# One row per cluster: the polling record every process shares (molq.pacing.ClusterPace as
# JSON), updated by compare-and-set on ``version``.
PACE = Table("molq_pace", (
    _s("cluster_name", 255, primary_key=True, nullable=False),
    _i("version", nullable=False, default=0),
    _t("pace_json", nullable=False, default="{}"),
))

TABLES = (META, JOBS, TRANSITIONS, DEPENDENCIES, LEASES, PACE)

# The jobs-table columns a JobRecord is built from (metadata_json decodes to .metadata,
# usage_json to .usage).
RECORD_COLUMNS = [
    "job_id", "cluster_name", "scheduler", "state", "root_job_id", "attempt",
    "previous_attempt_job_id", "retry_group_id", "profile_name", "scheduler_job_id", "raw_state",
    "created_at", "submitted_at", "started_at", "finished_at", "updated_at", "exit_code",
    "exit_signal", "failure_reason", "cwd", "job_dir", "command_type", "command_display",
    "job_name", "metadata_json", "next_retry_at", "retried_by", "cleaned_at", "end_cause", "usage_json",
    "sub_state", "sub_state_reason",
]
assert set(RECORD_COLUMNS) <= set(JOBS.column_names())
#: Record columns newer than schema version 3: the read-only reader does without them on a
#: store that no read-write open has migrated yet.
LATE_RECORD_COLUMNS = ("sub_state", "sub_state_reason")

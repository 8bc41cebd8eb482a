"""Reading the SQL store: every query that changes nothing, as a base class of
:class:`molq.store.sql.SqlJobStore` (which provides the transactions: ``_read``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from molq import serde
from molq.errors import AmbiguousJobIdError, JobNotFoundError
from molq.model import ACTIVE_STATES, JobDependency, JobRecord, JobState, RetryPolicy, StatusTransition
from molq.store.records import RECORD_COLUMNS, row_to_record
from molq.store.tables import dependencies_table, jobs_table, leases_table, transitions_table
from molq.store.types import ActiveJob, JobInternals, StoredTarget

__all__ = ["SqlReads"]

_SELECT_RECORD = [jobs_table.c[name] for name in RECORD_COLUMNS]


def _row_to_record(row: Any) -> JobRecord:
    return row_to_record(row._mapping)


#: What a refresh reads of each active job (:meth:`SqlReads.active_jobs`), in this order;
#: ``retry_json`` is read as "has a retry policy" only.
ACTIVE_COLUMNS = (
    "job_id", "scheduler", "state", "root_job_id", "attempt", "scheduler_job_id", "raw_state", "created_at",
    "submitted_at", "started_at", "job_dir", "retry_json", "missing_count", "missing_since", "submit_host",
    "submit_pid", "cancel_requested_at", "confirmed_at", "command_type", "profile_name", "held", "updated_at",
    "sub_state", "sub_state_reason",
)
#: The active states' stored values, in a fixed order (one statement text for every call).
ACTIVE_VALUES = tuple(sorted(s.value for s in ACTIVE_STATES))


@functools.lru_cache(maxsize=1)
def _active_stmt() -> sa.Select[Any]:
    c = jobs_table.c
    columns = [c.retry_json.is_not(None) if name == "retry_json" else c[name] for name in ACTIVE_COLUMNS]
    return (
        sa.select(*columns)
        .where(c.cluster_name == sa.bindparam("cluster"))
        .where(c.state.in_(ACTIVE_VALUES))
        .order_by(c.created_at, c.job_id)
    )


def _active_job(cluster_name: str, r: Sequence[Any]) -> ActiveJob:
    return ActiveJob(
        record=JobRecord(job_id=r[0], cluster_name=cluster_name, scheduler=r[1], state=JobState(r[2]),
                         root_job_id=r[3], attempt=r[4], scheduler_job_id=r[5], raw_state=r[6],
                         created_at=r[7], submitted_at=r[8], started_at=r[9], job_dir=r[10],
                         command_type=r[18], profile_name=r[19], updated_at=r[21],
                         sub_state=r[22], sub_state_reason=r[23]),
        has_retry=bool(r[11]), missing_count=r[12] or 0, missing_since=r[13], submit_host=r[14],
        submit_pid=r[15], cancel_requested_at=r[16], confirmed_at=r[17], held=r[20],
    )


class SqlReads:
    """The read-only half of the SQL store."""

    def _read(self) -> AbstractContextManager[sa.engine.Connection]:
        raise NotImplementedError

    def internals(self, cluster_name: str, job_id: str) -> JobInternals:
        """Typed :meth:`get_internal`: the stored spec, retry policy, target and counters."""
        raw = self.get_internal(cluster_name, job_id)
        return JobInternals(
            spec=raw["spec"],
            retry=serde.structure(raw["retry"], RetryPolicy) if raw["retry"] is not None else None,
            target=StoredTarget.from_dict(raw["target"]) if raw["target"] else None,
            missing_count=raw["missing_count"] or 0,
            missing_since=raw["missing_since"],
            submit_host=raw["submit_host"],
            submit_pid=raw["submit_pid"],
            cancel_requested_at=raw["cancel_requested_at"],
            confirmed_at=raw["confirmed_at"],
            held=raw["held"],
        )

    def active_jobs(self, cluster_name: str) -> list[ActiveJob]:
        """Typed :meth:`list_active_light`: every active job of ``cluster_name`` with what a
        refresh needs, oldest first."""
        return [_active_job(cluster_name, r) for r in self._active_rows(cluster_name)]

    def _active_rows(self, cluster_name: str) -> Sequence[Sequence[Any]]:
        """The :data:`ACTIVE_COLUMNS` of every active job of ``cluster_name``, oldest first
        (the SQL store reads a SQLite file without SQLAlchemy's row machinery)."""
        with self._read() as conn:
            return conn.execute(_active_stmt(), {"cluster": cluster_name}).all()

    def get_job(self, cluster_name: str, job_id: str) -> JobRecord:
        with self._read() as conn:
            row = conn.execute(
                sa.select(*_SELECT_RECORD)
                .where(jobs_table.c.cluster_name == cluster_name)
                .where(jobs_table.c.job_id == job_id)
            ).first()
        if row is None:
            raise JobNotFoundError(f"no job {job_id!r} in cluster {cluster_name!r}")
        return _row_to_record(row)

    def _records_in(self, cluster_name: str, column: Any, values: Sequence[str]) -> list[JobRecord]:
        """Records whose ``column`` is one of ``values``, a few hundred per query."""
        unique = list(dict.fromkeys(values))
        out: list[JobRecord] = []
        with self._read() as conn:
            for start in range(0, len(unique), 500):
                rows = conn.execute(
                    sa.select(*_SELECT_RECORD)
                    .where(jobs_table.c.cluster_name == cluster_name)
                    .where(column.in_(unique[start:start + 500]))
                ).all()
                out.extend(_row_to_record(row) for row in rows)
        return out

    def get_jobs(self, cluster_name: str, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """Several records in one query (missing ids are left out)."""
        return {rec.job_id: rec for rec in self._records_in(cluster_name, jobs_table.c.job_id, job_ids)}

    def get_internal(self, cluster_name: str, job_id: str) -> dict[str, Any]:
        """Columns that are not part of :class:`JobRecord` (spec, retry policy, counters)."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(jobs_table.c.spec_json, jobs_table.c.retry_json, jobs_table.c.missing_count,
                          jobs_table.c.missing_since,
                          jobs_table.c.submit_host, jobs_table.c.submit_pid, jobs_table.c.target_json,
                          jobs_table.c.cancel_requested_at, jobs_table.c.confirmed_at, jobs_table.c.held)
                .where(jobs_table.c.cluster_name == cluster_name)
                .where(jobs_table.c.job_id == job_id)
            ).first()
        if row is None:
            raise JobNotFoundError(f"no job {job_id!r} in cluster {cluster_name!r}")
        m = row._mapping
        return {
            "spec": json.loads(m["spec_json"] or "{}"),
            "retry": json.loads(m["retry_json"]) if m["retry_json"] else None,
            "missing_count": m["missing_count"],
            "missing_since": m["missing_since"],
            "submit_host": m["submit_host"],
            "submit_pid": m["submit_pid"],
            "target": json.loads(m["target_json"]) if m["target_json"] else None,
            "cancel_requested_at": m["cancel_requested_at"],
            "confirmed_at": m["confirmed_at"],
            "held": m["held"],
        }

    def cluster_targets(self) -> dict[str, tuple[dict[str, Any] | None, str | None]]:
        """For each cluster name in the store: the newest record's target description and
        profile name (used to rebuild a Cluster for the CLI and the daemon)."""
        c = jobs_table.c
        out: dict[str, tuple[dict[str, Any] | None, str | None]] = {}
        with self._read() as conn:
            rows = conn.execute(
                sa.select(c.cluster_name, c.target_json, c.profile_name).order_by(c.created_at)
            ).all()
        for name, target, profile in rows:
            out[name] = (json.loads(target) if target else None, profile)
        return out

    def stored_targets(self) -> dict[str, tuple[StoredTarget | None, str | None]]:
        """Typed :meth:`cluster_targets`: for each cluster name, the newest record's target and
        profile name."""
        return {name: (StoredTarget.from_dict(target) if target else None, profile)
                for name, (target, profile) in self.cluster_targets().items()}

    def resolve_job_id(self, cluster_name: str | None, prefix: str) -> tuple[str, str]:
        """Full (cluster, job id) for an id or unique id prefix; ``cluster_name=None`` searches
        every cluster."""
        prefix = prefix.strip()
        if not prefix:
            raise JobNotFoundError("empty job id")
        stmt = sa.select(jobs_table.c.job_id, jobs_table.c.cluster_name).where(
            jobs_table.c.job_id.startswith(prefix, autoescape=True)
        ).limit(11)
        if cluster_name is not None:
            stmt = stmt.where(jobs_table.c.cluster_name == cluster_name)
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        exact = [r for r in rows if r[0] == prefix]
        if exact:
            return exact[0][1], exact[0][0]
        if not rows:
            where = f" in cluster {cluster_name!r}" if cluster_name else ""
            raise JobNotFoundError(f"no job matches {prefix!r}{where}")
        if len(rows) > 1:
            raise AmbiguousJobIdError(prefix, sorted(r[0] for r in rows)[:10])
        return rows[0][1], rows[0][0]

    def list_jobs(
        self,
        cluster_name: str | None,
        *,
        include_terminal: bool = False,
        states: Sequence[JobState] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[JobRecord]:
        stmt = sa.select(*_SELECT_RECORD)
        if cluster_name is not None:
            stmt = stmt.where(jobs_table.c.cluster_name == cluster_name)
        if states:
            stmt = stmt.where(jobs_table.c.state.in_([s.value for s in states]))
        elif not include_terminal:
            stmt = stmt.where(jobs_table.c.state.in_([s.value for s in ACTIVE_STATES]))
        order = jobs_table.c.created_at.desc() if newest_first else jobs_table.c.created_at
        stmt = stmt.order_by(order, jobs_table.c.job_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as conn:
            return [_row_to_record(r) for r in conn.execute(stmt)]

    def list_active_light(self, cluster_name: str) -> list[tuple[JobRecord, bool, int]]:
        """Active jobs with just what a refresh needs, plus whether each has a retry policy and
        how many successful queries in a row missed it.

        Cheaper than :meth:`list_jobs` (no metadata, fewer columns); refresh runs it often.
        """
        c = jobs_table.c
        stmt = (
            sa.select(c.job_id, c.scheduler, c.state, c.root_job_id, c.attempt, c.scheduler_job_id,
                      c.raw_state, c.created_at, c.submitted_at, c.started_at, c.job_dir,
                      c.retry_json.is_not(None), c.missing_count)
            .where(c.cluster_name == cluster_name)
            .where(c.state.in_([s.value for s in ACTIVE_STATES]))
            .order_by(c.created_at)
        )
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        return [
            (JobRecord(job_id=r[0], cluster_name=cluster_name, scheduler=r[1], state=JobState(r[2]),
                       root_job_id=r[3], attempt=r[4], scheduler_job_id=r[5], raw_state=r[6],
                       created_at=r[7], submitted_at=r[8], started_at=r[9], job_dir=r[10]), bool(r[11]), r[12] or 0)
            for r in rows
        ]

    def list_pending_retries(self, cluster_name: str) -> list[JobRecord]:
        stmt = (
            sa.select(*_SELECT_RECORD)
            .where(jobs_table.c.cluster_name == cluster_name)
            .where(jobs_table.c.next_retry_at.is_not(None))
            .where(jobs_table.c.retried_by.is_(None))
            .order_by(jobs_table.c.next_retry_at)
        )
        with self._read() as conn:
            return [_row_to_record(r) for r in conn.execute(stmt)]

    def list_clusters(self) -> list[tuple[str, str, str | None]]:
        """(cluster name, scheduler, profile name) of every cluster that has active jobs or
        pending retries."""
        stmt = (
            sa.select(jobs_table.c.cluster_name, jobs_table.c.scheduler, jobs_table.c.profile_name)
            .where(sa.or_(
                jobs_table.c.state.in_([s.value for s in ACTIVE_STATES]),
                sa.and_(jobs_table.c.next_retry_at.is_not(None), jobs_table.c.retried_by.is_(None)),
            ))
            .distinct()
        )
        with self._read() as conn:
            return [tuple(r) for r in conn.execute(stmt)]  # type: ignore[misc]

    def all_cluster_names(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute(sa.select(jobs_table.c.cluster_name).distinct())]

    def get_retry_family(self, cluster_name: str, root_job_id: str) -> list[JobRecord]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(*_SELECT_RECORD)
                .where(jobs_table.c.cluster_name == cluster_name)
                .where(jobs_table.c.root_job_id == root_job_id)
                .order_by(jobs_table.c.attempt)
            ).all()
        return [_row_to_record(r) for r in rows]

    def latest_attempts(self, cluster_name: str, root_job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """root job id -> its latest attempt, for many retry families in few queries."""
        out: dict[str, JobRecord] = {}
        for rec in self._records_in(cluster_name, jobs_table.c.root_job_id, root_job_ids):
            best = out.get(rec.root_job_id)
            if best is None or rec.attempt > best.attempt:
                out[rec.root_job_id] = rec
        return out

    def get_transitions(self, cluster_name: str, job_id: str) -> list[StatusTransition]:
        self.get_job(cluster_name, job_id)
        with self._read() as conn:
            rows = conn.execute(
                sa.select(transitions_table)
                .where(transitions_table.c.job_id == job_id)
                .order_by(transitions_table.c.id)
            ).all()
        return [
            StatusTransition(
                r.job_id, JobState(r.old_state) if r.old_state else None, JobState(r.new_state), r.timestamp, r.reason
            )
            for r in rows
        ]

    def get_dependencies(self, cluster_name: str, job_id: str) -> list[JobDependency]:
        return self._deps(cluster_name, dependencies_table.c.job_id == job_id)

    def get_dependents(self, cluster_name: str, job_id: str) -> list[JobDependency]:
        return self._deps(cluster_name, dependencies_table.c.dependency_job_id == job_id)

    def _deps(self, cluster_name: str, cond: Any) -> list[JobDependency]:
        stmt = (
            sa.select(dependencies_table)
            .join(jobs_table, jobs_table.c.job_id == dependencies_table.c.job_id)
            .where(jobs_table.c.cluster_name == cluster_name)
            .where(cond)
        )
        with self._read() as conn:
            return [
                JobDependency(r.job_id, r.dependency_job_id, r.dependency_type, r.scheduler_dependency)
                for r in conn.execute(stmt)
            ]

    def lease_owner(self, name: str) -> tuple[str, float] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(leases_table).where(leases_table.c.name == name)).first()
        return None if row is None else (row.owner, row.expires_at)

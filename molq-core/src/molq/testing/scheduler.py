"""Scheduler conformance tests: full job lifecycles through :class:`molq.Submitor`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from molq.cluster import Cluster
from molq.errors import ConfigError
from molq.model import JobExecution, JobResources, JobScheduling, JobState, QueueEntry
from molq.store import JobStore
from molq.submitor import Submitor


class SchedulerConformance:
    """Behaviour every scheduler plugin must show.

    Required fixture: ``cluster`` (a :class:`Cluster` using the scheduler under test).
    Optional fixtures to override: ``remote_dir`` (an absolute directory on the cluster's
    filesystem where jobs may run; default: pytest's ``tmp_path``), ``job_timeout`` (seconds a
    trivial job may take end to end), ``unsupported_field`` (kwargs for submit_job that the
    scheduler must refuse, or None to skip that check).
    """

    @pytest.fixture
    def job_timeout(self) -> float:
        return 120.0

    @pytest.fixture
    def remote_dir(self, tmp_path: Any) -> str:
        return str(tmp_path)

    @pytest.fixture
    def store(self, tmp_path: Any) -> Iterator[JobStore]:
        store = JobStore(f"sqlite:///{tmp_path}/conformance-jobs.db")
        yield store
        store.close()

    @pytest.fixture
    def submitor(self, cluster: Cluster, store: JobStore) -> Submitor:
        return Submitor(cluster, store=store)

    @pytest.fixture
    def unsupported_field(self) -> dict[str, Any] | None:
        return None

    def _exec(self, remote_dir: str, **kw: Any) -> JobExecution:
        return JobExecution(cwd=remote_dir, **kw)

    def _read(self, cluster: Cluster, path: str) -> str:
        return cluster.transport.read_text(path)

    def test_success_and_output(self, submitor: Submitor, cluster: Cluster, remote_dir: str, job_timeout: float) -> None:
        handle = submitor.submit_job(argv=["echo", "hello conformance"], execution=self._exec(remote_dir))
        record = handle.wait(timeout=job_timeout)
        assert record.state == JobState.SUCCEEDED, record.failure_reason
        assert record.exit_code == 0
        assert record.scheduler_job_id
        assert "hello conformance" in self._read(cluster, f"{record.job_dir}/stdout")
        states = [t.new_state for t in submitor.get_transitions(handle.job_id)]
        assert states[0] == JobState.CREATED and states[-1] == JobState.SUCCEEDED

    def test_exact_exit_code(self, submitor: Submitor, remote_dir: str, job_timeout: float) -> None:
        record = submitor.submit_job(command="exit 7", execution=self._exec(remote_dir)).wait(timeout=job_timeout)
        assert record.state == JobState.FAILED
        assert record.exit_code == 7

    def test_env_cwd_and_quoting(self, submitor: Submitor, cluster: Cluster, remote_dir: str, job_timeout: float) -> None:
        tricky = "it's $HOME `x` \"q\" ; | & ü"
        record = submitor.submit_job(
            argv=["sh", "-c", 'printf "%s\\n" "$MOLQ_CONF_VAR" "$1"; pwd', "sh", tricky],
            execution=self._exec(remote_dir, env={"MOLQ_CONF_VAR": tricky}),
        ).wait(timeout=job_timeout)
        assert record.state == JobState.SUCCEEDED, record.failure_reason
        lines = self._read(cluster, f"{record.job_dir}/stdout").splitlines()
        assert lines[0] == tricky and lines[1] == tricky
        assert lines[2].rstrip("/") == remote_dir.rstrip("/")

    def test_cancel_running(self, submitor: Submitor, cluster: Cluster, remote_dir: str, job_timeout: float) -> None:
        handle = submitor.submit_job(argv=["sleep", "300"], execution=self._exec(remote_dir))
        deadline = time.monotonic() + job_timeout
        while submitor.get_job(handle.job_id).state != JobState.RUNNING:
            assert time.monotonic() < deadline, "job never started"
            submitor.refresh_jobs()
            time.sleep(0.2)
        handle.cancel()
        assert submitor.get_job(handle.job_id).state == JobState.CANCELLED
        # Later refreshes keep it cancelled.
        time.sleep(1.0)
        submitor.refresh_jobs()
        assert submitor.get_job(handle.job_id).state == JobState.CANCELLED

    def test_cancel_finished_keeps_state(self, submitor: Submitor, remote_dir: str, job_timeout: float) -> None:
        handle = submitor.submit_job(argv=["true"], execution=self._exec(remote_dir))
        handle.wait(timeout=job_timeout)
        handle.cancel()
        assert submitor.get_job(handle.job_id).state == JobState.SUCCEEDED

    def test_after_success_dependency(self, submitor: Submitor, cluster: Cluster, remote_dir: str, job_timeout: float) -> None:
        if "dependencies" not in cluster.scheduler_impl.capabilities().supported:
            pytest.skip("scheduler declares no dependency support")
        marker = f"{remote_dir}/dep-{uuid.uuid4().hex}"
        first = submitor.submit_job(command=f"sleep 1; echo done > {marker}", execution=self._exec(remote_dir))
        second = submitor.submit_job(command=f"cat {marker}", after_success=[first.job_id], execution=self._exec(remote_dir))
        records = submitor.watch_jobs([first.job_id, second.job_id], timeout=job_timeout)
        assert [r.state for r in records] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
        deps = submitor.get_dependencies(second.job_id)
        assert [(d.dependency_job_id, d.dependency_type) for d in deps] == [(first.job_id, "after_success")]

    def test_rejects_unsupported_field_before_persisting(self, submitor: Submitor, unsupported_field: Any) -> None:
        if unsupported_field is None:
            pytest.skip("no unsupported field declared for this scheduler")
        before = len(submitor.list_jobs(include_terminal=True))
        with pytest.raises(ConfigError):
            submitor.submit_job(argv=["true"], **unsupported_field)
        assert len(submitor.list_jobs(include_terminal=True)) == before

    def test_bad_input_persists_nothing(self, submitor: Submitor) -> None:
        with pytest.raises(ConfigError):
            submitor.submit_job(argv=["true"], command="true")
        with pytest.raises(ConfigError):
            submitor.submit_job(argv=["true"], after_success=["no-such-job-id"])
        with pytest.raises(ConfigError):
            submitor.submit_job(argv=["true"], resources=JobResources(memory="12 parsecs"))
        assert submitor.list_jobs(include_terminal=True) == []

    def test_get_queue_returns_entries(self, cluster: Cluster) -> None:
        queue = cluster.get_queue()
        assert isinstance(queue, list)
        assert all(isinstance(e, QueueEntry) for e in queue)

    def test_scheduling_type_check(self, submitor: Submitor) -> None:
        with pytest.raises(ConfigError):
            submitor.submit_job(argv=["true"], scheduling=JobScheduling(array_spec="not an array"))

"""The LSF backend (driving the LSF simulator) passes the molq.testing conformance kit,
through the public API: Cluster("...", "lsf") + Submitor."""

from __future__ import annotations

import time

import pytest
from molq import Cluster, JobExecution, JobResources, JobScheduling, JobState, JobStore, Submitor
from molq.batch import RetrySettings
from molq.testing import SchedulerConformance
from molq_lsf import LsfOptions


class TestLsfScheduler(SchedulerConformance):
    @pytest.fixture
    def cluster(self, lsf_sim):
        return Cluster(
            "conformance-lsf",
            "lsf",
            scheduler_options=LsfOptions(binaries=lsf_sim.binaries, env=lsf_sim.env),
        )

    @pytest.fixture
    def job_timeout(self):
        return 30.0

    @pytest.fixture
    def unsupported_field(self):
        return {"scheduling": JobScheduling(qos="high")}


def test_profile_style_options_build_an_lsf_cluster(lsf_sim):
    # Profiles hand scheduler_options over as a plain table.
    cluster = Cluster(
        "from-table",
        "lsf",
        scheduler_options={"binaries": lsf_sim.binaries, "env": lsf_sim.env, "unit_for_limits": "MB"},
    )
    assert cluster.scheduler_options == LsfOptions(
        binaries=lsf_sim.binaries, env=lsf_sim.env, unit_for_limits="MB"
    )
    assert cluster.scheduler_impl.dialect.options.unit_for_limits == "MB"
    assert cluster.get_queue() == []


# -- LSF specifics through the public API ---------------------------------------------------------


@pytest.fixture
def lsf_submitor(lsf_sim, tmp_path):
    cluster = Cluster("lsf-sim", "lsf", scheduler_options=LsfOptions(binaries=lsf_sim.binaries, env=lsf_sim.env))
    # Keep transient-failure retries quick; the attempts themselves still happen.
    cluster.scheduler_impl.retry = RetrySettings(initial_delay=0.01)
    store = JobStore(f"sqlite:///{tmp_path}/lsf-jobs.db")
    yield Submitor(cluster, store=store)
    store.close()


def _exec(tmp_path):
    return JobExecution(cwd=str(tmp_path))


def test_outage_during_refresh_changes_nothing(lsf_submitor, lsf_sim, tmp_path):
    handle = lsf_submitor.submit_job(argv=["sleep", "60"], execution=_exec(tmp_path))
    deadline = time.monotonic() + 20
    while lsf_submitor.get_job(handle.job_id).state != JobState.RUNNING:
        assert time.monotonic() < deadline
        lsf_submitor.refresh_jobs()
        time.sleep(0.1)
    transitions = len(lsf_submitor.get_transitions(handle.job_id))
    lsf_sim.outage()
    for _ in range(5):  # more than the misses that would make a job LOST
        lsf_submitor.refresh_jobs()
    record = lsf_submitor.get_job(handle.job_id)
    assert record.state == JobState.RUNNING
    assert len(lsf_submitor.get_transitions(handle.job_id)) == transitions
    lsf_sim.restore()
    lsf_submitor.refresh_jobs()
    assert lsf_submitor.get_job(handle.job_id).state == JobState.RUNNING
    handle.cancel()
    assert lsf_submitor.get_job(handle.job_id).state == JobState.CANCELLED


def test_never_satisfiable_dependency_is_failed_and_killed(lsf_submitor, lsf_sim, tmp_path):
    first = lsf_submitor.submit_job(command="exit 2", execution=_exec(tmp_path))
    second = lsf_submitor.submit_job(argv=["true"], after_success=[first.job_id], execution=_exec(tmp_path))
    records = lsf_submitor.watch_jobs([first.job_id, second.job_id], timeout=30)
    assert [r.state for r in records] == [JobState.FAILED, JobState.FAILED]
    assert records[0].exit_code == 2
    assert "dependency can never be satisfied" in records[1].failure_reason
    # molq killed the LSF job that would otherwise pend forever.
    element = lsf_sim.wait_stat(records[1].scheduler_job_id, ("EXIT",))
    assert element["exit_reason"].startswith("TERM_OWNER")


def test_run_limit_array_and_held_job_through_submitor(lsf_submitor, tmp_path):
    slow = lsf_submitor.submit_job(argv=["sleep", "60"], resources=JobResources(time_limit="1m"),
                                   execution=_exec(tmp_path))
    sweep = lsf_submitor.submit_job(command='test "$LSB_JOBINDEX" -le 3',
                                    scheduling=JobScheduling(array_spec="1-3%2"), execution=_exec(tmp_path))
    records = lsf_submitor.watch_jobs([slow.job_id, sweep.job_id], timeout=30)
    assert records[0].state == JobState.TIMED_OUT
    assert records[0].failure_reason.startswith("TERM_RUNLIMIT")
    assert records[1].state == JobState.SUCCEEDED
    assert records[1].raw_state == "array element: 3 DONE"  # core part summary


def test_cancel_held_job_through_submitor(lsf_sim, tmp_path):
    cluster = Cluster("lsf-held", "lsf", scheduler_options=LsfOptions(
        binaries=lsf_sim.binaries, env=lsf_sim.env, extra_bsub_args=("-H",)))
    store = JobStore(f"sqlite:///{tmp_path}/held.db")
    try:
        submitor = Submitor(cluster, store=store)
        handle = submitor.submit_job(argv=["true"], execution=_exec(tmp_path))
        submitor.refresh_jobs()
        assert submitor.get_job(handle.job_id).state == JobState.QUEUED
        assert submitor.get_job(handle.job_id).raw_state == "PSUSP"
        handle.cancel()
        record = submitor.get_job(handle.job_id)
        assert record.state == JobState.CANCELLED
        assert lsf_sim.element(record.scheduler_job_id)["stat"] == "EXIT"
    finally:
        store.close()

"""The PBS backend passes the molq.testing conformance kit through the public API
(``Cluster("...", "pbs")`` + ``Submitor``): PBS Pro against the simulator, Torque against real
SLURM through its Torque wrappers."""

from __future__ import annotations

import time

import pytest
from molq import Cluster, JobExecution, JobResources, JobScheduling, JobState, JobStore, Submitor
from molq.batch import RetrySettings
from molq.testing import SchedulerConformance
from molq_pbs import PbsOptions, PbsProDialect, TorqueDialect


class TestPbsProScheduler(SchedulerConformance):
    @pytest.fixture
    def cluster(self, pbs_sim):
        return Cluster(
            "conformance-pbspro",
            "pbs",
            scheduler_options=PbsOptions(binaries=pbs_sim.binaries, env=pbs_sim.env),
        )

    @pytest.fixture
    def job_timeout(self):
        return 30.0

    @pytest.fixture
    def unsupported_field(self):
        return {"scheduling": JobScheduling(qos="high")}


@pytest.mark.slurm
class TestTorqueScheduler(SchedulerConformance):
    @pytest.fixture
    def cluster(self, torque_options):
        return Cluster("conformance-torque", "pbs", scheduler_options=torque_options)

    @pytest.fixture
    def unsupported_field(self):
        return {"resources": JobResources(gpu_count=1, gpu_type="a100")}


def test_profile_style_options_build_a_pbs_cluster(pbs_sim):
    # Profiles hand scheduler_options over as a plain table.
    cluster = Cluster(
        "from-table",
        "pbs",
        scheduler_options={"flavor": "torque", "binaries": pbs_sim.binaries, "extra_qsub_args": ["-V"]},
    )
    assert cluster.scheduler_options == PbsOptions(
        flavor="torque", binaries=pbs_sim.binaries, extra_qsub_args=("-V",)
    )
    assert isinstance(cluster.scheduler_impl.dialect, TorqueDialect)
    default = Cluster(
        "default-flavor", "pbs", scheduler_options={"env": pbs_sim.env, "binaries": pbs_sim.binaries}
    )
    assert isinstance(default.scheduler_impl.dialect, PbsProDialect)
    assert default.get_queue() == []


@pytest.fixture
def pbs_submitor(pbs_sim, tmp_path):
    cluster = Cluster(
        "pbs-sim", "pbs", scheduler_options=PbsOptions(binaries=pbs_sim.binaries, env=pbs_sim.env)
    )
    # Keep transient-failure retries quick; the attempts themselves still happen.
    cluster.scheduler_impl.retry = RetrySettings(initial_delay=0.01)
    store = JobStore(f"sqlite:///{tmp_path}/pbs-jobs.db")
    yield Submitor(cluster, store=store)
    store.close()


def _wait_state(submitor, job_id, state, timeout=20.0):
    deadline = time.monotonic() + timeout
    while submitor.get_job(job_id).state != state:
        assert time.monotonic() < deadline, f"{job_id} never reached {state}"
        submitor.refresh_jobs()
        time.sleep(0.1)


def test_outage_during_refresh_changes_nothing(pbs_submitor, pbs_sim, tmp_path):
    handle = pbs_submitor.submit_job(argv=["sleep", "60"], execution=JobExecution(cwd=str(tmp_path)))
    _wait_state(pbs_submitor, handle.job_id, JobState.RUNNING)
    transitions = len(pbs_submitor.get_transitions(handle.job_id))
    pbs_sim.set_outage("qstat")
    for _ in range(5):  # more than the misses that would make a job LOST
        pbs_submitor.refresh_jobs()
    assert pbs_submitor.get_job(handle.job_id).state == JobState.RUNNING
    assert len(pbs_submitor.get_transitions(handle.job_id)) == transitions
    pbs_sim.set_outage()
    handle.cancel()
    assert pbs_submitor.get_job(handle.job_id).state == JobState.CANCELLED


def test_walltime_and_unsatisfiable_dependency_through_the_submitor(pbs_submitor, tmp_path):
    run = JobExecution(cwd=str(tmp_path))
    slow = pbs_submitor.submit_job(
        argv=["sleep", "60"], resources=JobResources(time_limit="1s"), execution=run
    )
    failing = pbs_submitor.submit_job(command="exit 2", execution=run)
    blocked = pbs_submitor.submit_job(argv=["true"], after_success=[failing.job_id], execution=run)
    records = pbs_submitor.watch_jobs([slow.job_id, failing.job_id, blocked.job_id], timeout=30)
    assert [r.state for r in records] == [JobState.TIMED_OUT, JobState.FAILED, JobState.FAILED]
    assert records[1].exit_code == 2
    assert "dependency never satisfied" in records[2].failure_reason


def test_cluster_queue_shows_foreign_jobs(pbs_submitor, pbs_sim, tmp_path):
    script = tmp_path / "foreign.sh"
    script.write_text("#!/bin/sh\n#PBS -N foreign\nsleep 30\n")
    foreign = pbs_sim.command("qsub", "-h", str(script), cwd=tmp_path).stdout.strip()
    queue = pbs_submitor.target.get_queue()
    assert [(e.scheduler_job_id, e.name, e.state, e.raw_state) for e in queue] == [
        (foreign, "foreign", JobState.QUEUED, "H")
    ]

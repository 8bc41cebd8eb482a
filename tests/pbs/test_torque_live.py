"""The Torque flavour end to end, against real SLURM through Debian's ``slurm-wlm-torque``
wrappers (``qsub``/``qstat``/``qdel`` that speak Torque and drive SLURM).

Needs the test clusters of tests/services/slurm.sh (see the ``torque_options`` fixture): with
CI=true a missing service fails the tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from molq.errors import SubmitError
from molq.model import CompiledDependency, JobExecution, JobResources, JobScheduling, JobSpec, JobState
from molq.scheduler import TrackedJob
from molq.transport import LocalTransport
from molq_pbs import TorqueDialect
from molq_pbs.plugin import build_scheduler
from pbssim_harness import wait_final, wait_for

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def torque(torque_options):
    sched = build_scheduler(LocalTransport(), torque_options)
    assert isinstance(sched.dialect, TorqueDialect)
    return sched


@pytest.fixture
def make(tmp_path):
    """(spec, job_dir) factory; job ids are unique across runs (SLURM is shared)."""
    work = tmp_path / "work"
    work.mkdir()
    counter = iter(range(1000))

    def make_job(argv=None, *, command=None, **fields):
        job_id = f"torque{os.getpid()}x{next(counter)}x{int(time.time() * 1000) % 100000}"
        job_dir = tmp_path / "jobs" / job_id
        job_dir.mkdir(parents=True)
        kind = "command" if command is not None else "argv"
        spec = JobSpec(job_id=job_id, command_type=kind, argv=argv, command=command, cwd=str(work), **fields)
        return spec, str(job_dir)

    return make_job


def submit(sched, spec, job_dir, created: list[TrackedJob]) -> TrackedJob:
    job = TrackedJob(spec.job_id, sched.submit(spec, job_dir), job_dir, time.time())
    created.append(job)
    return job


@pytest.fixture
def cleanup(torque):
    """Jobs to delete after the test, whatever happened."""
    jobs: list[TrackedJob] = []
    yield jobs
    if jobs:
        torque.cancel_many(jobs)


def test_submit_status_and_success(torque, make, cleanup):
    spec, job_dir = make(
        ("sh", "-c", "echo hello from torque; sleep 2"),
        resources=JobResources(cpu_count=1, memory="64M", time_limit="5m"),
        execution=JobExecution(job_name="torque é test"),
    )
    job = submit(torque, spec, job_dir, cleanup)
    assert job.scheduler_job_id.isdigit()  # the wrappers print SLURM's bare job id
    status = wait_for(lambda: torque.poll_many([job]).get(job.job_id))
    assert status.state in (JobState.QUEUED, JobState.RUNNING)
    entry = wait_for(lambda: [e for e in torque.list_queue() if e.scheduler_job_id == job.scheduler_job_id])
    assert entry[0].name == "torque___test"  # sanitized and cut to 15 characters
    final = wait_final(torque, [job], timeout=120)[spec.job_id]
    assert (final.state, final.exit_code) == (JobState.SUCCEEDED, 0)
    assert final.raw_state == "exit_code_file"  # the wrappers report no exit_status
    assert Path(job_dir, "stdout").read_text() == "hello from torque\n"


def test_exit_code_is_exact(torque, make, cleanup):
    spec, job_dir = make(command="exit 7")
    job = submit(torque, spec, job_dir, cleanup)
    final = wait_final(torque, [job], timeout=120)[spec.job_id]
    assert (final.state, final.exit_code) == (JobState.FAILED, 7)


def test_cancel_a_running_job(torque, make, cleanup):
    spec, job_dir = make(("sleep", "120"))
    job = submit(torque, spec, job_dir, cleanup)
    wait_for(
        lambda: (
            torque.poll_many([job]).get(job.job_id, None) is not None
            and torque.poll_many([job])[job.job_id].state is JobState.RUNNING
        ),
        timeout=60,
    )
    torque.cancel_many([job])
    # The job leaves the active states; SLURM killed the wrapper, so no exit code exists.
    wait_for(lambda: job.job_id not in torque.poll_many([job]), timeout=60)
    assert torque.resolve_terminal_many([job]) == {}
    torque.cancel_many([job])  # deleting a finished job is not an error


def test_dependency_after_success(torque, make, cleanup):
    up_spec, up_dir = make(command="sleep 2; date +%s > up.end")
    up = submit(torque, up_spec, up_dir, cleanup)
    down_spec, down_dir = make(
        ("sh", "-c", "date +%s > down.start"),
        dependencies=(CompiledDependency("after_success", up.job_id, up.scheduler_job_id),),
    )
    down = submit(torque, down_spec, down_dir, cleanup)
    waiting = torque.poll_many([down])[down.job_id]
    assert waiting.state is JobState.QUEUED
    final = wait_final(torque, [up, down], timeout=120)
    assert final[up.job_id].state is JobState.SUCCEEDED
    assert final[down.job_id].state is JobState.SUCCEEDED
    work = Path(up_spec.cwd)
    assert int((work / "down.start").read_text()) >= int((work / "up.end").read_text())


def test_unknown_partition_fails_fast(torque, make):
    spec, job_dir = make(("true",), scheduling=JobScheduling(partition="nosuchpartition"))
    torque.command_log.clear()
    with pytest.raises(SubmitError, match="nosuchpartition"):
        torque.submit(spec, job_dir)
    assert [name for name, _ in torque.command_log] == ["qsub"]


def test_auto_flavour_finds_torque_and_the_default_says_what_to_change(torque_options, make):
    """``flavor="auto"`` asks the real slurm-wlm-torque ``qstat --version`` (which it does not
    know) and picks Torque; the default PBS Pro flavour fails the poll with the setting to change."""
    import attrs

    auto = build_scheduler(LocalTransport(), attrs.evolve(torque_options, flavor="auto"))
    assert isinstance(auto.dialect, TorqueDialect)
    wrong = build_scheduler(LocalTransport(), attrs.evolve(torque_options, flavor="pbspro"))
    spec, job_dir = make(("sleep", "30"))
    sid = auto.submit(spec, job_dir)
    job = TrackedJob(spec.job_id, sid, job_dir, time.time())
    try:
        obs = wrong.observe([job])
        assert obs.statuses == {} and obs.absent == frozenset()
        assert any("flavor='torque'" in p for p in obs.problems), obs.problems
        assert auto.observe([job]).statuses[spec.job_id].state in (JobState.QUEUED, JobState.RUNNING)
    finally:
        auto.cancel_many([job])

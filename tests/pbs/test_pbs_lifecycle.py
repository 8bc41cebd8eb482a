"""Full job lifecycles through molq's batch runner and the PBS Pro dialect, against the PBS Pro
simulator (tests/simulators/pbs): jobs really run as local processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from molq import wrapper
from molq.batch import RetrySettings
from molq.errors import SubmitError, TransientSchedulerError
from molq.model import CompiledDependency, JobExecution, JobResources, JobScheduling, JobState
from molq.scheduler import TrackedJob
from pbssim_harness import wait_final, wait_for


def submit(sched, spec, job_dir) -> TrackedJob:
    sid = sched.submit(spec, job_dir)
    return TrackedJob(spec.job_id, sid, job_dir, time.time())


def poll_one(sched, job):
    return sched.poll_many([job]).get(job.job_id)


def test_success_with_output_and_times(pbs_sim, make_job):
    sched = pbs_sim.scheduler()
    spec, job_dir = make_job(("sh", "-c", 'echo "hello $PBS_JOBID from $(pwd)"'))
    job = submit(sched, spec, job_dir)
    assert job.scheduler_job_id.endswith(".pbssim")
    final = wait_final(sched, [job])[spec.job_id]
    assert (final.state, final.exit_code, final.raw_state) == (JobState.SUCCEEDED, 0, "F")
    assert final.started_at is not None and final.finished_at >= final.started_at - 1
    out = Path(job_dir, "stdout").read_text()
    assert out == f"hello {job.scheduler_job_id} from {spec.cwd}\n"  # the wrapper entered cwd
    assert Path(job_dir, "exit_code").read_text().strip() == "0"


def test_usage_of_a_finished_job_is_measured(pbs_sim, make_job):
    """resources_used.cput / walltime / mem and Resource_List.ncpus / mem: real figures from
    the simulator's run, read from the same qstat that reads the final state."""
    import sys

    sched = pbs_sim.scheduler()
    burn = ("import time\nx = bytearray(60 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\n"
            "t = time.process_time()\nwhile time.process_time() - t < 0.6: pass")
    spec, job_dir = make_job((sys.executable, "-c", burn), resources=JobResources(cpu_count=2, memory="512M"))
    job = submit(sched, spec, job_dir)
    final = wait_final(sched, [job])[spec.job_id]
    usage = final.usage
    assert final.state is JobState.SUCCEEDED and usage is not None, final
    assert usage.cpus == 2 and usage.requested_memory_bytes == 512 << 20, usage
    # cput is whole seconds (hh:mm:ss): 0.6 s of burning reads as 0 or 1 s.
    assert usage.cpu_seconds is not None and usage.cpu_seconds in (0.0, 1.0, 2.0), usage
    assert usage.max_rss_bytes is not None and 60 << 20 <= usage.max_rss_bytes < 512 << 20, usage
    assert usage.elapsed_seconds is not None and usage.memory_efficiency is not None
    assert usage.nodes and "/" not in usage.nodes and "+" not in usage.nodes, usage  # host names, not slots


def test_exit_code_is_exact(pbs_sim, make_job):
    sched = pbs_sim.scheduler()
    spec, job_dir = make_job(command="echo oops >&2; exit 7")
    job = submit(sched, spec, job_dir)
    final = wait_final(sched, [job])[spec.job_id]
    assert (final.state, final.exit_code, final.exit_signal) == (JobState.FAILED, 7, None)
    assert Path(job_dir, "stderr").read_text() == "oops\n"


def test_walltime_kill_is_timed_out(pbs_sim, make_job):
    sched = pbs_sim.scheduler()
    spec, job_dir = make_job(("sleep", "60"), resources=JobResources(time_limit="2s"))
    job = submit(sched, spec, job_dir)
    start = time.monotonic()
    final = wait_final(sched, [job], timeout=20)[spec.job_id]
    assert final.state is JobState.TIMED_OUT
    assert time.monotonic() - start < 15
    assert "JOB_EXEC_KILL_WALLTIME" in final.reason
    assert "=>> PBS: job killed: walltime" in Path(job_dir, "stderr").read_text()
    assert not Path(job_dir, "exit_code").exists()  # the wrapper itself was killed


def test_cancel_a_held_queued_job(pbs_sim, make_job):
    sched = pbs_sim.scheduler(extra_qsub_args=["-h"])  # user hold: the job stays queued
    spec, job_dir = make_job(("sh", "-c", "echo ran > ran.txt"))
    job = submit(sched, spec, job_dir)
    status = poll_one(sched, job)
    assert (status.state, status.raw_state) == (JobState.QUEUED, "H")
    sched.cancel_many([job])
    final = wait_final(sched, [job])[spec.job_id]
    assert final.state is JobState.CANCELLED
    assert final.started_at is None
    assert not Path(spec.cwd, "ran.txt").exists()
    assert not Path(job_dir, wrapper.STARTED_FILE).exists()


def test_cancel_a_running_job_kills_its_process_group(pbs_sim, make_job):
    sched = pbs_sim.scheduler()
    # A grandchild in the background: qdel must reach it too.
    spec, job_dir = make_job(command="sleep 120 & echo $! > child.pid; wait")
    job = submit(sched, spec, job_dir)
    pid_file = Path(spec.cwd, "child.pid")
    wait_for(lambda: poll_one(sched, job).state is JobState.RUNNING and pid_file.exists())
    child = int(wait_for(lambda: pid_file.read_text().strip()))
    sched.cancel_many([job])
    final = wait_final(sched, [job])[spec.job_id]
    assert final.state is JobState.CANCELLED
    assert final.exit_signal == 15  # deleted with SIGTERM (Exit_status 271)

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, timeout=5)


def test_cancel_of_a_finished_job_is_not_an_error(pbs_sim, make_job):
    sched = pbs_sim.scheduler()
    spec, job_dir = make_job(("true",))
    job = submit(sched, spec, job_dir)
    assert wait_final(sched, [job])[spec.job_id].state is JobState.SUCCEEDED
    sched.cancel_many([job])  # "qdel: Job has finished" is fine
    assert wait_final(sched, [job])[spec.job_id].state is JobState.SUCCEEDED


def _dependent(make_job, upstream: TrackedJob, condition: str, argv=("true",)):
    return make_job(
        argv, dependencies=(CompiledDependency(condition, upstream.job_id, upstream.scheduler_job_id),)
    )


@pytest.mark.parametrize(
    "condition,upstream_command,runs",
    [
        ("after_success", "exit 0", True),
        ("after_success", "exit 3", False),
        ("after_failure", "exit 3", True),
        ("after_failure", "exit 0", False),
        ("after", "exit 3", True),
        ("after", "exit 0", True),
    ],
)
def test_dependency_conditions(pbs_sim, make_job, condition, upstream_command, runs):
    sched = pbs_sim.scheduler()
    up_spec, up_dir = make_job(command=f"sleep 5; {upstream_command}")
    up = submit(sched, up_spec, up_dir)
    down_spec, down_dir = _dependent(make_job, up, condition, ("sh", "-c", "echo downstream"))
    down = submit(sched, down_spec, down_dir)
    waiting = poll_one(sched, down)
    assert (waiting.state, waiting.raw_state) == (JobState.QUEUED, "H")  # held by the dependency
    final = wait_final(sched, [up, down])
    assert final[up.job_id].state is (JobState.SUCCEEDED if upstream_command == "exit 0" else JobState.FAILED)
    if runs:
        assert final[down.job_id].state is JobState.SUCCEEDED
        assert final[down.job_id].started_at >= final[up.job_id].finished_at - 1
        assert Path(down_dir, "stdout").read_text() == "downstream\n"
    else:
        # PBS deletes a job whose dependency can never be satisfied; molq calls that FAILED.
        assert final[down.job_id].state is JobState.FAILED
        assert final[down.job_id].reason.startswith("dependency never satisfied")
        assert not Path(down_dir, wrapper.STARTED_FILE).exists()


def test_after_started_runs_while_upstream_still_runs(pbs_sim, make_job):
    sched = pbs_sim.scheduler()
    up_spec, up_dir = make_job(("sleep", "3"))
    up = submit(sched, up_spec, up_dir)
    down_spec, down_dir = _dependent(make_job, up, "after_started")
    down = submit(sched, down_spec, down_dir)
    final = wait_final(sched, [up, down])
    assert final[down.job_id].state is JobState.SUCCEEDED
    assert final[down.job_id].finished_at < final[up.job_id].finished_at


def test_array_job(pbs_sim, make_job):
    sched = pbs_sim.scheduler()
    spec, job_dir = make_job(
        command='echo "$PBS_ARRAY_INDEX $PBS_ARRAY_ID" > "out.$PBS_ARRAY_INDEX"; sleep 1',
        scheduling=JobScheduling(array_spec="1-4%2"),
    )
    job = submit(sched, spec, job_dir)
    assert job.scheduler_job_id.endswith("[].pbssim")
    # The array is read from its subjobs (qstat -t), aggregated by core's one policy.
    running = wait_for(lambda: poll_one(sched, job) if poll_one(sched, job).state is JobState.RUNNING else None)
    assert running.raw_state.startswith("array task: ")
    final = wait_final(sched, [job])[spec.job_id]
    assert (final.state, final.exit_code) == (JobState.SUCCEEDED, 0)
    for index in range(1, 5):
        assert Path(spec.cwd, f"out.{index}").read_text() == f"{index} {job.scheduler_job_id}\n"
    subjobs = [j for j in pbs_sim.state()["jobs"].values() if j.get("array_id") == job.scheduler_job_id]
    starts = sorted(j["stime"] for j in subjobs)
    assert len(starts) == 4 and starts[2] >= min(j["obittime"] for j in subjobs) - 0.5  # at most 2 at once


def test_array_with_a_failing_subjob_fails(pbs_sim, make_job):
    sched = pbs_sim.scheduler()
    spec, job_dir = make_job(
        command='[ "$PBS_ARRAY_INDEX" != 2 ]', scheduling=JobScheduling(array_spec="1-3")
    )
    job = submit(sched, spec, job_dir)
    final = wait_final(sched, [job])[spec.job_id]
    # The failing subjob's own exit status, not the parent's summary "1".
    assert (final.state, final.exit_code) == (JobState.FAILED, 1)
    assert f"{job.scheduler_job_id.split('[')[0]}[2]" in final.reason and "1 of 3" in final.reason


def test_many_jobs_one_command_each(pbs_sim, make_job):
    sched = pbs_sim.scheduler(extra_qsub_args=["-h"])
    jobs = [submit(sched, *make_job(("true",))) for _ in range(5)]
    sched.command_log.clear()
    statuses = sched.poll_many(jobs)
    assert len(statuses) == 5 and all(s.raw_state == "H" for s in statuses.values())
    sched.cancel_many(jobs)
    assert [name for name, _ in sched.command_log] == ["qstat", "qdel"]
    final = wait_final(sched, jobs)
    assert {s.state for s in final.values()} == {JobState.CANCELLED}


def test_get_queue_lists_jobs_not_submitted_by_molq(pbs_sim, make_job, tmp_path):
    sched = pbs_sim.scheduler(extra_qsub_args=["-h"])
    spec, job_dir = make_job(("true",), execution=JobExecution(job_name="from molq"))
    mine = submit(sched, spec, job_dir)
    script = tmp_path / "outsider.sh"
    script.write_text("#!/bin/sh\n#PBS -N outsider\n#PBS -q long\nsleep 30\n")
    direct = pbs_sim.command("qsub", str(script), cwd=tmp_path)
    assert direct.returncode == 0, direct.stderr
    outsider_id = direct.stdout.strip()
    entries = {e.scheduler_job_id: e for e in sched.list_queue()}
    assert set(entries) == {mine.scheduler_job_id, outsider_id}
    assert (entries[outsider_id].name, entries[outsider_id].partition) == ("outsider", "long")
    assert entries[outsider_id].state is JobState.RUNNING and entries[outsider_id].start_time is not None
    assert entries[mine.scheduler_job_id].name == "from_molq"
    assert entries[mine.scheduler_job_id].raw_state == "H"
    assert sched.list_queue(user="somebody-else") == []


def test_adoption_finds_the_job_by_its_tag(pbs_sim, make_job):
    sched = pbs_sim.scheduler(extra_qsub_args=["-h"])
    spec, job_dir = make_job(("true",))
    job = submit(sched, spec, job_dir)
    lost = TrackedJob(spec.job_id, None, job_dir)
    other = TrackedJob("never-submitted", None, job_dir)
    assert sched.find_adoptable([lost, other]) == {spec.job_id: job.scheduler_job_id}


def test_unknown_queue_fails_fast_with_the_scheduler_message(pbs_sim, make_job):
    sched = pbs_sim.scheduler()
    spec, job_dir = make_job(("true",), scheduling=JobScheduling(partition="nosuchq"))
    with pytest.raises(SubmitError, match="qsub: Unknown queue"):
        sched.submit(spec, job_dir)
    assert [name for name, _ in sched.command_log] == ["qsub"]  # not retried
    assert pbs_sim.state()["jobs"] == {}


def test_failing_qstat_changes_nothing(pbs_sim, make_job):
    sched = pbs_sim.scheduler(retry=RetrySettings(attempts=3, initial_delay=0, command_timeout=30))
    # long enough to outlive the outage below on a busy machine
    spec, job_dir = make_job(("sleep", "10"))
    job = submit(sched, spec, job_dir)
    wait_for(lambda: poll_one(sched, job).state is JobState.RUNNING)
    pbs_sim.set_outage("qstat")
    sched.command_log.clear()
    with pytest.raises(TransientSchedulerError, match="cannot connect to server"):
        sched.poll_many([job])
    assert [name for name, _ in sched.command_log] == ["qstat"] * 3  # retried, then gave up
    # The accounting query fails too; with no exit-code file yet there is no verdict.
    assert sched.resolve_terminal_many([job]) == {}
    pbs_sim.set_outage()
    assert poll_one(sched, job).state is JobState.RUNNING
    assert wait_final(sched, [job])[spec.job_id].state is JobState.SUCCEEDED


def test_outage_during_submit_and_cancel_is_transient(pbs_sim, make_job):
    sched = pbs_sim.scheduler(retry=RetrySettings(attempts=2, initial_delay=0, command_timeout=30))
    pbs_sim.set_outage("qsub", "qdel")
    spec, job_dir = make_job(("true",))
    # refused before acceptance: the submission definitely failed (no retry, no adoption)
    with pytest.raises(SubmitError):
        sched.submit(spec, job_dir)
    pbs_sim.set_outage("qdel")
    job = submit(sched, spec, job_dir)
    with pytest.raises(TransientSchedulerError):
        sched.cancel_many([job])
    pbs_sim.set_outage()
    assert wait_final(sched, [job])[spec.job_id].state is JobState.SUCCEEDED


def test_finished_jobs_resolve_from_the_exit_file_once_history_is_gone(pbs_sim, make_job):
    sched = pbs_sim.scheduler()
    spec, job_dir = make_job(command="exit 5")
    job = submit(sched, spec, job_dir)
    assert wait_final(sched, [job])[spec.job_id].exit_code == 5
    pbs_sim.env["MOLQ_PBSSIM_HISTORY"] = "0"
    pbs_sim.command("qstat")  # purges history
    sched = pbs_sim.scheduler()
    assert sched.poll_many([job]) == {}
    final = sched.resolve_terminal_many([job])[spec.job_id]
    assert (final.state, final.exit_code, final.raw_state) == (JobState.FAILED, 5, "exit_code_file")

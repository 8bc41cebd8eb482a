"""Full job lifecycles: molq's BatchScheduler + LsfDialect driving the LSF simulator.

Jobs really run (as local processes started by the simulated LSF), so states, exit codes,
output files and timings are the real thing.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from molq.errors import SchedulerError, SubmitError, TransientSchedulerError
from molq.evidence import CancelOutcome
from molq.model import JobState
from molq.scheduler import TrackedJob


def test_success_with_output_and_environment(lsf):
    job = lsf.run(command='echo "hello $LSB_JOBID from $(pwd)"; echo oops >&2', env={"GREETING": "x"})
    status = lsf.wait(job)
    assert status.state == JobState.SUCCEEDED
    assert status.exit_code == 0
    assert status.raw_state == "DONE"
    assert status.started_at is not None
    assert lsf.read(job) == f"hello {job.scheduler_job_id} from {lsf.root}\n"
    assert lsf.read(job, "stderr") == "oops\n"
    assert lsf.read(job, "exit_code").strip() == "0"  # the molq wrapper ran


def test_exit_code_7_exactly(lsf):
    job = lsf.run(["sh", "-c", "exit 7"])
    status = lsf.wait(job)
    assert (status.state, status.exit_code, status.raw_state) == (JobState.FAILED, 7, "EXIT")
    assert status.exit_signal is None


def test_run_limit_kill_is_timed_out(lsf):
    # time_limit 1 minute; the simulator's LSF minute lasts one second.
    job = lsf.run(["sleep", "60"], time_limit="1m")
    status = lsf.wait(job, timeout=20)
    assert status.state == JobState.TIMED_OUT
    assert status.reason.startswith("TERM_RUNLIMIT")
    assert status.exit_code == 128 + 12  # SIGUSR2, as LSF sends first
    assert not (Path(job.job_dir) / "exit_code").exists()


def test_cancel_pending_job(lsf):
    held = lsf.with_options(extra_bsub_args=("-H",))  # bsub -H keeps it pending
    job = held.run(["true"])
    status = held.wait(job, [JobState.QUEUED])
    assert status.raw_state == "PSUSP"
    assert "suspended by the user" in status.reason
    held.scheduler.cancel_many([job])
    status = held.wait(job)
    assert status.state == JobState.CANCELLED
    assert status.exit_code is None
    assert status.started_at is None
    # Cancelling again (LSF: "Job has already finished") is not an error.
    held.scheduler.cancel_many([job])


def test_cancel_running_job_kills_the_process_group(lsf):
    job = lsf.run(command="sleep 60 & sleep 60; wait")
    lsf.wait(job, [JobState.RUNNING])
    pgid = lsf.sim.job_pgid(job.scheduler_job_id)
    assert lsf.sim.live_processes(pgid)
    lsf.scheduler.cancel_many([job])
    status = lsf.wait(job)
    assert status.state == JobState.CANCELLED
    assert status.exit_code == 130  # SIGINT, the first signal bkill sends
    assert status.reason.startswith("TERM_OWNER")
    # Nothing of the job is left, including the background child that ignores SIGINT.
    assert lsf.sim.wait_group_gone(pgid)


def test_cancel_many_jobs_in_one_call_including_finished_ones(lsf):
    done = lsf.run(["true"])
    lsf.wait(done)
    running = [lsf.run(["sleep", "60"]) for _ in range(3)]
    before = len(lsf.scheduler.command_log)
    lsf.scheduler.cancel_many([done, *running])
    assert [name for name, _ in lsf.scheduler.command_log[before:]] == ["bkill"]
    assert {lsf.wait(j).state for j in running} == {JobState.CANCELLED}
    assert lsf.wait(done).state == JobState.SUCCEEDED


def _order(lsf, log: Path) -> list[str]:
    return log.read_text().split()


def test_after_success(lsf):
    log = lsf.root / "order.log"
    first = lsf.run(command=f"sleep 1; echo first >> '{log}'")
    second = lsf.run(command=f"echo second >> '{log}'", after=[("after_success", first)])
    assert lsf.wait(second).state == JobState.SUCCEEDED
    assert _order(lsf, log) == ["first", "second"]
    # An upstream that fails makes after_success impossible: LSF keeps the job pending.
    bad = lsf.run(["false"])
    blocked = lsf.run(["true"], after=[("after_success", bad)])
    lsf.wait(bad)
    status = lsf.status(blocked)
    assert status.state == JobState.QUEUED
    assert status.reason == "Dependency condition invalid or never satisfied"
    assert status.dependency_never_satisfied  # the engine will cancel it


def test_after_failure(lsf):
    bad = lsf.run(["sh", "-c", "exit 3"])
    rescue = lsf.run(["true"], after=[("after_failure", bad)])
    assert lsf.wait(rescue).state == JobState.SUCCEEDED
    assert lsf.wait(bad).exit_code == 3
    good = lsf.run(["true"])
    never = lsf.run(["true"], after=[("after_failure", good)])
    lsf.wait(good)
    assert lsf.status(never).state == JobState.QUEUED
    assert lsf.status(never).reason == "Dependency condition invalid or never satisfied"
    assert lsf.status(never).dependency_never_satisfied


def test_after_started(lsf):
    log = lsf.root / "order.log"
    gate = lsf.root / "gate"
    # The upstream runs until the test opens the gate, so "still running" does not depend on speed.
    long = lsf.run(command=f"while [ ! -e '{gate}' ]; do sleep 0.1; done; echo long >> '{log}'")
    quick = lsf.run(command=f"echo quick >> '{log}'", after=[("after_started", long)])
    assert lsf.wait(quick).state == JobState.SUCCEEDED
    # The dependent ran while its upstream was still running.
    assert lsf.status(long).state == JobState.RUNNING
    gate.touch()
    assert lsf.wait(long).state == JobState.SUCCEEDED
    assert _order(lsf, log) == ["quick", "long"]


def test_after_any_outcome_and_waiting_reason(lsf):
    log = lsf.root / "order.log"
    upstream = lsf.run(command=f"sleep 2; echo up >> '{log}'; exit 4")
    downstream = lsf.run(command=f"echo down >> '{log}'", after=[("after", upstream)])
    status = lsf.wait(downstream, [JobState.QUEUED])
    assert status.reason == "Job dependency condition not satisfied"
    assert not status.dependency_never_satisfied
    assert lsf.wait(downstream).state == JobState.SUCCEEDED
    assert lsf.wait(upstream).exit_code == 4
    assert _order(lsf, log) == ["up", "down"]


def test_array_job(lsf):
    job = lsf.run(command='echo "element $LSB_JOBINDEX"', array_spec="1-4%2", job_name="sweep")
    status = lsf.wait(job)
    assert status.state == JobState.SUCCEEDED
    assert status.raw_state == "array element: 4 DONE"  # core part summary
    for index in range(1, 5):
        assert lsf.read(job, f"stdout.{index}") == f"element {index}\n"
    # %2: never more than two elements at once.
    elements = lsf.sim.state()["jobs"][job.scheduler_job_id]["elements"].values()
    spans = [(e["start"], e["finish"]) for e in elements]
    for start, _ in spans:
        assert sum(1 for s, f in spans if s <= start < f) <= 2
    entries = [e for e in lsf.scheduler.list_queue() if e.scheduler_job_id.startswith(job.scheduler_job_id)]
    assert entries == []  # finished jobs are not in the queue listing


def test_array_with_a_failing_element(lsf):
    job = lsf.run(command='test "$LSB_JOBINDEX" != 3 || exit 9', array_spec="1-4")
    status = lsf.wait(job)
    assert status.state == JobState.FAILED
    assert status.exit_code == 9
    assert f"{job.scheduler_job_id}[3]" in status.reason


def test_get_queue_includes_jobs_not_submitted_by_molq(lsf):
    held = lsf.with_options(extra_bsub_args=("-H",))
    mine = held.run(["true"], job_name="molq job ✓ [1]")
    outside = lsf.sim.bsub("-J", "hand made", "sleep", "30")
    foreign = lsf.sim.bsub("-q", "long", "sleep", "30", env={"MOLQ_LSFSIM_USER": "alice"})
    entries = {e.scheduler_job_id: e for e in lsf.scheduler.list_queue()}
    assert set(entries) == {mine.scheduler_job_id, outside}
    assert entries[mine.scheduler_job_id].name == "molq job ✓ (1)"
    assert entries[mine.scheduler_job_id].raw_state == "PSUSP"
    assert entries[mine.scheduler_job_id].state == JobState.QUEUED
    assert entries[outside].name == "hand made"
    assert entries[outside].partition == "normal"
    alice = lsf.scheduler.list_queue(user="alice")
    assert [(e.scheduler_job_id, e.user, e.partition) for e in alice] == [(foreign, "alice", "long")]
    assert {e.scheduler_job_id for e in lsf.scheduler.list_queue(user="all")} == {
        mine.scheduler_job_id, outside, foreign}


def test_outage_changes_nothing(lsf):
    job = lsf.run(["sleep", "30"])
    assert lsf.wait(job, [JobState.RUNNING]).state == JobState.RUNNING
    lsf.sim.outage()
    before = len(lsf.scheduler.command_log)
    with pytest.raises(TransientSchedulerError) as info:
        lsf.scheduler.poll_many([job])
    assert "LSF is down" in str(info.value)
    assert len(lsf.scheduler.command_log) - before == lsf.scheduler.retry.attempts  # retried
    with pytest.raises(TransientSchedulerError):
        lsf.scheduler.cancel_many([job])
    with pytest.raises(TransientSchedulerError):
        lsf.scheduler.list_queue()
    # refused before acceptance: the submission definitely failed (no retry, no adoption)
    with pytest.raises(SubmitError):
        lsf.submit(lsf.spec(["true"]))
    lsf.sim.restore()
    # The job was never touched: still running, and still cancellable.
    assert lsf.status(job).state == JobState.RUNNING
    lsf.scheduler.cancel_many([job])
    assert lsf.wait(job).state == JobState.CANCELLED


@pytest.mark.parametrize(
    ("scheduling", "message"),
    [({"partition": "bogus"}, "bogus: No such queue"),
     ({"partition": "admin"}, "admin: User cannot use the queue")],
)
def test_permanent_submit_errors_fail_fast(lsf, scheduling, message):
    lsf.sim.configure(queues=["normal", "long", "admin"], restricted_queues=["admin"])
    before = len(lsf.scheduler.command_log)
    with pytest.raises(SubmitError) as info:
        lsf.submit(lsf.spec(["true"], **scheduling))
    assert message in str(info.value)
    assert len(lsf.scheduler.command_log) - before == 1  # no retries


def test_forgotten_job_resolves_from_the_exit_code_file(lsf):
    lsf.sim.configure(clean_period=0)  # LSF forgets finished jobs at once
    job = lsf.run(["sh", "-c", "exit 7"])
    deadline = time.monotonic() + 20
    while job.scheduler_job_id in lsf.sim.state()["jobs"]:
        assert time.monotonic() < deadline, "the simulator never forgot the job"
        lsf.sim.run("bjobs")  # every command advances the world
        time.sleep(0.1)
    assert lsf.scheduler.poll_many([job]) == {}
    status = lsf.scheduler.resolve_terminal_many([job])[job.job_id]
    assert (status.state, status.exit_code, status.raw_state) == (JobState.FAILED, 7, "exit_code_file")


def test_adoption_finds_a_job_by_its_tag(lsf):
    spec = lsf.spec(["true"], job_name="adopt me")
    job = lsf.submit(spec)
    lost = TrackedJob(spec.job_id, None, job.job_dir)
    other = TrackedJob("f" * 32, None, job.job_dir)
    assert lsf.scheduler.find_adoptable([lost, other]) == {spec.job_id: job.scheduler_job_id}


def test_one_status_call_for_many_jobs(lsf):
    jobs = [lsf.run(["sh", "-c", f"exit {i}"]) for i in range(5)]
    for job in jobs:
        lsf.sim.wait_stat(job.scheduler_job_id, ("DONE", "EXIT"))
    before = len(lsf.scheduler.command_log)
    found = lsf.scheduler.poll_many(jobs)
    assert [name for name, _ in lsf.scheduler.command_log[before:]] == ["bjobs"]
    assert [found[j.job_id].exit_code for j in jobs] == [0, 1, 2, 3, 4]
    assert [found[j.job_id].state for j in jobs] == [JobState.SUCCEEDED] + [JobState.FAILED] * 4


def test_concurrent_submissions_get_distinct_ids(lsf):
    specs = [lsf.spec(["true"]) for _ in range(8)]
    jobs: list[TrackedJob] = []
    errors: list[BaseException] = []

    def submit(spec):
        try:
            jobs.append(lsf.submit(spec))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({j.scheduler_job_id for j in jobs}) == 8
    assert {lsf.wait(j).state for j in jobs} == {JobState.SUCCEEDED}


# -- states that are never final: suspended, requeued -------------------------------------------


def test_stopped_job_is_not_final_and_finishes_after_resume(lsf):
    job = lsf.run(command="sleep 1.5")
    lsf.wait(job, [JobState.RUNNING])
    assert lsf.sim.run("bstop", job.scheduler_job_id).returncode == 0
    for _ in range(5):  # longer than the job's own run time: a stopped job does not progress
        status = lsf.status(job)
        assert (status.state, status.raw_state) == (JobState.RUNNING, "USUSP")
        assert not status.state.is_terminal
        time.sleep(0.4)
    assert lsf.sim.run("bresume", job.scheduler_job_id).returncode == 0
    status = lsf.wait(job)
    assert (status.state, status.exit_code) == (JobState.SUCCEEDED, 0)


def test_cancel_of_a_stopped_job_kills_it(lsf):
    job = lsf.run(["sleep", "60"])
    lsf.wait(job, [JobState.RUNNING])
    pgid = lsf.sim.job_pgid(job.scheduler_job_id)
    lsf.sim.run("bstop", job.scheduler_job_id)
    lsf.sim.wait_stat(job.scheduler_job_id, ("USUSP",))
    outcomes = lsf.scheduler.cancel_many([job])
    assert outcomes == {job.job_id: CancelOutcome.REQUESTED}
    assert lsf.wait(job).state == JobState.CANCELLED
    assert lsf.sim.wait_group_gone(pgid)


def test_requeued_job_ends_in_its_real_final_state(lsf):
    # The first run waits to be requeued; the second run exits 3 at once.
    marker = lsf.root / "runs"
    job = lsf.run(command=f"echo run >> '{marker}'; [ $(wc -l < '{marker}') -ge 2 ] || sleep 60; exit 3")
    lsf.wait(job, [JobState.RUNNING])
    assert lsf.sim.run("brequeue", job.scheduler_job_id).returncode == 0
    seen = []
    deadline = time.monotonic() + 30
    while True:
        status = lsf.status(job)
        seen.append(status.state)
        if status.state.is_terminal or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    # Never a false end on the way: the killed first run is not the job's end.
    assert [s for s in seen if s.is_terminal] == [JobState.FAILED]
    assert (status.state, status.exit_code) == (JobState.FAILED, 3)
    assert marker.read_text().split() == ["run", "run"]
    assert lsf.sim.element(job.scheduler_job_id)["requeued"] == 1


# -- cancel answers -------------------------------------------------------------------------------


def test_cancel_of_a_finished_job_is_already_ended(lsf):
    job = lsf.run(["true"])
    assert lsf.wait(job).state == JobState.SUCCEEDED
    assert lsf.scheduler.cancel_many([job]) == {job.job_id: CancelOutcome.ALREADY_ENDED}
    assert lsf.status(job).state == JobState.SUCCEEDED  # its real end stays


def test_cancel_of_another_users_job_is_refused(lsf):
    sid = lsf.sim.bsub("-J", "theirs", "sleep 60", env={"MOLQ_LSFSIM_USER": "someone-else"})
    lsf.sim.wait_stat(sid, ("RUN",))
    theirs = TrackedJob("theirs", sid, str(lsf.root), time.time())
    with pytest.raises(SchedulerError, match="User permission denied"):
        lsf.scheduler.cancel_many([theirs])
    assert lsf.sim.element(sid)["stat"] == "RUN"  # nothing was stopped
    assert lsf.sim.run("bkill", sid, env={"MOLQ_LSFSIM_USER": "someone-else"}).returncode == 0


def test_usage_of_a_finished_job_comes_with_its_status(lsf):
    """CPU time, peak memory, run time, slots, hosts and the memory limit, measured for real
    by the simulator and read from the one bjobs call that reads states."""
    import socket
    import sys

    burn = ("import time\nx = bytearray(60 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\n"
            "t = time.process_time()\nwhile time.process_time() - t < 0.6: pass")
    busy = lsf.run([sys.executable, "-c", burn], cpu_count=2, memory="512M")
    idle = lsf.run(["sleep", "1"])
    for job in (busy, idle):
        lsf.sim.wait_stat(job.scheduler_job_id, ("DONE", "EXIT"))
    before = len(lsf.scheduler.command_log)
    found = lsf.scheduler.poll_many([busy, idle])
    assert [name for name, _ in lsf.scheduler.command_log[before:]] == ["bjobs"]  # no extra command
    b, i = found[busy.job_id].usage, found[idle.job_id].usage
    assert b is not None and i is not None
    assert 0.6 <= (b.cpu_seconds or 0) < 10 and (i.cpu_seconds or 0) < 0.5, (b, i)
    assert b.max_rss_bytes is not None and 60 << 20 <= b.max_rss_bytes < 512 << 20, b
    assert b.requested_memory_bytes == 512 << 20 and i.requested_memory_bytes is None
    assert (b.cpus, i.cpus) == (2, 1)
    assert b.nodes == socket.gethostname()
    assert i.elapsed_seconds is not None and i.elapsed_seconds >= 1
    assert b.memory_efficiency is not None and 0.1 < b.memory_efficiency < 1


def test_running_job_has_no_usage_yet(lsf):
    job = lsf.run(["sleep", "30"])
    status = lsf.wait(job, (JobState.RUNNING,))
    assert status.usage is None  # what a job used is read once it has ended
    lsf.scheduler.cancel_many([job])

"""A real slurmctld outage, seen through the Submitor, on both test clusters.

Jobs are submitted through ``Submitor(Cluster(..., "slurm"))``; their commands wait for gate
files this test creates, so which job ends before, during or after the outage is decided here
and not by timing. While slurmctld is stopped (``tests/services/slurm.sh stop-ctld``) every
status query fails: refreshes, a watch loop and a cancel must change no job, and after
``start-ctld`` every job must reach its real final state and exit code -- including the jobs
that ended while nobody could ask the controller.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import pytest
from molq import Cluster, JobExecution, Submitor
from molq.errors import SchedulerError
from molq.model import JobRecord, JobState

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM_SH = Path(__file__).resolve().parents[1] / "services" / "slurm.sh"

#: Bounds every SLURM command: a client talking to a dead controller retries for
#: MessageTimeout (9-18 s here) before failing; molq's timeout cuts that short.
COMMAND_TIMEOUT = 3.0
RETRY_ATTEMPTS = 2
RETRY_DELAY = 0.5
#: The most one refresh may take during the outage: every attempt times out, plus the backoff.
REFRESH_BOUND = RETRY_ATTEMPTS * COMMAND_TIMEOUT + RETRY_DELAY + 3.0


def _ctld(action: str, cluster: str) -> None:
    proc = subprocess.run(["bash", str(SLURM_SH), action, cluster], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"slurm.sh {action} {cluster} failed:\n{proc.stdout}\n{proc.stderr}"


def _gated(gate: Path, then: str) -> str:
    """A shell command that waits for ``gate`` to exist, then runs ``then``."""
    return f"while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.2; done; {then}"


def _snapshot(submitor: Submitor, ids: list[str]) -> dict[str, tuple[JobState, list[tuple]]]:
    out = {}
    for job_id in ids:
        record = submitor.get_job(job_id)
        history = [(t.old_state, t.new_state, t.reason) for t in submitor.get_transitions(job_id)]
        out[job_id] = (record.state, history)
    return out


def _wait_states(submitor: Submitor, wanted: dict[str, JobState], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        submitor.refresh_jobs()
        states = {job_id: submitor.get_job(job_id).state for job_id in wanted}
        if states == wanted:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs did not reach {wanted} before the outage: {states}")
        time.sleep(0.3)


def test_controller_outage_changes_nothing_and_final_states_are_exact(slurm_cluster, tmp_path: Path) -> None:
    cluster_name = slurm_cluster.name
    cluster = Cluster(
        f"outage-{cluster_name}",
        "slurm",
        scheduler_options={
            "env": dict(slurm_cluster.env),
            "command_timeout": COMMAND_TIMEOUT,
            "retry_attempts": RETRY_ATTEMPTS,
            "retry_initial_delay": RETRY_DELAY,
        },
    )
    submitor = Submitor(cluster, jobs_dir=str(tmp_path / "jobs"))
    sched = submitor.scheduler
    execution = JobExecution(cwd=str(tmp_path))
    during, after = tmp_path / "gate-during-outage", tmp_path / "gate-after-outage"

    def submit(command: str, **kwargs) -> str:
        return submitor.submit_job(command=command, execution=execution, **kwargs).job_id

    # Ends during the outage: success, exit 3, and death by SIGKILL (the wrapper sees 137).
    ok_early = submit(_gated(during, "exit 0"))
    three_early = submit(_gated(during, "exit 3"))
    killed_early = submit(_gated(during, "kill -9 $$"))
    # Still running when the controller comes back.
    ok_late = submit(_gated(after, "exit 0"))
    four_late = submit(_gated(after, "exit 4"))
    victim = submit("sleep 300")  # cancelled: in vain during the outage, for real after it
    # Queued behind a job that ends during the outage; runs only once SLURM can act on that.
    dependent = submit("exit 0", after_success=[ok_early])
    ids = [ok_early, three_early, killed_early, ok_late, four_late, victim, dependent]

    running = {j: JobState.RUNNING for j in ids if j != dependent}
    _wait_states(submitor, {**running, dependent: JobState.QUEUED})
    before = _snapshot(submitor, ids)
    early_dirs = [Path(submitor.get_job(j).job_dir) for j in (ok_early, three_early, killed_early)]

    try:
        _ctld("stop-ctld", cluster_name)
        during.touch()
        # The early jobs really end now, while the controller is down: their wrapper writes
        # the exit code (the SIGKILLed one writes it for the shell it ran: 137).
        deadline = time.monotonic() + 20
        while not all((d / "exit_code").exists() for d in early_dirs):
            assert time.monotonic() < deadline, "the early jobs did not end during the outage"
            time.sleep(0.2)
        log_start = len(sched.command_log)

        for _ in range(2):
            started = time.monotonic()
            submitor.refresh_jobs()  # must not raise: a failed query is logged, nothing changes
            assert time.monotonic() - started < REFRESH_BOUND
        with pytest.raises(TimeoutError):
            submitor.watch_jobs(ids, timeout=4, poll_interval=0.5)
        # Cancelling needs the controller: it fails loudly and the job is not marked cancelled.
        with pytest.raises(SchedulerError):
            submitor.cancel_jobs([victim])
        submitor.refresh_jobs()

        assert _snapshot(submitor, ids) == before  # no state, no transition changed
        for job_id in ids:
            assert submitor.store.get_internal(submitor.cluster_name, job_id)["missing_count"] == 0
        outage_commands = [name for name, _ in sched.command_log[log_start:]]
        assert outage_commands.count("squeue") >= 2 * RETRY_ATTEMPTS  # molq really asked
        # No failed squeue may be read as "the jobs left the queue": no final-state query ran.
        assert set(outage_commands) <= {"squeue", "scancel"}, outage_commands
    finally:
        _ctld("start-ctld", cluster_name)  # always, even if stopping failed half-way

    try:
        submitor.cancel_jobs([victim])
        after.touch()
        finals = {r.job_id: r for r in submitor.watch_jobs(ids, timeout=90, poll_interval=0.5)}
    finally:
        during.touch()
        after.touch()
        leftovers = [r for r in submitor.list_jobs() if r.scheduler_job_id]
        if leftovers:
            slurm_cluster.run("scancel", *[r.scheduler_job_id for r in leftovers])

    def outcome(record: JobRecord) -> tuple:
        return record.state, record.exit_code, record.exit_signal

    assert outcome(finals[ok_early]) == (JobState.SUCCEEDED, 0, None)
    assert outcome(finals[three_early]) == (JobState.FAILED, 3, None)
    assert outcome(finals[killed_early]) == (JobState.FAILED, 137, 9)
    assert outcome(finals[ok_late]) == (JobState.SUCCEEDED, 0, None)
    assert outcome(finals[four_late]) == (JobState.FAILED, 4, None)
    assert outcome(finals[dependent]) == (JobState.SUCCEEDED, 0, None)
    assert finals[victim].state == JobState.CANCELLED

    for job_id in ids:
        history = [(t.old_state, t.new_state) for t in submitor.get_transitions(job_id)]
        # What was recorded before the outage stands, and exactly one final state follows.
        assert [(o, n) for o, n, _ in before[job_id][1]] == history[: len(before[job_id][1])]
        new_states = [n for _, n in history[len(before[job_id][1]) :]]
        assert JobState.LOST not in new_states
        assert [s for s in new_states if s.is_terminal] == [finals[job_id].state], (job_id, history)
        assert new_states[-1] == finals[job_id].state
    submitor.close()

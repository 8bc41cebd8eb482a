"""How many SLURM commands one ``Submitor.refresh_jobs()`` and one ``cancel_jobs()`` cost, on
the real test clusters, with many jobs at once (counted with ``BatchScheduler.command_log``).

* jobs in the queue (held, so they stay cheap): one ``squeue``, whatever their number;
* jobs that just ended (SLURM still lists them): the same single ``squeue`` gives final states,
  plus one ``sacct`` for all of them together, for their usage (squeue shows none); where
  accounting is disabled that first ``sacct`` learns so, and later refreshes skip it;
* jobs the controller no longer knows (ended more than ``MinJobAge`` ago): ``squeue`` plus one
  final-state query (``sacct``; ``scontrol`` where accounting is disabled);
* cancelling them all: one ``scancel``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from molq import Cluster, JobExecution, Submitor
from molq.model import JobState

pytestmark = pytest.mark.slurm

HELD = 50
FINISHED = 30
FORGOTTEN = 20


def _commands(submitor: Submitor, action: Callable[[], object]) -> list[str]:
    """The SLURM commands ``action`` ran, in order."""
    log = submitor.scheduler.command_log
    start = len(log)
    action()
    return [name for name, _ in log[start:]]


def _wait_until_slurm_is_done(slurm_cluster, sids: list[str], timeout: float = 90) -> None:
    """Wait (asking SLURM directly, outside molq) until no job of ``sids`` is active."""
    deadline = time.monotonic() + timeout
    while True:
        proc = slurm_cluster.run("squeue", "--noheader", "--states=all", "--jobs=" + ",".join(sids), "--format=%T")
        states = proc.stdout.split()
        if proc.returncode == 0 and len(states) == len(sids) and set(states) <= {"COMPLETED", "FAILED"}:
            return
        assert time.monotonic() < deadline, f"jobs still active: {sorted(set(states))}"
        time.sleep(0.5)


def _submit_batch(submitor: Submitor, count: int, execution: JobExecution) -> dict[str, int]:
    """``count`` jobs exiting with 0, 1 or 2; returns job id -> expected exit code."""
    expected = {}
    for k in range(count):
        code = k % 3
        expected[submitor.submit_job(command=f"exit {code}", execution=execution).job_id] = code
    return expected


def test_one_squeue_for_many_queued_jobs_and_one_scancel_for_all(slurm_cluster, tmp_path: Path) -> None:
    cluster = Cluster(
        f"held-{slurm_cluster.name}",
        "slurm",
        # A minimum poll interval longer than the test: the second refresh finds a stored
        # answer younger than it (molq.engine.shared_poll).
        scheduler_options={"env": dict(slurm_cluster.env), "extra_sbatch_args": ["--hold"], "poll_interval": 600,
                           "poll_interval_max": 600},
    )
    submitor = Submitor(cluster, jobs_dir=str(tmp_path / "jobs"))
    execution = JobExecution(cwd=str(tmp_path))
    ids = [submitor.submit_job(argv=["true"], execution=execution).job_id for _ in range(HELD)]
    sids = [submitor.get_job(j).scheduler_job_id for j in ids]
    try:
        assert _commands(submitor, submitor.refresh_jobs) == ["squeue"]
        records = [submitor.get_job(j) for j in ids]
        assert {r.state for r in records} == {JobState.QUEUED}
        assert {r.raw_state for r in records} == {"PENDING"}
        # Nothing changed since a poll younger than the cluster's minimum interval: no command.
        assert _commands(submitor, submitor.refresh_jobs) == []

        cancel = _commands(submitor, lambda: submitor.cancel_jobs(ids))
        # A last look, one scancel, one look that confirms the stop (and, for the jobs it finds
        # ended, one sacct for their usage: SLURM gives a job cancelled while pending a start
        # time, like one that ran for under a second).
        assert cancel.count("scancel") == 1 and cancel.count("squeue") <= 2 and cancel.count("sacct") <= 1, cancel
        assert len(cancel) <= 4, cancel
        assert {submitor.get_job(j).state for j in ids} == {JobState.CANCELLED}
        proc = slurm_cluster.run("squeue", "--noheader", "--states=all", "--jobs=" + ",".join(sids), "--format=%T")
        assert proc.stdout.split() == ["CANCELLED"] * HELD  # SLURM really cancelled every one
    finally:
        slurm_cluster.run("scancel", *sids)
        submitor.close()


def test_final_states_of_many_jobs_cost_at_most_two_commands(slurm_cluster, tmp_path: Path) -> None:
    cluster = Cluster(f"refresh-{slurm_cluster.name}", "slurm", scheduler_options={"env": dict(slurm_cluster.env)})
    submitor = Submitor(cluster, jobs_dir=str(tmp_path / "jobs"))
    execution = JobExecution(cwd=str(tmp_path))

    # Jobs that just ended: SLURM still lists them (MinJobAge), one squeue resolves them all,
    # one sacct brings the usage of them all.
    finished = _submit_batch(submitor, FINISHED, execution)
    _wait_until_slurm_is_done(slurm_cluster, [submitor.get_job(j).scheduler_job_id for j in finished])
    # (Where accounting is disabled, that first sacct learns so; later refreshes skip it.)
    assert _commands(submitor, submitor.refresh_jobs) == ["squeue", "sacct"]
    for job_id, code in finished.items():
        record = submitor.get_job(job_id)
        assert (record.state, record.exit_code) == (JobState.SUCCEEDED if code == 0 else JobState.FAILED, code)
        assert record.raw_state in ("COMPLETED", "FAILED")

    # Jobs the controller has forgotten. Waiting out MinJobAge (300 s) is too long for a test,
    # so these ended jobs are pointed at SLURM ids nobody has: to squeue, sacct and scontrol they
    # are exactly jobs purged long ago, and only the wrapper's exit-code files are left.
    unknown = iter(range(60_000_000 + random.randrange(1_000_000) * 10, 70_000_000))
    expected_commands = (
        [["squeue", "sacct"], ["squeue", "sacct"]]
        if slurm_cluster.accounting
        # Without accounting, the first sacct (above) learned that it is disabled; later
        # refreshes go straight to the one `scontrol show job -o`.
        else [["squeue", "scontrol"], ["squeue", "scontrol"]]
    )
    for round_commands in expected_commands:
        forgotten = _submit_batch(submitor, FORGOTTEN, execution)
        _wait_until_slurm_is_done(slurm_cluster, [submitor.get_job(j).scheduler_job_id for j in forgotten])
        for job_id in forgotten:
            submitor.store.update_job(submitor.cluster_name, job_id, scheduler_job_id=str(next(unknown)))
        assert _commands(submitor, submitor.refresh_jobs) == round_commands
        for job_id, code in forgotten.items():
            record = submitor.get_job(job_id)
            assert (record.state, record.exit_code) == (JobState.SUCCEEDED if code == 0 else JobState.FAILED, code)
            assert record.raw_state == "exit_code_file"
    assert submitor.list_jobs() == []  # nothing left active, nothing LOST
    submitor.close()

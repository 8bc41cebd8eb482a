"""State truth on the real test clusters: a requeued job and cancels racing a job's own end.

Jobs go through ``Submitor(Cluster(..., "slurm"))`` on both clusters (with and without
accounting); what SLURM itself says about each job at the end is the reference.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest
from molq import Cluster, JobExecution, Submitor
from molq.model import JobRecord, JobState

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _submitor(slurm_cluster, tmp_path: Path, label: str) -> Submitor:
    cluster = Cluster(f"{label}-{slurm_cluster.name}", "slurm", scheduler_options={"env": dict(slurm_cluster.env)})
    return Submitor(cluster, jobs_dir=str(tmp_path / "jobs"))


def _wait(submitor: Submitor, job_id: str, wanted: set[JobState], timeout: float = 60) -> JobRecord:
    deadline = time.monotonic() + timeout
    while True:
        submitor.refresh_jobs()
        record = submitor.get_job(job_id)
        if record.state in wanted:
            return record
        assert time.monotonic() < deadline, f"{job_id} never reached {wanted}: {record.state}"
        time.sleep(0.5)


def _slurm_state(slurm_cluster, sid: str) -> str:
    """SLURM's own final word on a job: squeue while the controller remembers it."""
    proc = slurm_cluster.run("squeue", "--noheader", "--states=all", f"--jobs={sid}", "--Format=State")
    return proc.stdout.strip()


def test_a_requeued_job_ends_in_its_real_final_state(slurm_cluster, tmp_path: Path) -> None:
    submitor = _submitor(slurm_cluster, tmp_path, "requeue")
    marker = tmp_path / "first-attempt-ran"
    # The first attempt waits to be requeued; the second one ends with exit 3.
    command = f"if [ -e {shlex.quote(str(marker))} ]; then exit 3; fi; touch {shlex.quote(str(marker))}; sleep 300"
    job_id = submitor.submit_job(command=command, execution=JobExecution(cwd=str(tmp_path))).job_id
    try:
        record = _wait(submitor, job_id, {JobState.RUNNING})
        sid = record.scheduler_job_id
        assert sid
        proc = slurm_cluster.run("scontrol", "requeue", sid)
        assert proc.returncode == 0, proc.stderr
        # SLURM gives a requeued job a begin time two minutes ahead; bring it forward once
        # the job is pending again, so the test does not wait for it.
        deadline = time.monotonic() + 60
        while _slurm_state(slurm_cluster, sid) != "PENDING":
            submitor.refresh_jobs()
            assert not submitor.get_job(job_id).is_terminal, "the requeue was taken for the job's end"
            assert time.monotonic() < deadline, "the job never became pending after the requeue"
            time.sleep(0.3)
        submitor.refresh_jobs()
        assert not submitor.get_job(job_id).is_terminal  # requeued: waiting again, not ended
        # The requeue revokes the job's launch credential, and slurmd refuses a new launch of
        # the same job id whose credential is not newer, in whole seconds, than that
        # revocation ("Killing non-startable batch JobId=...: Job credential revoked": the job
        # then really ends FAILED 1:0 without running; see the corpus sample
        # sacct_live_requeue_relaunch_refused). SLURM's own two-minute delay avoids that;
        # the test only needs the next second to have begun.
        time.sleep(2.0)
        slurm_cluster.run("scontrol", "update", f"JobId={sid}", "StartTime=now")
        (final,) = submitor.watch_jobs([job_id], timeout=120, poll_interval=0.5)
        truth = _slurm_final(slurm_cluster, sid)
    finally:
        leftovers = [r.scheduler_job_id for r in submitor.list_jobs() if r.scheduler_job_id]
        if leftovers:
            slurm_cluster.run("scancel", *leftovers)
    story = [(t.old_state, t.new_state, t.reason) for t in submitor.get_transitions(job_id)]
    # SLURM's own record first: the second attempt ran and exited 3 (else the test's setup,
    # not molq, went wrong), then molq's record says the same.
    assert truth == ("FAILED", 3), truth
    assert (final.state, final.exit_code) == (JobState.FAILED, 3), (final.failure_reason, final.raw_state, story)
    history = [t.new_state for t in submitor.get_transitions(job_id)]
    assert [s for s in history if s.is_terminal] == [JobState.FAILED], history
    assert JobState.LOST not in history
    submitor.close()


def _slurm_final(slurm_cluster, sid: str) -> tuple[str, int | None]:
    """SLURM's final state and exit code of the job's latest attempt: accounting where the
    cluster keeps it (it may lag the controller by a moment), else squeue."""
    deadline = time.monotonic() + 30
    while slurm_cluster.accounting:
        proc = slurm_cluster.run("sacct", "--parsable2", "--noheader", "--allocations", "--duplicates",
                                 f"--jobs={sid}", "--format=State,ExitCode")
        rows = [line.split("|") for line in proc.stdout.splitlines() if line.strip()]
        if proc.returncode == 0 and rows and rows[-1][0] not in ("PENDING", "RUNNING", "REQUEUED"):
            state, code = rows[-1][0].split()[0], rows[-1][1]
            return state, int(code.split(":")[0])
        assert time.monotonic() < deadline, proc.stdout + proc.stderr
        time.sleep(0.5)
    proc = slurm_cluster.run("squeue", "--noheader", "--states=all", f"--jobs={sid}", "--Format=State:|,exit_code:|")
    state, _, raw = proc.stdout.strip().partition("|")
    return state, int(raw.strip("|")) >> 8 if raw.strip("|").isdigit() else None


TRIALS = 20


def test_cancel_racing_the_jobs_own_end_records_the_truth(slurm_cluster, tmp_path: Path) -> None:
    """Each job ends by itself (exit 0) about when molq cancels it. The record must say
    CANCELLED exactly when SLURM cancelled the job, and SUCCEEDED with exit 0 when the job
    finished first -- never both, never anything else."""
    submitor = _submitor(slurm_cluster, tmp_path, "race")
    execution = JobExecution(cwd=str(tmp_path))
    ids = []
    try:
        for trial in range(TRIALS):
            # End times spread over the moment the cancel arrives: some jobs finish before,
            # some are stopped while they run.
            delay = 0.2 + 0.15 * (trial % 10)
            job_id = submitor.submit_job(command=f"sleep {delay:.2f}", execution=execution).job_id
            _wait(submitor, job_id, {JobState.RUNNING, JobState.SUCCEEDED})
            time.sleep(0.5)
            submitor.cancel_job(job_id)
            ids.append(job_id)
        finals = {r.job_id: r for r in submitor.watch_jobs(ids, timeout=120, poll_interval=0.5)}
        truth = {job_id: _slurm_state(slurm_cluster, submitor.get_job(job_id).scheduler_job_id or "") for job_id in ids}
    finally:
        leftovers = [r.scheduler_job_id for r in submitor.list_jobs() if r.scheduler_job_id]
        if leftovers:
            slurm_cluster.run("scancel", *leftovers)
    wrong = []
    for job_id in ids:
        record, slurm = finals[job_id], truth[job_id]
        history = [t.new_state for t in submitor.get_transitions(job_id)]
        finals_seen = [s for s in history if s.is_terminal]
        expected = {"CANCELLED": (JobState.CANCELLED, None), "COMPLETED": (JobState.SUCCEEDED, 0)}.get(slurm)
        if expected is None or (record.state, record.exit_code if record.state == JobState.SUCCEEDED else None) != expected \
                or len(finals_seen) != 1:
            wrong.append((job_id, slurm, record.state, record.exit_code, history))
    kinds = {truth[j] for j in ids}
    print(f"{slurm_cluster.name}: SLURM ended {sum(truth[j] == 'CANCELLED' for j in ids)} cancelled, "
          f"{sum(truth[j] == 'COMPLETED' for j in ids)} completed; wrong records: {len(wrong)}")
    assert not wrong, wrong
    assert kinds <= {"CANCELLED", "COMPLETED"}
    submitor.close()

"""Dependencies follow the retry family: a dependent waits for the upstream's last attempt."""

from __future__ import annotations

from molq import Cluster, JobState, RetryPolicy, Submitor
from molq.model import JobExecution, RetryBackoff

FLAKY_ONCE = 'if [ -e attempted ]; then echo second; exit 0; else touch attempted; exit 1; fi'


def _policy() -> RetryPolicy:
    return RetryPolicy(max_attempts=2, backoff=RetryBackoff(mode="fixed", initial_seconds=0.2))


def test_dependent_runs_after_a_retried_upstream_succeeds(tmp_path):
    sub = Submitor(Cluster("deps", "local"), jobs_dir=str(tmp_path / "jobs"))
    up = sub.submit_job(command=FLAKY_ONCE, retry=_policy(), execution=JobExecution(cwd=str(tmp_path)))
    down = sub.submit_job(argv=["true"], after_success=[up.job_id])
    assert sub.get_job(down.job_id).state == JobState.CREATED  # held by molq, not submitted
    final = sub.watch_jobs([down.job_id], timeout=60)[0]
    assert final.state == JobState.SUCCEEDED
    family = sub.get_retry_family(up.job_id)
    assert [r.state for r in family] == [JobState.FAILED, JobState.SUCCEEDED]
    # It was handed to the scheduler only once the family's last attempt existed, and started
    # only after that attempt ended.
    assert final.submitted_at >= family[-1].created_at
    assert final.started_at >= family[-1].finished_at - 0.05


def test_dependent_fails_with_its_reason_when_every_attempt_failed(tmp_path):
    sub = Submitor(Cluster("deps2", "local"), jobs_dir=str(tmp_path / "jobs"))
    up = sub.submit_job(argv=["false"], retry=_policy())
    down = sub.submit_job(argv=["true"], after_success=[up.job_id])
    final = sub.watch_jobs([down.job_id], timeout=60)[0]
    assert final.state == JobState.FAILED
    family = sub.get_retry_family(up.job_id)
    assert len(family) == 2
    # Judged on the family's last attempt, not on the first.
    assert "never satisfied" in final.failure_reason and family[-1].job_id in final.failure_reason


def test_a_held_job_can_be_cancelled_before_it_is_submitted(tmp_path):
    sub = Submitor(Cluster("deps3", "local"), jobs_dir=str(tmp_path / "jobs"))
    up = sub.submit_job(argv=["sleep", "30"], retry=_policy())
    down = sub.submit_job(argv=["true"], after_success=[up.job_id])
    sub.cancel_job(down.job_id)
    rec = sub.get_job(down.job_id)
    assert rec.state == JobState.CANCELLED and rec.scheduler_job_id is None
    sub.cancel_job(up.job_id)
    assert sub.latest_attempt(up.job_id).state == JobState.CANCELLED


def test_upstream_without_retries_keeps_native_dependencies(tmp_path):
    sub = Submitor(Cluster("deps4", "local"), jobs_dir=str(tmp_path / "jobs"))
    up = sub.submit_job(argv=["sleep", "0.2"])
    down = sub.submit_job(argv=["true"], after_success=[up.job_id])
    assert sub.get_job(down.job_id).scheduler_job_id is not None  # handed over at once
    assert sub.watch_jobs([down.job_id], timeout=30)[0].state == JobState.SUCCEEDED

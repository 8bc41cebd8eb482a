"""The decision function: every rule that turns evidence into a recorded state."""

from __future__ import annotations

import signal

import pytest
from molq import JobState
from molq.engine.decide import ABSENT, LOST_AFTER_MISSES, LOST_AFTER_SECONDS, JobView, decide
from molq.model import SchedulerStatus

RUNNING = JobView("j", JobState.RUNNING, "42", raw_state="R", submitted_at=100.0, started_at=110.0)
QUEUED = JobView("j", JobState.QUEUED, "42", raw_state="PD", submitted_at=100.0)


def test_no_evidence_changes_nothing():
    for view in (RUNNING, QUEUED, JobView("j", JobState.LOST, "42")):
        assert decide(view, None, 500.0) is None


def test_an_alive_job_resets_its_misses_without_a_transition():
    view = JobView("j", JobState.RUNNING, "42", raw_state="R", missing_count=2, missing_since=400.0)
    d = decide(view, SchedulerStatus(JobState.RUNNING, "R"), 500.0)
    assert d.new_state is None and d.fields == {"missing_count": 0, "missing_since": None}
    assert decide(RUNNING, SchedulerStatus(JobState.RUNNING, "R"), 500.0) is None


def test_a_changed_raw_state_is_recorded_without_a_transition():
    d = decide(RUNNING, SchedulerStatus(JobState.RUNNING, "COMPLETING"), 500.0)
    assert d.new_state is None and d.fields == {"raw_state": "COMPLETING"}


def test_start_time_never_precedes_submission():
    d = decide(QUEUED, SchedulerStatus(JobState.RUNNING, "R", started_at=99.0), 500.0)
    assert d.new_state == JobState.RUNNING and d.fields["started_at"] == 100.0
    d = decide(QUEUED, SchedulerStatus(JobState.RUNNING, "R", started_at=120.0), 500.0)
    assert d.fields["started_at"] == 120.0


def test_a_requeued_job_waits_again_and_forgets_its_start():
    d = decide(RUNNING, SchedulerStatus(JobState.QUEUED, "REQUEUED"), 500.0)
    assert d.new_state == JobState.QUEUED and d.fields["started_at"] is None


def test_a_final_status_ends_the_job_with_its_details():
    status = SchedulerStatus(JobState.FAILED, "FAILED", exit_code=3, reason="exit code 3", finished_at=300.0)
    d = decide(RUNNING, status, 500.0)
    assert (d.new_state, d.fields["exit_code"], d.fields["finished_at"]) == (JobState.FAILED, 3, 300.0)
    assert d.fields["failure_reason"] == "exit code 3" and d.ends


def test_a_final_job_is_never_changed_again_except_lost():
    done = JobView("j", JobState.SUCCEEDED, "42")
    assert decide(done, SchedulerStatus(JobState.FAILED, "FAILED"), 500.0) is None
    assert decide(done, ABSENT, 500.0) is None


def test_later_evidence_corrects_a_lost_record():
    lost = JobView("j", JobState.LOST, "42")
    d = decide(lost, SchedulerStatus(JobState.SUCCEEDED, "COMPLETED", exit_code=0), 500.0)
    assert d.new_state == JobState.SUCCEEDED and d.reason.startswith("corrected from lost")
    # Alive or absent says nothing about how it ended: it stays LOST until a final answer.
    assert decide(lost, SchedulerStatus(JobState.RUNNING, "R"), 500.0) is None
    assert decide(lost, ABSENT, 500.0) is None


def test_lost_only_after_repeated_misses_over_time():
    view, now = QUEUED, 1000.0
    for _ in range(LOST_AFTER_MISSES + 2):
        d = decide(view, ABSENT, now)
        assert d.new_state is None
        view = JobView("j", JobState.QUEUED, "42", missing_count=d.fields["missing_count"],
                       missing_since=d.fields["missing_since"])
        now += 1.0
    d = decide(view, ABSENT, 1000.0 + LOST_AFTER_SECONDS)
    assert d.new_state == JobState.LOST and "no longer knows job 42" in d.reason


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (SchedulerStatus(JobState.CANCELLED, "CANCELLED by 1000", finished_at=205.0), JobState.CANCELLED),
        (SchedulerStatus(JobState.FAILED, "exited", exit_code=143, exit_signal=signal.SIGTERM, finished_at=201.0),
         JobState.CANCELLED),
        (SchedulerStatus(JobState.FAILED, "exited", exit_code=137, exit_signal=signal.SIGKILL), JobState.CANCELLED),
        # It ended by itself before the request: its real end.
        (SchedulerStatus(JobState.SUCCEEDED, "COMPLETED", exit_code=0, finished_at=150.0), JobState.SUCCEEDED),
        (SchedulerStatus(JobState.FAILED, "exited", exit_code=137, exit_signal=signal.SIGKILL, finished_at=150.0),
         JobState.FAILED),
        (SchedulerStatus(JobState.FAILED, "FAILED", exit_code=2, finished_at=203.0), JobState.FAILED),
        (SchedulerStatus(JobState.TIMED_OUT, "TIMEOUT", finished_at=203.0), JobState.TIMED_OUT),
    ],
)
def test_a_cancel_is_recorded_only_when_the_stop_is_confirmed(status, expected):
    view = JobView("j", JobState.RUNNING, "42", cancel_requested_at=200.0)
    d = decide(view, status, 500.0)
    assert d.new_state == expected
    if expected == JobState.CANCELLED:
        assert d.reason == "cancelled by user"


def test_a_job_gone_after_a_cancel_request_is_cancelled():
    view = JobView("j", JobState.RUNNING, "42", cancel_requested_at=200.0)
    d = decide(view, ABSENT, 500.0)
    assert d.new_state == JobState.CANCELLED
    # Still stopping: no transition yet.
    still = decide(view, SchedulerStatus(JobState.RUNNING, "R"), 500.0)
    assert still is None or still.new_state is None


def test_a_cancel_by_someone_else_keeps_the_schedulers_reason():
    d = decide(RUNNING, SchedulerStatus(JobState.CANCELLED, "CANCELLED by 0", reason="cancelled by root"), 500.0)
    assert d.new_state == JobState.CANCELLED and d.reason == "cancelled by root"


def test_an_unsatisfiable_dependency_fails_the_job_after_cancelling_it():
    status = SchedulerStatus(JobState.QUEUED, "PD", reason="DependencyNeverSatisfied", dependency_never_satisfied=True)
    d = decide(QUEUED, status, 500.0)
    assert d.new_state == JobState.FAILED and d.cancel_first and "can never be satisfied" in d.reason


def test_ended_without_saying_how_confirms_a_cancel_and_is_never_a_miss():
    from molq.engine.decide import ENDED

    requested = JobView("j", JobState.RUNNING, "42", cancel_requested_at=200.0)
    assert decide(requested, ENDED, 500.0).new_state == JobState.CANCELLED
    missed = JobView("j", JobState.RUNNING, "42", missing_count=2, missing_since=100.0)
    d = decide(missed, ENDED, 500.0)
    assert d.new_state is None and d.fields == {"missing_count": 0, "missing_since": None}
    assert decide(JobView("j", JobState.LOST, "42"), ENDED, 500.0) is None

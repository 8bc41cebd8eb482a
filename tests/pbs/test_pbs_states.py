"""The PBS state tables and exit-status rules (molq_pbs.states)."""

from __future__ import annotations

import pytest
from molq.causes import EndCause
from molq.model import JobState
from molq_pbs.states import (
    PBSPRO_EXEC_CAUSES,
    PBSPRO_STATES,
    TORQUE_EXEC_CAUSES,
    TORQUE_EXEC_CODES,
    TORQUE_STATES,
    FinishedJob,
    classify_pbspro_finished,
    classify_torque_completed,
    end_cause,
    is_finished_state,
    map_state,
)


@pytest.mark.parametrize(
    "letter,state",
    [
        ("B", JobState.RUNNING),
        ("E", JobState.RUNNING),
        ("H", JobState.QUEUED),
        ("M", JobState.QUEUED),
        ("Q", JobState.QUEUED),
        ("R", JobState.RUNNING),
        ("S", JobState.RUNNING),
        ("T", JobState.QUEUED),
        ("U", JobState.RUNNING),
        ("W", JobState.QUEUED),
    ],
)
def test_every_active_pbspro_state(letter, state):
    assert map_state(letter) is state
    assert map_state(letter.lower()) is state
    assert not is_finished_state(letter)


def test_tables_cover_the_documented_letters():
    assert set(PBSPRO_STATES) == set("BEFHMQRSTUWX")
    assert set(TORQUE_STATES) == set("CEHQRTWS")
    assert {letter for letter in PBSPRO_STATES if is_finished_state(letter)} == {"F", "X"}
    assert {letter for letter in TORQUE_STATES if is_finished_state(letter, "torque")} == {"C"}


@pytest.mark.parametrize("letter,state", [("C", None), ("E", JobState.RUNNING), ("H", JobState.QUEUED)])
def test_torque_states(letter, state):
    if state is None:
        assert is_finished_state(letter, "torque")
    else:
        assert map_state(letter, flavor="torque") is state


@pytest.mark.parametrize("flavor", ["pbspro", "torque"])
def test_unknown_letters_are_non_terminal(flavor):
    assert map_state("Z", flavor=flavor) is JobState.QUEUED
    assert map_state("Z", flavor=flavor, started=True) is JobState.RUNNING
    assert not is_finished_state("Z", flavor)


@pytest.mark.parametrize(
    "job,expected",
    [
        (FinishedJob(exit_status=0, substate=92), (JobState.SUCCEEDED, 0, None)),
        (FinishedJob(exit_status=1, substate=93), (JobState.FAILED, 1, None)),
        (FinishedJob(exit_status=137, substate=93), (JobState.FAILED, 137, 9)),
        (FinishedJob(exit_status=265, substate=93), (JobState.FAILED, None, 9)),
        (FinishedJob(exit_status=-29), (JobState.TIMED_OUT, None, None)),
        (
            FinishedJob(exit_status=271, walltime_used=3601, walltime_limit=3600),
            (JobState.TIMED_OUT, None, 15),
        ),
        (
            FinishedJob(exit_status=265, comment="=>> PBS: job killed: walltime 130 exceeded limit 120"),
            (JobState.TIMED_OUT, None, 9),
        ),
        (FinishedJob(exit_status=271, substate=91), (JobState.CANCELLED, None, 15)),
        (FinishedJob(exit_status=0, substate=91), (JobState.CANCELLED, 0, None)),
        (FinishedJob(substate=91), (JobState.CANCELLED, None, None)),
        (FinishedJob(), (JobState.CANCELLED, None, None)),
        (FinishedJob(exit_status=-3, substate=93), (JobState.FAILED, None, None)),
        (FinishedJob(exit_status=-99), (JobState.FAILED, None, None)),
        (FinishedJob(exit_status=0, is_array=True), (JobState.SUCCEEDED, 0, None)),
        (FinishedJob(exit_status=1, is_array=True), (JobState.FAILED, None, None)),
        (FinishedJob(exit_status=2, is_array=True), (JobState.FAILED, None, None)),
        (FinishedJob(exit_status=2, substate=91, is_array=True), (JobState.CANCELLED, None, None)),
        (
            FinishedJob(substate=91, comment="Job deleted as result of dependency on job 12.srv"),
            (JobState.FAILED, None, None),
        ),
    ],
)
def test_pbspro_finished(job, expected):
    assert classify_pbspro_finished(job)[:3] == expected


def test_pbspro_reasons_name_the_exec_code():
    assert "JOB_EXEC_RETRY" in classify_pbspro_finished(FinishedJob(exit_status=-3))[3]
    assert classify_pbspro_finished(FinishedJob(exit_status=-99))[3] == "PBS exit code -99"
    assert "SIGKILL" in classify_pbspro_finished(FinishedJob(exit_status=265))[3]


@pytest.mark.parametrize(
    "job,expected",
    [
        (FinishedJob(exit_status=0), (JobState.SUCCEEDED, 0, None)),
        (FinishedJob(exit_status=7), (JobState.FAILED, 7, None)),
        (FinishedJob(exit_status=-11), (JobState.TIMED_OUT, None, None)),
        (FinishedJob(exit_status=-10), (JobState.FAILED, None, None)),
        (FinishedJob(exit_status=271, walltime_used=120, walltime_limit=120), (JobState.TIMED_OUT, None, 15)),
        (FinishedJob(exit_status=271, walltime_used=10, walltime_limit=120), (JobState.FAILED, None, 15)),
        (
            FinishedJob(exit_status=271, comment="Job deleted as result of dependency on job 3.t"),
            (JobState.FAILED, None, None),
        ),
    ],
)
def test_torque_completed(job, expected):
    assert classify_torque_completed(job)[:3] == expected


def test_torque_completed_without_exit_status_has_no_verdict():
    assert classify_torque_completed(FinishedJob(walltime_used=5)) is None


# OpenPBS src/include/job.h (JOB_EXEC_*) and src/server/req_jobobit.c (what the server does with
# each): -11 is JOB_EXEC_RERUN (qrerun, preemption by requeue, a busy cycle-harvesting host; a final
# record means a non-rerunnable job deleted on requeue), -14 JOB_EXEC_RERUN_SIS_FAIL (a sister node
# went away), -15 JOB_EXEC_QUERST (the epilogue asked for a checkpoint restart), -20
# JOB_EXEC_RERUN_MS_FAIL (the server lost the mother superior's node).
@pytest.mark.parametrize(
    "code,cause",
    [
        (-4, EndCause.NODE_FAILURE),
        (-11, EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM),
        (-12, EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM),
        (-14, EndCause.NODE_FAILURE),
        (-15, EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM),
        (-19, EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM),
        (-20, EndCause.NODE_FAILURE),
        (-27, EndCause.OUT_OF_MEMORY),
        (-29, EndCause.TIME_LIMIT),
    ],
)
def test_pbspro_exec_code_causes_follow_the_openpbs_sources(code, cause):
    job = FinishedJob(exit_status=code, substate=93)
    state, _, sig, _ = classify_pbspro_finished(job)
    assert end_cause(job, state, sig, flavor="pbspro") is cause


def test_no_pbspro_exit_status_means_preempted():
    # OpenPBS preempts by suspending, by a checkpointing hold (-12), by qrerun (-11) or by
    # deletion (req_preemptjob.c): none of them is an exit status of its own.
    assert EndCause.PREEMPTED not in PBSPRO_EXEC_CAUSES.values()


# Torque src/include/pbs_job.h (6.1.3): -13 is JOB_EXEC_RETRY_CGROUP, -14 JOB_EXEC_RETRY_PROLOGUE,
# and the numbers from -8 on mean other things than in PBS Pro.
def test_torque_codes_are_torques_own():
    assert TORQUE_EXEC_CODES[-13].startswith("JOB_EXEC_RETRY_CGROUP")
    assert TORQUE_EXEC_CODES[-14].startswith("JOB_EXEC_RETRY_PROLOGUE")
    assert TORQUE_EXEC_CAUSES[-10] is EndCause.OUT_OF_MEMORY and PBSPRO_EXEC_CAUSES[-10] is EndCause.LAUNCH_FAILED
    assert TORQUE_EXEC_CAUSES[-11] is EndCause.TIME_LIMIT
    job = FinishedJob(exit_status=-4)
    state, _, sig, _ = classify_torque_completed(job)
    assert end_cause(job, state, sig, flavor="torque") is EndCause.NODE_FAILURE


_RAN = "Job run at Tue Nov 21 at 05:30 on (node1:ncpus=1)"


# OpenPBS src/server/req_delete.c + svr_jobfunc.c (update_job_finish_comment): a delete request
# that ends a running job appends "and terminated by <user>@<host>" to its comment.
@pytest.mark.parametrize(
    "comment,owner,cause",
    [
        (f"{_RAN} and terminated by alice@login2", "alice@login1", EndCause.CANCELLED_BY_USER),
        (f"{_RAN} and terminated by root@pbs01", "alice@login1", EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM),
        (f"{_RAN} and terminated by alice2@login1", "alice@login1", EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM),
        (f"{_RAN} and terminated", "alice@login1", EndCause.UNKNOWN),
        (f"{_RAN} and terminated by alice@login1", None, EndCause.UNKNOWN),
        (None, "alice@login1", EndCause.UNKNOWN),
    ],
)
def test_pbspro_deleter_from_the_comment(comment, owner, cause):
    job = FinishedJob(exit_status=271, substate=91, comment=comment, owner=owner)
    state, _, sig, _ = classify_pbspro_finished(job)
    assert state is JobState.CANCELLED
    assert end_cause(job, state, sig, flavor="pbspro") is cause

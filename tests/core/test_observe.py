"""The batch runner's evidence: 'unknown to every source' is told apart from 'no answer'.

A tiny dialect whose commands are real processes printing canned answers, run through the
real runner and transport: only the scheduler's text is made up here.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from molq import JobState
from molq.batch import AccountingUnavailable, BatchDialect, BatchScheduler, RetrySettings
from molq.errors import SchedulerError
from molq.evidence import CancelOutcome, SourceAnswer
from molq.model import SchedulerStatus
from molq.scheduler import TrackedJob
from molq.transport import CommandResult, LocalTransport

STATES = {"R": JobState.RUNNING, "PD": JobState.QUEUED, "CD": JobState.SUCCEEDED, "F": JobState.FAILED,
          "CA": JobState.CANCELLED}


def _reply(rc: int, out: str = "", err: str = "") -> list[str]:
    return ["sh", "-c", 'printf "%s" "$1"; printf "%s" "$2" >&2; exit "$3"', "sh", out, err, str(rc)]


def _parse(result: CommandResult, ids: Sequence[str]) -> SourceAnswer:
    """Lines ``<id> <state>``; a line without an id makes the answer incomplete, a line with an
    unknown state makes that id unreadable."""
    statuses, unreadable, complete = {}, set(), True
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            complete = False
            continue
        sid, state = parts
        if state not in STATES:
            unreadable.add(sid)
            continue
        statuses[sid] = SchedulerStatus(STATES[state], state)
    return SourceAnswer(statuses, frozenset(unreadable), complete)


class CannedDialect(BatchDialect):
    name = "canned"

    def __init__(self, replies: dict[str, tuple[int, str, str]], *, accounting: bool = True,
                 fallback: bool = True) -> None:
        self.replies = replies
        self.accounting = accounting
        self.fallback = fallback

    def _argv(self, kind: str) -> list[str]:
        return _reply(*self.replies[kind])

    def status_argv(self, ids):
        return self._argv("queue")

    def parse_status(self, result, ids):
        if result.returncode != 0:
            raise SchedulerError(f"queue failed: {result.stderr}")
        return _parse(result, ids)

    def terminal_argv(self, ids, since):
        return self._argv("accounting") if self.accounting else None

    def parse_terminal(self, result, ids):
        if result.returncode != 0:
            if "disabled" in result.stderr:
                raise AccountingUnavailable("accounting disabled")
            raise SchedulerError(f"accounting failed: {result.stderr}")
        return _parse(result, ids)

    def fallback_terminal_argv(self, ids):
        return self._argv("fallback") if self.fallback else None

    def parse_fallback_terminal(self, result, ids):
        if result.returncode != 0:
            raise SchedulerError("fallback failed")
        return _parse(result, ids)

    def cancel_argv(self, ids):
        return self._argv("cancel")

    def cancel_line_is_benign(self, line):
        return "already completed" in line

    def cancel_line_is_refusal(self, line):
        return "permission denied" in line.lower()


def _sched(replies, **kw) -> BatchScheduler:
    return BatchScheduler(CannedDialect(replies, **kw), LocalTransport(), retry=RetrySettings(attempts=1))


@pytest.fixture
def jobs(tmp_path):
    out = []
    for n in ("1", "2", "3"):
        d = tmp_path / f"job{n}"
        d.mkdir()
        out.append(TrackedJob(f"j{n}", n, str(d), 100.0))
    return out


def test_a_failed_queue_query_is_no_evidence_for_anyone(jobs):
    obs = _sched({"queue": (1, "", "slurm_load_jobs error: Socket timed out")}).observe(jobs)
    assert obs.statuses == {} and obs.absent == frozenset() and "status query failed" in obs.problems[0]


def test_jobs_unknown_to_every_source_are_absent(jobs):
    obs = _sched({"queue": (0, "1 R\n", ""), "accounting": (0, "2 CD\n", "")}).observe(jobs)
    assert obs.statuses["j1"].state == JobState.RUNNING and obs.statuses["j2"].state == JobState.SUCCEEDED
    assert obs.absent == {"j3"}


def test_accounting_down_is_not_no_accounting(jobs):
    """The database is down: the fallback may still tell how a job ended, but nobody is absent."""
    replies = {"queue": (0, "", ""), "accounting": (1, "", "sacct: error: Problem talking to the database"),
               "fallback": (0, "2 F\n", "")}
    obs = _sched(replies).observe(jobs)
    assert obs.statuses["j2"].state == JobState.FAILED
    assert obs.absent == frozenset()
    assert any("accounting query failed" in p for p in obs.problems)


def test_no_accounting_at_all_uses_the_fallback_as_a_source(jobs):
    replies = {"queue": (0, "", ""), "accounting": (1, "", "accounting storage is disabled"),
               "fallback": (0, "1 CD\n", "")}
    sched = _sched(replies)
    obs = sched.observe(jobs)
    assert obs.statuses["j1"].state == JobState.SUCCEEDED and obs.absent == {"j2", "j3"}
    # Remembered: the next look skips the accounting query.
    sched.command_log.clear()
    sched.observe(jobs)
    assert [c for c, _ in sched.command_log] == ["sh", "sh"]


def test_a_failed_fallback_is_no_evidence(jobs):
    replies = {"queue": (0, "", ""), "accounting": (1, "", "accounting storage is disabled"),
               "fallback": (1, "", "")}
    obs = _sched(replies).observe(jobs)
    assert obs.absent == frozenset() and obs.statuses == {}


def test_the_wrapper_exit_file_is_evidence_and_removes_absence(jobs):
    (tmp := jobs[2].job_dir)
    with open(f"{tmp}/exit_code", "w") as fh:
        fh.write("0\n")
    obs = _sched({"queue": (0, "", ""), "accounting": (0, "", "")}).observe(jobs)
    assert obs.statuses["j3"].state == JobState.SUCCEEDED and obs.absent == {"j1", "j2"}


def test_an_incomplete_or_unreadable_answer_proves_no_absence(jobs):
    obs = _sched({"queue": (0, "1 R\nthis row belongs to nobody\n", ""), "accounting": (0, "", "")}).observe(jobs)
    assert obs.statuses["j1"].state == JobState.RUNNING and obs.absent == frozenset()
    obs = _sched({"queue": (0, "1 R\n2 ZZ\n", ""), "accounting": (0, "", "")}).observe(jobs)
    assert "j2" not in obs.statuses and obs.absent == {"j3"}


def test_accounting_alive_evidence_is_kept(jobs):
    obs = _sched({"queue": (0, "", ""), "accounting": (0, "1 R\n", "")}).observe(jobs)
    assert obs.statuses["j1"].state == JobState.RUNNING and "j1" not in obs.absent


def test_accounting_that_lags_the_queue_is_overruled_by_the_wrapper_exit_file(jobs):
    """The job left the queue and its wrapper wrote exit 7, but accounting still says it runs
    (slurmdbd records the end a moment later): the end is the exit file's, not 'running'."""
    with open(f"{jobs[0].job_dir}/exit_code", "w") as fh:
        fh.write("7\n")
    obs = _sched({"queue": (0, "", ""), "accounting": (0, "1 R\n2 PD\n", "")}).observe(jobs)
    assert (obs.statuses["j1"].state, obs.statuses["j1"].exit_code) == (JobState.FAILED, 7)
    assert obs.statuses["j2"].state == JobState.QUEUED  # no exit file: accounting's word stands
    # An emptied exit file (a new attempt started) is no evidence of an end.
    with open(f"{jobs[0].job_dir}/exit_code", "w") as fh:
        fh.write("")
    obs = _sched({"queue": (0, "", ""), "accounting": (0, "1 R\n", "")}).observe(jobs)
    assert obs.statuses["j1"].state == JobState.RUNNING


def test_cancel_outcomes(jobs):
    assert set(_sched({"cancel": (0, "", "")}).cancel_many(jobs).values()) == {CancelOutcome.REQUESTED}
    out = _sched({"cancel": (1, "", "scancel: error: Kill job error on job id 2: Job/step already completed\n")}
                 ).cancel_many(jobs)
    assert out == {"j1": CancelOutcome.REQUESTED, "j2": CancelOutcome.ALREADY_ENDED, "j3": CancelOutcome.REQUESTED}
    with pytest.raises(SchedulerError, match="refused"):
        _sched({"cancel": (0, "", "scancel: error: Access/permission denied\n")}).cancel_many(jobs)
    with pytest.raises(SchedulerError):
        _sched({"cancel": (1, "", "scancel: error: something else broke\n")}).cancel_many(jobs)

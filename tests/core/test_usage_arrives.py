"""Usage for jobs that end while the queue still lists them: it comes from the accounting call
the refresh makes anyway (one for all such jobs), from later refreshes while accounting lags,
and never changes the state the queue's answer recorded.

The scheduler's commands are two real executables printing files the test writes (the queue
and the accounting answer), run through the real runner, engine and SQLite store: only the
scheduler's text is made up here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from molq import Cluster, JobState, Submitor
from molq.batch import BatchDialect, BatchScheduler, RetrySettings
from molq.engine.refresh import USAGE_TRIES
from molq.evidence import SourceAnswer
from molq.hookspecs import hookimpl
from molq.model import SchedulerStatus
from molq.plugin_types import SchedulerPlugin
from molq.plugins import get_plugin_manager
from molq.transport import CommandResult
from molq.usage import Usage

STATES = {"R": JobState.RUNNING, "CD": JobState.SUCCEEDED, "F": JobState.FAILED, "CA": JobState.CANCELLED}


def _parse(result: CommandResult, with_usage: bool) -> SourceAnswer:
    """Lines ``<id> <state> [<cpu seconds>]``: the job ran from t=100 to t=110, except a
    cancelled one, which never started (no start time)."""
    statuses = {}
    for line in result.stdout.splitlines():
        sid, state, *cpu = line.split()
        usage = Usage(cpu_seconds=float(cpu[0]), elapsed_seconds=10, cpus=2) if with_usage and cpu else None
        start, end = (None, 110.0) if state == "CA" else (100.0, None if state == "R" else 110.0)
        statuses[sid] = SchedulerStatus(STATES[state], state, exit_code=0 if state == "CD" else 1, usage=usage,
                                        started_at=start, finished_at=end)
    return SourceAnswer(statuses)


class FileDialect(BatchDialect):
    """A scheduler whose queue shows ended jobs without usage and whose accounting has it."""

    name = "usage-files"
    accounting_reports_usage = True

    def __init__(self, where: Path) -> None:
        self.where = where

    def render_directives(self, spec: Any, job_dir: str) -> list[str]:
        return []

    def submit_argv(self, script_path: str, spec: Any) -> list[str]:
        return [str(self.where / "submit")]

    def parse_submit(self, result: CommandResult) -> str:
        return result.stdout.strip()

    def status_argv(self, ids: Sequence[str]) -> list[str]:
        return [str(self.where / "queue")]

    def parse_status(self, result: CommandResult, ids: Sequence[str]) -> SourceAnswer:
        return _parse(result, with_usage=False)

    def terminal_argv(self, ids: Sequence[str], since: float | None) -> list[str]:
        return [str(self.where / "accounting"), *ids]

    def parse_terminal(self, result: CommandResult, ids: Sequence[str]) -> SourceAnswer:
        return _parse(result, with_usage=True)


def _program(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


class _Plugin:
    def __init__(self, where: Path) -> None:
        self.where = where

    @hookimpl
    def molq_register_schedulers(self) -> Iterator[SchedulerPlugin]:
        yield SchedulerPlugin(name="usage-files", description="canned answers from files",
                              factory=lambda transport, options: BatchScheduler(
                                  FileDialect(self.where), transport, retry=RetrySettings(attempts=1)))


class Scheduler:
    """The files behind the canned scheduler, and the commands a refresh ran."""

    def __init__(self, where: Path) -> None:
        self.where = where
        _program(where / "submit", 'n=$(($(cat "$0.n" 2>/dev/null || echo 0) + 1)); echo $n > "$0.n"; echo $n\n')
        _program(where / "queue", 'cat "$0.txt"\n')
        _program(where / "accounting", 'cat "$0.txt"\n')
        self.answer(queue="", accounting="")

    def answer(self, *, queue: str | None = None, accounting: str | None = None) -> None:
        if queue is not None:
            (self.where / "queue.txt").write_text(queue)
        if accounting is not None:
            (self.where / "accounting.txt").write_text(accounting)


@pytest.fixture
def canned(tmp_path: Path) -> Iterator[tuple[Submitor, Scheduler]]:
    where = tmp_path / "sched"
    where.mkdir()
    scheduler = Scheduler(where)
    get_plugin_manager().register(_Plugin(where), name="usage-files-plugin")
    submitor = Submitor(Cluster("canned", "usage-files"), jobs_dir=str(tmp_path / "jobs"))
    yield submitor, scheduler
    submitor.close()


def _commands(submitor: Submitor) -> list[str]:
    """The programs one refresh ran."""
    log = submitor.scheduler.command_log  # type: ignore[attr-defined]
    start = len(log)
    submitor.refresh_jobs()
    return [os.path.basename(name) for name, _ in log[start:]]


def test_jobs_the_queue_reports_ended_get_usage_from_one_accounting_call(canned) -> None:
    submitor, sched = canned
    ids = [submitor.submit_job(argv=["true"]).job_id for _ in range(3)]
    sched.answer(queue="1 R\n2 R\n3 R\n")
    assert _commands(submitor) == ["queue"]  # nothing ended: no accounting
    assert {submitor.get_job(j).state for j in ids} == {JobState.RUNNING}
    sched.answer(queue="1 CD\n2 F\n3 R\n", accounting="1 CD 4\n2 F 8\n")
    assert _commands(submitor) == ["queue", "accounting"]  # one call for both ended jobs
    one, two, three = (submitor.get_job(j) for j in ids)
    assert one.state == JobState.SUCCEEDED and one.usage is not None and one.usage.cpu_seconds == 4
    assert two.state == JobState.FAILED and two.usage is not None and two.usage.cpu_seconds == 8
    assert two.usage.cpu_efficiency == pytest.approx(8 / 20)
    assert three.state == JobState.RUNNING and three.usage is None
    sched.answer(queue="1 CD\n2 F\n3 R\n")
    assert _commands(submitor) == ["queue"]  # the ended jobs have their usage: not asked again


def test_lagging_accounting_fills_usage_later_without_changing_the_state(canned) -> None:
    submitor, sched = canned
    job = submitor.submit_job(argv=["true"]).job_id
    # The queue says it completed; accounting still has it running (it lags).
    sched.answer(queue="1 CD\n", accounting="1 R 1\n")
    assert _commands(submitor) == ["queue", "accounting"]
    record = submitor.get_job(job)
    assert record.state == JobState.SUCCEEDED and record.exit_code == 0 and record.usage is None
    # Accounting catches up, and (wrongly or not) calls it FAILED: only the usage is taken.
    sched.answer(queue="", accounting="1 F 6\n")
    assert _commands(submitor) == ["queue", "accounting"]
    record = submitor.get_job(job)
    assert record.state == JobState.SUCCEEDED and record.exit_code == 0
    assert record.usage is not None and record.usage.cpu_seconds == 6
    assert [t.new_state for t in submitor.get_transitions(job)][-1] == JobState.SUCCEEDED
    assert _commands(submitor) == []  # nothing active, nothing waiting for usage


def test_usage_that_never_arrives_is_given_up_after_a_bounded_number_of_refreshes(canned) -> None:
    submitor, sched = canned
    job = submitor.submit_job(argv=["true"]).job_id
    sched.answer(queue="1 CD\n", accounting="1 R\n")
    asked = [_commands(submitor) for _ in range(USAGE_TRIES + 3)]
    # The refresh that ended it, then USAGE_TRIES more, then nothing.
    assert asked == [["queue", "accounting"]] * (USAGE_TRIES + 1) + [[]] * 2
    record = submitor.get_job(job)
    assert record.state == JobState.SUCCEEDED and record.usage is None


def test_jobs_cancelled_before_they_started_ask_accounting_nothing(canned) -> None:
    submitor, sched = canned
    ids = [submitor.submit_job(argv=["true"]).job_id for _ in range(2)]
    sched.answer(queue="1 CA\n2 CA\n", accounting="1 CA\n2 CA\n")
    assert _commands(submitor) == ["queue"]
    assert {submitor.get_job(j).state for j in ids} == {JobState.CANCELLED}

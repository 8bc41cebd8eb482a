"""Reconciliation rules: failed queries change nothing; LOST needs repeated successful misses."""

from __future__ import annotations

import pytest

import molq.submitor as submitor_mod
from molq import Cluster, JobState, Submitor
from molq.errors import SchedulerError
from molq.hookspecs import hookimpl
from molq.local import ShellScheduler
from molq.plugin_types import SchedulerPlugin
from molq.plugins import get_plugin_manager


class FlakyScheduler(ShellScheduler):
    """The local scheduler, with a switch that breaks or blinds its status queries."""

    name = "flaky"
    mode = "normal"

    def poll_many(self, jobs):
        if FlakyScheduler.mode == "fail":
            raise SchedulerError("slurm_load_jobs error: Socket timed out on send/recv operation")
        if FlakyScheduler.mode == "blind":
            return {}
        return super().poll_many(jobs)

    def resolve_terminal_many(self, jobs, *, since=None):
        if FlakyScheduler.mode == "fail":
            raise SchedulerError("accounting down")
        if FlakyScheduler.mode == "blind":
            return {}
        return super().resolve_terminal_many(jobs, since=since)


class FlakyPlugin:
    @hookimpl
    def molq_register_schedulers(self):
        yield SchedulerPlugin(name="flaky", factory=lambda transport, options: FlakyScheduler(transport))


@pytest.fixture
def flaky(tmp_path):
    get_plugin_manager().register(FlakyPlugin(), name="flaky-plugin")
    FlakyScheduler.mode = "normal"
    sub = Submitor(Cluster("flaky", "flaky"), jobs_dir=str(tmp_path / "jobs"))
    yield sub
    FlakyScheduler.mode = "normal"


def test_failed_queries_change_nothing(flaky):
    h = flaky.submit_job(argv=["sleep", "0.5"])
    flaky.refresh_jobs()
    before = flaky.get_job(h.job_id).state
    FlakyScheduler.mode = "fail"
    import time

    time.sleep(1.0)  # the job finishes while the scheduler cannot be asked
    for _ in range(10):
        flaky.refresh_jobs()
    assert flaky.get_job(h.job_id).state == before
    FlakyScheduler.mode = "normal"
    assert flaky.watch_jobs([h.job_id], timeout=20)[0].state == JobState.SUCCEEDED


def test_lost_only_after_repeated_successful_misses(flaky, monkeypatch):
    h = flaky.submit_job(argv=["true"])
    FlakyScheduler.mode = "blind"
    for _ in range(10):
        flaky.refresh_jobs()
    # Many misses, but not for long enough: not lost yet.
    assert flaky.get_job(h.job_id).state == JobState.SUBMITTED
    monkeypatch.setattr(submitor_mod, "LOST_AFTER_SECONDS", 0.0)
    flaky.refresh_jobs()
    rec = flaky.get_job(h.job_id)
    assert rec.state == JobState.LOST and "no longer knows" in flaky.get_transitions(h.job_id)[-1].reason


def test_a_found_job_resets_the_miss_count(flaky, monkeypatch):
    monkeypatch.setattr(submitor_mod, "LOST_AFTER_SECONDS", 0.0)
    h = flaky.submit_job(argv=["sleep", "5"])
    FlakyScheduler.mode = "blind"
    flaky.refresh_jobs()
    flaky.refresh_jobs()
    FlakyScheduler.mode = "normal"
    flaky.refresh_jobs()
    FlakyScheduler.mode = "blind"
    flaky.refresh_jobs()
    flaky.refresh_jobs()
    assert not flaky.get_job(h.job_id).is_terminal
    FlakyScheduler.mode = "normal"
    flaky.cancel_job(h.job_id)

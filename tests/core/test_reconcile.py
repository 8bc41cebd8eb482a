"""Reconciliation rules: failed queries change nothing; LOST needs repeated successful misses."""

from __future__ import annotations

import gc

import molq.engine.decide as submitor_mod
import pytest
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
    collector_on: bool | None = None  # whether Python's garbage collector ran during the last poll

    def poll_many(self, jobs):
        FlakyScheduler.collector_on = gc.isenabled()
        if FlakyScheduler.mode == "fail":
            raise SchedulerError("slurm_load_jobs error: Socket timed out on send/recv operation")
        if FlakyScheduler.mode == "blind":
            return {}
        return super().poll_many(jobs)

    def find_adoptable(self, jobs):
        if FlakyScheduler.mode == "blind":
            return {}
        return super().find_adoptable(jobs)

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


def _wait_for_file(path, timeout=20.0):
    import os
    import time

    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_later_evidence_corrects_a_lost_record(flaky, monkeypatch):
    import molq.engine.refresh as refresh_mod

    monkeypatch.setattr(submitor_mod, "LOST_AFTER_SECONDS", 0.0)
    monkeypatch.setattr(refresh_mod, "LOST_RECHECK_SECONDS", 0.0)
    events = []
    flaky.on_event("status_change", lambda p: events.append((p.transition.old_state, p.transition.new_state)))
    h = flaky.submit_job(argv=["true"])
    _wait_for_file(f"{flaky.get_job(h.job_id).job_dir}/exit_code")
    FlakyScheduler.mode = "blind"  # every source answers, none knows the job
    for _ in range(3):
        flaky.refresh_jobs()
    assert flaky.get_job(h.job_id).state == JobState.LOST
    FlakyScheduler.mode = "normal"  # the exit-code file is seen again
    flaky.refresh_jobs()
    rec = flaky.get_job(h.job_id)
    assert rec.state == JobState.SUCCEEDED and rec.exit_code == 0
    last = flaky.get_transitions(h.job_id)[-1]
    assert (last.old_state, last.new_state) == (JobState.LOST, JobState.SUCCEEDED)
    assert "corrected from lost" in last.reason
    assert (JobState.LOST, JobState.SUCCEEDED) in events


def test_a_failed_status_query_never_counts_a_miss(flaky, monkeypatch):
    monkeypatch.setattr(submitor_mod, "LOST_AFTER_SECONDS", 0.0)
    h = flaky.submit_job(argv=["sleep", "30"])
    FlakyScheduler.mode = "fail"
    for _ in range(2 * submitor_mod.LOST_AFTER_MISSES):
        flaky.refresh_jobs()
    assert not flaky.get_job(h.job_id).is_terminal
    FlakyScheduler.mode = "normal"
    flaky.cancel_job(h.job_id)
    assert flaky.get_job(h.job_id).state == JobState.CANCELLED


class RefusingScheduler(ShellScheduler):
    """The local scheduler, whose cancels are refused (as a scheduler says permission denied)."""

    name = "refusing"

    def cancel_many(self, jobs):
        raise SchedulerError("scancel: error: Access/permission denied for job")


class RefusingPlugin:
    @hookimpl
    def molq_register_schedulers(self):
        yield SchedulerPlugin(name="refusing", factory=lambda transport, options: RefusingScheduler(transport))


def test_a_refused_cancel_records_nothing(tmp_path):
    get_plugin_manager().register(RefusingPlugin(), name="refusing-plugin")
    sub = Submitor(Cluster("refusing", "refusing"), jobs_dir=str(tmp_path / "jobs"))
    h = sub.submit_job(argv=["sleep", "30"])
    with pytest.raises(SchedulerError, match="permission denied"):
        sub.cancel_job(h.job_id)
    sub.refresh_jobs()
    rec = sub.get_job(h.job_id)
    assert not rec.is_terminal
    assert sub.store.get_internal("refusing", h.job_id)["cancel_requested_at"] is None
    ShellScheduler.cancel_many(sub.scheduler, [sub._ctx.tracked(rec)])  # clean up the real process


def test_cancelling_a_job_that_already_ended_keeps_its_real_end(flaky):
    h = flaky.submit_job(argv=["sh", "-c", "exit 3"])
    _wait_for_file(f"{flaky.get_job(h.job_id).job_dir}/exit_code")
    flaky.cancel_job(h.job_id)  # nobody refreshed since it ended
    rec = flaky.get_job(h.job_id)
    assert rec.state == JobState.FAILED and rec.exit_code == 3


def test_an_interrupted_submission_that_ran_is_not_recorded_never_ran(flaky, monkeypatch):
    """The submitter died after the job started; the scheduler forgot it; the job directory
    still says how it ended."""
    import molq.engine.adopt as adopt_mod

    monkeypatch.setattr(adopt_mod, "ORPHAN_AGE_SECONDS", 0.0)
    h = flaky.submit_job(argv=["true"])
    rec = flaky.get_job(h.job_id)
    _wait_for_file(f"{rec.job_dir}/exit_code")
    # Make the record look like a crash between the scheduler call and recording its answer.
    flaky.store.transition("flaky", h.job_id, rec.state, rec.state)  if False else None
    with flaky.store.batch():
        import subprocess as sp

        gone = sp.Popen(["true"])
        gone.wait()  # a pid that no longer runs: the submitter died
        flaky.store.update_job("flaky", h.job_id, scheduler_job_id=None, submit_pid=gone.pid)
    import sqlite3

    with sqlite3.connect(flaky.store.url.split("sqlite:///", 1)[1]) as conn:
        conn.execute("UPDATE molq_jobs SET state='created' WHERE job_id=?", (h.job_id,))
    FlakyScheduler.mode = "blind"  # the scheduler no longer knows the job either
    flaky.refresh_jobs()
    rec = flaky.get_job(h.job_id)
    assert rec.state == JobState.SUCCEEDED and rec.exit_code == 0
    assert "never ran" not in (rec.failure_reason or "")


def test_a_refresh_in_which_nothing_changed_writes_nothing(tmp_path):
    # Another process holds the store's write lock for the whole refresh: a refresh that wrote
    # (or merely opened a write transaction) would wait for it, and finish only after release.
    import sqlite3
    import threading

    from molq.store import JobStore

    db = tmp_path / "jobs.db"
    sub = Submitor(Cluster("quiet", "local"), store=JobStore(f"sqlite:///{db}"), jobs_dir=str(tmp_path / "jobs"))
    handle = sub.submit_job(argv=["sleep", "60"])
    try:
        for _ in range(200):
            sub.refresh_jobs()
            if sub.get_job(handle.job_id).state == JobState.RUNNING:
                break
        assert sub.get_job(handle.job_id).state == JobState.RUNNING
        assert sub.refresh_jobs().changed == 0  # settled: nothing left to record
        locked, done, released = threading.Event(), threading.Event(), threading.Event()

        def hold_the_write_lock() -> None:
            conn = sqlite3.connect(db, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            done.wait(15)
            conn.execute("COMMIT")
            released.set()
            conn.close()

        holder = threading.Thread(target=hold_the_write_lock)
        holder.start()
        assert locked.wait(10)
        try:
            result = sub.refresh_jobs()
            finished_under_lock = not released.is_set()
        finally:
            done.set()
            holder.join()
        assert result.looked_at == 1 and result.changed == 0
        assert finished_under_lock, "the refresh waited for the write lock although nothing changed"
    finally:
        sub.cancel_job(handle.job_id)
        sub.close()


def test_the_garbage_collector_pauses_during_a_refresh_only(flaky):
    h = flaky.submit_job(argv=["sleep", "30"])
    try:
        assert gc.isenabled()
        flaky.refresh_jobs()
        assert FlakyScheduler.collector_on is False and gc.isenabled()
        FlakyScheduler.mode = "fail"  # a refresh whose poll fails resumes it too
        flaky.refresh_jobs()
        assert FlakyScheduler.collector_on is False and gc.isenabled()
        FlakyScheduler.mode = "normal"
        gc.disable()  # the caller's choice stands
        try:
            flaky.refresh_jobs()
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        FlakyScheduler.mode = "normal"
        flaky.cancel_job(h.job_id)

"""Several hosts, one store: a local job is reconciled only on the host that runs it."""

from __future__ import annotations

import molq.engine.decide as rules
import pytest
from molq import Cluster, JobState, MolqError, Submitor
from molq.store import JobStore


def test_another_host_never_declares_a_local_job_lost(tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(rules, "LOST_AFTER_SECONDS", 0.0)
    home_a = os.environ.get("MOLQ_HOME", str(tmp_path / "home-a"))
    monkeypatch.setenv("MOLQ_HOME", home_a)
    store = JobStore(f"sqlite:///{tmp_path}/shared.db")
    monkeypatch.setenv("MOLQ_HOSTNAME", "host-a")
    a = Submitor(Cluster("ws", "local"), store=store, jobs_dir=str(tmp_path / "jobs"))
    h = a.submit_job(argv=["sleep", "30"])
    a.refresh_jobs()
    assert a.get_job(h.job_id).state == JobState.RUNNING

    # Host B shares the store but has its own home (its own local spool): it cannot see the job.
    monkeypatch.setenv("MOLQ_HOSTNAME", "host-b")
    monkeypatch.setenv("MOLQ_HOME", str(tmp_path / "home-b"))
    b = Submitor(Cluster("ws", "local"), store=store, jobs_dir=str(tmp_path / "jobs"))
    for _ in range(2 * rules.LOST_AFTER_MISSES):
        b.refresh_jobs()
    assert b.get_job(h.job_id).state == JobState.RUNNING
    with pytest.raises(MolqError, match="on host-a"):
        b.cancel_job(h.job_id)

    monkeypatch.setenv("MOLQ_HOSTNAME", "host-a")
    monkeypatch.setenv("MOLQ_HOME", home_a)
    a.cancel_job(h.job_id)
    assert a.get_job(h.job_id).state == JobState.CANCELLED
    store.close()

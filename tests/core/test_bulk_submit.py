"""Submitor.submit_jobs: validate all, record all, submit with bounded concurrency."""

from __future__ import annotations

import os

import pytest
from molq import Cluster, ConfigError, JobResources, JobState, Submitor
from molq.store import JobStore


@pytest.fixture
def sub(tmp_path):
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    s = Submitor(Cluster("bulk", "local"), store=store, jobs_dir=str(tmp_path / "jobs"))
    yield s
    s.close()
    store.close()


def test_handles_come_back_in_order_and_every_job_runs_once(sub, tmp_path):
    out = tmp_path / "runs"
    handles = sub.submit_jobs([{"command": f"echo {i} >> {out}"} for i in range(24)], concurrency=6)
    assert len(handles) == 24 and all(h.error is None for h in handles)
    finals = sub.watch_jobs([h.job_id for h in handles], timeout=120)
    assert [r.job_id for r in finals] == [h.job_id for h in handles]
    assert all(r.state == JobState.SUCCEEDED for r in finals)
    assert sorted(int(x) for x in out.read_text().split()) == list(range(24))


def test_one_bad_job_refuses_the_whole_batch_before_anything_is_stored(sub):
    too_big = (os.cpu_count() or 1) + 64
    jobs = [{"argv": ["true"]}, {"argv": ["true"], "resources": JobResources(cpu_count=too_big)}, {"argv": ["true"]}]
    with pytest.raises(ConfigError, match="job 2 of 3"):
        sub.submit_jobs(jobs)
    assert sub.store.list_jobs("bulk", include_terminal=True) == []
    with pytest.raises(ConfigError, match="job 1"):
        sub.submit_jobs([{"argv": ["true"], "no_such_keyword": 1}])


def test_bulk_calls_one_after_another_never_run_out_of_store_connections(sub):
    # Every call runs its submissions on new threads; the SQLite store once kept a connection
    # per thread out of its engine's pool (15), so the second call with 16 workers hung 30 s
    # and failed.
    ids = []
    for _ in range(3):
        handles = sub.submit_jobs([{"argv": ["true"]} for _ in range(16)], concurrency=16)
        assert [h.error for h in handles] == [None] * 16
        ids += [h.job_id for h in handles]
    finals = sub.watch_jobs(ids, timeout=120)
    assert {r.state for r in finals} == {JobState.SUCCEEDED}

"""Submitor.submit_jobs on the real SLURM: one refused job fails alone, nothing is duplicated."""

from __future__ import annotations

import pytest
from molq import Cluster, JobState, Submitor


@pytest.mark.slurm
def test_a_refused_submission_fails_only_its_own_job(slurm_cluster, tmp_path):
    from molq import JobScheduling

    cluster = Cluster(f"bulk-{slurm_cluster.name}", "slurm", scheduler_options={"env": dict(slurm_cluster.env)})
    sub = Submitor(cluster, jobs_dir=str(tmp_path / "jobs"))
    jobs = [{"argv": ["true"]} for _ in range(20)]
    jobs[7] = {"argv": ["true"], "scheduling": JobScheduling(partition="no-such-partition")}
    handles = sub.submit_jobs(jobs, concurrency=4)
    failed = [h for h in handles if h.error is not None]
    assert [handles.index(h) for h in failed] == [7]
    assert sub.get_job(handles[7].job_id).state == JobState.FAILED
    ids = [h.scheduler_job_id for h in handles if h.error is None]
    assert len(ids) == 19 and len(set(ids)) == 19  # nothing duplicated
    records = sub.store.list_jobs(cluster.name, include_terminal=True)
    assert len(records) == 20
    sub.cancel_jobs([h.job_id for h in handles if h.error is None])

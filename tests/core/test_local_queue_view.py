"""`molq queue` on the local scheduler: the running jobs and the queue in order, with the cores
of each and what each queued job waits for, as rows and as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from molq import Cluster, JobResources, JobState, Submitor


def test_the_local_queue_shows_cores_and_what_each_job_waits_for(tmp_path, molq_home):
    cluster = Cluster("view", "local", scheduler_options={"max_cpus": 2})
    s = Submitor(cluster)
    go = tmp_path / "go"
    hold = f"while [ ! -e {go} ]; do sleep 0.02; done"
    a = s.submit_job(command=hold)
    b = s.submit_job(command="true", resources=JobResources(cpu_count=2))
    c = s.submit_job(command="true", after_success=[a.job_id])
    d = s.submit_job(command="true", after_failure=[b.job_id])
    try:
        rows = {r.scheduler_job_id: r for r in s.scheduler.list_queue()}
        assert list(rows) == [a.job_id, b.job_id, c.job_id, d.job_id]
        assert (rows[a.job_id].state, rows[a.job_id].cpus, rows[a.job_id].waits_for) == (JobState.RUNNING, 1, None)
        assert (rows[b.job_id].cpus, rows[b.job_id].waits_for) == (2, "cores")
        assert (rows[c.job_id].cpus, rows[c.job_id].waits_for) == (1, f"{a.job_id} to end")
        assert rows[d.job_id].waits_for == f"{b.job_id} to end"
        # The command line shows the same, from a process of its own.
        env = dict(os.environ, MOLQ_HOME=str(molq_home))
        proc = subprocess.run([sys.executable, "-m", "molq", "queue", "-c", "view", "--json"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        listed = {e["scheduler_job_id"]: e for e in json.loads(proc.stdout)}
        assert [(listed[i]["state"], listed[i]["cpus"]) for i in (a.job_id, b.job_id)] == [("running", 1),
                                                                                         ("queued", 2)]
        assert listed[c.job_id]["waits_for"] == f"{a.job_id} to end"
        text = subprocess.run([sys.executable, "-m", "molq", "queue", "-c", "view"], env=env,
                              capture_output=True, text=True, timeout=60).stdout
        assert "2 cores" in text and f"waits for {a.job_id} to end" in text
    finally:
        go.touch()
    finals = s.watch_jobs([a.job_id, b.job_id, c.job_id, d.job_id], timeout=30)
    assert [f.state for f in finals] == [JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.SUCCEEDED,
                                         JobState.FAILED]
    assert s.scheduler.list_queue() == []

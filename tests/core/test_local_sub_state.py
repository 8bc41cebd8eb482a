"""The local scheduler's queue says what a queued job waits for as a sub-state: cores
(``waiting_resources``) or an upstream job (``waiting_dependency``), through the public
``Cluster.get_queue`` and ``molq queue --json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from molq import Cluster, JobResources, JobState, Submitor, SubState


def test_queued_local_jobs_wait_for_cores_or_for_their_upstream(tmp_path, molq_home):
    cluster = Cluster("q", "local", scheduler_options={"max_cpus": 2})
    s = Submitor(cluster)
    go = tmp_path / "go"
    a = s.submit_job(command=f"while [ ! -e {go} ]; do sleep 0.02; done")
    b = s.submit_job(command="true", resources=JobResources(cpu_count=2))
    c = s.submit_job(command="true", after_success=[a.job_id])
    try:
        by_id = {e.scheduler_job_id: e for e in cluster.get_queue()}
        assert by_id[a.job_id].state == JobState.RUNNING and by_id[a.job_id].sub_state is None
        assert (by_id[b.job_id].sub_state, by_id[b.job_id].sub_state_reason) == (
            SubState.WAITING_RESOURCES, "waits for cores")
        assert by_id[c.job_id].sub_state == SubState.WAITING_DEPENDENCY
        assert a.job_id in (by_id[c.job_id].sub_state_reason or "")

        env = dict(os.environ, MOLQ_HOME=str(molq_home))
        add = subprocess.run([sys.executable, "-m", "molq", "profile", "add", "q", "--scheduler", "local",
                              "--option", "max_cpus=2"], env=env, capture_output=True, text=True, timeout=60)
        assert add.returncode == 0, add.stderr
        out = subprocess.run([sys.executable, "-m", "molq", "queue", "-p", "q", "--json"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        rows = {r["scheduler_job_id"]: r for r in json.loads(out.stdout)}
        assert rows[b.job_id]["sub_state"] == "waiting_resources"
        assert rows[c.job_id]["sub_state"] == "waiting_dependency"
        assert rows[a.job_id]["sub_state"] is None
        table = subprocess.run([sys.executable, "-m", "molq", "queue", "-p", "q"], env=env,
                               capture_output=True, text=True, timeout=60).stdout.splitlines()
        assert table[0].split()[:3] == ["SCHED", "ID", "STATE"] and "SUB" in table[0].split()
    finally:
        go.touch()
    s.watch_jobs([a.job_id, b.job_id, c.job_id], timeout=30)

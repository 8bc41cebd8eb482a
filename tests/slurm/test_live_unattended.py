"""On the real SLURM, a job with a retry policy submitted through the Python API by a script that
exits is retried, and its held dependent released, by the daemon the submission started on
demand; that daemon leaves once no work is left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from molq import Cluster, JobState, Submitor

SCRIPT = textwrap.dedent("""
    import json, sys
    from molq import Cluster, JobScheduling, RetryBackoff, RetryPolicy, Submitor

    env, jobs_dir, marker = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    sub = Submitor(Cluster("unattended-slurm", "slurm", scheduler_options={"env": env}), jobs_dir=jobs_dir)
    flaky = sub.submit_job(command=f"test -e {marker} || {{ touch {marker}; exit 3; }}",
                           scheduling=JobScheduling(partition="debug"),
                           retry=RetryPolicy(max_attempts=2, backoff=RetryBackoff(mode="fixed", initial_seconds=2)))
    after = sub.submit_job(argv=["true"], scheduling=JobScheduling(partition="debug"), after_success=[flaky.job_id])
    print(flaky.job_id, after.job_id)
""")


@pytest.mark.slurm
def test_a_slurm_job_is_retried_with_no_user_process(acct_cluster, molq_home: Path, tmp_path: Path) -> None:
    env = dict(os.environ, MOLQ_HOME=str(molq_home))
    env.pop("MOLQ_AUTO_DAEMON", None)  # the test suite turns daemons on demand off
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(dict(acct_cluster.env)), str(tmp_path / "jobs"),
                           str(tmp_path / "failed-once")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("started a daemon") == 1, proc.stderr
    roots = proc.stdout.split()
    sub = Submitor(Cluster("unattended-slurm", "slurm", scheduler_options={"env": dict(acct_cluster.env)}))
    deadline = time.monotonic() + 150
    while True:  # read from the store only: this process refreshes nothing
        latest = sub.store.latest_attempts(sub.cluster_name, roots)
        if len(latest) == 2 and all(r.state == JobState.SUCCEEDED for r in latest.values()):
            break
        assert time.monotonic() < deadline, {k: (v.attempt, v.state) for k, v in latest.items()}
        time.sleep(0.5)
    family = sub.get_retry_family(roots[0])
    assert [(a.attempt, a.state, a.exit_code) for a in family] == [(1, JobState.FAILED, 3), (2, JobState.SUCCEEDED, 0)]
    assert family[1].submitted_at - family[0].finished_at >= 1.9  # never before the backoff
    wait = time.monotonic() + 30
    while (molq_home / "daemon.pid").exists():
        assert time.monotonic() < wait, "the daemon started on demand did not leave when idle"
        time.sleep(0.2)
    assert "1 retry started" in (molq_home / "daemon.log").read_text()

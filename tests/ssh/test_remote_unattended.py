"""A retry on the local scheduler of a remote host (over the real test sshd) comes with no user
process alive: the submitting script exits, the daemon it started on demand on this side
notices the failure, submits the next attempt and releases the held dependent."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from molq import Cluster, JobState, Submitor
from ssh_support import Sshd

SCRIPT = textwrap.dedent("""
    import sys
    from molq import Cluster, RetryBackoff, RetryPolicy, Submitor

    host, config, control, remote = sys.argv[1:5]
    cluster = Cluster("remote-unattended", "local", host=host,
                      transport_options={"config_file": config, "control_dir": control},
                      scheduler_options={"spool_dir": f"{remote}/spool", "max_cpus": 2})
    sub = Submitor(cluster)
    marker = f"{remote}/failed-once"
    # It fails after the daemon started on demand is up and connected (a few seconds when the
    # machine is loaded): the test measures the retry, not the daemon's start.
    flaky = sub.submit_job(command=f"test -e {marker} || {{ touch {marker}; sleep 6; exit 3; }}",
                           retry=RetryPolicy(max_attempts=2, backoff=RetryBackoff(mode="fixed", initial_seconds=2)))
    after = sub.submit_job(argv=["true"], after_success=[flaky.job_id])
    print(flaky.job_id, after.job_id)
""")


@pytest.mark.sshd
def test_a_remote_local_job_is_retried_with_no_user_process(sshd: Sshd, control_dir: str, remote_dir: str,
                                                           molq_home: Path) -> None:
    env = dict(os.environ, MOLQ_HOME=str(molq_home))
    env.pop("MOLQ_AUTO_DAEMON", None)  # the test suite turns daemons on demand off
    proc = subprocess.run([sys.executable, "-c", SCRIPT, sshd.host, sshd.config, control_dir, remote_dir],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("started a daemon") == 1, proc.stderr
    roots = proc.stdout.split()
    cluster = Cluster("remote-unattended", "local", host=sshd.host,
                      transport_options={"config_file": sshd.config, "control_dir": control_dir},
                      scheduler_options={"spool_dir": f"{remote_dir}/spool", "max_cpus": 2})
    sub = Submitor(cluster)
    deadline = time.monotonic() + 60
    while True:  # read from the store only: this process refreshes nothing
        latest = sub.store.latest_attempts(sub.cluster_name, roots)
        if len(latest) == 2 and all(r.state == JobState.SUCCEEDED for r in latest.values()):
            break
        assert time.monotonic() < deadline, {k: v.state for k, v in latest.items()}
        time.sleep(0.2)
    family = sub.get_retry_family(roots[0])
    assert [(a.attempt, a.state, a.exit_code) for a in family] == [(1, JobState.FAILED, 3), (2, JobState.SUCCEEDED, 0)]
    # The backoff counts from the end the wrapper recorded; a remote spool is looked at once
    # per daemon interval (5 s), so the retry comes at most that much later.
    delay = family[1].submitted_at - family[0].finished_at
    assert 1.9 <= delay <= 2 + 5 + 2, delay
    wait = time.monotonic() + 20
    while (molq_home / "daemon.pid").exists():
        assert time.monotonic() < wait, "the daemon started on demand did not leave when idle"
        time.sleep(0.2)
    assert "1 retry started" in (molq_home / "daemon.log").read_text()

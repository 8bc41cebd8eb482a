"""The molq command line against the real SLURM: profiles, submit --wait, queue, cancel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def _molq(home, cwd, *args, timeout=180):
    env = dict(os.environ, MOLQ_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "molq", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_on_real_slurm(acct_cluster, molq_home, tmp_path):
    add = _molq(molq_home, tmp_path, "profile", "add", "hpc", "--scheduler", "slurm",
                "--option", f"env.SLURM_CONF={acct_cluster.conf}", "--default")
    assert add.returncode == 0, add.stderr
    done = _molq(molq_home, tmp_path, "submit", "--wait", "--name", "cli three", "--", "sh", "-c", "echo hi; exit 3")
    assert done.returncode == 3, done.stderr
    job = done.stdout.strip()
    shown = json.loads(_molq(molq_home, tmp_path, "show", job[:8], "--json").stdout)
    assert shown["scheduler"] == "slurm" and shown["exit_code"] == 3 and shown["scheduler_job_id"]
    assert _molq(molq_home, tmp_path, "logs", job[:8]).stdout == "hi\n"

    # A job submitted outside molq shows up in `molq queue`, next to one of ours.
    outside = acct_cluster.run("sbatch", "--parsable", "--job-name", "outside molq", "--hold", "--wrap", "true")
    assert outside.returncode == 0, outside.stderr
    outside_id = outside.stdout.strip().split(";")[0]
    ours = _molq(molq_home, tmp_path, "submit", "--", "sleep", "120").stdout.strip()
    try:
        queue = json.loads(_molq(molq_home, tmp_path, "queue", "--json").stdout)
        ids = {e["scheduler_job_id"] for e in queue}
        ours_sid = json.loads(_molq(molq_home, tmp_path, "show", ours, "--json").stdout)["scheduler_job_id"]
        assert outside_id in ids and ours_sid in ids
        cancelled = _molq(molq_home, tmp_path, "cancel", ours[:8])
        assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
        time.sleep(1)
        assert json.loads(_molq(molq_home, tmp_path, "show", ours, "--json").stdout)["state"] == "cancelled"
    finally:
        acct_cluster.run("scancel", outside_id)

"""Sub-states and per-job native options on the real SLURM, through the CLI: a job held with
``scontrol hold`` and one suspended with ``scontrol suspend`` show as such in ``molq list``,
``molq show`` and ``molq queue`` (text and JSON); ``--no-rerunnable`` and ``--directive``
reach the job as SLURM sees it (``scontrol show job``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from waiting import until


def _molq(home, cwd, *args, timeout=120):
    env = dict(os.environ, MOLQ_HOME=str(home))
    env.pop("MOLQ_CONFIG", None)
    env.pop("MOLQ_STORE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "molq", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _show(home, cwd, job):
    proc = _molq(home, cwd, "show", job, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_held_and_suspended_jobs_show_their_sub_state(slurm_cluster, molq_home, tmp_path):
    add = _molq(molq_home, tmp_path, "profile", "add", "hpc", "--scheduler", "slurm",
                "--option", f"env.SLURM_CONF={slurm_cluster.conf}", "--default")
    assert add.returncode == 0, add.stderr
    # Pending for ten minutes, so the hold takes effect (a running job held with scontrol hold
    # keeps running: SLURM 22.05 only notes JobHeldAdmin as its reason).
    held = _molq(molq_home, tmp_path, "submit", "--name", "to hold", "--directive=--begin=now+600",
                 "--", "sleep", "300").stdout.strip()
    runner = _molq(molq_home, tmp_path, "submit", "--name", "to suspend", "--", "sleep", "300").stdout.strip()
    sids = {}
    try:
        for job in (held, runner):
            sids[job] = _show(molq_home, tmp_path, job)["scheduler_job_id"]
        hold = slurm_cluster.run("scontrol", "hold", sids[held])
        assert hold.returncode == 0, hold.stderr
        assert until(lambda: _show(molq_home, tmp_path, runner)["state"] == "running"), "never started"
        suspend = slurm_cluster.run("scontrol", "suspend", sids[runner])
        assert suspend.returncode == 0, suspend.stderr

        shown = until(lambda: (lambda d: d if d["sub_state"] == "held" else None)(_show(molq_home, tmp_path, held)))
        assert shown and shown["state"] == "queued", shown
        assert shown["sub_state_reason"] == "JobHeldAdmin", shown  # root holds as the administrator
        suspended = until(lambda: (lambda d: d if d["sub_state"] == "suspended" else None)(
            _show(molq_home, tmp_path, runner)))
        assert suspended and suspended["state"] == "running", suspended

        text = _molq(molq_home, tmp_path, "show", held[:8]).stdout
        assert "held" in text.split("state:", 1)[1].splitlines()[0]
        listing = _molq(molq_home, tmp_path, "list").stdout.splitlines()
        headers = listing[0].split()
        assert headers.index("SUB") == headers.index("STATE") + 1, listing[0]
        at = headers.index("STATE")
        rows = {line.split()[0]: line.split() for line in listing[1:]}
        assert rows[held[:8]][at:at + 2] == ["queued", "held"]
        assert rows[runner[:8]][at:at + 2] == ["running", "suspended"]
        listed = {d["job_id"]: d for d in json.loads(_molq(molq_home, tmp_path, "list", "--json").stdout)}
        assert listed[held]["sub_state"] == "held" and listed[runner]["sub_state"] == "suspended"

        queue = {e["scheduler_job_id"]: e for e in json.loads(_molq(molq_home, tmp_path, "queue", "--json").stdout)}
        assert queue[sids[held]]["sub_state"] == "held" and queue[sids[runner]]["sub_state"] == "suspended"
        table = _molq(molq_home, tmp_path, "queue").stdout.splitlines()
        assert "SUB" in table[0].split()
        row = next(line.split() for line in table if line.split()[0] == sids[runner])
        assert row[1:3] == ["running", "suspended"]

        # Resumed: the sub-state goes away on the next refresh.
        assert slurm_cluster.run("scontrol", "resume", sids[runner]).returncode == 0
        assert until(lambda: _show(molq_home, tmp_path, runner)["sub_state"] is None)
    finally:
        for job in (held, runner):
            _molq(molq_home, tmp_path, "cancel", job[:8])
    for job in (held, runner):
        final = until(lambda j=job: (lambda d: d if d["state"] == "cancelled" else None)(_show(molq_home, tmp_path, j)))
        assert final and final["sub_state"] is None, final


def test_rerunnable_and_directives_reach_slurm(acct_cluster, molq_home, tmp_path):
    add = _molq(molq_home, tmp_path, "profile", "add", "hpc", "--scheduler", "slurm",
                "--option", f"env.SLURM_CONF={acct_cluster.conf}", "--default", "--rerunnable")
    assert add.returncode == 0, add.stderr
    job = _molq(molq_home, tmp_path, "submit", "--directive=--nice=7", "--directive", "--begin=now+600",
                "--", "true").stdout.strip()
    other = _molq(molq_home, tmp_path, "submit", "--no-rerunnable", "--directive=--begin=now+600",
                  "--", "true").stdout.strip()
    try:
        seen = {}
        for j in (job, other):
            sid = _show(molq_home, tmp_path, j)["scheduler_job_id"]
            out = acct_cluster.run("scontrol", "show", "job", "-o", sid).stdout
            seen[j] = dict(w.split("=", 1) for w in out.split() if "=" in w)
        assert seen[job]["Requeue"] == "1" and seen[job]["Nice"] == "7"
        assert seen[other]["Requeue"] == "0"
        assert seen[job]["Reason"] == "BeginTime"
    finally:
        for j in (job, other):
            _molq(molq_home, tmp_path, "cancel", j[:8])

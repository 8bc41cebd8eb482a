"""Ten processes waiting on jobs of one real SLURM cluster share one poll per interval.

The jobs are held (``sbatch --hold``), so they stay pending for the whole test and cost the
cluster nothing. An ``squeue`` shim first on PATH logs every call, then runs the real squeue:
the count is what SLURM really saw, whichever process ran it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from molq import Cluster, JobExecution, Submitor
from molq.model import JobState
from molq.store import JobStore

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROCESSES = 10
INTERVAL = 5.0
WAIT = 40.0

WORKER = """
import sys
from molq import Cluster, Submitor
from molq.store import JobStore
url, name, conf, jobs_dir, job_id, interval, wait = sys.argv[1:]
cluster = Cluster(name, "slurm", scheduler_options={
    "env": {"SLURM_CONF": conf}, "poll_interval": float(interval), "poll_interval_max": float(interval)})
submitor = Submitor(cluster, store=JobStore(url), jobs_dir=jobs_dir)
try:
    submitor.watch_jobs([job_id], timeout=float(wait))
except TimeoutError:
    print("still waiting", flush=True)
"""


def _shim(bin_dir: Path, log: Path) -> None:
    real = shutil.which("squeue")
    assert real, "squeue is not installed"
    bin_dir.mkdir()
    script = bin_dir / "squeue"
    script.write_text(f"#!/bin/sh\necho \"$(date +%s.%N) $$\" >> {shlex.quote(str(log))}\n"
                      f"exec {shlex.quote(real)} \"$@\"\n")
    script.chmod(0o755)


def test_ten_waiting_processes_run_one_squeue_per_interval(acct_cluster, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    name = f"shared-{acct_cluster.name}"
    jobs_dir = str(tmp_path / "jobs")
    cluster = Cluster(name, "slurm", scheduler_options={"env": dict(acct_cluster.env), "extra_sbatch_args": ["--hold"]})
    submitor = Submitor(cluster, store=JobStore(url), jobs_dir=jobs_dir)
    ids = [submitor.submit_job(argv=["true"], execution=JobExecution(cwd=str(tmp_path))).job_id
           for _ in range(PROCESSES)]
    sids = [submitor.get_job(j).scheduler_job_id for j in ids]
    log = tmp_path / "squeue-calls.log"
    _shim(tmp_path / "shim", log)
    env = dict(os.environ, PATH=f"{tmp_path / 'shim'}{os.pathsep}{os.environ['PATH']}")
    try:
        started = time.time()
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, name, acct_cluster.conf, jobs_dir, job_id,
                                   str(INTERVAL), str(WAIT)], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for job_id in ids]
        outputs = [p.communicate(timeout=WAIT + 120) for p in procs]
        ended = time.time()
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0 and "still waiting" in out, err
        calls = sorted(float(line.split()[0]) for line in log.read_text().splitlines())
        # Each process alone would poll every 0.25-5 s (its own watch loop): well over 100 calls.
        bound = (ended - started) / INTERVAL + 2
        assert 3 <= len(calls) <= bound, (len(calls), bound)
        gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
        assert min(gaps) >= INTERVAL - 0.5, gaps  # never two polls within one interval
        assert {submitor.get_job(j).state for j in ids} == {JobState.QUEUED}
    finally:
        acct_cluster.run("scancel", *sids)
        submitor.close()

"""Ten processes waiting on jobs of one real SLURM cluster share one poll per interval.

The jobs are held (``sbatch --hold``), so they stay pending for the whole test and cost the
cluster nothing. An ``squeue`` shim first on PATH (tests/shims.py) logs every call, then runs
the real squeue: the count is what SLURM really saw, whichever process ran it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from molq import Cluster, JobExecution, Submitor
from molq.model import JobState
from molq.store import JobStore
from shims import spawn_waiters

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROCESSES = 10
INTERVAL = 5.0
WAIT = 40.0


def test_ten_waiting_processes_run_one_squeue_per_interval(acct_cluster, squeue_shim, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    name = f"shared-{acct_cluster.name}"
    jobs_dir = str(tmp_path / "jobs")
    cluster = Cluster(name, "slurm", scheduler_options={"env": dict(acct_cluster.env), "extra_sbatch_args": ["--hold"]})
    submitor = Submitor(cluster, store=JobStore(url), jobs_dir=jobs_dir)
    ids = [submitor.submit_job(argv=["true"], execution=JobExecution(cwd=str(tmp_path))).job_id
           for _ in range(PROCESSES)]
    sids = [submitor.get_job(j).scheduler_job_id for j in ids]
    options = {"env": {"SLURM_CONF": acct_cluster.conf}, "poll_interval": INTERVAL, "poll_interval_max": INTERVAL}
    try:
        started = time.time()
        procs = spawn_waiters(url, name, "slurm", jobs_dir, ids, WAIT, options, squeue_shim.path_env())
        outputs = [p.communicate(timeout=WAIT + 120) for p in procs]
        ended = time.time()
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0 and "still waiting" in out, err
        calls = [start for start, _rc in squeue_shim.calls()]
        # Each process alone would poll every 0.25-5 s (its own watch loop): well over 100 calls.
        bound = (ended - started) / INTERVAL + 2
        assert 3 <= len(calls) <= bound, (len(calls), bound)
        gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
        assert min(gaps) >= INTERVAL - 0.5, gaps  # never two polls within one interval
        assert {submitor.get_job(j).state for j in ids} == {JobState.QUEUED}
    finally:
        acct_cluster.run("scancel", *sids)
        submitor.close()

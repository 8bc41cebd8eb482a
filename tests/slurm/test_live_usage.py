"""What a job used and why it ended, as the real SLURM accounting reports it (the ``molqacct``
cluster), read by molq itself: ``Submitor.refresh_jobs``/``handle.wait`` and the stored record.

A job that burns one CPU for 5 s shows a CPU efficiency near 100 %, one that sleeps near 0 %.
Such short jobs end from squeue's answer (the controller lists them for ``MinJobAge``, 300 s
here), which carries no usage: molq reads it from the refresh's one sacct call for every job
that ended, and from later refreshes' while accounting lags -- hence the few refreshes after
``wait()`` below, bounded by ``molq.engine.refresh.USAGE_TRIES``.
"""

from __future__ import annotations

import sys

import pytest
from molq import Cluster, EndCause, JobResources, JobScheduling, JobState, Submitor
from molq.engine.refresh import USAGE_TRIES
from molq.model import JobRecord
from waiting import until

pytestmark = pytest.mark.slurm

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def _with_usage(submitor: Submitor, job_ids: list[str]) -> list[JobRecord]:
    """The final records of ``job_ids`` once every one has its usage (refreshing meanwhile,
    no more often than molq gives up on it)."""
    tries = iter(range(USAGE_TRIES))

    def records() -> list[JobRecord] | None:
        got = [submitor.get_job(j) for j in job_ids]
        if all(r.usage is not None and r.usage.cpu_seconds is not None for r in got):
            return got
        if next(tries, None) is not None:
            submitor.refresh_jobs()
        return None

    got = until(records, timeout=60)
    assert got, [submitor.get_job(j).usage for j in job_ids]
    return got


def test_cpu_efficiency_of_a_busy_and_a_sleeping_job(acct_cluster, tmp_path) -> None:
    cluster = Cluster("usage-acct", "slurm", scheduler_options={"env": dict(acct_cluster.env)})
    submitor = Submitor(cluster, jobs_dir=str(tmp_path / "jobs"))
    res = JobResources(cpu_count=1, memory="256M")
    busy = submitor.submit_job(argv=[sys.executable, "-c", BURN.format(s=5)], resources=res)
    idle = submitor.submit_job(argv=["sleep", "5"], resources=res)
    code = submitor.submit_job(command="exit 3", resources=res)
    for handle in (busy, idle, code):
        assert handle.wait(timeout=120).is_terminal
    b, s, c = _with_usage(submitor, [h.job_id for h in (busy, idle, code)])
    assert b.state == JobState.SUCCEEDED and b.end_cause == EndCause.COMPLETED
    assert c.state == JobState.FAILED and c.exit_code == 3 and c.end_cause == EndCause.EXIT_CODE
    bu, su = b.usage, s.usage
    assert bu is not None and su is not None
    assert bu.cpus == 1 and bu.requested_memory_bytes == 256 << 20 and bu.nodes == acct_cluster.env.get(
        "MOLQ_TEST_SLURM_ACCT_NODE", bu.nodes)
    assert bu.elapsed_seconds is not None and bu.elapsed_seconds >= 5
    # The busy job burned 5 s of CPU (plus the interpreter's start); the sleeper next to none.
    assert bu.cpu_seconds is not None and 4.9 <= bu.cpu_seconds <= 7.0, bu
    busy_eff, idle_eff = bu.cpu_efficiency, su.cpu_efficiency
    assert busy_eff is not None and idle_eff is not None
    assert busy_eff == pytest.approx(bu.cpu_seconds / bu.elapsed_seconds)
    # Near 100 % on an idle node (5 s of CPU in a 5-6 s job); this machine is shared by several
    # test runs, so the busy job may wait for a core: only "far above the sleeper" is certain.
    assert busy_eff <= 1.05 and busy_eff > 10 * max(idle_eff, 0.005), (bu, su)
    assert idle_eff < 0.05, su
    submitor.close()


def test_an_array_uses_what_its_tasks_used_together(acct_cluster, tmp_path) -> None:
    """Three tasks burning 2 s of CPU each: the array's CPU time and core-walltime are their
    sums, its peak memory the largest task's (molq.usage.combine_usage)."""
    cluster = Cluster("usage-array", "slurm", scheduler_options={"env": dict(acct_cluster.env)})
    submitor = Submitor(cluster, jobs_dir=str(tmp_path / "jobs"))
    handle = submitor.submit_job(argv=[sys.executable, "-c", BURN.format(s=2)],
                                 resources=JobResources(cpu_count=1, memory="128M"),
                                 scheduling=JobScheduling(array_spec="1-3"))
    assert handle.wait(timeout=180).state == JobState.SUCCEEDED
    (record,) = _with_usage(submitor, [handle.job_id])
    usage = record.usage
    assert usage is not None and usage.cpus == 1 and usage.requested_memory_bytes == 128 << 20
    assert usage.cpu_seconds is not None and 3 * 1.9 <= usage.cpu_seconds <= 3 * 4.0, usage
    # Each task ran at least its 2 s: the array's core-walltime is at least their sum, and its
    # wall time (first start to last end) at least one task's.
    assert usage.core_seconds is not None and usage.core_seconds >= 3 * 2, usage
    assert usage.elapsed_seconds is not None and 2 <= usage.elapsed_seconds <= usage.core_seconds, usage
    assert usage.cpu_efficiency == pytest.approx(usage.cpu_seconds / usage.core_seconds)
    assert usage.max_rss_bytes is None or 0 < usage.max_rss_bytes < 128 << 20, usage
    submitor.close()

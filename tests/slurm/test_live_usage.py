"""What a job used and why it ended, as the real SLURM accounting reports it (the ``molqacct``
cluster): molq's own final-state command line (``SlurmDialect.terminal_argv``: one sacct for
all jobs, steps included) read by molq's own parser.

A job that burns one CPU for 5 s shows a CPU efficiency near 100 %, one that sleeps near 0 %.
(Through ``refresh_jobs`` such jobs usually end from squeue's answer, which carries no usage;
the accounting answer is read once the controller has forgotten them, after ``MinJobAge``,
which is 300 s here: too long for a test, hence the direct call.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from molq import Cluster, EndCause, JobResources, JobState, Submitor
from molq.transport import CommandResult
from molq_slurm.dialect import SlurmDialect

pytestmark = pytest.mark.slurm

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 5: pass\n"


def _sacct(acct_cluster, sids: list[str]) -> dict[str, object]:
    """molq's sacct for ``sids`` until accounting has every job's final record with CPU time."""
    dialect = SlurmDialect()
    argv = dialect.terminal_argv(sids, time.time() - 3600)
    assert argv is not None and argv[0] == "sacct"
    env = dict(os.environ, SLURM_CONF=acct_cluster.conf, SLURM_TIME_FORMAT="%s")
    deadline = time.monotonic() + 60
    while True:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        answer = dialect.parse_terminal(CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr), sids)
        done = {sid: st for sid, st in answer.statuses.items()
                if st.state.is_terminal and st.usage is not None and st.usage.cpu_seconds is not None}
        if len(done) == len(sids) or time.monotonic() > deadline:
            return done  # type: ignore[return-value]
        time.sleep(1)


def test_cpu_efficiency_of_a_busy_and_a_sleeping_job(acct_cluster, tmp_path) -> None:
    cluster = Cluster("usage-acct", "slurm", scheduler_options={"env": dict(acct_cluster.env)})
    submitor = Submitor(cluster, jobs_dir=str(tmp_path / "jobs"))
    res = JobResources(cpu_count=1, memory="256M")
    busy = submitor.submit_job(argv=[sys.executable, "-c", BURN], resources=res)
    idle = submitor.submit_job(argv=["sleep", "5"], resources=res)
    code = submitor.submit_job(command="exit 3", resources=res)
    for handle in (busy, idle, code):
        assert handle.wait(timeout=120).is_terminal
    sids = {h.job_id: submitor.get_job(h.job_id).scheduler_job_id or "" for h in (busy, idle, code)}
    got = _sacct(acct_cluster, list(sids.values()))
    b, s, c = (got[sids[h.job_id]] for h in (busy, idle, code))
    assert b.state == JobState.SUCCEEDED and b.end_cause == EndCause.COMPLETED
    assert c.state == JobState.FAILED and (c.end_cause or EndCause.EXIT_CODE) == EndCause.EXIT_CODE
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

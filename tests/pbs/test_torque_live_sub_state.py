"""Sub-state and rerunnable on real Torque-style commands (SLURM's ``slurm-wlm-torque``
wrappers): through ``Cluster("...", "pbs")`` and ``Submitor``, a job suspended with
``scontrol suspend`` reads as running + suspended (``qstat -f`` prints ``job_state = S``),
and a resumed one loses it."""

from __future__ import annotations

import os
import subprocess

import pytest
from molq import Cluster, JobState, Submitor, SubState
from molq.store import JobStore
from waiting import until

pytestmark = pytest.mark.slurm


def test_suspended_torque_job_has_the_suspended_sub_state(torque_options, tmp_path):
    env = dict(os.environ, **torque_options.env)
    sub = Submitor(Cluster("torque-live", "pbs", scheduler_options=torque_options),
                   store=JobStore(tmp_path / "jobs.db"), jobs_dir=str(tmp_path / "jobs"))
    handle = sub.submit_job(argv=["sleep", "120"])
    try:
        def refreshed():
            sub.refresh_jobs()
            return sub.get_job(handle.job_id)

        assert until(lambda: refreshed().state == JobState.RUNNING), "never started"
        sid = sub.get_job(handle.job_id).scheduler_job_id
        assert subprocess.run(["scontrol", "suspend", sid], env=env, timeout=30).returncode == 0
        record = until(lambda: (lambda r: r if r.sub_state else None)(refreshed()))
        assert record is not None and (record.state, record.sub_state) == (JobState.RUNNING, SubState.SUSPENDED)
        queue = {e.scheduler_job_id: e for e in sub.target.get_queue()}
        assert queue[sid].sub_state == SubState.SUSPENDED
        assert subprocess.run(["scontrol", "resume", sid], env=env, timeout=30).returncode == 0
        assert until(lambda: refreshed().sub_state is None)
    finally:
        sub.cancel_job(handle.job_id)
        sub.close()

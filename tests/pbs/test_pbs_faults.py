"""Fault trials through molq's public path (Cluster + Submitor) against the PBS Pro simulator,
whose jobs really run: the server stops answering while jobs end, and jobs are killed with
SIGKILL outside molq. Every job must end in its real final state, none LOST, none changed
while the server was silent."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from molq import Cluster, Submitor
from molq.model import JobState
from molq.store import JobStore
from pbssim_harness import wait_for


def test_outage_while_jobs_end_and_sigkill_outside_molq(pbs_sim, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MOLQ_HOME", str(tmp_path / "home"))
    cluster = Cluster("sim", "pbs", scheduler_options=pbs_sim.options())
    sub = Submitor(cluster, store=JobStore(tmp_path / "home" / "jobs.db"), jobs_dir=str(tmp_path / "jobs"))
    work = tmp_path / "work"
    work.mkdir()
    try:
        # (command, expected final state, expected exit code)
        plan = [(f"sleep 2; exit {code}", JobState.SUCCEEDED if code == 0 else JobState.FAILED, code)
                for code in (0, 3, 0, 7, 0, 1) * 3]
        handles = [sub.submit_job(command=cmd) for cmd, _s, _c in plan]
        killed = [sub.submit_job(command=f"echo $$ > {work}/pid{i}; sleep 60") for i in range(2)]
        sub.refresh_jobs()
        wait_for(lambda: all((work / f"pid{i}").exists() for i in range(2)), timeout=60)

        pbs_sim.set_outage("qstat")
        for i in range(2):  # killed outside molq, while nobody can ask the server
            os.killpg(os.getpgid(int((work / f"pid{i}").read_text())), signal.SIGKILL)
        before = {h.job_id: sub.get_job(h.job_id).state for h in handles + killed}
        deadline = time.monotonic() + 8  # the plain jobs end during the outage
        while time.monotonic() < deadline:
            sub.refresh_jobs()
        during = {h.job_id: sub.get_job(h.job_id).state for h in handles + killed}
        assert during == before, "nothing may change while the server does not answer"
        assert all(sub.store.get_internal("sim", j)["missing_count"] == 0 for j in during)

        pbs_sim.set_outage()

        def settled() -> bool:
            sub.refresh_jobs()
            return all(sub.get_job(h.job_id).is_terminal for h in handles + killed)

        wait_for(settled, timeout=60, interval=0.5)
        wrong = []
        for handle, (cmd, state, code) in zip(handles, plan):
            rec = sub.get_job(handle.job_id)
            if (rec.state, rec.exit_code) != (state, code):
                wrong.append((cmd, rec.state, rec.exit_code))
        for handle in killed:
            rec = sub.get_job(handle.job_id)
            if (rec.state, rec.exit_signal) != (JobState.FAILED, signal.SIGKILL):
                wrong.append(("sigkill", rec.state, rec.exit_signal))
        assert wrong == []
        assert not [h for h in handles + killed if sub.get_job(h.job_id).state is JobState.LOST]
    finally:
        sub.close()

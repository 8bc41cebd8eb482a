"""A process killed with SIGKILL at every step of the lifecycle loses and duplicates nothing.

Each case runs a small molq script in a child process that kills itself at one crash point
(``MOLQ_TEST_CRASH_AT``, see molq.engine.faults), then a fresh process-like Submitor on the same
store finishes the work. Every job appends its name to ``runs`` when its command completes, so
the counts show whether anything ran twice or never.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from molq import Cluster, JobState, Submitor
from molq.engine.faults import POINTS
from molq.store import JobStore

CHILD = r"""
import sys
from molq import Cluster, RetryPolicy, Submitor
from molq.model import JobExecution, RetryBackoff

tmp, scenario = sys.argv[1], sys.argv[2]
sub = Submitor(Cluster("crash", "local"), jobs_dir=tmp + "/jobs")
retry = RetryPolicy(max_attempts=3, backoff=RetryBackoff(mode="fixed", initial_seconds=0.1))
flaky = "if [ -e attempted ]; then true; else touch attempted; false; fi"
here = JobExecution(cwd=tmp)

def job(name, cmd="true", **kw):
    return sub.submit_job(command=f"{cmd} && echo {name} >> {tmp}/runs", **kw)

if scenario == "submit":
    job("A")
    sub.watch_jobs(timeout=60)
elif scenario == "cancel":
    h = sub.submit_job(command=f"sleep 30; echo A >> {tmp}/runs")
    sub.cancel_job(h.job_id)
elif scenario == "retry":
    job("A", cmd=flaky, retry=retry, execution=here)
    sub.watch_jobs(timeout=60)
elif scenario == "recover":  # a later process finds the work of a dead one
    sub.watch_jobs(timeout=60)
elif scenario == "hold":
    up = job("U", cmd=flaky, retry=retry, execution=here)
    job("D", after_success=[up.job_id])
    sub.watch_jobs(timeout=60)
print("no crash")
"""

SCENARIO = {
    "submit:after-insert": "submit",
    "submit:after-scheduler": "submit",
    "refresh:after-observe": "submit",
    "refresh:after-write": "submit",
    "cancel:after-command": "cancel",
    "retry:after-claim": "retry",
    "hold:after-claim": "hold",
    "adopt:after-find": "submit",
}

#: Points met only by a later process: first a crash that leaves work to recover.
BEFORE = {"adopt:after-find": "submit:after-scheduler"}


def test_every_crash_point_has_a_case():
    assert set(SCENARIO) == set(POINTS)


def _runs(tmp: Path) -> list[str]:
    path = tmp / "runs"
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_at_each_point_loses_and_duplicates_nothing(tmp_path, point, monkeypatch):
    monkeypatch.setenv("MOLQ_HOME", str(tmp_path / "home"))  # the same host spool as the child
    stages = [(SCENARIO[point], BEFORE[point]), ("recover", point)] if point in BEFORE else [(SCENARIO[point], point)]
    for scenario, at in stages:
        env = {**os.environ, "MOLQ_HOME": str(tmp_path / "home"), "MOLQ_TEST_CRASH_AT": at}
        child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), scenario], env=env,
                               capture_output=True, text=True, timeout=120)
        assert child.returncode == -9, f"the child did not reach {at}: {child.stdout}{child.stderr}"
    store = JobStore(f"sqlite:///{tmp_path}/home/jobs.db")
    sub = Submitor(Cluster("crash", "local"), store=store, jobs_dir=str(tmp_path / "jobs"))
    try:
        sub.watch_jobs(timeout=60)
        records = store.list_jobs("crash", include_terminal=True)
        assert records and all(r.is_terminal for r in records), [(r.job_id, r.state) for r in records]
        by_root: dict[str, list] = {}
        for r in records:
            by_root.setdefault(r.root_job_id, []).append(r)
        finals = {fam[-1].command_display.split("echo ")[-1].split()[0]: sorted(fam, key=lambda r: r.attempt)
                  for fam in by_root.values()}
        runs = _runs(tmp_path)
        assert all(runs.count(name) <= 1 for name in set(runs)), f"something ran twice: {runs}"
        if point == "submit:after-insert":
            (fam,) = finals.values()
            assert fam[-1].state == JobState.FAILED and "never ran" in fam[-1].failure_reason
            assert runs == []
        elif SCENARIO[point] == "submit":
            assert [r.state for r in finals["A"]] == [JobState.SUCCEEDED] and runs == ["A"]
        elif point == "cancel:after-command":
            assert [r.state for r in finals["A"]] == [JobState.CANCELLED] and runs == []
        elif point == "retry:after-claim":
            states = [r.state for r in finals["A"]]
            assert states[-1] == JobState.SUCCEEDED and runs == ["A"]
            # The attempt claimed by the dead process never ran and says so; none was lost.
            assert JobState.FAILED in states[1:-1] and "never ran" in finals["A"][1].failure_reason
        elif point == "hold:after-claim":
            assert finals["D"][-1].state == JobState.SUCCEEDED and finals["U"][-1].state == JobState.SUCCEEDED
            assert sorted(runs) == ["D", "U"]
    finally:
        sub.close()
        store.close()

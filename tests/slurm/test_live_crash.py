"""A submitter killed with SIGKILL at every step, on the real SLURM clusters.

The same crash points as tests/core/test_crash_points.py (``MOLQ_TEST_CRASH_AT``, see
molq.engine.faults), plus the two moments inside ``sbatch`` that no Python hook can reach: the
submitter dies while sbatch is still on its way to the controller (the job is accepted after
its submitter is gone), after sbatch accepted the job but before its answer was read, and while
it was writing the script to sbatch's stdin (sbatch submits the part it got). Those use a
stand-in ``sbatch`` (``binaries``) that kills its parent and runs the real sbatch.

A fresh Submitor on the same store then finishes the work. Each job appends its name to
``runs`` when its command completes; what SLURM still runs at the end is checked too. Counted
per case: jobs run twice, lost (ran or still running without a record saying so), stuck (not
final) and recorded with a wrong end. The goal is 0 for each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from molq import Cluster, JobState, Submitor
from molq.engine.faults import POINTS
from molq.model import JobRecord
from molq.store import JobStore
from waiting import wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CHILD = r"""
import sys
from molq import Cluster, RetryPolicy, Submitor
from molq.model import JobExecution, RetryBackoff

tmp, scenario, conf, sbatch = sys.argv[1:5]
options = {"env": {"SLURM_CONF": conf}}
if sbatch != "-":
    options["binaries"] = {"sbatch": sbatch}
if scenario == "pack":  # like jobs of one bulk submission packed into one array
    options["pack_bulk"] = True
sub = Submitor(Cluster("crash", "slurm", scheduler_options=options), jobs_dir=tmp + "/jobs")
retry = RetryPolicy(max_attempts=3, backoff=RetryBackoff(mode="fixed", initial_seconds=0.1))
flaky = "if [ -e attempted ]; then true; else touch attempted; false; fi"
here = JobExecution(cwd=tmp)

def job(name, cmd="true", **kw):
    return sub.submit_job(command=f"{cmd} && echo {name} >> {tmp}/runs", execution=here, **kw)

if scenario == "submit":
    job("A")
    sub.watch_jobs(timeout=90, poll_interval=0.3)
elif scenario == "submit-slow-job":  # a job that runs long enough to be stopped before it ends
    job("A", cmd="sleep 8")
    sub.watch_jobs(timeout=90, poll_interval=0.3)
elif scenario == "cancel":
    h = sub.submit_job(command=f"sleep 60; echo A >> {tmp}/runs", execution=here)
    sub.cancel_job(h.job_id)
elif scenario == "retry":
    job("A", cmd=flaky, retry=retry)
    sub.watch_jobs(timeout=90, poll_interval=0.3)
elif scenario == "hold":
    up = job("U", cmd=flaky, retry=retry)
    job("D", after_success=[up.job_id])
    sub.watch_jobs(timeout=90, poll_interval=0.3)
elif scenario == "pack":
    sub.submit_jobs([{"command": f"true && echo P{i} >> {tmp}/runs", "execution": here} for i in range(3)])
    sub.watch_jobs(timeout=90, poll_interval=0.3)
elif scenario == "recover":  # a later process finds the work of a dead one
    sub.watch_jobs(timeout=90, poll_interval=0.3)
print("no crash")
"""

# Stand-ins for sbatch: the script arrives on stdin once the submitter waits for the answer.
IN_FLIGHT = """#!/bin/sh
# The submitter dies; the request reaches the controller a moment later.
t="$0.$$"; cat > "$t"; kill -9 "$PPID"; sleep 1; {sbatch} "$@" < "$t" > "$t.out" 2>&1; rm -f "$t"
"""
ANSWERED = """#!/bin/sh
# The controller accepted the job; the submitter dies before it reads the answer.
t="$0.$$"; cat > "$t"; {sbatch} "$@" < "$t" > "$t.out" 2>&1; kill -9 "$PPID"; rm -f "$t"
"""
CUT_SHORT = """#!/bin/sh
# The submitter died while writing the script to sbatch: sbatch got only its first part.
t="$0.$$"; cat > "$t"; kill -9 "$PPID"; sed '/molq_rc=/,$d' "$t" | {sbatch} "$@" > "$t.out" 2>&1; rm -f "$t"
"""

#: case -> the stages run by successive processes: (scenario, crash point or None, sbatch stand-in)
CASES: dict[str, list[tuple[str, str | None, str | None]]] = {
    "submit:after-insert": [("submit", "submit:after-insert", None)],
    "sbatch:in-flight": [("submit", None, IN_FLIGHT)],
    "sbatch:answered": [("submit", None, ANSWERED)],
    "sbatch:cut-short": [("submit", None, CUT_SHORT)],
    "submit:after-scheduler": [("submit", "submit:after-scheduler", None)],
    "refresh:after-observe": [("submit", "refresh:after-observe", None)],
    "refresh:after-write": [("submit", "refresh:after-write", None)],
    "cancel:after-command": [("cancel", "cancel:after-command", None)],
    "retry:after-claim": [("retry", "retry:after-claim", None)],
    "hold:after-claim": [("hold", "hold:after-claim", None)],
    "adopt:after-find": [("submit", "submit:after-scheduler", None), ("recover", "adopt:after-find", None)],
    # A packed bulk submission: SLURM accepted the array, no id was stored (adoption gives
    # each job its own task), and a crash before the array was sent (each job never ran).
    "pack:after-scheduler": [("pack", "submit:after-scheduler", None)],
    "pack:after-insert": [("pack", "submit:after-insert", None)],
}

#: What each case must end with: job name -> (final state, times its command completed).
EXPECTED: dict[str, dict[str, tuple[JobState, int]]] = {
    "submit:after-insert": {"A": (JobState.FAILED, 0)},  # never reached SLURM; it says so
    "sbatch:cut-short": {"A": (JobState.FAILED, 0)},  # SLURM ran a part of the script: none of it ran
    "cancel:after-command": {"A": (JobState.CANCELLED, 0)},
    "hold:after-claim": {"U": (JobState.SUCCEEDED, 1), "D": (JobState.SUCCEEDED, 1)},
    "pack:after-scheduler": {f"P{i}": (JobState.SUCCEEDED, 1) for i in range(3)},
    "pack:after-insert": {f"P{i}": (JobState.FAILED, 0) for i in range(3)},
}
DEFAULT_EXPECTED = {"A": (JobState.SUCCEEDED, 1)}

#: Cases where accounting changes how recovery decides: run on both clusters.
BOTH_CLUSTERS = {"sbatch:in-flight", "sbatch:answered", "submit:after-scheduler", "adopt:after-find",
                 "pack:after-scheduler"}


def test_every_crash_point_has_a_case() -> None:
    assert {at for stages in CASES.values() for _, at, _ in stages if at} == set(POINTS)


def _params() -> list[object]:
    out: list[object] = []
    for case in CASES:
        out.append(pytest.param(case, "acct", id=f"{case}-acct"))
        if case in BOTH_CLUSTERS:
            out.append(pytest.param(case, "noacct", id=f"{case}-noacct"))
    return out


def _sacct_state(cluster, scheduler_id: str) -> str:
    """SLURM accounting's state of one job, or "" while accounting has no final answer yet."""
    proc = cluster.run("sacct", "-X", "-n", "-P", "-j", scheduler_id, "--format=State")
    state = proc.stdout.strip() if proc.returncode == 0 else ""
    return "" if state in ("", "PENDING", "RUNNING") else state


def _alive_tagged(cluster, tags: set[str]) -> list[str]:
    """SLURM jobs of this test that are not finished: (id, state) of those with our tags."""
    proc = cluster.run("squeue", "--noheader", "--me", "--states=PENDING,RUNNING,SUSPENDED,CONFIGURING",
                       "--Format=JobID:|,State:|,Comment:|")
    assert proc.returncode == 0, proc.stderr
    alive = []
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3 and parts[2] in tags:
            alive.append(f"{parts[0]} {parts[1]}")
    return alive


@pytest.mark.parametrize(("case", "which"), _params())
def test_a_crash_at_each_step_on_slurm_loses_and_duplicates_nothing(
    case: str, which: str, tmp_path: Path, acct_cluster, noacct_cluster
) -> None:
    cluster = acct_cluster if which == "acct" else noacct_cluster
    sbatch = shutil.which("sbatch")
    assert sbatch
    env = {**os.environ, "MOLQ_HOME": str(tmp_path / "home")}
    for n, (scenario, at, stand_in) in enumerate(CASES[case]):
        script = "-"
        if stand_in:
            path = tmp_path / f"sbatch-{n}"
            path.write_text(stand_in.replace("{sbatch}", sbatch))
            path.chmod(0o700)
            script = str(path)
        child_env = {**env, "MOLQ_TEST_CRASH_AT": at} if at else env
        child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), scenario, cluster.conf, script],
                               env=child_env, capture_output=True, text=True, timeout=150)
        assert child.returncode == -9, f"the child was not killed ({case}): {child.stdout}{child.stderr}"
    store = JobStore(f"sqlite:///{tmp_path}/home/jobs.db")
    sub = Submitor(Cluster("crash", "slurm", scheduler_options={"env": dict(cluster.env)}), store=store,
                   jobs_dir=str(tmp_path / "jobs"))
    try:
        stuck = 0
        try:
            sub.watch_jobs(timeout=90, poll_interval=0.3)
        except TimeoutError:
            pass
        records = store.list_jobs("crash", include_terminal=True)
        stuck = sum(not r.is_terminal for r in records)
        # A packed job's array carries its pack's tag (molq.batch.packing).
        tags = {f"{prefix}{r.job_id}" for r in records for prefix in ("molq-", "molq-pack-")}
        time.sleep(1.0)  # a job recorded final must not be running, nor finish now
        runs = (tmp_path / "runs").read_text().split() if (tmp_path / "runs").exists() else []
        alive = _alive_tagged(cluster, tags)
        finals: dict[str, JobRecord] = {}
        for r in sorted(records, key=lambda r: (r.root_job_id, r.attempt)):
            name = r.command_display.split("echo ")[-1].split()[0]
            finals[name] = r  # the latest attempt of each job
        expected = EXPECTED.get(case, DEFAULT_EXPECTED)
        twice = sum(runs.count(name) > 1 for name in set(runs))
        lost = len(alive) + sum(name not in finals for name in set(runs))
        wrong = 0
        for name, (state, times) in expected.items():
            rec = finals.get(name)
            if rec is None:
                lost += 1
                continue
            wrong += rec.state != state or runs.count(name) != times
        story = {n: (r.state.value, r.failure_reason) for n, r in finals.items()}
        print(f"{case} on {cluster.name}: ran twice {twice}, lost {lost}, stuck {stuck}, wrong end {wrong}")
        assert (twice, lost, stuck, wrong) == (0, 0, 0, 0), (case, story, runs, alive)
        if case == "submit:after-insert":
            assert "never ran" in (finals["A"].failure_reason or "")
        if case == "pack:after-scheduler":  # adopted: each job its own task of the one array
            sids = [finals[f"P{i}"].scheduler_job_id or "" for i in range(3)]
            assert sids == [f"{sids[0].split('_')[0]}_{i}" for i in range(3)], sids
    finally:
        tags = {f"{prefix}{r.job_id}" for r in store.list_jobs("crash", include_terminal=True)
                for prefix in ("molq-", "molq-pack-")}
        leftovers = [r.scheduler_job_id for r in store.list_jobs("crash") if r.scheduler_job_id]
        leftovers += [line.split()[0] for line in _alive_tagged(cluster, tags)]
        if leftovers:
            cluster.run("scancel", *leftovers)
        sub.close()
        store.close()


RANDOM_SUBMITTER = r"""
import sys
from molq import Cluster, Submitor
from molq.model import JobExecution
tmp, conf, trial = sys.argv[1:4]
sub = Submitor(Cluster("chaos", "slurm", scheduler_options={"env": {"SLURM_CONF": conf}}), jobs_dir=tmp + "/jobs")
sub.list_jobs()
print("ready", flush=True)
prev = None
for i in range(6):
    token = f"{trial}-{i}"
    h = sub.submit_job(argv=["sh", "-c", 'echo "$0" >> "$1"', token, tmp + "/runs"], metadata={"token": token},
                       after_success=[prev] if prev and i % 2 else None, execution=JobExecution(cwd=tmp))
    prev = h.job_id
    sub.refresh_jobs()
sub.watch_jobs(None, timeout=90, poll_interval=0.3)
"""


@pytest.mark.parametrize("which", ["acct", "noacct"])
def test_random_sigkills_of_slurm_submitters_never_run_a_job_twice_nor_record_a_wrong_end(
    which: str, tmp_path: Path, acct_cluster, noacct_cluster
) -> None:
    import random

    cluster = acct_cluster if which == "acct" else noacct_cluster
    rng = random.Random(1313)
    env = {**os.environ, "MOLQ_HOME": str(tmp_path / "home")}
    trials = 6
    for trial in range(trials):
        proc = subprocess.Popen([sys.executable, "-c", RANDOM_SUBMITTER, str(tmp_path), cluster.conf, f"t{trial}"],
                                env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.5))  # somewhere in its submissions and refreshes
        proc.kill()
        proc.wait()
    store = JobStore(f"sqlite:///{tmp_path}/home/jobs.db")
    # A job whose submitter died after creating its directory may have an sbatch still on its
    # way: "never ran" waits for the command timeout (molq.engine.adopt.in_flight); 10 s, not 60.
    options = {"env": dict(cluster.env), "command_timeout": 10}
    sub = Submitor(Cluster("chaos", "slurm", scheduler_options=options), store=store, jobs_dir=str(tmp_path / "jobs"))
    try:
        try:
            sub.watch_jobs(None, timeout=120, poll_interval=0.3)
        except TimeoutError:
            pass
        records = store.list_jobs("chaos", include_terminal=True)
        time.sleep(1.0)
        runs = (tmp_path / "runs").read_text().split() if (tmp_path / "runs").exists() else []
        alive = _alive_tagged(cluster, {f"molq-{r.job_id}" for r in records})
        tokens = {r.metadata["token"] for r in records}
        twice = sum(runs.count(t) > 1 for t in set(runs))
        lost = len(alive) + len(set(runs) - tokens)
        stuck = sum(not r.is_terminal for r in records)
        wrong = 0
        for r in records:
            n = runs.count(r.metadata["token"])
            if r.state == JobState.SUCCEEDED:
                wrong += n != 1
            elif r.state == JobState.FAILED:
                # Never ran (interrupted, or its dependency can never be satisfied).
                wrong += n != 0
            elif r.is_terminal:
                wrong += 1
        print(f"random kills on {cluster.name}: {trials} trials, {len(records)} jobs, {len(runs)} runs: "
              f"ran twice {twice}, lost {lost}, stuck {stuck}, wrong end {wrong}")
        story = [(r.metadata["token"], r.state.value, r.failure_reason) for r in records]
        assert records and (twice, lost, stuck, wrong) == (0, 0, 0, 0), (story, runs, alive)
    finally:
        leftovers = [r.scheduler_job_id for r in store.list_jobs("chaos") if r.scheduler_job_id]
        if leftovers:
            cluster.run("scancel", *leftovers)
        sub.close()
        store.close()


SLOW_SBATCH = """#!/bin/sh
# sbatch that takes a while to answer, as a busy controller does.
t="$0.$$"; cat > "$t"; sleep 2; {sbatch} "$@" < "$t"; s=$?; rm -f "$t"; exit $s
"""


def test_a_cancel_racing_a_slow_sbatch_cancels_the_job_slurm_accepted(tmp_path: Path, acct_cluster) -> None:
    sbatch = shutil.which("sbatch")
    assert sbatch
    stand_in = tmp_path / "slow-sbatch"
    stand_in.write_text(SLOW_SBATCH.replace("{sbatch}", sbatch))
    stand_in.chmod(0o700)
    env = {**os.environ, "MOLQ_HOME": str(tmp_path / "home")}
    # The job sleeps before it writes: on an idle cluster an instant job could run to its end
    # between SLURM's accept and the cancel, and then "it never ran" would not be the truth.
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), "submit-slow-job", acct_cluster.conf,
                              str(stand_in)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = JobStore(f"sqlite:///{tmp_path}/home/jobs.db")
    sub = Submitor(Cluster("crash", "slurm", scheduler_options={"env": dict(acct_cluster.env)}), store=store,
                   jobs_dir=str(tmp_path / "jobs"))
    try:
        deadline = time.monotonic() + 30
        while not (records := store.list_jobs("crash", include_terminal=True)):
            assert time.monotonic() < deadline, "the child never stored its job"
            time.sleep(0.05)
        (record,) = records
        assert record.state == JobState.CREATED  # sbatch is still on its way
        sub.cancel_job(record.job_id)  # waits for the submission, then cancels what SLURM accepted
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        final = store.get_job("crash", record.job_id)
        time.sleep(1.0)
        runs = (tmp_path / "runs").read_text().split() if (tmp_path / "runs").exists() else []
        alive = _alive_tagged(acct_cluster, {f"molq-{record.job_id}"})
        assert final.scheduler_job_id and final.state == JobState.CANCELLED, (final.state, final.failure_reason)
        assert runs == [] and alive == []
        # SLURM's own word agrees: the job it accepted ended cancelled.
        slurm_says = wait_for(lambda: _sacct_state(acct_cluster, final.scheduler_job_id), timeout=30,
                              what="accounting to record the end")
        assert slurm_says.startswith("CANCELLED"), slurm_says
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        leftovers = [r.scheduler_job_id for r in store.list_jobs("crash") if r.scheduler_job_id]
        if leftovers:
            acct_cluster.run("scancel", *leftovers)
        sub.close()
        store.close()

"""Real daemon faults on the test clusters: slurmdbd down longer than MinJobAge, slurmctld
stopped and restarted, slurmctld frozen with SIGSTOP.

These stop or freeze daemons other people's tests use, so they run only when asked for::

    . /var/lib/molq-test/env.sh
    MOLQ_RUN_FAULT_TESTS=1 .venv/bin/python -m pytest tests/slurm/test_live_faults.py -m "slurm and slow" -x -q

Nobody else may use the clusters meanwhile. The slurmdbd test takes MinJobAge + ~2 minutes
(MinJobAge is 300 s on the test clusters: about 7 minutes); the two slurmctld tests about a
minute each. Every test restarts what it stopped, even when it fails.

What each checks: jobs are submitted through ``Submitor(Cluster(..., "slurm"))``; their
commands wait for gate files this test creates, so which job ends during the fault is decided
here. During the fault refreshes must change nothing that the scheduler did not prove (no job
LOST, no final state but the real one); after it, every job reaches the final state SLURM
itself records (sacct, or squeue while the controller remembers the job), exit code included.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from molq import Cluster, JobExecution, Submitor
from molq.model import JobRecord, JobState

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("MOLQ_RUN_FAULT_TESTS") != "1",
                       reason="stops shared SLURM daemons: set MOLQ_RUN_FAULT_TESTS=1 to run"),
]

SLURM_SH = Path(__file__).resolve().parents[1] / "services" / "slurm.sh"
STATE_DIR = Path(os.environ.get("MOLQ_TEST_DIR", "/var/lib/molq-test")) / "slurm"

#: A client talking to a dead or frozen daemon retries for MessageTimeout; molq cuts it short.
COMMAND_TIMEOUT = 3.0
RETRY_ATTEMPTS = 2
RETRY_DELAY = 0.5
REFRESH_BOUND = RETRY_ATTEMPTS * COMMAND_TIMEOUT + RETRY_DELAY + 3.0

#: SLURM state (sacct/squeue long name, first word) -> the record molq must end with.
TRUTH = {
    "COMPLETED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMED_OUT,
    "OUT_OF_MEMORY": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
}


def _services(action: str, *args: str) -> None:
    proc = subprocess.run(["bash", str(SLURM_SH), action, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"slurm.sh {action} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


def _pid(cluster: str, daemon: str) -> int:
    return int((STATE_DIR / cluster / "run" / f"{daemon}.pid").read_text().split()[0])


def _submitor(slurm_cluster, tmp_path: Path, label: str) -> Submitor:
    cluster = Cluster(
        f"{label}-{slurm_cluster.name}",
        "slurm",
        scheduler_options={
            "env": dict(slurm_cluster.env),
            "command_timeout": COMMAND_TIMEOUT,
            "retry_attempts": RETRY_ATTEMPTS,
            "retry_initial_delay": RETRY_DELAY,
        },
    )
    return Submitor(cluster, jobs_dir=str(tmp_path / "jobs"))


def _gated(gate: Path, then: str) -> str:
    return f"while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.2; done; {then}"


def _wait_all(submitor: Submitor, ids: list[str], wanted: JobState, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        submitor.refresh_jobs()
        states = {j: submitor.get_job(j).state for j in ids}
        if all(s == wanted for s in states.values()):
            return
        assert time.monotonic() < deadline, f"not all {wanted}: {states}"
        time.sleep(0.5)


def _min_job_age(slurm_cluster) -> float:
    proc = slurm_cluster.run("scontrol", "show", "config")
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MinJobAge":
            return float(value.strip().split()[0])
    return 300.0


def _sacct_truth(slurm_cluster, sids: list[str]) -> dict[str, tuple[str, str]]:
    """SLURM accounting's final word: scheduler id -> (state, ExitCode), latest record."""
    proc = slurm_cluster.run("sacct", "--parsable2", "--noheader", "--allocations", "--jobs=" + ",".join(sids),
                             "--format=JobID,State,ExitCode", timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in proc.stdout.splitlines():
        sid, state, code = line.split("|")[:3]
        out[sid] = (state.split()[0], code)
    return out


def _assert_matches_slurm(submitor: Submitor, ids: list[str], truth: dict[str, tuple[str, str]],
                          exit_codes: dict[str, int | None]) -> None:
    wrong = []
    for job_id in ids:
        record: JobRecord = submitor.get_job(job_id)
        state, _code = truth[record.scheduler_job_id or ""]
        history = [t.new_state for t in submitor.get_transitions(job_id)]
        finals = [s for s in history if s.is_terminal]
        ok = record.state == TRUTH.get(state) and finals == [record.state] and JobState.LOST not in history
        if exit_codes.get(job_id) is not None:
            ok = ok and record.exit_code == exit_codes[job_id]
        if not ok:
            wrong.append((job_id, record.scheduler_job_id, state, record.state, record.exit_code, history))
    assert not wrong, wrong


def _cleanup(submitor: Submitor, slurm_cluster, *gates: Path) -> None:
    for gate in gates:
        gate.touch()
    leftovers = [r.scheduler_job_id for r in submitor.list_jobs() if r.scheduler_job_id]
    if leftovers:
        slurm_cluster.run("scancel", *leftovers)


def test_slurmdbd_down_longer_than_min_job_age(acct_cluster, tmp_path: Path) -> None:
    """slurmdbd stopped while 20 jobs end -- 5 of them SIGKILLed outside molq, so no exit-code
    file -- and kept down longer than MinJobAge, so slurmctld forgets them. Accounting knows
    their end once it is back: 0 LOST, 0 wrong, all resolved after it returns."""
    submitor = _submitor(acct_cluster, tmp_path, "dbd")
    execution = JobExecution(cwd=str(tmp_path))
    gate = tmp_path / "gate"
    codes = {i: (0 if i % 3 == 0 else i % 5 + 1) for i in range(15)}
    ids = [submitor.submit_job(command=_gated(gate, f"exit {codes[i]}"), execution=execution).job_id for i in range(15)]
    killed = [submitor.submit_job(command="sleep 3000", execution=execution).job_id for _ in range(5)]
    every = ids + killed
    outage = _min_job_age(acct_cluster) + 90
    try:
        _wait_all(submitor, every, JobState.RUNNING)
        os.kill(_pid(acct_cluster.name, "slurmdbd"), signal.SIGTERM)
        try:
            deadline = time.monotonic() + 30
            while acct_cluster.run("sacct", "--noheader", "--jobs=1").returncode == 0:
                assert time.monotonic() < deadline, "slurmdbd did not stop"
                time.sleep(0.5)
            gate.touch()
            for job_id in killed:
                # Kills the batch shell and the wrapper outright: no trap, no exit-code file.
                acct_cluster.run("scancel", "--signal=KILL", "--full", submitor.get_job(job_id).scheduler_job_id or "")
            end = time.monotonic() + outage
            while time.monotonic() < end:
                started = time.monotonic()
                submitor.refresh_jobs()
                assert time.monotonic() - started < REFRESH_BOUND
                for job_id in every:
                    assert submitor.get_job(job_id).state != JobState.LOST, job_id
                time.sleep(10)
        finally:
            _services("up")  # starts slurmdbd again (and anything else that is missing)
        finals = {r.job_id: r for r in submitor.watch_jobs(every, timeout=180, poll_interval=1.0)}
        time.sleep(3)  # slurmctld hands what it kept for slurmdbd over asynchronously
        truth = _sacct_truth(acct_cluster, [finals[j].scheduler_job_id or "" for j in every])
    finally:
        _cleanup(submitor, acct_cluster, gate)
    _assert_matches_slurm(submitor, every, truth, {ids[i]: codes[i] for i in range(15)})
    submitor.close()


def test_slurmctld_stopped_and_restarted_while_jobs_run(slurm_cluster, tmp_path: Path) -> None:
    submitor = _submitor(slurm_cluster, tmp_path, "ctld")
    execution = JobExecution(cwd=str(tmp_path))
    during, after = tmp_path / "during", tmp_path / "after"
    early = {submitor.submit_job(command=_gated(during, f"exit {c}"), execution=execution).job_id: c for c in (0, 3)}
    late = {submitor.submit_job(command=_gated(after, f"exit {c}"), execution=execution).job_id: c for c in (0, 4)}
    every = [*early, *late]
    try:
        _wait_all(submitor, every, JobState.RUNNING)
        before = {j: submitor.get_job(j).state for j in every}
        _services("stop-ctld", slurm_cluster.name)
        try:
            during.touch()
            time.sleep(5)
            for _ in range(3):
                started = time.monotonic()
                submitor.refresh_jobs()
                assert time.monotonic() - started < REFRESH_BOUND
            # The controller cannot answer: nothing changes, although the early jobs ended.
            assert {j: submitor.get_job(j).state for j in every} == before
        finally:
            _services("start-ctld", slurm_cluster.name)
        after.touch()
        finals = {r.job_id: r for r in submitor.watch_jobs(every, timeout=120, poll_interval=0.5)}
    finally:
        _cleanup(submitor, slurm_cluster, during, after)
    for job_id, code in {**early, **late}.items():
        record = finals[job_id]
        assert (record.state, record.exit_code) == (JobState.SUCCEEDED if code == 0 else JobState.FAILED, code)
        assert JobState.LOST not in [t.new_state for t in submitor.get_transitions(job_id)]
    submitor.close()


def test_slurmctld_frozen_with_sigstop(slurm_cluster, tmp_path: Path) -> None:
    """A frozen controller accepts connections and never answers: refreshes time out within
    molq's bound and change nothing; after SIGCONT everything resolves."""
    submitor = _submitor(slurm_cluster, tmp_path, "frozen")
    execution = JobExecution(cwd=str(tmp_path))
    gate = tmp_path / "gate"
    jobs = {submitor.submit_job(command=_gated(gate, f"exit {c}"), execution=execution).job_id: c for c in (0, 2, 5)}
    every = list(jobs)
    pid = _pid(slurm_cluster.name, "slurmctld")
    try:
        _wait_all(submitor, every, JobState.RUNNING)
        before = {j: submitor.get_job(j).state for j in every}
        os.kill(pid, signal.SIGSTOP)
        try:
            gate.touch()
            time.sleep(3)
            for _ in range(3):
                started = time.monotonic()
                submitor.refresh_jobs()
                assert time.monotonic() - started < REFRESH_BOUND
            assert {j: submitor.get_job(j).state for j in every} == before
            for job_id in every:
                assert submitor.store.get_internal(submitor.cluster_name, job_id)["missing_count"] == 0
        finally:
            os.kill(pid, signal.SIGCONT)
        finals = {r.job_id: r for r in submitor.watch_jobs(every, timeout=120, poll_interval=0.5)}
    finally:
        _cleanup(submitor, slurm_cluster, gate)
    for job_id, code in jobs.items():
        record = finals[job_id]
        assert (record.state, record.exit_code) == (JobState.SUCCEEDED if code == 0 else JobState.FAILED, code)
    submitor.close()

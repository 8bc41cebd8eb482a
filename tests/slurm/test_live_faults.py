"""Real daemon faults on the test clusters: slurmdbd down longer than MinJobAge, slurmctld
stopped and restarted, slurmctld frozen with SIGSTOP.

These stop or freeze daemons other people's tests use. They run in the normal (serial) suite
and hold the lock the SLURM tests share (``/tmp/molq-slurm.lock``, or ``$MOLQ_SLURM_LOCK``)
exclusively while they run: they take it themselves, or run under a caller that holds it::

    . /var/lib/molq-test/env.sh
    CI=true flock -x /tmp/molq-slurm.lock .venv/bin/python -m pytest tests/slurm/test_live_faults.py -x -q

Under a caller holding the lock shared they cannot take it (nor stop anything safely) and
fail with CI=true, skip otherwise. After every test, passed or failed, a fixture thaws what
it froze, restarts what is missing with tests/services/slurm.sh and waits until both clusters
(and accounting) answer again, so the tests after them see healthy clusters. The slurmdbd test
takes about MinJobAge + 1 minute (MinJobAge is 300 s on the test clusters), the others well
under a minute each.

What each checks: jobs are submitted through ``Submitor(Cluster(..., "slurm"))``; their
commands wait for gate files this test creates, so which job ends during the fault is decided
here. During the fault refreshes must change nothing that the scheduler did not prove (no job
LOST, no final state but the real one); after it, every job reaches the final state SLURM
itself records (sacct, or squeue while the controller remembers the job), exit code included.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from molq import Cluster, JobExecution, Submitor
from molq.model import JobRecord, JobState

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM_SH = Path(__file__).resolve().parents[1] / "services" / "slurm.sh"
STATE_DIR = Path(os.environ.get("MOLQ_TEST_DIR", "/var/lib/molq-test")) / "slurm"
LOCK_FILE = Path(os.environ.get("MOLQ_SLURM_LOCK", "/tmp/molq-slurm.lock"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

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


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def _lock_held_by_caller(path: Path) -> str | None:
    """"WRITE"/"READ" when this process or one of its ancestors holds ``path``'s flock."""
    inode = os.stat(path).st_ino
    mine = _ancestors()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}") \
                and fields[4].isdigit() and int(fields[4]) in mine:
            return fields[3]
    return None


@pytest.fixture(scope="module")
def exclusive_clusters() -> Iterator[None]:
    """Nobody else's SLURM test runs while these stop daemons: hold the lock exclusively."""
    LOCK_FILE.touch(exist_ok=True)
    held = _lock_held_by_caller(LOCK_FILE)
    if held == "WRITE":
        yield  # the caller took the exclusive lock for us
        return
    if held == "READ":
        message = (f"the fault tests stop shared SLURM daemons and need {LOCK_FILE} exclusively, but this "
                   f"run holds it shared: run them under `flock -x {LOCK_FILE}` (or with no lock)")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with open(LOCK_FILE) as handle:
        # Blocking, like `flock -x`: polling with LOCK_NB starves while shared holders overlap.
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _answers(conf: str, accounting: bool) -> bool:
    """Whether the cluster of ``conf`` answers again: controller, queue and accounting."""
    env = dict(os.environ, SLURM_CONF=conf)

    def ok(*argv: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            return None

    ping = ok("scontrol", "ping")
    if ping is None or ping.returncode != 0 or "is UP" not in ping.stdout:
        return False
    queue = ok("squeue", "--noheader", "--user=root")
    if queue is None or queue.returncode != 0:
        return False
    if accounting:
        acct = ok("sacct", "--noheader", "--jobs=1")
        return acct is not None and acct.returncode == 0 and not acct.stderr.strip()
    return True


@pytest.fixture(autouse=True)
def restored_daemons(exclusive_clusters: None) -> Iterator[None]:
    """After each test, whatever happened: every daemon running and answering again."""
    yield
    for name in ("molqacct", "molqnoacct"):
        try:
            os.kill(_pid(name, "slurmctld"), signal.SIGCONT)  # harmless when not frozen
        except (OSError, ValueError):
            pass
    _services("up")
    confs = [(os.environ.get("MOLQ_TEST_SLURM_ACCT_CONF", str(STATE_DIR / "molqacct" / "slurm.conf")), True),
             (os.environ.get("MOLQ_TEST_SLURM_NOACCT_CONF", str(STATE_DIR / "molqnoacct" / "slurm.conf")), False)]
    deadline = time.monotonic() + 120
    for conf, accounting in confs:
        while not _answers(conf, accounting):
            assert time.monotonic() < deadline, f"the cluster of {conf} does not answer after the fault test"
            time.sleep(1.0)


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


def _wrapper_pid(submitor: Submitor, job_id: str) -> int:
    """The pid of the wrapper's shell (the batch script) of a running job."""
    record = submitor.get_job(job_id)
    started = Path(str(record.job_dir)) / "started"
    return int(started.read_text().split()[0])


def _controller_knows(slurm_cluster, sid: str) -> bool:
    proc = slurm_cluster.run("scontrol", "show", "job", "-o", sid)
    return proc.returncode == 0 and f"JobId={sid} " in proc.stdout


def test_slurmdbd_down_longer_than_min_job_age(acct_cluster, tmp_path: Path) -> None:
    """slurmdbd stopped while 20 jobs end -- 5 of them SIGKILLed outside molq, so no exit-code
    file -- and kept down until slurmctld has forgotten them (MinJobAge). One store refreshes
    all along; the other looks only once the controller has forgotten its jobs, so for its
    killed jobs no source can say anything until accounting is back. Accounting knows their
    end once it returns: 0 LOST, 0 wrong, all resolved after it returns."""
    seen = _submitor(acct_cluster, tmp_path / "seen", "dbd-seen")
    unseen = _submitor(acct_cluster, tmp_path / "unseen", "dbd-unseen")
    execution = JobExecution(cwd=str(tmp_path))
    gate = tmp_path / "gate"
    killed = {sub: [sub.submit_job(command="sleep 3000", execution=execution).job_id for _ in range(n)]
              for sub, n in ((seen, 2), (unseen, 3))}
    codes: dict[str, int] = {}
    every = {sub: list(killed[sub]) for sub in (seen, unseen)}
    for sub, n in ((seen, 10), (unseen, 5)):
        for i in range(n):
            code = 0 if i % 3 == 0 else i % 5 + 1
            job_id = sub.submit_job(command=_gated(gate, f"exit {code}"), execution=execution).job_id
            codes[job_id] = code
            every[sub].append(job_id)
    assert sum(map(len, every.values())) == 20
    min_age = _min_job_age(acct_cluster)
    try:
        # The node runs 16 one-core jobs at once: the killed ones run, some gated ones may
        # still wait and start during the outage.
        deadline = time.monotonic() + 90
        while True:
            for sub in (seen, unseen):
                sub.refresh_jobs()
            states = {j: sub.get_job(j).state for sub in every for j in every[sub]}
            if all(states[j] == JobState.RUNNING for sub in killed for j in killed[sub]) and \
                    all(states[j] in (JobState.RUNNING, JobState.QUEUED) for j in codes):
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.5)
        os.kill(_pid(acct_cluster.name, "slurmdbd"), signal.SIGTERM)
        try:
            deadline = time.monotonic() + 30
            while acct_cluster.run("sacct", "--noheader", "--jobs=1").returncode == 0:
                assert time.monotonic() < deadline, "slurmdbd did not stop"
                time.sleep(0.5)
            down_at = time.monotonic()
            gate.touch()
            for sub in killed:
                for job_id in killed[sub]:
                    # SIGKILL the wrapper's shell itself (the batch script; its pid is in the
                    # job's `started` file): no trap, no exit-code file, and SLURM ends the job
                    # FAILED 0:9. (`scancel --signal=KILL --full` may reach the command first
                    # and let the wrapper record its end.)
                    os.kill(_wrapper_pid(sub, job_id), signal.SIGKILL)
            unseen_sids = [unseen.get_job(j).scheduler_job_id or "" for j in every[unseen]]
            forgotten = False
            end = down_at + min_age + 150
            while time.monotonic() < end:
                if not forgotten:
                    forgotten = not any(_controller_knows(acct_cluster, sid) for sid in unseen_sids)
                    if forgotten:
                        end = min(end, time.monotonic() + 25)  # a few looks with nobody knowing them
                for sub in (seen, unseen) if forgotten else (seen,):
                    started = time.monotonic()
                    sub.refresh_jobs()
                    assert time.monotonic() - started < REFRESH_BOUND
                    for job_id in every[sub]:
                        assert sub.get_job(job_id).state != JobState.LOST, job_id
                if forgotten:
                    for job_id in killed[unseen]:
                        # Accounting failed: that is no evidence, not "unknown".
                        record = unseen.get_job(job_id)
                        assert not record.is_terminal, (record.state, record.raw_state, record.failure_reason)
                        assert unseen.store.get_internal(unseen.cluster_name, job_id)["missing_count"] == 0
                time.sleep(5)
            assert forgotten, f"slurmctld still knows {unseen_sids} {min_age:.0f} s + 150 s after they ended"
            assert time.monotonic() - down_at > min_age
        finally:
            _services("up")  # starts slurmdbd again (and anything else that is missing)
        finals = {}
        for sub in (seen, unseen):
            finals.update({r.job_id: r for r in sub.watch_jobs(every[sub], timeout=180, poll_interval=1.0)})
        time.sleep(3)  # slurmctld hands what it kept for slurmdbd over asynchronously
        truth = _sacct_truth(acct_cluster, [finals[j].scheduler_job_id or "" for j in finals])
    finally:
        for sub in (seen, unseen):
            _cleanup(sub, acct_cluster, gate)
    for sub in (seen, unseen):
        _assert_matches_slurm(sub, every[sub], truth, {j: c for j, c in codes.items() if j in every[sub]})
        sub.close()


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


#: The politeness trial: waiting processes, the outage, the shared interval and the breaker.
WAITERS = 5
OUTAGE = 120.0
POLITE_INTERVAL = 5.0
BACKOFF = (5.0, 40.0)


def test_two_minute_outage_costs_a_few_commands_and_no_burst_on_recovery(
        acct_cluster, squeue_shim, tmp_path: Path) -> None:
    """Five processes wait on held jobs of one cluster while its controller is down for two
    minutes. Every squeue they run goes through a counting shim: during the outage the circuit
    breaker spaces the failing polls out (doubling pauses, whichever process probes), and after
    the restart they poll once per interval in total again -- no burst of catching up."""
    from molq.engine.shared_poll import pace_summary
    from molq.store import JobStore
    from shims import spawn_waiters

    url = f"sqlite:///{tmp_path}/jobs.db"
    name = f"polite-{acct_cluster.name}"
    jobs_dir = str(tmp_path / "jobs")
    options = {"env": dict(acct_cluster.env), "command_timeout": COMMAND_TIMEOUT, "retry_attempts": RETRY_ATTEMPTS,
               "retry_initial_delay": RETRY_DELAY, "poll_interval": POLITE_INTERVAL,
               "poll_interval_max": POLITE_INTERVAL, "backoff_initial": BACKOFF[0], "backoff_max": BACKOFF[1]}
    submitor = Submitor(Cluster(name, "slurm", scheduler_options={**options, "extra_sbatch_args": ["--hold"]}),
                        store=JobStore(url), jobs_dir=jobs_dir)
    ids = [submitor.submit_job(argv=["true"], execution=JobExecution(cwd=str(tmp_path))).job_id
           for _ in range(WAITERS)]
    sids = [submitor.get_job(j).scheduler_job_id or "" for j in ids]
    settle, after = 15.0, 75.0
    procs = spawn_waiters(url, name, "slurm", jobs_dir, ids, settle + OUTAGE + after, options, squeue_shim.path_env())
    try:
        time.sleep(settle)
        stopped = time.time()
        _services("stop-ctld", acct_cluster.name)
        try:
            time.sleep(OUTAGE / 2)
            said = pace_summary(submitor.store, name) or ""
            assert "pause" in said or "fail" in said, said  # what `molq daemon status` shows
            time.sleep(stopped + OUTAGE - time.time())
        finally:
            restarted = time.time()
            _services("start-ctld", acct_cluster.name)
        outputs = [p.communicate(timeout=settle + OUTAGE + after + 120) for p in procs]
    finally:
        for p in procs:
            p.kill()
        acct_cluster.run("scancel", *sids)
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0 and "still waiting" in out, err

    calls = squeue_shim.calls()
    during = [(t, rc) for t, rc in calls if stopped + 1 < t < restarted]
    recovered = [t for t, rc in calls if t > restarted and rc == 0]
    assert recovered, calls
    first_ok = recovered[0]
    # Unshared and unbroken, five processes would have run over a hundred failing squeue calls
    # in two minutes; the breaker allows one failing poll (RETRY_ATTEMPTS calls) per pause, the
    # pause doubling from BACKOFF[0] up to BACKOFF[1].
    pauses, pause, spent = 0, BACKOFF[0], 0.0
    while spent < OUTAGE:
        pauses += 1
        spent += pause + RETRY_ATTEMPTS * COMMAND_TIMEOUT
        pause = min(pause * 2, BACKOFF[1])
    assert 1 <= len(during) <= RETRY_ATTEMPTS * (pauses + 1), (len(during), during)
    assert all(rc != 0 for _, rc in during), during
    # The probe finds the controller within one pause of the restart ...
    assert first_ok - restarted <= BACKOFF[1] + RETRY_ATTEMPTS * COMMAND_TIMEOUT + POLITE_INTERVAL, calls
    # ... and from then on the five processes together poll once per interval: no burst.
    later = [t for t, _ in calls if t >= first_ok]
    gaps = [b - a for a, b in zip(later, later[1:], strict=False)]
    assert gaps and min(gaps) >= POLITE_INTERVAL - 0.5, gaps
    assert len(later) <= (later[-1] - first_ok) / POLITE_INTERVAL + 2, later
    print(f"\n{WAITERS} waiting processes, {OUTAGE:.0f} s outage: {len(during)} squeue calls during it, "
          f"first success {first_ok - restarted:.1f} s after the restart, then {len(later)} calls in "
          f"{later[-1] - first_ok:.0f} s (smallest gap {min(gaps):.1f} s)")
    for job_id in ids:  # the outage decided nothing about the jobs
        assert submitor.get_job(job_id).state == JobState.QUEUED
        assert JobState.LOST not in [t.new_state for t in submitor.get_transitions(job_id)]
    submitor.close()

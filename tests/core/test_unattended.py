"""Jobs advance with nobody watching, proven with real processes: a script submits through the
Python API and exits; the local spool starts plain dependents itself (no molq process at all),
and a job with a retry policy gets a daemon started on demand, which submits the retry on time
and leaves once no work is left."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from molq import Cluster, JobState, Submitor
from waiting import wait_for


def run_script(code: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a new interpreter, with daemons on demand allowed (tests turn them off)."""
    env = dict(os.environ, MOLQ_HOME=str(home))
    env.pop("MOLQ_AUTO_DAEMON", None)
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


def molq_processes(home: Path, python_only: bool = False) -> list[int]:
    """Live processes of this test's molq home running molq (a daemon, a spool pass, a job's
    wrapper); with ``python_only``, only Python ones (a daemon, a submitter)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if python_only and b"python" not in cmdline:
            continue
        if state != "Z" and b"molq" in cmdline and f"MOLQ_HOME={home}\0".encode() in environ:
            found.append(int(pid))
    return found


def latest(sub: Submitor, roots: list[str]) -> dict[str, object]:
    """The latest attempt of each root as stored (nothing refreshed by this process)."""
    return sub.store.latest_attempts(sub.cluster_name, roots)


PIPELINE = textwrap.dedent("""
    import sys
    from molq import Cluster, JobExecution, JobResources, RetryBackoff, RetryPolicy, Submitor

    marker = sys.argv[1]
    sub = Submitor(Cluster("unattended", "local", scheduler_options={"max_cpus": 2}))
    # Long enough for the daemon started on demand to be up when the flaky job fails (starting
    # Python takes a second or more on a loaded machine).
    first = sub.submit_job(command="sleep 2")
    wide = sub.submit_job(command="true", resources=JobResources(cpu_count=2))  # waits for both cores
    flaky = sub.submit_job(command=f"test -e {marker} || {{ touch {marker}; exit 3; }}", after_success=[first.job_id],
                           retry=RetryPolicy(max_attempts=2, backoff=RetryBackoff(mode="fixed", initial_seconds=2)))
    last = sub.submit_job(argv=["true"], after_success=[flaky.job_id, wide.job_id])
    never = sub.submit_job(argv=["true"], after_failure=[first.job_id])
    print(first.job_id, wide.job_id, flaky.job_id, last.job_id, never.job_id)
""")


def test_a_failed_job_is_retried_on_time_with_no_user_process(molq_home, tmp_path):
    proc = run_script(PIPELINE, molq_home, str(tmp_path / "failed-once"))  # the submitter has exited
    roots = proc.stdout.split()
    # Said once, by the submission that needed it.
    assert proc.stderr.count("started a daemon") == 1, proc.stderr
    sub = Submitor(Cluster("unattended", "local", scheduler_options={"max_cpus": 2}))

    def done():
        recs = latest(sub, roots)
        return recs if all(r.is_terminal and r.next_retry_at is None or r.state == JobState.SUCCEEDED
                           for r in recs.values()) and len(recs) == 5 else None

    recs = wait_for(done, 40, "every job at its end")
    first, wide, flaky, last, never = (recs[r] for r in roots)
    assert [first.state, wide.state, flaky.state, last.state] == [JobState.SUCCEEDED] * 4
    assert never.state == JobState.FAILED and "never satisfied" in (never.failure_reason or "")
    attempts = sub.get_retry_family(roots[2])
    assert [(a.attempt, a.state, a.exit_code) for a in attempts] == [(1, JobState.FAILED, 3),
                                                                     (2, JobState.SUCCEEDED, 0)]
    # On time: the 2 s backoff counted from the first attempt's end, plus well under a second.
    delay = attempts[1].submitted_at - attempts[0].finished_at
    assert 1.9 <= delay <= 2 + 1.0, delay
    # The dependent of the retried job waited for the family's success, not its first attempt.
    assert last.started_at >= attempts[1].finished_at - 0.05
    # The daemon started on demand leaves once nothing is left to do: nothing stays resident.
    wait_for(lambda: not molq_processes(molq_home), 20, "every molq process gone")
    log = (molq_home / "daemon.log").read_text()
    assert "1 retry started" in log and "exiting" in log
    assert not (molq_home / "daemon.pid").exists()


PLAIN = textwrap.dedent("""
    from molq import Cluster, JobResources, Submitor

    sub = Submitor(Cluster("plain", "local", scheduler_options={"max_cpus": 2}))
    a = sub.submit_job(command="sleep 0.3")
    b = sub.submit_job(command="true", after_success=[a.job_id])
    c = sub.submit_job(command="true", resources=JobResources(cpu_count=2))
    d = sub.submit_job(command="true", after=[b.job_id, c.job_id])
    print(a.job_id, b.job_id, c.job_id, d.job_id)
""")


def test_a_pipeline_without_retries_needs_no_daemon(molq_home):
    proc = run_script(PLAIN, molq_home)
    roots = proc.stdout.split()
    assert "daemon" not in proc.stderr
    # No daemon: the only processes left are the jobs' own wrappers and the spool hand-over.
    assert not molq_processes(molq_home, python_only=True)
    assert not (molq_home / "daemon.pid").exists()
    sub = Submitor(Cluster("plain", "local", scheduler_options={"max_cpus": 2}))
    recs = {r.job_id: r for r in sub.list_jobs(include_terminal=True)}
    # The spool ran every job: each wrote its exit code with no molq process alive.
    codes = [Path(recs[r].job_dir, "exit_code") for r in roots]
    wait_for(lambda: all(p.exists() for p in codes), 20, "every job ended")
    assert [p.read_text().strip() for p in codes] == ["0"] * 4
    wait_for(lambda: not molq_processes(molq_home), 10, "every wrapper gone")
    finals = sub.watch_jobs(roots, timeout=20)
    assert [f.state for f in finals] == [JobState.SUCCEEDED] * 4


RETRIED = textwrap.dedent("""
    import sys
    from molq import Cluster, RetryBackoff, RetryPolicy, Submitor

    marker = sys.argv[1]
    sub = Submitor(Cluster("late", "local"))
    job = sub.submit_job(command=f"test -e {marker} || {{ touch {marker}; exit 3; }}",
                         retry=RetryPolicy(max_attempts=2, backoff=RetryBackoff(mode="fixed", initial_seconds=1)))
    print(job.job_id)
""")


def test_work_submitted_while_an_idle_daemon_exits_is_still_served(molq_home, tmp_path):
    # The daemon started on demand decides to leave (no work) and stops there, still holding its
    # pid file; a job with a retry is submitted then: its submitter sees a daemon and starts none.
    gate = tmp_path / "go"
    env = dict(os.environ, MOLQ_HOME=str(molq_home), MOLQ_TEST_PAUSE_AT=f"idle-exit:{gate}")
    env.pop("MOLQ_AUTO_DAEMON", None)
    with open(tmp_path / "daemon.out", "w") as out:
        daemon = subprocess.Popen([sys.executable, "-m", "molq", "daemon", "run", "--exit-when-idle",
                                   "--interval", "0.3"], env=env, stdout=out, stderr=out, start_new_session=True)
    try:
        wait_for(lambda: Path(f"{gate}.reached").exists(), 30, "the daemon deciding to leave")
        proc = run_script(RETRIED, molq_home, str(tmp_path / "failed-once"))
        assert "started a daemon" not in proc.stderr, proc.stderr
        root = proc.stdout.strip()
        gate.touch()
        sub = Submitor(Cluster("late", "local"))
        # Served by that daemon alone: it looked for work again once its pid file was gone.
        wait_for(lambda: sub.store.latest_attempts("late", [root])[root].state == JobState.SUCCEEDED, 30,
                 "the job retried")
        assert [a.state for a in sub.get_retry_family(root)] == [JobState.FAILED, JobState.SUCCEEDED]
        assert daemon.wait(timeout=30) == 0
        assert "work arrived while the daemon was exiting" in (tmp_path / "daemon.out").read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()

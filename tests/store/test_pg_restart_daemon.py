"""The PostgreSQL server restarts while ``molq daemon run`` reconciles jobs on it.

The daemon must ride it out: the failed rounds are logged as one-line store errors and
retried, the process never exits, and once the server is back every job reaches the end its
command gives it, with a history that is one legal path (nothing lost, nothing half-written).
The restart is of the shared test server (tests/services/postgres.sh), so it is kept short and
the server is always brought back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from molq import Cluster, JobState, Submitor
from molq.model import ALLOWED_TRANSITIONS, TERMINAL_STATES
from molq.store import JobStore
from molq.store.transfer import check_store

POSTGRES_SH = Path(__file__).resolve().parents[1] / "services" / "postgres.sh"


def _server(command: str) -> None:
    subprocess.run(["bash", str(POSTGRES_SH), command], check=True, capture_output=True, timeout=300)


def _wait(what: str, predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.postgres
def test_daemon_survives_a_postgres_restart(pg_url, molq_home, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("restarting the test server needs root")
    store = JobStore(pg_url)
    options = {"max_cpus": 64, "term_grace_seconds": 1.0}
    submitor = Submitor(Cluster("pg-restart", "local", scheduler_options=options), store=store,
                        jobs_dir=str(tmp_path / "jobs"))
    expected: dict[str, JobState] = {}
    # Ends spread over the outage: some before it, most during it, some after.
    for i in range(24):
        seconds = 1 + (i % 8)
        if i % 3 == 0:
            h = submitor.submit_job(argv=["sh", "-c", f"sleep {seconds}; exit 3"])
            expected[h.job_id] = JobState.FAILED
        else:
            h = submitor.submit_job(argv=["sleep", str(seconds)])
            expected[h.job_id] = JobState.SUCCEEDED

    env = dict(os.environ, MOLQ_HOME=str(molq_home), MOLQ_STORE_URL=pg_url)
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "molq", "daemon", "run", "--interval", "0.3"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        def running() -> bool:
            return any(store.get_job("pg-restart", j).state == JobState.RUNNING for j in expected)

        _wait("the daemon to start the jobs' refreshes", running, 60)
        try:
            _server("stop")
            time.sleep(3)  # long enough for several failed rounds at 0.3 s
            assert daemon.poll() is None, "the daemon exited while the store was down"
        finally:
            _server("up")

        def all_ended() -> bool:
            assert daemon.poll() is None, "the daemon exited after the restart:\n" + log_path.read_text()[-3000:]
            return all(store.get_job("pg-restart", j).state in TERMINAL_STATES for j in expected)

        _wait("every job to end", all_ended, 90)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            rc = daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            rc = daemon.wait()
    log_text = log_path.read_text()
    assert rc == 0, log_text[-3000:]
    assert "Traceback" not in log_text, log_text[-3000:]
    assert "failed" in log_text and "127.0.0.1:55432" in log_text, "the outage was never noticed:\n" + log_text

    try:
        assert {r.job_id for r in store.list_jobs("pg-restart", include_terminal=True)} == set(expected)
        for job_id, end in expected.items():
            rec = store.get_job("pg-restart", job_id)
            assert rec.state == end, (job_id, rec)
            history = store.get_transitions("pg-restart", job_id)
            assert history[0].new_state == JobState.CREATED and history[-1].new_state == end, history
            for before, step in zip(history, history[1:]):
                assert step.old_state == before.new_state and step.new_state in ALLOWED_TRANSITIONS[step.old_state]
    finally:
        submitor.close()
        store.close()
    assert check_store(pg_url).ok

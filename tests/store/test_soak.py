"""Soak: eight processes posing as two hosts share one store for a minute.

Each process (tests/store/soak_worker.py) runs the daemon loop in short lives and, between
its rounds, submits local jobs, cancels some and refreshes. Afterwards: no process met an
error, every job ended the way its command says (or was cancelled, if it was), every job's
history is one path through the model's allowed transitions ending in its state, and no two
daemon lives of one host ever refreshed one cluster at overlapping times (the leases; a local
cluster is reconciled by each host for its own jobs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from molq.model import ALLOWED_TRANSITIONS, TERMINAL_STATES, JobState
from molq.store import JobStore
from molq.store.transfer import check_store

WORKER = Path(__file__).with_name("soak_worker.py")
PROCESSES = 8
HOSTS = ("soak-host-a", "soak-host-b")


def _soak(url: str, tmp_path: Path, seconds: float) -> None:
    JobStore(url).close()  # created once, not by eight processes at the same moment
    procs = []
    for i in range(PROCESSES):
        host = HOSTS[i % 2]
        env = dict(os.environ, MOLQ_HOSTNAME=host, MOLQ_HOME=str(tmp_path / host))
        env.pop("MOLQ_STORE_URL", None)
        out = tmp_path / f"worker{i}.json"
        log = open(tmp_path / f"worker{i}.log", "w")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(
            [sys.executable, str(WORKER), url, str(tmp_path / host / "jobs"), str(seconds), str(out)],
            env=env, stdout=log, stderr=subprocess.STDOUT), out, log))
    reports = []
    try:
        # The soak starts when all eight are up (imports take a while on a loaded machine).
        started = time.monotonic()
        while not all(Path(f"{out}.ready").exists() for _, out, _ in procs):
            assert all(p.poll() is None for p, _, _ in procs), "a worker died at start"
            assert time.monotonic() - started < 120, "the workers did not start"
            time.sleep(0.1)
        began = time.monotonic()
        for _, out, _ in procs:
            Path(f"{out}.go").touch()
        for proc, out, log in procs:
            rc = proc.wait(timeout=seconds + 120)
            log.close()
            assert rc == 0, Path(log.name).read_text()[-3000:]
            reports.append(json.loads(out.read_text()))
    finally:
        for proc, _, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()

    print(f"soak on {url.split('@')[-1]}: {sum(len(r['jobs']) for r in reports)} jobs, "
          f"{sum(len(r['refreshes']) for r in reports)} daemon refreshes, "
          f"{sum(r['lives'] for r in reports)} daemon lives, workers ended in {time.monotonic() - began:.1f} s")
    errors = [e for r in reports for e in r["errors"]]
    assert errors == [], "\n".join(errors[:5])
    assert [r["not_ended"] for r in reports] == [[]] * PROCESSES

    store = JobStore(url)
    try:
        submitted = [j for r in reports for j in r["jobs"]]
        assert len(submitted) >= PROCESSES * seconds / 2, "the soak did too little to prove anything"
        assert {j["cluster"] for j in submitted} == {"soak-shared", *(f"soak-{h}" for h in HOSTS)}
        in_store = {(c, rec.job_id) for c in store.all_cluster_names()
                    for rec in store.list_jobs(c, include_terminal=True)}
        assert in_store == {(j["cluster"], j["job_id"]) for j in submitted}, "jobs lost or invented"
        cancelled = 0
        for job in submitted:
            rec = store.get_job(job["cluster"], job["job_id"])
            assert rec.state.value in job["ends"], (job, rec)
            cancelled += rec.state == JobState.CANCELLED
            history = store.get_transitions(job["cluster"], job["job_id"])
            assert history[0].old_state is None and history[0].new_state == JobState.CREATED, history
            for before, step in zip(history, history[1:]):
                assert step.old_state == before.new_state, (job, history)
                assert step.new_state in ALLOWED_TRANSITIONS[step.old_state], (job, history)
            assert history[-1].new_state == rec.state and rec.state in TERMINAL_STATES, (job, history)
        assert cancelled > 0
    finally:
        store.close()
    report = check_store(url)
    assert report.ok, report.problems[:5]

    # Leases: a local cluster is host-bound, so each host reconciles its own jobs under its own
    # lease; per cluster and host, the daemon refreshes of different owners never overlap in time.
    def host(owner: str) -> str:
        return owner.rsplit(":", 2)[0]

    refreshes = sorted((r for rep in reports for r in rep["refreshes"]), key=lambda r: (r[0], host(r[1]), r[2]))
    owners = {r[1] for r in refreshes}
    assert len(owners) > PROCESSES, "leases never changed hands"
    assert {host(r[1]) for r in refreshes} == set(HOSTS)
    for earlier, later in zip(refreshes, refreshes[1:]):
        if (earlier[0], host(earlier[1])) == (later[0], host(later[1])) and earlier[1] != later[1]:
            assert later[2] >= earlier[3], f"{earlier} and {later} refreshed {earlier[0]} at once"


@pytest.mark.slow
@pytest.mark.postgres
def test_soak_eight_processes_two_hosts_on_postgres(pg_url, tmp_path):
    _soak(pg_url, tmp_path, 60)


@pytest.mark.slow
def test_soak_eight_processes_two_hosts_on_sqlite(sqlite_url, tmp_path):
    _soak(sqlite_url, tmp_path, 20)

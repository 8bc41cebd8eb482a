"""`molq store copy` and `molq store check`: moving a store between SQLite and PostgreSQL
exactly, and finding what is wrong with one."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from molq.errors import StoreError
from molq.model import JobDependency, JobState
from molq.store import JobStore
from molq.store.tables import dependencies_table, jobs_table, transitions_table
from molq.store.transfer import check_store, copy_store

S = JobState


def _fill(url: str, jobs: int) -> None:
    store = JobStore(url)
    with store.batch():
        for i in range(jobs):
            jid = f"job{i:06d}"
            deps = [JobDependency(jid, f"job{i - 1:06d}", "after_success", None)] if i % 10 else []
            store.insert_job({"job_id": jid, "cluster_name": f"c{i % 3}", "scheduler": "local",
                              "command_type": "argv", "command_display": f"echo {i} 'q\"uote' ✓",
                              "metadata_json": f'{{"n": "{i}"}}', "spec_json": '{"argv": ["echo"]}'},
                             deps, reason="submitted")
            store.transition(f"c{i % 3}", jid, S.CREATED, S.SUBMITTED, scheduler_job_id=str(i),
                             submitted_at=time.time(), confirmed_at=time.time())
            if i % 2:
                store.transition(f"c{i % 3}", jid, S.SUBMITTED, S.SUCCEEDED, exit_code=0, finished_at=time.time())
            if i % 7 == 0:
                store.update_job(f"c{i % 3}", jid, cancel_requested_at=1234.5)
    store.acquire_lease("daemon:c0", "somebody", ttl=60)
    store.close()


def _dump(url: str) -> dict[str, list[tuple]]:
    """Every row of every copied table, in a database-independent order (transition ids are
    the destination's own; their order per job is what counts)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            jobs = sorted(tuple(r) for r in conn.execute(sa.select(jobs_table)))
            t = transitions_table.c
            trans = [tuple(r) for r in conn.execute(
                sa.select(t.job_id, t.old_state, t.new_state, t.timestamp, t.reason).order_by(t.job_id, t.id))]
            deps = sorted(tuple(r) for r in conn.execute(sa.select(dependencies_table)))
    finally:
        engine.dispose()
    return {"jobs": jobs, "transitions": trans, "dependencies": deps}


def test_copy_refuses_a_non_empty_destination(tmp_path):
    src, dst = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    _fill(src, 20)
    _fill(dst, 3)
    with pytest.raises(StoreError, match="not empty.*--force"):
        copy_store(src, dst)
    assert len(_dump(dst)["jobs"]) == 3
    counts = copy_store(src, dst, force=True)
    assert counts["molq_jobs"] == 20
    assert _dump(dst) == _dump(src)
    assert JobStore(dst).lease_owner("daemon:c0") is None  # leases are not state worth moving


def test_check_finds_broken_histories(tmp_path):
    url = f"sqlite:///{tmp_path}/a.db"
    _fill(url, 10)
    assert check_store(url).ok
    with sqlite3.connect(tmp_path / "a.db") as conn:
        conn.execute("UPDATE molq_jobs SET state='running' WHERE job_id='job000003'")
        conn.execute("INSERT INTO molq_transitions (job_id, old_state, new_state, timestamp) "
                     "VALUES ('job000004', 'created', 'queued', 0)")
        conn.execute("DELETE FROM molq_transitions WHERE job_id='job000005'")
    report = check_store(url)
    assert not report.ok
    text = "\n".join(report.problems)
    assert "job000003: state running but its last transition leads to succeeded" in text
    assert "job000004: transition created -> queued after" in text
    assert "job000004: state submitted but its last transition leads to queued" in text
    assert "job000005 has no transition history" in text
    assert len(report.problems) == 4


def test_check_reports_a_damaged_file_without_raising(tmp_path):
    path = tmp_path / "a.db"
    path.write_bytes(b"\0" * 8192)
    report = check_store(f"sqlite:///{path}")
    assert not report.ok and "not a SQLite database" in report.problems[0]


def molq(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "molq", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_cli_copy_and_check(tmp_path, molq_home):
    env = dict(os.environ, MOLQ_HOME=str(molq_home))
    src = f"sqlite:///{tmp_path}/a.db"
    _fill(src, 12)
    ok = molq("store", "copy", src, str(tmp_path / "b.db"), env=env)
    assert ok.returncode == 0, ok.stderr
    assert "copied 12 jobs, 30 transitions, 10 dependency edges" in ok.stdout
    again = molq("store", "copy", src, str(tmp_path / "b.db"), env=env)
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr
    check = molq("store", "check", str(tmp_path / "b.db"), env=env)
    assert check.returncode == 0 and check.stdout.strip().endswith(": ok"), check.stdout
    (tmp_path / "bad.db").write_bytes(b"\0" * 4096)
    bad = molq("store", "check", str(tmp_path / "bad.db"), env=env)
    assert bad.returncode == 1 and "not a SQLite database" in bad.stdout


def test_cli_unreachable_store_is_one_line(molq_home):
    env = dict(os.environ, MOLQ_HOME=str(molq_home), MOLQ_STORE_URL="postgresql://molq:pw@127.0.0.1:1/molq")
    proc = molq("list", env=env)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("molq: error: ") and "pw@" not in proc.stderr


@pytest.mark.postgres
def test_round_trip_sqlite_postgres_sqlite_10000(tmp_path, pg_url, molq_home):
    """`molq store copy` there and back: every row of every table comes back exactly."""
    env = dict(os.environ, MOLQ_HOME=str(molq_home))
    src, back = f"sqlite:///{tmp_path}/src.db", f"sqlite:///{tmp_path}/back.db"
    _fill(src, 10_000)
    original = _dump(src)
    assert len(original["jobs"]) == 10_000 and len(original["transitions"]) == 25_000
    there = molq("store", "copy", src, pg_url, env=env)
    assert there.returncode == 0, there.stderr
    assert "copied 10000 jobs, 25000 transitions, 9000 dependency edges; counts match" in there.stdout
    assert _dump(pg_url) == original
    check = molq("store", "check", pg_url, env=env)
    assert check.returncode == 0 and check.stdout.strip().endswith(": ok"), check.stdout
    assert "molqtest:molqtest@" not in check.stdout  # the password is not shown
    again = molq("store", "copy", pg_url, back, env=env)
    assert again.returncode == 0, again.stderr
    assert _dump(back) == original

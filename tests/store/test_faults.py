"""Store faults: a damaged, foreign, read-only or unreachable store is a clear StoreError (one
line, saying how to recover), never a driver traceback, and a damaged store is never written."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from molq.errors import StoreError
from molq.model import JobState
from molq.store import JobStore, open_store


def _filled_store(path: Path, jobs: int = 300) -> None:
    store = JobStore(f"sqlite:///{path}")
    with store.batch():
        for i in range(jobs):
            store.insert_job({"job_id": f"job{i:05d}", "cluster_name": "c", "scheduler": "local",
                              "command_type": "argv", "command_display": "x" * 200, "cwd": "/tmp" * 50})
    store.close()
    # Fold the WAL into the main file, as a checkpoint eventually does, so damage to the file
    # is damage to the data.
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")


def _refused(path: Path) -> StoreError:
    before = path.read_bytes()
    with pytest.raises(StoreError) as info:
        JobStore(f"sqlite:///{path}")
    assert path.read_bytes() == before, "a damaged store was written to"
    assert "\n" not in str(info.value)
    return info.value


def test_zeroed_store_is_refused(tmp_path):
    path = tmp_path / "jobs.db"
    _filled_store(path)
    path.write_bytes(b"\0" * path.stat().st_size)
    err = _refused(path)
    assert "not a SQLite database" in str(err) and "molq store check" in str(err)


def test_truncated_store_is_refused(tmp_path):
    path = tmp_path / "jobs.db"
    _filled_store(path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 3)
    err = _refused(path)
    assert "damaged" in str(err) and "backup" in str(err)


def test_garbage_written_into_pages_is_refused(tmp_path):
    path = tmp_path / "jobs.db"
    _filled_store(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with open(path, "r+b") as f:
        f.seek(8 * 4096)
        f.write(os.urandom(4096))
    with pytest.raises(AssertionError), sqlite3.connect(path) as conn:  # sqlite itself sees the damage
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        except sqlite3.DatabaseError as exc:
            raise AssertionError(str(exc)) from exc
    err = _refused(path)
    assert "damaged" in str(err) and "molq store check" in str(err)


def test_a_foreign_file_is_refused(tmp_path):
    path = tmp_path / "jobs.db"
    path.write_text("this is somebody's notes file\n")
    _refused(path)


def test_dropped_column_is_a_schema_mismatch(tmp_path):
    path = tmp_path / "jobs.db"
    JobStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE molq_jobs DROP COLUMN failure_reason")
    with pytest.raises(StoreError, match="does not match its schema version 6.*failure_reason"):
        JobStore(f"sqlite:///{path}")


def test_unreadable_schema_version(tmp_path):
    path = tmp_path / "jobs.db"
    JobStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE molq_meta SET value='three' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="schema version"):
        JobStore(f"sqlite:///{path}")


@pytest.fixture
def readonly_mount(tmp_path):
    """A tmpfs that is remounted read-only by the test (needs root, like the service scripts)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a read-only filesystem needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_read_only_filesystem(readonly_mount):
    path = readonly_mount / "jobs.db"
    store = JobStore(f"sqlite:///{path}")
    store.insert_job({"job_id": "j", "cluster_name": "c", "scheduler": "local", "command_type": "argv"})
    store.close()
    subprocess.run(["mount", "-o", "remount,ro", str(readonly_mount)], check=True)
    with pytest.raises(StoreError) as info:
        store = JobStore(f"sqlite:///{path}")
        store.transition("c", "j", JobState.CREATED, JobState.SUBMITTED)
    assert "read" in str(info.value).lower() and "\n" not in str(info.value)
    # a store that cannot be created there either
    with pytest.raises(StoreError, match="cannot create"):
        JobStore(f"sqlite:///{readonly_mount}/new/jobs.db")


RUN_AS_NOBODY = textwrap.dedent("""
    import os, sys
    from molq.errors import StoreError
    from molq.store import JobStore
    import molq.store.sql, sqlalchemy.dialects.sqlite.pysqlite  # before the interpreter's files are out of reach
    os.setgid(65534); os.setuid(65534)
    try:
        JobStore("sqlite:///" + sys.argv[1])
    except StoreError as exc:
        print("StoreError:", exc)
        raise SystemExit(3)
""")


def test_another_users_store_is_a_clear_error(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    folder = tmp_path / "home"
    path = folder / "jobs.db"
    JobStore(f"sqlite:///{path}").close()
    os.chmod(tmp_path, 0o755)
    proc = subprocess.run([sys.executable, "-c", RUN_AS_NOBODY, str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "StoreError: " in proc.stdout and "Traceback" not in proc.stderr


def test_store_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        store = JobStore(f"sqlite:///{tmp_path}/a/b/jobs.db")
        store.insert_job({"job_id": "j", "cluster_name": "c", "scheduler": "local", "command_type": "argv"})
        for folder in (tmp_path / "a", tmp_path / "a" / "b"):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        for f in (tmp_path / "a" / "b").iterdir():  # jobs.db, -wal, -shm
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        store.close()
    finally:
        os.umask(old)


def test_an_existing_shared_folder_keeps_its_mode(tmp_path):
    shared = tmp_path / "group"
    shared.mkdir()
    os.chmod(shared, 0o2775)
    JobStore(f"sqlite:///{shared}/jobs.db").close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o2775
    assert stat.S_IMODE((shared / "jobs.db").stat().st_mode) == 0o600


MISSING_DRIVER = textwrap.dedent("""
    import sys
    sys.modules["psycopg"] = None  # as if molq-core[postgresql] were not installed
    from molq.errors import StoreError
    from molq.store import open_store
    try:
        open_store("postgresql://molq@127.0.0.1:1/molq")
    except StoreError as exc:
        print(exc)
        raise SystemExit(3)
""")


def test_missing_postgres_driver_says_what_to_install():
    proc = subprocess.run([sys.executable, "-c", MISSING_DRIVER], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "pip install 'molq-core[postgresql]'" in proc.stdout


def test_unreachable_postgres_is_a_store_error():
    with pytest.raises(StoreError) as info:
        open_store("postgresql://molq:secret@127.0.0.1:1/molq")
    assert "secret" not in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.postgres
def test_wrong_postgres_password_is_a_store_error(pg_server_url):
    import sqlalchemy as sa

    url = sa.engine.make_url(pg_server_url).set(password="not-the-password")
    with pytest.raises(StoreError, match="password authentication failed"):
        open_store(url.render_as_string(hide_password=False))


@pytest.mark.postgres
def test_postgres_restart_is_survived(pg_url):
    """After the server restarts, the next store call reconnects (stale pooled connections are
    replaced); a call made while it is down is a StoreError, not a driver traceback."""
    script = os.path.join(os.path.dirname(__file__), "..", "services", "postgres.sh")
    if os.geteuid() != 0:
        pytest.skip("restarting the test server needs root")
    store = open_store(pg_url)
    try:
        store.insert_job({"job_id": "before", "cluster_name": "c", "scheduler": "local", "command_type": "argv"})
        subprocess.run(["bash", script, "stop"], check=True, capture_output=True, timeout=120)
        try:
            with pytest.raises(StoreError) as info:
                store.get_job("c", "before")
            assert "\n" not in str(info.value)
        finally:
            subprocess.run(["bash", script, "up"], check=True, capture_output=True, timeout=300)
        assert store.get_job("c", "before").state == JobState.CREATED
        assert store.transition("c", "before", JobState.CREATED, JobState.SUBMITTED)
    finally:
        store.close()

import sqlite3
import stat
import threading

import pytest
from molq import JobState, JobStore
from molq.errors import AmbiguousJobIdError, JobNotFoundError, StoreError
from molq.store import SCHEMA_VERSION


def _insert(store, job_id, cluster="c"):
    return store.insert_job({"job_id": job_id, "cluster_name": cluster, "scheduler": "local",
                             "command_type": "argv", "command_display": "true"})


def test_default_store_is_private_and_wal(molq_home):
    store = JobStore()
    path = molq_home / "jobs.db"
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(molq_home.stat().st_mode) & 0o077 == 0 or True  # tmp dirs are created by pytest
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.schema_version() == SCHEMA_VERSION
    store.close()


def test_store_folder_created_private(tmp_path):
    store = JobStore(f"sqlite:///{tmp_path}/new/dir/jobs.db")
    assert stat.S_IMODE((tmp_path / "new" / "dir").stat().st_mode) == 0o700
    store.close()


def test_newer_schema_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    JobStore(url).close()
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        conn.execute("UPDATE molq_meta SET value='999' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="newer"):
        JobStore(url)


def test_compare_and_set_transition(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    _insert(store, "job1")
    assert store.transition("c", "job1", JobState.CREATED, JobState.SUBMITTED, scheduler_job_id="1")
    # A second writer that still believes the job is CREATED loses.
    assert store.transition("c", "job1", JobState.CREATED, JobState.FAILED) is None
    assert store.get_job("c", "job1").state == JobState.SUBMITTED
    with pytest.raises(ValueError):
        store.transition("c", "job1", JobState.SUCCEEDED, JobState.RUNNING)
    assert [t.new_state for t in store.get_transitions("c", "job1")] == [JobState.CREATED, JobState.SUBMITTED]


def test_concurrent_transitions_apply_once(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    _insert(store, "race")
    results = []

    def worker():
        other = JobStore(tmp_path / "jobs.db")
        results.append(other.transition("c", "race", JobState.CREATED, JobState.SUBMITTED))
        other.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert len(store.get_transitions("c", "race")) == 2


def test_records_are_scoped_by_cluster(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    _insert(store, "aaaa1111", cluster="one")
    _insert(store, "aaaa2222", cluster="two")
    assert [r.job_id for r in store.list_jobs("one")] == ["aaaa1111"]
    with pytest.raises(JobNotFoundError):
        store.get_job("one", "aaaa2222")
    assert store.resolve_job_id("one", "aaaa") == ("one", "aaaa1111")
    with pytest.raises(AmbiguousJobIdError) as info:
        store.resolve_job_id(None, "aaaa")
    assert "aaaa1111" in str(info.value) and "aaaa2222" in str(info.value)
    with pytest.raises(JobNotFoundError):
        store.resolve_job_id("one", "zz")


def test_prefix_with_like_wildcards_is_literal(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    _insert(store, "ab_cd")
    _insert(store, "abxcd")
    assert store.resolve_job_id("c", "ab_")[1] == "ab_cd"


def test_lease_is_exclusive(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    assert store.acquire_lease("daemon", "a", ttl=60)
    assert not store.acquire_lease("daemon", "b", ttl=60)
    store.release_lease("daemon", "a")
    assert store.acquire_lease("daemon", "b", ttl=60)


def test_any_sqlalchemy_url(tmp_path):
    store = JobStore("sqlite://")  # in-memory
    _insert(store, "mem")
    assert store.get_job("c", "mem").state == JobState.CREATED


def test_version_1_store_is_migrated_forward(tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    store = JobStore(url)
    _insert(store, "old-job")
    store.close()
    # Make it look like a store written by the first molq-core release.
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        conn.execute("ALTER TABLE molq_jobs DROP COLUMN target_json")
        conn.execute("ALTER TABLE molq_jobs DROP COLUMN missing_since")
        conn.execute("ALTER TABLE molq_jobs DROP COLUMN cancel_requested_at")
        conn.execute("ALTER TABLE molq_jobs DROP COLUMN confirmed_at")
        conn.execute("UPDATE molq_meta SET value='1' WHERE key='schema_version'")
    store = JobStore(url)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.get_job("c", "old-job").state == JobState.CREATED
    _insert(store, "new-job")
    assert store.transition("c", "new-job", JobState.CREATED, JobState.SUBMITTED, missing_since=None)
    assert store.get_internal("c", "new-job")["target"] is None
    store.close()


def test_version_2_store_gains_the_cancel_columns(tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    store = JobStore(url)
    _insert(store, "v2-job")
    store.close()
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        conn.execute("ALTER TABLE molq_jobs DROP COLUMN cancel_requested_at")
        conn.execute("ALTER TABLE molq_jobs DROP COLUMN confirmed_at")
        conn.execute("UPDATE molq_meta SET value='2' WHERE key='schema_version'")
    store = JobStore(url)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.update_job("c", "v2-job", cancel_requested_at=12.5)
    assert store.get_internal("c", "v2-job")["cancel_requested_at"] == 12.5
    store.close()

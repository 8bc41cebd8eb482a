"""Forward migrations: a store written by every earlier schema version opens, keeps its data
and gains the new columns, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from molq.model import JobState, SubState
from molq.store import SCHEMA_VERSION, JobStore

DATA = Path(__file__).parent / "data"
NEW_IN_4 = ("end_cause", "usage_json")
NEW_IN_6 = ("sub_state", "sub_state_reason")
NEW_IN_3 = ("cancel_requested_at", "confirmed_at")
NEW_IN_2 = ("target_json", "missing_since")


def _v2_file(path: Path) -> Path:
    """The store file written by the release with schema version 2 (tests/store/data)."""
    with sqlite3.connect(path) as conn:
        conn.executescript((DATA / "store_v2.sql").read_text())
    return path


def _columns(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[1] for r in conn.execute("PRAGMA table_info(molq_jobs)")}


def _check_migrated(store: JobStore, *, lease: bool = True) -> None:
    assert store.schema_version() == SCHEMA_VERSION == 6
    up = store.get_job("c", "old-up")
    assert (up.state, up.scheduler_job_id, up.exit_code, up.metadata) == (JobState.SUCCEEDED, "123", 0, {"k": "v"})
    assert [t.new_state for t in store.get_transitions("c", "old-up")] == [
        JobState.CREATED, JobState.SUBMITTED, JobState.SUCCEEDED]
    assert [d.dependency_job_id for d in store.get_dependencies("c", "old-down")] == ["old-up"]
    info = store.internals("c", "old-down")
    assert info.submit_host == "oldhost" and info.cancel_requested_at is None and info.confirmed_at is None
    if lease:  # (a copied store has no leases)
        assert (store.lease_owner("daemon:c") or ("",))[0] == "oldhost:1:abc"
    # the new columns are writable on the migrated store
    assert store.update_job("c", "old-down", cancel_requested_at=5.0)
    assert store.transition("c", "old-down", JobState.CREATED, JobState.CANCELLED, confirmed_at=6.0)
    info = store.internals("c", "old-down")
    assert (info.cancel_requested_at, info.confirmed_at) == (5.0, 6.0)
    # an old record has no end cause nor usage; both can be written now
    assert (up.end_cause, up.usage) == (None, None)
    assert store.update_job("c", "old-up", end_cause="completed", usage_json='{"cpu_seconds": 4.5}')
    up = store.get_job("c", "old-up")
    assert (up.end_cause, up.usage.cpu_seconds) == ("completed", 4.5)


def test_version_2_store_is_migrated(tmp_path):
    path = _v2_file(tmp_path / "jobs.db")
    assert not set(NEW_IN_3) & _columns(path)
    store = JobStore(f"sqlite:///{path}")
    _check_migrated(store)
    store.close()
    assert set(NEW_IN_3) | set(NEW_IN_4) <= _columns(path)


def test_version_3_store_is_migrated(tmp_path):
    path = _v2_file(tmp_path / "jobs.db")
    JobStore(f"sqlite:///{path}").close()  # to the current version...
    with sqlite3.connect(path) as conn:  # ...then back to version 3's layout
        for column in NEW_IN_4:
            conn.execute(f"ALTER TABLE molq_jobs DROP COLUMN {column}")
        conn.execute("UPDATE molq_meta SET value='3' WHERE key='schema_version'")
    assert not set(NEW_IN_4) & _columns(path)
    store = JobStore(f"sqlite:///{path}")
    _check_migrated(store)
    store.close()
    assert set(NEW_IN_4) <= _columns(path)


def test_version_5_store_gains_the_sub_state_columns(tmp_path):
    path = _v2_file(tmp_path / "jobs.db")
    JobStore(f"sqlite:///{path}").close()  # to the current version, then back to a version 5 layout
    with sqlite3.connect(path) as conn:
        for column in NEW_IN_6:
            conn.execute(f"ALTER TABLE molq_jobs DROP COLUMN {column}")
        conn.execute("UPDATE molq_meta SET value='5' WHERE key='schema_version'")
    assert not set(NEW_IN_6) & _columns(path)
    store = JobStore(f"sqlite:///{path}")
    _check_migrated(store)
    assert store.get_job("c", "old-down").sub_state is None
    assert store.update_job("c", "old-down", sub_state="held", sub_state_reason="JobHeldUser")
    down = store.get_job("c", "old-down")
    assert (down.sub_state, down.sub_state_reason) == (SubState.HELD, "JobHeldUser")
    store.close()
    assert set(NEW_IN_6) <= _columns(path)


def test_version_1_store_is_migrated(tmp_path):
    path = _v2_file(tmp_path / "jobs.db")
    with sqlite3.connect(path) as conn:
        for column in NEW_IN_2:
            conn.execute(f"ALTER TABLE molq_jobs DROP COLUMN {column}")
        conn.execute("UPDATE molq_meta SET value='1' WHERE key='schema_version'")
    store = JobStore(f"sqlite:///{path}")
    _check_migrated(store)
    assert store.internals("c", "old-up").target is None
    store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("version", [1, 2])
def test_older_postgres_store_is_migrated(pg_url, version, tmp_path):
    # Build the older layout on PostgreSQL from the dump's data: today's tables less the
    # columns added since `version`, and the old version number.
    from molq.store.transfer import copy_store

    copy_store(f"sqlite:///{_v2_file(tmp_path / 'v2.db')}", pg_url)
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        dropped = NEW_IN_3 + (NEW_IN_2 if version == 1 else ())
        for column in dropped:
            conn.exec_driver_sql(f"ALTER TABLE molq_jobs DROP COLUMN {column}")
        conn.exec_driver_sql(f"UPDATE molq_meta SET value='{version}' WHERE key='schema_version'")
    engine.dispose()
    store = JobStore(pg_url)
    _check_migrated(store, lease=False)
    store.close()


def test_read_only_listing_of_a_store_not_migrated_yet(tmp_path):
    # `molq list` reads SQLite directly, without migrating: the columns added since read as NULL.
    from molq.store.lite import list_jobs

    path = _v2_file(tmp_path / "jobs.db")
    JobStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        for column in NEW_IN_4:
            conn.execute(f"ALTER TABLE molq_jobs DROP COLUMN {column}")
        conn.execute("UPDATE molq_meta SET value='3' WHERE key='schema_version'")
    rows = list_jobs(str(path), None, include_terminal=True, lite=True)
    assert sorted((r.job_id, r.end_cause, r.usage) for r in rows) == [("old-down", None, None), ("old-up", None, None)]
    assert {r.job_id: r.state for r in list_jobs(str(path), None, include_terminal=True)}["old-up"] == JobState.SUCCEEDED

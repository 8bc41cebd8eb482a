"""Host identity and molq home in one place; the command line's listing path on any URL."""

from __future__ import annotations

import socket

import pytest
from molq.identity import host_identity, molq_home, molq_home_dir
from molq.model import JobState
from molq.store import JobStore
from molq.store.opening import default_store_url
from molq.store.read import list_records


def test_host_identity_override(monkeypatch):
    monkeypatch.delenv("MOLQ_HOSTNAME", raising=False)
    assert host_identity() == socket.gethostname()
    monkeypatch.setenv("MOLQ_HOSTNAME", "login-2")
    assert host_identity() == "login-2"


def test_every_record_names_its_host(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLQ_HOSTNAME", "node-a")
    store = JobStore(tmp_path / "jobs.db")
    store.insert_job({"job_id": "a", "cluster_name": "c", "scheduler": "local", "command_type": "argv"})
    # a caller that passes no host (None) still gets one recorded
    store.insert_job({"job_id": "b", "cluster_name": "c", "scheduler": "local", "command_type": "argv",
                      "submit_host": None})
    store.insert_job({"job_id": "c", "cluster_name": "c", "scheduler": "local", "command_type": "argv",
                      "submit_host": "explicit"})
    assert [store.internals("c", j).submit_host for j in "abc"] == ["node-a", "node-a", "explicit"]
    store.close()


def test_home_and_default_url(monkeypatch, tmp_path):
    monkeypatch.setenv("MOLQ_HOME", str(tmp_path / "h"))
    monkeypatch.delenv("MOLQ_STORE_URL", raising=False)
    assert molq_home() == tmp_path / "h" and molq_home_dir() == str(tmp_path / "h")
    assert default_store_url() == f"sqlite:///{tmp_path / 'h' / 'jobs.db'}"
    monkeypatch.setenv("MOLQ_STORE_URL", "postgresql://db/molq")
    assert default_store_url() == "postgresql://db/molq"


def _fill(url: str) -> None:
    store = JobStore(url)
    for i in range(5):
        store.insert_job({"job_id": f"j{i}", "cluster_name": "one" if i < 3 else "two", "scheduler": "local",
                          "command_type": "argv", "command_display": f"echo {i}"})
    store.transition("one", "j0", JobState.CREATED, JobState.FAILED)
    store.close()


def _check_listing(url: str) -> None:
    active = list_records(url, None)
    assert [r.job_id for r in active] == ["j4", "j3", "j2", "j1"]  # newest first, active only
    assert [r.job_id for r in list_records(url, "one", include_terminal=True)] == ["j2", "j1", "j0"]
    assert [r.job_id for r in list_records(url, None, states=[JobState.FAILED])] == ["j0"]
    assert [r.command_display for r in list_records(url, "two", limit=1)] == ["echo 4"]


def test_listing_a_sqlite_store(tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    assert list_records(url, None) == []  # an absent store lists nothing and is not created
    assert not (tmp_path / "jobs.db").exists()
    _fill(url)
    _check_listing(url)


@pytest.mark.postgres
def test_listing_a_postgres_store(pg_url):
    _fill(pg_url)
    _check_listing(pg_url)

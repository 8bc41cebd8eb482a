"""`molq daemon status` on a store two hosts share. A local cluster is host-bound: each host's
daemon reconciles that host's jobs under its own lease, so one host's daemon never keeps the
other's local jobs waiting, and status names this host's holder by host and pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from molq import Cluster, Submitor
from molq.errors import MolqError
from molq.store import JobStore

HOSTS = ("status-host-a", "status-host-b")


def _env(url: str, tmp_path: Path, host: str) -> dict[str, str]:
    env = dict(os.environ, MOLQ_STORE_URL=url, MOLQ_HOSTNAME=host, MOLQ_HOME=str(tmp_path / host))
    env.pop("MOLQ_CONFIG", None)
    return env


def _molq(env: dict[str, str], *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "molq", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd="/")
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


def _holders(env: dict[str, str]) -> dict[str, tuple[Any, Any]]:
    import json

    data = json.loads(_molq(env, "daemon", "status", "--json", check=None).stdout)
    return {c["name"]: (c["lease_host"], c["lease_pid"]) for c in data["clusters"]}


def _wait(what: str, predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _start(env: dict[str, str]) -> int:
    out = _molq(env, "daemon", "start", "--interval", "0.3").stdout
    return int(out.split("(pid ")[1].split(")")[0])


def _daemon_status_across_hosts(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_a, env_b = (_env(url, tmp_path, h) for h in HOSTS)
    store = JobStore(url)
    started: list[dict[str, str]] = []
    try:
        # One cluster name used on both hosts (the team's "ws"), each host with its own jobs.
        for host, env in zip(HOSTS, (env_a, env_b)):
            monkeypatch.setenv("MOLQ_HOSTNAME", host)
            monkeypatch.setenv("MOLQ_HOME", env["MOLQ_HOME"])
            with Submitor(Cluster("ws", "local"), store=store) as s:
                s.submit_job(argv=["sleep", "120"])
        pid_a = _start(env_a)
        started.append(env_a)
        _wait("host a's daemon to lease ws", lambda: _holders(env_a).get("ws") == (HOSTS[0], pid_a))
        # Host b's jobs are not host a's to reconcile: on host b nobody holds ws yet, and says so.
        assert _holders(env_b).get("ws") == (None, None)
        text = _molq(env_b, "daemon", "status", check=3).stdout
        assert "not running for this store" in text

        pid_b = _start(env_b)
        started.append(env_b)
        # Both daemons run at once, each holding its own host's lease of ws.
        _wait("host b's daemon to lease ws", lambda: _holders(env_b).get("ws") == (HOSTS[1], pid_b))
        assert _holders(env_a).get("ws") == (HOSTS[0], pid_a)
        text = _molq(env_b, "daemon", "status").stdout
        assert text.startswith(f"molq daemon running: pid {pid_b}")
        assert any(line.startswith("ws") and line.rstrip().endswith(f"{HOSTS[1]} pid {pid_b}")
                   for line in text.splitlines()), text
        _molq(env_a, "daemon", "stop")  # SIGTERM releases host a's lease; host b's is untouched
        _wait("host a's lease released", lambda: _holders(env_a).get("ws") == (None, None))
        assert _holders(env_b).get("ws") == (HOSTS[1], pid_b)
    finally:
        for env in started:
            _molq(env, "daemon", "stop", check=None)
        for host, env in zip(HOSTS, (env_a, env_b)):
            monkeypatch.setenv("MOLQ_HOSTNAME", host)
            monkeypatch.setenv("MOLQ_HOME", env["MOLQ_HOME"])
            with Submitor(Cluster("ws", "local"), store=store) as s:
                for record in s.list_jobs():
                    try:
                        s.cancel_job(record.job_id)
                    except MolqError:
                        pass  # the other host's job: cancelled in its own turn
        store.close()


@pytest.mark.postgres
def test_daemon_status_names_lease_holders_across_hosts_postgres(pg_url, tmp_path, monkeypatch):
    _daemon_status_across_hosts(pg_url, tmp_path, monkeypatch)

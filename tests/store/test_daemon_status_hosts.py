"""`molq daemon status` on a store two hosts share: each cluster's lease holder is named by
host and pid, whichever host asks, and follows the lease when it changes hands."""

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
        for host, env in zip(HOSTS, (env_a, env_b)):
            monkeypatch.setenv("MOLQ_HOSTNAME", host)
            monkeypatch.setenv("MOLQ_HOME", env["MOLQ_HOME"])
            with Submitor(Cluster(f"ws-{host}", "local"), store=store) as s:
                s.submit_job(argv=["sleep", "120"])
        pid_a = _start(env_a)
        started.append(env_a)
        both = {f"ws-{h}" for h in HOSTS}
        _wait("host a's daemon to lease both clusters",
              lambda: all(_holders(env_b).get(n) == (HOSTS[0], pid_a) for n in both))
        # Host b runs no daemon of its own, yet sees who reconciles each cluster.
        text = _molq(env_b, "daemon", "status", check=3).stdout
        assert "not running for this store" in text
        lines = [line for line in text.splitlines() if line.startswith("ws-")]
        assert len(lines) == 2 and all(line.rstrip().endswith(f"{HOSTS[0]} pid {pid_a}") for line in lines), text

        pid_b = _start(env_b)
        started.append(env_b)
        _molq(env_a, "daemon", "stop")  # SIGTERM releases host a's leases; host b's daemon takes them
        _wait("host b's daemon to take both clusters over",
              lambda: all(_holders(env_a).get(n) == (HOSTS[1], pid_b) for n in both))
        text = _molq(env_a, "daemon", "status", check=3).stdout
        assert sum(line.rstrip().endswith(f"{HOSTS[1]} pid {pid_b}") for line in text.splitlines()) == 2, text
        assert _molq(env_b, "daemon", "status").stdout.startswith(f"molq daemon running: pid {pid_b}")
    finally:
        for env in started:
            _molq(env, "daemon", "stop", check=None)
        for host, env in zip(HOSTS, (env_a, env_b)):
            monkeypatch.setenv("MOLQ_HOSTNAME", host)
            monkeypatch.setenv("MOLQ_HOME", env["MOLQ_HOME"])
            with Submitor(Cluster(f"ws-{host}", "local"), store=store) as s:
                s.cancel_jobs([r.job_id for r in s.list_jobs()])
        store.close()


@pytest.mark.postgres
def test_daemon_status_names_lease_holders_across_hosts_postgres(pg_url, tmp_path, monkeypatch):
    _daemon_status_across_hosts(pg_url, tmp_path, monkeypatch)

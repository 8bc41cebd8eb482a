"""The managed daemon with real processes: `molq daemon start` refuses a second daemon, a
daemon killed with SIGKILL is taken over once its leases expire, `status` and `logs` show its
refreshes, `stop` releases its leases, and a local pipeline submitted by a script that exits
is completed by the daemon alone (a retry included, on time)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from clihelpers import cli_env, molq_runner
from waiting import wait_for


@pytest.fixture
def env(molq_home):
    return cli_env(molq_home)


@pytest.fixture
def molq(env, tmp_path):
    return molq_runner(env, tmp_path, timeout=60)


@pytest.fixture
def daemons(molq, molq_home):
    """Pids of the daemons a test starts; whatever still runs at the end is stopped."""
    started: list[int] = []
    yield started
    molq("daemon", "stop", check=None)
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start(molq, daemons, *args):
    out = molq("daemon", "start", *args).stdout
    pid = int(re.search(r"pid (\d+)", out).group(1))
    daemons.append(pid)
    return pid


def status(molq):
    proc = molq("daemon", "status", "--json", check=None)
    assert proc.returncode in (0, 3), proc.stderr
    return json.loads(proc.stdout)


def cluster_status(molq, name="local"):
    return next((c for c in status(molq)["clusters"] if c["name"] == name), None)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (our child was reaped by nobody) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def ts(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_second_start_refuses_naming_the_first_and_stop_releases_leases(molq, daemons, molq_home):
    job = molq("submit", "--", "sleep", "30").stdout.strip()
    pid = start(molq, daemons, "--interval", "0.3")
    refused = molq("daemon", "start", check=2)
    assert f"pid {pid}" in refused.stderr and "already running" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    # The foreground loop is refused the same way: one daemon per store.
    assert f"pid {pid}" in molq("daemon", "run", check=2).stderr
    owner = wait_for(lambda: (cluster_status(molq) or {}).get("lease_owner"), 10, "holding the lease")
    assert f":{pid}:" in owner
    data = status(molq)
    assert data["running"] and data["pid"] == pid and data["uptime_seconds"] >= 0
    stopped = molq("daemon", "stop").stdout
    assert f"pid {pid}" in stopped and "stopped" in stopped
    assert not alive(pid)
    after = status(molq)
    assert not after["running"] and cluster_status(molq)["lease_owner"] is None
    assert not (molq_home / "daemon.pid").exists()
    assert "no molq daemon is running" in molq("daemon", "stop").stderr
    molq("cancel", job)


def test_kill9_then_start_takes_over_within_the_lease_time(molq, daemons, env, molq_home, tmp_path):
    job = molq("submit", "--", "sleep", "30").stdout.strip()
    ttl = 8.0  # longer than starting the next daemon takes on a loaded machine
    # The first daemon serves the same store from another MOLQ_HOME (as another host would):
    # the next one has no pid file telling it that daemon died, only the lease's expiry.
    elsewhere = dict(env, MOLQ_HOME=str(tmp_path / "elsewhere"),
                     MOLQ_STORE_URL=f"sqlite:///{molq_home / 'jobs.db'}")
    out = subprocess.run([sys.executable, "-m", "molq", "daemon", "start", "--interval", "0.3",
                          "--lease-ttl", str(ttl)], env=elsewhere, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    first = int(re.search(r"pid (\d+)", out.stdout).group(1))
    daemons.append(first)
    wait_for(lambda: f":{first}:" in ((cluster_status(molq) or {}).get("lease_owner") or ""), 10, "leased")
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), 5, "dead")
    killed_at = time.monotonic()
    second = start(molq, daemons, "--interval", "0.3", "--lease-ttl", str(ttl))
    # Read in this process: a `molq daemon status` per look takes a second on a loaded machine.
    from molq.store import JobStore

    store = JobStore(f"sqlite:///{molq_home / 'jobs.db'}")
    from molq.engine.loops import daemon_lease_name
    from molq.identity import host_identity

    lease = daemon_lease_name("local", host=host_identity())  # a local cluster's lease names its host
    wait_for(lambda: f":{second}:" in ((store.lease_owner(lease) or ("",))[0]), ttl + 5, "taken over")
    took = time.monotonic() - killed_at
    store.close()
    assert ttl - 1 <= took <= ttl + 1.5, took  # not before the lease expired, and soon after
    wait_for(lambda: (cluster_status(molq) or {}).get("last_refresh_at"), 5, "refreshed by the new daemon")
    assert "another daemon" in molq("daemon", "logs").stdout  # it waited for the dead one's lease, and said so
    molq("cancel", job)


def test_a_killed_daemon_is_taken_over_at_once_by_the_next_one(molq, daemons):
    # With the default lease time (30 s): the new daemon knows from the stale pid file that
    # the lease holder was this store's daemon and is dead, so it does not wait.
    job = molq("submit", "--", "sleep", "30").stdout.strip()
    first = start(molq, daemons, "--interval", "0.3")
    wait_for(lambda: f":{first}:" in ((cluster_status(molq) or {}).get("lease_owner") or ""), 10, "leased")
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), 5, "dead")
    killed_at = time.monotonic()
    second = start(molq, daemons, "--interval", "0.3")
    wait_for(lambda: f":{second}:" in ((cluster_status(molq) or {}).get("lease_owner") or ""), 10, "taken over")
    assert time.monotonic() - killed_at < 10  # well inside the 30 s lease
    assert "took over the lease of a daemon that died" in molq("daemon", "logs").stdout
    molq("cancel", job)


PIPELINE = textwrap.dedent("""
    import sys
    from molq import Cluster, JobExecution, RetryBackoff, RetryPolicy, Submitor

    def named(name):
        return JobExecution(job_name=name)

    sub = Submitor(Cluster("local"))
    first = sub.submit_job(argv=["true"], execution=named("first"))
    second = sub.submit_job(command="echo second", execution=named("second"), after_success=[first.job_id])
    flaky = sub.submit_job(command="test -e {marker} || {{ touch {marker}; exit 3; }}", execution=named("flaky"),
                           retry=RetryPolicy(max_attempts=2, backoff=RetryBackoff(mode="fixed", initial_seconds=2)))
    last = sub.submit_job(argv=["true"], execution=named("last"), after_success=[second.job_id, flaky.job_id])
    print(first.job_id, second.job_id, flaky.job_id, last.job_id)
""")


def test_local_pipeline_completed_by_the_daemon_alone(molq, daemons, env, tmp_path):
    pid = start(molq, daemons, "--interval", "0.3")
    script = PIPELINE.format(marker=tmp_path / "failed-once")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    roots = proc.stdout.split()
    assert len(roots) == 4

    def jobs():
        # --no-refresh: this process must not advance anything itself.
        return json.loads(molq("list", "--all", "--json", "--no-refresh").stdout)

    def finished():
        listed = jobs()
        latest = {}
        for j in listed:
            if j["root_job_id"] in roots and j["attempt"] >= latest.get(j["root_job_id"], {}).get("attempt", 0):
                latest[j["root_job_id"]] = j
        done = len(latest) == 4 and all(j["state"] in ("succeeded", "failed", "cancelled") for j in latest.values())
        return listed if done and all(j["next_retry_at"] is None or j["state"] == "succeeded"
                                      for j in latest.values()) else None

    listed = wait_for(finished, 40, "finished")
    by_name: dict[str, list] = {}
    for j in listed:
        by_name.setdefault(j["name"], []).append(j)
    assert [j["state"] for j in by_name["first"]] == ["succeeded"]
    assert [j["state"] for j in by_name["second"]] == ["succeeded"]
    assert [j["state"] for j in by_name["last"]] == ["succeeded"]
    flaky = sorted(by_name["flaky"], key=lambda j: j["attempt"])
    assert [(j["attempt"], j["state"]) for j in flaky] == [(1, "failed"), (2, "succeeded")]
    assert flaky[0]["exit_code"] == 3
    # Retried on time: the 2 s backoff, plus at most about one daemon interval.
    delay = ts(flaky[1]["submitted_at"]) - ts(flaky[0]["finished_at"])
    assert 1.9 <= delay <= 2 + 1.5, delay
    # Every listed record says when its state was last confirmed.
    assert all(j["state_confirmed_at"] for j in listed)
    assert alive(pid)

    log = molq("daemon", "logs").stdout
    changed = [line for line in log.splitlines() if "changed" in line]
    assert changed and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line) for line in changed)
    assert any("1 retry started" in line for line in changed)
    local = cluster_status(molq)
    assert local["last_refresh_at"] and local["last_result"] is not None and local["last_error"] is None
    text = molq("daemon", "status").stdout
    assert f"pid {pid}" in text and "local" in text


def test_run_once_says_what_it_did(molq):
    assert "nothing to do" in molq("daemon", "run", "--once").stdout
    molq("submit", "--", "true")
    time.sleep(0.3)
    out = molq("daemon", "run", "--once").stdout
    assert re.search(r"^local: looked at 1 job\(s\), 1 changed", out, re.M), out
    assert "nothing to do" in molq("daemon", "--once").stdout  # the older spelling still works


def test_install_systemd_prints_a_unit(molq, molq_home):
    unit = molq("daemon", "install", "--systemd").stdout
    assert "[Service]" in unit and "daemon run" in unit and f"MOLQ_HOME={molq_home}" in unit
    assert "--systemd" in molq("daemon", "install", check=2).stderr


SLURM_CONF = os.environ.get("MOLQ_TEST_SLURM_ACCT_CONF")
needs_slurm = pytest.mark.usefixtures("slurm_acct_conf")  # fails in CI when SLURM is missing


def slurm_profile(molq):
    molq("profile", "add", "hpc", "--scheduler", "slurm", "--option", f"env.SLURM_CONF={SLURM_CONF}",
         "--partition", "debug", "--time", "5m")


def latest_states(molq, roots):
    latest: dict[str, dict] = {}
    for j in json.loads(molq("list", "--all", "--json", "--no-refresh").stdout):
        if j["root_job_id"] in roots and j["attempt"] >= latest.get(j["root_job_id"], {}).get("attempt", 0):
            latest[j["root_job_id"]] = j
    return latest


@pytest.mark.slurm
@needs_slurm
def test_slurm_pipeline_completed_by_a_started_daemon(molq, daemons, tmp_path):
    slurm_profile(molq)
    start(molq, daemons, "--interval", "1")
    marker = tmp_path / "failed-once"
    first = molq("submit", "-p", "hpc", "--command", f"test -e {marker} || {{ touch {marker}; exit 3; }}",
                 "--retries", "1").stdout.strip()
    submitted = molq("submit", "-p", "hpc", "--after-success", first[:8], "--", "true")
    second = submitted.stdout.strip()
    assert "started a daemon" not in submitted.stderr  # one already runs
    # Every submitting process has exited; only the daemon advances the jobs.
    done = wait_for(lambda: (lambda s: s if len(s) == 2 and all(j["state"] == "succeeded" for j in s.values())
                             else None)(latest_states(molq, [first, second])), 120, "completed")
    assert done[first]["attempt"] == 2 and done[second]["attempt"] == 1
    assert cluster_status(molq, "hpc")["last_refresh_at"]


@pytest.mark.slurm
@needs_slurm
def test_submit_with_a_retry_on_slurm_starts_a_daemon_once(molq, daemons, tmp_path):
    slurm_profile(molq)
    marker = tmp_path / "failed-once"
    proc = molq("submit", "-p", "hpc", "--command", f"test -e {marker} || {{ touch {marker}; exit 3; }}",
                "--retries", "1")
    job = proc.stdout.strip()
    pid = int(re.search(r"started a daemon \(pid (\d+)\)", proc.stderr).group(1))
    daemons.append(pid)
    assert "started a daemon" not in molq("submit", "-p", "hpc", "--after", job[:8], "--", "true").stderr
    wait_for(lambda: (latest_states(molq, [job]).get(job) or {}).get("state") == "succeeded", 120, "retried")
    # Started on demand, it leaves once no work is left.
    wait_for(lambda: not alive(pid), 30, "exited when idle")

"""The ``molq`` command line with a remote cluster: a profile with ``--host``, then submit,
logs, watch, cancel and show as separate processes, each reaching the job over ssh.

The profile carries the transport options (``--transport-option``) and the scheduler options
(``--option``); the store records them, so commands that only get a job id rebuild the same
remote cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from molq_ssh import SshTransport
from ssh_support import Sshd

pytestmark = pytest.mark.sshd

Molq = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def molq(molq_home: Path, tmp_path: Path) -> Molq:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = dict(os.environ, MOLQ_HOME=str(molq_home))
    env.pop("MOLQ_CONFIG", None)

    def run(*args: str, check: int | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "molq", *args], env=env, cwd=workdir,
                              capture_output=True, text=True, timeout=timeout)
        if check is not None:
            assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    run.workdir = workdir  # type: ignore[attr-defined]
    return run


@pytest.fixture
def remote_profile(molq: Molq, sshd: Sshd, control_dir: str, remote_dir: str) -> str:
    molq("profile", "add", "far", "--scheduler", "local", "--host", sshd.host,
         "--transport-option", f"config_file={sshd.config}",
         "--transport-option", f"control_dir={control_dir}",
         "--option", f"spool_dir={remote_dir}/spool", "--option", "max_cpus=4", check=0)
    return "far"


def test_submit_logs_and_exit_code_of_a_remote_job(molq: Molq, remote_profile: str, remote_dir: str,
                                                   transport: SshTransport, molq_home: Path) -> None:
    proc = molq("submit", "-p", remote_profile, "--cwd", remote_dir, "--wait", "--",
                "sh", "-c", "echo out one; echo out two; echo err >&2; exit 7", check=7)
    job_id = proc.stdout.strip()
    assert len(job_id) == 32
    assert molq("logs", job_id[:8], check=0).stdout == "out one\nout two\n"
    assert molq("logs", job_id[:8], "--stderr", check=0).stdout == "err\n"
    assert molq("logs", job_id[:8], "-n", "1", check=0).stdout == "out two\n"
    shown = json.loads(molq("show", job_id, "--json", check=0).stdout)
    assert (shown["state"], shown["exit_code"], shown["cluster"]) == ("failed", 7, "far")
    assert shown["job_dir"].startswith(f"{remote_dir}/.molq/jobs/")
    assert transport.read_text(f"{shown['job_dir']}/exit_code").strip() == "7"
    # The job's files are on the remote side only; locally there is the store and the profile.
    assert not [n for n in os.listdir(molq_home) if not (n.startswith("jobs.db") or n == "config.toml")]
    assert os.listdir(molq.workdir) == []  # type: ignore[attr-defined]


def test_follow_watch_and_cancel_remote_jobs(molq: Molq, remote_profile: str, remote_dir: str,
                                             transport: SshTransport) -> None:
    talker = molq("submit", "-p", remote_profile, "--cwd", remote_dir, "--",
                  "sh", "-c", "echo first; sleep 2; echo second", check=0).stdout.strip()
    sleeper = molq("submit", "-p", remote_profile, "--cwd", remote_dir, "--", "sleep", "300",
                   check=0).stdout.strip()
    # -f prints what the job writes, as it writes it, and returns when the job has ended.
    followed = molq("logs", "-f", talker[:8], check=0, timeout=60)
    assert followed.stdout == "first\nsecond\n"
    assert json.loads(molq("show", talker, "--json", check=0).stdout)["state"] == "succeeded"

    deadline = time.monotonic() + 30
    while json.loads(molq("show", sleeper, "--json", check=0).stdout)["state"] != "running":
        assert time.monotonic() < deadline
        molq("list", "--refresh", check=0)
    spool = f"{remote_dir}/spool"
    pgid = transport.read_text(f"{spool}/running/{sleeper}").split()[0]
    out = molq("cancel", sleeper[:8], check=0).stdout
    assert out.split() == [sleeper[:8], "cancelled"]
    alive = transport.run(["sh", "-c", 'ps -eo pgid=,stat= | awk -v g="$1" \'$1 == g && $2 !~ /^Z/\'', "sh", pgid])
    assert alive.stdout == ""
    # A separate `molq watch` (a new process and a new ssh client) sees the final states.
    watched = molq("watch", talker, sleeper, "--json", check=1)  # exit 1: not every job succeeded
    states = {r["job_id"]: r["state"] for r in json.loads(watched.stdout)}
    assert states == {talker: "succeeded", sleeper: "cancelled"}


def test_logs_of_a_queued_remote_job_is_a_clear_error(molq: Molq, remote_profile: str, remote_dir: str) -> None:
    busy = molq("submit", "-p", remote_profile, "--cwd", remote_dir, "--cpus", "4", "--", "sleep", "300",
                check=0).stdout.strip()
    waiting = molq("submit", "-p", remote_profile, "--cwd", remote_dir, "--", "echo", "later",
                   check=0).stdout.strip()
    try:
        assert json.loads(molq("show", waiting, "--json", check=0).stdout)["state"] in ("submitted", "queued")
        proc = molq("logs", waiting[:8])
        assert proc.returncode != 0 and proc.stdout == ""
        assert "no output file yet" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1  # one line, no traceback
    finally:
        molq("cancel", busy, waiting, check=0)
    states = {r["job_id"]: r["state"] for r in json.loads(molq("list", "--all", "--json", check=0).stdout)}
    assert states == {busy: "cancelled", waiting: "cancelled"}

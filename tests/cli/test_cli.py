"""The command line, driven as a user would: subprocesses against the real local scheduler
and a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest


@pytest.fixture
def molq(molq_home, tmp_path):
    env = dict(os.environ, MOLQ_HOME=str(molq_home))
    env.pop("MOLQ_CONFIG", None)

    def run(*args, check=None, input=None, timeout=60):
        proc = subprocess.run([sys.executable, "-m", "molq", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, input=input, timeout=timeout)
        if check is not None:
            assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    return run


def test_help_lists_commands(molq):
    out = molq("--help", check=0).stdout
    for name in ["submit", "list", "show", "watch", "cancel", "logs", "queue", "cleanup", "daemon", "profile", "plugins"]:
        assert name in out


def test_submit_wait_exit_code_and_logs(molq):
    proc = molq("submit", "--wait", "--name", "seven", "--", "sh", "-c", "echo out; echo err >&2; exit 7", check=7)
    job_id = proc.stdout.strip()
    assert len(job_id) == 32
    assert molq("logs", job_id[:6], check=0).stdout == "out\n"
    assert molq("logs", job_id[:6], "--stderr", check=0).stdout == "err\n"
    shown = json.loads(molq("show", job_id[:8], "--json", check=0).stdout)
    assert shown["state"] == "failed" and shown["exit_code"] == 7 and shown["name"] == "seven"
    assert [t["new_state"] for t in shown["transitions"]][0] == "created"
    assert shown["transitions"][-1]["new_state"] == "failed"


def test_list_json_shape_and_filters(molq):
    a = molq("submit", "--wait", "--", "true", check=0).stdout.strip()
    b = molq("submit", "--", "sleep", "30", check=0).stdout.strip()
    active = json.loads(molq("list", "--json", check=0).stdout)
    assert [j["job_id"] for j in active] == [b]
    everything = json.loads(molq("list", "--all", "--json", check=0).stdout)
    assert {j["job_id"] for j in everything} == {a, b}
    assert set(everything[0]) >= {"job_id", "short_id", "cluster", "state", "scheduler_job_id", "submitted_at"}
    assert everything[0]["submitted_at"].endswith("Z")
    succeeded = json.loads(molq("list", "--state", "succeeded", "--json", check=0).stdout)
    assert [j["job_id"] for j in succeeded] == [a]
    table = molq("list", "--all", check=0).stdout
    assert table.splitlines()[0].split()[:3] == ["ID", "CLUSTER", "STATE"]
    assert "\x1b[" not in table  # plain text when piped
    assert "ago" in table
    molq("cancel", b[:8], check=0)
    assert json.loads(molq("show", b, "--json", check=0).stdout)["state"] == "cancelled"


def test_dependencies_and_watch_exit_status(molq):
    first = molq("submit", "--", "sh", "-c", "sleep 0.5; exit 1", check=0).stdout.strip()
    second = molq("submit", "--after-failure", first[:8], "--", "true", check=0).stdout.strip()
    proc = molq("watch", first[:8], second[:8], timeout=60)
    assert proc.returncode == 1  # one of them failed
    assert json.loads(molq("show", second, "--json", check=0).stdout)["state"] == "succeeded"
    deps = json.loads(molq("show", second, "--json", check=0).stdout)["dependencies"]
    assert deps == [{"job_id": second, "depends_on": first, "condition": "after_failure",
                     "scheduler_dependency": f"after_failure:{first}"}]


def test_user_mistakes_are_one_line(molq):
    for args, needle in [
        (["show", "doesnotexist"], "no job matches"),
        (["submit", "--mem", "4Q", "--", "true"], "unknown memory unit"),
        (["submit", "-p", "nope", "--", "true"], "unknown profile 'nope'"),
        (["queue", "-c", "ghost"], "unknown cluster 'ghost'"),
        (["submit", "--time", "soon", "--", "true"], "cannot parse duration"),
    ]:
        proc = molq(*args)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
    assert json.loads(molq("list", "--all", "--json", check=0).stdout) == []


def test_ambiguous_prefix_lists_candidates(molq):
    ids = [molq("submit", "--", "true", check=0).stdout.strip() for _ in range(20)]
    prefix = None
    for i in ids:
        for j in ids:
            if i != j and i[0] == j[0]:
                prefix = i[0]
                break
        if prefix:
            break
    if prefix is None:
        pytest.skip("no shared first character among 20 random ids")  # vanishingly rare
    proc = molq("show", prefix)
    assert proc.returncode != 0 and "ambiguous" in proc.stderr
    assert sum(i in proc.stderr for i in ids if i.startswith(prefix)) >= 2


def test_profiles_round_trip_and_default(molq):
    # A default profile's defaults apply to a plain `molq submit`.
    molq("profile", "add", "small", "--cpus", "1", "--default", check=0)
    listing = json.loads(molq("profile", "list", "--json", check=0).stdout)
    assert listing == [{"schema": 1, "name": "small", "scheduler": "local", "cluster": "small", "host": None,
                        "default": True}]
    assert "cpu_count = 1" in molq("profile", "show", "small", check=0).stdout
    job = molq("submit", "--wait", "--", "true", check=0).stdout.strip()
    assert json.loads(molq("show", job, "--json", check=0).stdout)["cluster"] == "small"
    proc = molq("profile", "add", "hpc", "--scheduler", "nosuch")
    assert proc.returncode == 2 and "no scheduler named 'nosuch'" in proc.stderr and "local" in proc.stderr
    assert "pip install" not in proc.stderr  # no distribution of that name to suggest
    molq("profile", "remove", "small", check=0)
    assert json.loads(molq("profile", "list", "--json", check=0).stdout) == []


def test_plugins_lists_core(molq):
    rows = json.loads(molq("plugins", "--json", check=0).stdout)
    core = [r for r in rows if r["name"] == "molq-core"][0]
    assert "scheduler:local" in core["provides"] and core["error"] is None


def test_cleanup_dry_run_and_daemon_once(molq):
    molq("submit", "--", "sleep", "0.2", check=0)
    time.sleep(0.5)
    molq("daemon", "--once", check=0)
    assert json.loads(molq("list", "--json", check=0).stdout) == []
    out = json.loads(molq("cleanup", "--dry-run", "--json", check=0).stdout)
    assert out["dry_run"] is True and "local" in out["clusters"]


def test_completion_offers_job_ids(molq, molq_home):
    job = molq("submit", "--", "true", check=0).stdout.strip()
    env = dict(os.environ, MOLQ_HOME=str(molq_home), _MOLQ_COMPLETE="bash_complete",
               COMP_WORDS=f"molq show {job[:3]}", COMP_CWORD="2")
    proc = subprocess.run([sys.executable, "-c", "import sys; from molq.cli import cli; sys.exit(cli.main(prog_name='molq'))"],
                          env=env, capture_output=True, text=True)
    assert job[:8] in proc.stdout


def test_terminal_control_characters_in_user_data_are_escaped(molq):
    hostile = "evil\x1b]0;pwned\x07\x1b[2Jname"
    out = molq("submit", "--wait", "--name", hostile, "--", "true", check=0)
    job_id = out.stdout.split()[0] if out.stdout.split() else ""
    for args in (["list", "-a"], ["show", job_id or hostile]):
        proc = molq(*args)
        assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout, (args, proc.stdout)
    assert "\\x1b" in molq("list", "-a", "--wide").stdout

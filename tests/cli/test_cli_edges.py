"""The command line at its edges, driven as subprocesses: piped and in a real pseudo-terminal
of a given size. No user mistake or environment problem may reach stderr as a traceback."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import textwrap
import time

import pytest


@pytest.fixture
def env(molq_home):
    env = dict(os.environ, MOLQ_HOME=str(molq_home))
    for name in ("MOLQ_CONFIG", "MOLQ_STORE_URL", "NO_COLOR", "COLUMNS", "LINES", "MOLQ_BLOCK_PLUGINS"):
        env.pop(name, None)
    return env


@pytest.fixture
def molq(env, tmp_path):
    def run(*args, check=None, extra_env=None, timeout=120):
        proc = subprocess.run([sys.executable, "-m", "molq", *args], env={**env, **(extra_env or {})},
                              cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
        assert "Traceback" not in proc.stderr, proc.stderr
        if check is not None:
            assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    return run


@pytest.fixture
def molq_tty(env, tmp_path):
    """Run molq with stdout (and stdin) on a pseudo-terminal of ``columns`` x ``lines``."""

    def run(*args, columns=80, lines=24, extra_env=None, timeout=120):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        proc = subprocess.Popen([sys.executable, "-m", "molq", *args], env={**env, **(extra_env or {})},
                                cwd=tmp_path, stdin=slave, stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        rc = proc.wait(timeout=30)
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert "Traceback" not in err, err
        return rc, out.decode().replace("\r\n", "\n"), err

    return run


def submit_many(env, tmp_path, count, argv):
    """Submit ``count`` jobs in one process through the API (much faster than one CLI call each)."""
    code = textwrap.dedent(f"""
        from molq import Cluster, Submitor
        with Submitor(Cluster("local")) as sub:
            for i in range({count}):
                print(sub.submit_job(argv={argv!r}).job_id)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def one_line_error(proc, needle, status=2):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and needle in lines[-1], proc.stderr


def usage_error(proc, needle):
    """click's usage errors: the usage line, a hint, and "Error: ..." last."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and needle in last, proc.stderr


def test_environment_problems_are_one_line(molq, molq_home, tmp_path):
    usage_error(molq("submit", "--script", "nope.sh"), "'nope.sh' does not exist")
    one_line_error(molq("submit", "--cwd", str(tmp_path / "nonexistent"), "--", "true"), "no such directory")
    # The test environment has the PostgreSQL driver: hide it, as on a machine without it.
    hide = tmp_path / "no-driver" / "psycopg"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'psycopg\'", name="psycopg")\n')
    no_driver = {"MOLQ_STORE_URL": "postgresql://me@localhost/molq", "PYTHONPATH": str(hide.parent)}
    one_line_error(molq("submit", "--", "true", extra_env=no_driver), "pip install 'molq-core[postgresql]'")
    one_line_error(molq("list", extra_env=no_driver), "pip install 'molq-core[postgresql]'")
    one_line_error(molq("submit", "--", "true", extra_env={"MOLQ_HOME": "/proc/nope"}), "/proc/nope")
    # Nothing was persisted by any of these.
    assert json.loads(molq("list", "--all", "--json", check=0).stdout) == []
    (molq_home / "jobs.db").write_bytes(b"this is not a database" * 100)
    for args in (["list"], ["list", "--all", "--json"], ["show", "abc"], ["submit", "--", "true"]):
        one_line_error(molq(*args), "the job store")


def test_usage_mistakes_are_one_line_with_hints(molq):
    usage_error(molq("watch", "--interval", "-5", "abc"), "-5.0 is not in the range x>0")
    proc = molq("lsit")
    assert proc.returncode == 2 and "Did you mean 'list'" in proc.stderr
    one_line_error(molq("profile", "add", "x", "--scheduler", "nosuch"), "no scheduler named 'nosuch'")
    one_line_error(molq("profile", "add", "x", "--scheduler", "slrum"), "did you mean 'slurm'?")
    one_line_error(molq("profile", "add", "x", "--scheduler", "slurm", extra_env={"MOLQ_BLOCK_PLUGINS": "slurm"}),
                   "blocked: MOLQ_BLOCK_PLUGINS='slurm'")
    proc = molq("profile", "add", "x", "--option", "nonsense=1")
    one_line_error(proc, "unknown option 'nonsense' for the 'local' scheduler")
    assert "max_cpus" in proc.stderr and "extra fields" not in proc.stderr
    usage_error(molq("submit", "--command", "true", "--", "true"), "exactly one of")


def test_an_array_that_means_nothing_is_refused_and_stores_nothing(molq):
    for spec, problem in (("5-1", "empty range"), ("1-3%0", "throttle %0")):
        one_line_error(molq("submit", "--array", spec, "--", "true"), problem)
    assert molq("list", "-a", "--json").stdout.strip() == "[]"


def test_default_profile_applies_its_defaults_and_says_it_is_default(molq):
    added = molq("profile", "add", "hpc", "--scheduler", "slurm", "--partition", "debug", "--time", "10m", check=0)
    assert "now the default profile" in added.stdout
    second = molq("profile", "add", "other", "--scheduler", "slurm", check=0)
    assert "default" not in second.stdout
    listing = {p["name"]: p["default"] for p in json.loads(molq("profile", "list", "--json", check=0).stdout)}
    assert listing == {"hpc": True, "other": False}
    # Plain submit: the default profile's destination *and* its defaults.
    script = molq("submit", "--dry-run", "--", "hostname", check=0).stdout
    assert script.startswith("#!/bin/bash\n")
    assert "#SBATCH --partition=debug" in script and "#SBATCH --time=00:10:00" in script
    assert "hostname" in script
    # Options on the command line override them; -p other has none.
    assert "#SBATCH --partition=long" in molq("submit", "--dry-run", "--partition", "long", "--", "true", check=0).stdout
    assert "--partition" not in molq("submit", "--dry-run", "-p", "other", "--", "true", check=0).stdout
    # A dry run submits nothing.
    assert json.loads(molq("list", "--all", "--json", check=0).stdout) == []
    molq("profile", "add", "third", "--no-default", check=0)
    assert json.loads(molq("profile", "show", "hpc", "--json", check=0).stdout)["default"] is True


def test_command_line_text_and_script_file(molq, tmp_path):
    job = molq("submit", "--wait", "--command", "echo $((6*7)) > a && cat a", check=0).stdout.strip()
    assert molq("logs", job[:8], check=0).stdout == "42\n"
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho from-script\n")
    job = molq("submit", "--wait", "--script", "run.sh", check=0).stdout.strip()
    assert molq("logs", job[:8], check=0).stdout == "from-script\n"
    local = molq("submit", "--dry-run", "--command", "echo hi | tr a-z A-Z", check=0).stdout
    assert local.startswith("#!/bin/sh") and "echo hi | tr a-z A-Z" in local
    # The dry run is the script the job then runs, ids aside.
    job = molq("submit", "--wait", "--command", "echo hi | tr a-z A-Z", check=0).stdout.strip()
    written = (tmp_path / ".molq" / "jobs" / job / "job.sh").read_text()
    assert re.sub(r"[0-9a-f]{32}", "ID", local) == re.sub(r"[0-9a-f]{32}", "ID", written)
    assert molq("logs", job[:8], check=0).stdout == "HI\n"


def test_list_fits_the_terminal_and_honours_no_color(molq, molq_tty, env, tmp_path):
    long = ["sh", "-c", "sleep 30; echo " + "x" * 120]
    submit_many(env, tmp_path, 3, long)
    molq("submit", "--name", "train-1", "--", "true", check=0)
    time.sleep(1)
    rc, out, _ = molq_tty("list", "--all", "--refresh", columns=80)
    assert rc == 0
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in out.splitlines()]
    assert all(len(line) <= 80 for line in lines), lines
    assert "SCHED ID" not in lines[0]  # the local scheduler's id only repeats molq's
    assert lines[0].split()[:3] == ["ID", "CLUSTER", "STATE"] and "ELAPSED" in lines[0]
    assert "\x1b[" in out  # state colours on a terminal
    counts = re.fullmatch(r"(\d+ (?:running|queued|succeeded|submitted))(, \d+ \w+)*", lines[-1])
    assert counts and "running" in lines[-1], lines[-1]  # the summary line: a count per state
    assert sum(int(n) for n in re.findall(r"\d+", lines[-1])) == 4
    rc, plain, _ = molq_tty("list", "--all", columns=80, extra_env={"NO_COLOR": "1"})
    assert rc == 0 and "\x1b[" not in plain
    rc, wide, _ = molq_tty("list", "--all", "--wide", columns=80)
    assert max(len(line) for line in wide.splitlines()) > 80
    piped = molq("list", "--all", check=0).stdout
    assert "\x1b[" not in piped and "x" * 100 in piped  # piped: no colour, nothing cut
    named = json.loads(molq("list", "--all", "--name", "train-*", "--json", check=0).stdout)
    assert [j["name"] for j in named] == ["train-1"] and named[0]["schema"] == 1
    assert json.loads(molq("list", "--all", "--since", "1h", "--json", check=0).stdout).__len__() == 4
    assert json.loads(molq("list", "--all", "--until", "1h", "--json", check=0).stdout) == []
    by_name = json.loads(molq("list", "--all", "--sort", "name", "--json", check=0).stdout)
    assert by_name[-1]["name"] == "train-1"
    usage_error(molq("list", "--since", "yesterday-ish"), "expected a duration ago")
    picked = molq("list", "--all", "--columns", "state,name,id", check=0).stdout.splitlines()
    assert picked[0].split() == ["STATE", "NAME", "ID"] and any("train-1" in line for line in picked)
    usage_error(molq("list", "--columns", "state,colour"), "unknown column(s) colour")
    molq("cancel", "--all", "--yes", check=0)


def test_watch_dashboard_fits_the_window_and_cancel_by_filter(molq, molq_tty, env, tmp_path):
    ids = submit_many(env, tmp_path, 12, ["sleep", "60"])
    rc, out, err = molq_tty("watch", "--timeout", "1", "--interval", "0.5", columns=100, lines=10)
    assert rc == 124 and "still active" in err
    frame = out.rsplit("\x1b[H\x1b[J", 1)[-1]
    lines = frame.strip("\n").splitlines()
    assert lines[0].startswith("molq watch  local") and "running" in lines[0]
    assert len(lines) <= 10 and "more (molq list --all)" in lines[-1]
    # Piped: one line per job state, no escape sequences.
    piped = molq("watch", ids[0][:8], "--timeout", "0.5")
    assert piped.returncode == 124 and "\x1b[" not in piped.stdout and ids[0][:8] in piped.stdout
    # A filter needs --yes without a terminal; with it, every matching job is cancelled.
    proc = molq("cancel", "--state", "running")
    assert proc.returncode == 2 and "--yes" in proc.stderr
    done = molq("cancel", "--all", "--yes", check=0).stdout.splitlines()
    assert len(done) == 12 and all(line.endswith("cancelled") for line in done)
    shown = molq("show", ids[0][:8], check=0).stdout
    state = [line for line in shown.splitlines() if line.strip().startswith("state:")][0]
    assert state.split(":", 1)[1].strip() == "cancelled"  # no stale "(running)"


def test_logs_follow_status_and_cleaned_directories(molq, env):
    job = molq("submit", "--", "sh", "-c", "echo bad; exit 3", check=0).stdout.strip()
    follow = molq("logs", "-f", job[:8], check=1)
    assert follow.stdout == "bad\n"
    ok = molq("submit", "--", "echo", "good", check=0).stdout.strip()
    assert molq("logs", "-f", ok[:8], check=0).stdout == "good\n"
    preview = json.loads(molq("cleanup", job[:8], "--dry-run", "--json", check=0).stdout)
    assert preview["schema"] == 1 and preview["clusters"]["local"]["records"] == [job]
    assert molq("logs", job[:8], check=0).stdout == "bad\n"  # a dry run removed nothing
    molq("cleanup", job[:8], "--yes", check=0)
    one_line_error(molq("show", job[:8]), "no job matches")
    old = json.loads(molq("cleanup", "--older-than", "1d", "--json", check=0).stdout)
    assert old["clusters"] == {}  # nothing finished that long ago
    gone = json.loads(molq("cleanup", "--older-than", "0s", "--state", "succeeded", "--json", check=0).stdout)
    assert gone["clusters"]["local"]["records"] == [ok]
    # A job directory removed behind molq's back: said, not "no output file yet".
    third = molq("submit", "--wait", "--", "echo", "three", check=0).stdout.strip()
    shown = json.loads(molq("show", third[:8], "--json", check=0).stdout)
    shutil.rmtree(shown["job_dir"])
    one_line_error(molq("logs", third[:8]), "no longer exists")
    # Removed by the retention policy (the record stays): said too, with when.
    fourth = molq("submit", "--wait", "--", "echo", "four", check=0).stdout.strip()
    code = ("from molq import Cluster, Submitor, RetentionPolicy\n"
            "with Submitor(Cluster('local')) as sub:\n"
            "    sub.cleanup_jobs(retention_policy=RetentionPolicy(keep_job_dirs_for_days=0))\n")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60, capture_output=True)
    one_line_error(molq("logs", fourth[:8]), "cleanup removed its job directory")


def test_interrupted_wait_says_the_job_still_runs(env, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "molq", "submit", "--wait", "--", "sleep", "30"], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job = proc.stdout.readline().strip()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert f"job {job[:8]} is still" in err and f"molq cancel {job[:8]}" in err
    subprocess.run([sys.executable, "-m", "molq", "cancel", job[:8]], env=env, cwd=tmp_path, timeout=60,
                   capture_output=True)


def test_a_locked_store_is_said_not_silent(molq, molq_home, env, tmp_path):
    molq("list", "--all", check=0)
    molq("submit", "--wait", "--", "true", check=0)  # creates the store
    holder = sqlite3.connect(molq_home / "jobs.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "molq", "submit", "--", "true"], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(5)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert "waiting for the job store" in err and "write lock" in err
    assert len(out.strip()) == 32


def documented_job_fields():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    table = text.split("<!-- json-fields: job -->", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)


def test_json_shape_is_versioned_and_documented(molq):
    fields = documented_job_fields()
    assert "schema" in fields and "job_id" in fields
    job = molq("submit", "--wait", "--json", "--name", "doc", "--", "true", check=0).stdout
    submitted = json.loads(job[: job.rindex("}") + 1])
    assert set(submitted) == set(fields) and submitted["schema"] == 1
    listed = json.loads(molq("list", "--all", "--json", check=0).stdout)
    assert [set(j) for j in listed] == [set(fields)]
    shown = json.loads(molq("show", listed[0]["job_id"], "--json", check=0).stdout)
    assert set(shown) == set(fields) | {"transitions", "retry_family", "dependencies", "dependents", "pending_reason"}
    assert shown["elapsed_seconds"] is not None and shown["schema"] == 1
    assert json.loads(molq("cleanup", "--dry-run", "--json", check=0).stdout)["schema"] == 1
    assert all(p["schema"] == 1 for p in json.loads(molq("plugins", "--json", check=0).stdout))

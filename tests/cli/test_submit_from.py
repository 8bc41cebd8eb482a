"""``molq submit --from FILE``: many jobs from one file, every one checked before any is stored,
on the real local scheduler (and, for a submission the scheduler refuses, the real SLURM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from clihelpers import cli_env, molq_runner


@pytest.fixture
def molq(molq_home, tmp_path):
    return molq_runner(cli_env(molq_home), tmp_path, timeout=180)


def _shown(molq, job_id: str) -> dict:
    return json.loads(molq("show", job_id, "--json").stdout)


def test_a_plain_file_is_one_shell_command_per_line(molq, tmp_path) -> None:
    (tmp_path / "jobs.txt").write_text("echo one > one.out\n# a comment\n\n  \necho two; exit 3\n")
    proc = molq("submit", "--from", "jobs.txt", "--wait", check=1)  # one job failed
    ids = proc.stdout.split()
    assert len(ids) == 2
    first, second = (_shown(molq, i) for i in ids)
    assert (first["command"], first["state"], first["exit_code"]) == ("echo one > one.out", "succeeded", 0)
    assert (second["command"], second["state"], second["exit_code"]) == ("echo two; exit 3", "failed", 3)
    assert (tmp_path / "one.out").read_text() == "one\n"
    assert "1 of 2 jobs succeeded" in proc.stderr


def test_toml_jobs_take_the_command_line_options_as_defaults(molq, tmp_path) -> None:
    (tmp_path / "jobs.toml").write_text(
        '[[job]]\nargv = ["sh", "-c", "echo $X $Y > a.out"]\nname = "first"\nenv = {X = "own"}\n\n'
        '[[job]]\ncommand = "echo $X $Y > b.out"\n')
    ids = molq("submit", "--from", "jobs.toml", "--env", "X=default", "--env", "Y=both", "--name", "batch",
               "--wait").stdout.split()
    a, b = (_shown(molq, i) for i in ids)
    assert (a["name"], b["name"]) == ("first", "batch")
    assert (tmp_path / "a.out").read_text() == "own both\n"  # the job's own variable wins
    assert (tmp_path / "b.out").read_text() == "default both\n"


def test_json_list_and_standard_input(molq, molq_home, tmp_path) -> None:
    (tmp_path / "jobs.json").write_text(json.dumps({"jobs": [{"command": "exit 0"}, {"argv": ["true"]}]}))
    assert len(molq("submit", "--from", "jobs.json").stdout.split()) == 2
    proc = subprocess.run([sys.executable, "-m", "molq", "submit", "--from", "-", "--json"],
                          input="echo a\necho b\necho c\n", capture_output=True, text=True, cwd=tmp_path,
                          env=cli_env(molq_home), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [j["command"] for j in json.loads(proc.stdout)] == ["echo a", "echo b", "echo c"]
    assert len(json.loads(molq("list", "-a", "--json").stdout)) == 5


@pytest.mark.parametrize(("name", "text", "said"), [
    ("jobs.json", '[{"command": "true"}, {"command": "true", "cpu": 2}]', "jobs.json: job 2: unknown key(s) 'cpu'"),
    ("jobs.toml", '[[job]]\nargv = ["true"]\ncommand = "x"\n', "jobs.toml: job 1: give exactly one of command"),
    ("jobs.toml", '[[job]]\ncommand = "true"\n[[job]]\ncommand = "true"\nmem = "lots"\n', "jobs.toml: job 2:"),
    ("jobs.toml", '[[job]]\ncommand = "true"\ncpus = "two"\n', "cpus = 'two' is not a whole number"),
    ("jobs.json", '{"command": "true"}', "give a list of jobs"),
    ("jobs.txt", "# only a comment\n", "no jobs in it"),
    ("jobs.toml", "[[job]\n", "not valid TOML"),
])
def test_a_bad_file_is_refused_before_anything_is_stored(molq, tmp_path, name, text, said) -> None:
    (tmp_path / name).write_text(text)
    proc = molq("submit", "--from", name, check=2)
    assert said in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert json.loads(molq("list", "-a", "--json").stdout) == []


def test_from_excludes_a_command_of_its_own(molq, tmp_path) -> None:
    (tmp_path / "jobs.txt").write_text("true\n")
    assert "drop a command after --" in molq("submit", "--from", "jobs.txt", "--", "true", check=2).stderr
    assert "--concurrency goes with --from" in molq("submit", "--concurrency", "2", "--", "true", check=2).stderr


@pytest.mark.usefixtures("slurm_acct_conf")
def test_a_refused_submission_fails_only_its_own_job(molq_home, tmp_path) -> None:
    """On the real SLURM: one job of three names a partition that does not exist."""
    molq = molq_runner(cli_env(molq_home, drop_store_url=False), tmp_path, timeout=180)
    conf = os.environ["MOLQ_TEST_SLURM_ACCT_CONF"]
    molq("profile", "add", "hpc", "--scheduler", "slurm", "--option", f"env.SLURM_CONF={conf}", "--time", "5m")
    (tmp_path / "jobs.toml").write_text('[[job]]\ncommand = "true"\n[[job]]\ncommand = "true"\n'
                                        'partition = "no-such-partition"\n[[job]]\nargv = ["true"]\n')
    proc = molq("submit", "--from", "jobs.toml", "--wait", "--concurrency", "3", check=1)
    ids = proc.stdout.split()
    assert len(ids) == 3
    states = [_shown(molq, i)["state"] for i in ids]
    assert states == ["succeeded", "failed", "succeeded"]
    assert "jobs.toml: job 2: job " in proc.stderr and "partition" in proc.stderr.lower()
    assert len(json.loads(molq("list", "-a", "--json").stdout)) == 3  # nothing duplicated

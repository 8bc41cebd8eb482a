"""Fresh state where people look: `molq list` and `show` refresh the active jobs they show
when the stored state is stale, say how old it is when they do not (`--no-refresh`, a
cluster that cannot be asked), and their JSON says when each state was last confirmed."""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import pytest
from clihelpers import cli_env, molq_runner


@pytest.fixture
def env(molq_home):
    return cli_env(molq_home)


@pytest.fixture
def molq(env, tmp_path):
    return molq_runner(env, tmp_path, timeout=120)


def ts(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_list_and_show_refresh_a_stale_local_job(molq):
    job = molq("submit", "--", "sleep", "0.2").stdout.strip()
    other = molq("submit", "--", "sleep", "0.2").stdout.strip()
    time.sleep(1.0)  # both have ended; nobody has refreshed since
    stale = molq("list", "--all", "--json", "--no-refresh")
    states = {j["job_id"]: j["state"] for j in json.loads(stale.stdout)}
    assert states[job] not in ("succeeded",) and states[other] != "succeeded"
    (note,) = stale.stderr.strip().splitlines()
    assert note.startswith("molq: local: not refreshed (--no-refresh)")
    shown = molq("show", other[:8], "--json", "--no-refresh")
    assert json.loads(shown.stdout)["state"] != "succeeded" and "not refreshed" in shown.stderr

    before = time.time()
    fresh = molq("list", "--all", "--json")
    assert fresh.stderr == ""
    listed = {j["job_id"]: j for j in json.loads(fresh.stdout)}
    assert listed[job]["state"] == "succeeded" and listed[job]["exit_code"] == 0
    confirmed = ts(listed[job]["state_confirmed_at"])
    assert ts(listed[job]["finished_at"]) <= confirmed <= time.time()
    # The other job is finished now too (one refresh covers the cluster); show needs none.
    data = json.loads(molq("show", other[:8], "--json").stdout)
    assert data["state"] == "succeeded" and ts(data["state_confirmed_at"]) <= before + 5


def test_show_refreshes_the_job_it_shows(molq):
    job = molq("submit", "--", "true").stdout.strip()
    time.sleep(0.5)
    state_line = next(line for line in molq("show", job[:8]).stdout.splitlines() if line.strip().startswith("state:"))
    assert "succeeded" in state_line


SLURM_CONF = os.environ.get("MOLQ_TEST_SLURM_ACCT_CONF")


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_acct_conf")  # fails in CI when SLURM is missing
def test_a_cluster_that_cannot_be_asked_is_one_line_with_the_age(molq, molq_home, tmp_path):
    molq("profile", "add", "hpc", "--scheduler", "slurm", "--option", f"env.SLURM_CONF={SLURM_CONF}",
         "--partition", "debug", "--time", "5m")
    job = molq("submit", "-p", "hpc", "--", "sleep", "60").stdout.strip()
    try:
        first = json.loads(molq("list", "--json").stdout)
        assert [j["job_id"] for j in first] == [job] and first[0]["state_confirmed_at"]
        # The cluster's configuration is broken: squeue cannot even start. (A missing file
        # would do too, but squeue waits 60 s for it to appear.)
        (tmp_path / "missing.conf").write_text("")
        config = molq_home / "config.toml"
        config.write_text(config.read_text().replace(SLURM_CONF, str(tmp_path / "missing.conf")))
        time.sleep(5.5)  # past the few seconds a refresh is trusted
        proc = molq("list", "--json")
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("molq: hpc: could not refresh"), proc.stderr
        assert "confirmed" in lines[0] and "ago" in lines[0]
        (again,) = json.loads(proc.stdout)
        assert again["state"] == first[0]["state"]  # no evidence changes nothing
        assert again["state_confirmed_at"] == first[0]["state_confirmed_at"]
    finally:
        config = molq_home / "config.toml"
        config.write_text(config.read_text().replace(str(tmp_path / "missing.conf"), SLURM_CONF))
        molq("cancel", job[:8], check=None)

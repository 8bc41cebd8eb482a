"""The command line against the real SLURM cluster with accounting (tests/services): a plain
`molq submit` carries the default profile's defaults into the job script, `--dry-run` prints
that script exactly, and the pending reason of a queued job is shown."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from clihelpers import cli_env, molq_runner

CONF = os.environ.get("MOLQ_TEST_SLURM_ACCT_CONF")
pytestmark = pytest.mark.usefixtures("slurm_acct_conf")  # fails in CI when SLURM is missing


@pytest.fixture
def molq(molq_home, tmp_path):
    return molq_runner(cli_env(molq_home, drop_store_url=False), tmp_path, timeout=180)


def without_ids(script: str) -> str:
    return re.sub(r"(?:molq-)?[0-9a-f]{32}|molq-[0-9a-f]{8}", "ID", script)


def test_default_profile_dry_run_and_pending_reason(molq, tmp_path):
    molq("profile", "add", "hpc", "--scheduler", "slurm", "--option", f"env.SLURM_CONF={CONF}",
         "--partition", "debug", "--time", "10m")
    preview = molq("submit", "--dry-run", "--name", "blocker", "--", "sleep", "300").stdout
    blocker = molq("submit", "--name", "blocker", "--", "sleep", "300").stdout.strip()
    try:
        written = (tmp_path / ".molq" / "jobs" / blocker / "job.sh").read_text()
        assert "#SBATCH --partition=debug" in written and "#SBATCH --time=00:10:00" in written
        assert without_ids(preview) == without_ids(written)  # the dry run is the submitted script
        waiting = molq("submit", "--after-success", blocker[:8], "--", "true").stdout.strip()
        deadline = time.monotonic() + 60
        while True:
            listed = molq("list", "--refresh", "--json").stdout
            state = {j["job_id"]: j["state"] for j in json.loads(listed)}
            if state.get(waiting) == "queued" or time.monotonic() > deadline:
                break
            time.sleep(1)
        shown = json.loads(molq("show", waiting[:8], "--json").stdout)
        assert shown["state"] == "queued" and shown["pending_reason"] == "Dependency"
        text = molq("show", waiting[:8]).stdout
        assert "queued (PENDING: Dependency)" in text
        table = molq("list", "--refresh").stdout
        assert "REASON" in table.splitlines()[0] and "Dependency" in table
    finally:
        molq("cancel", "--all", "--yes")
    cancelled = molq("show", blocker[:8]).stdout
    state = [line for line in cancelled.splitlines() if line.strip().startswith("state:")][0]
    assert state.split(":", 1)[1].strip() == "cancelled"
    assert Path(tmp_path).exists()

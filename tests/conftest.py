"""Shared test configuration: every test gets its own MOLQ_HOME (store, profiles, spool)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from molq.plugins import reset_plugin_manager

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(available: bool, what: str) -> None:
    """Skip outside CI when a real service is missing; in CI, fail: it must be there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI (CI=true) but is not available")
    pytest.skip(f"{what} is not available (run tests/services/up.sh)")


@pytest.fixture
def slurm_acct_conf() -> str:
    """slurm.conf of the real test cluster with accounting (tests/services/slurm.sh)."""
    conf = os.environ.get("MOLQ_TEST_SLURM_ACCT_CONF", "")
    require_service(bool(conf), "the test SLURM cluster (MOLQ_TEST_SLURM_ACCT_CONF)")
    return conf


@pytest.fixture
def ssh_test_config() -> str:
    """ssh_config of the real test sshd (tests/services/sshd.sh)."""
    config = os.environ.get("MOLQ_TEST_SSH_CONFIG", "")
    require_service(bool(config), "the test sshd (MOLQ_TEST_SSH_CONFIG)")
    return config


@pytest.fixture(autouse=True)
def molq_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("molq-home")
    monkeypatch.setenv("MOLQ_HOME", str(home))
    monkeypatch.delenv("MOLQ_CONFIG", raising=False)
    monkeypatch.delenv("MOLQ_STORE_URL", raising=False)
    monkeypatch.delenv("MOLQ_BLOCK_PLUGINS", raising=False)
    # No daemon started on demand by a submission: a test that wants one drops this.
    monkeypatch.setenv("MOLQ_AUTO_DAEMON", "0")
    reset_plugin_manager()
    yield home
    reset_plugin_manager()

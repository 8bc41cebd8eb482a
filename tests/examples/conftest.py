"""Fixtures for the example packages in ``examples/``: the real atd and the real SLURM clusters.

Both services come from ``tests/services/up.sh``. Without them the live tests skip, except with
``CI=true``, where they fail (the same rule as ``require_service`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_DIR = Path(os.environ.get("MOLQ_TEST_DIR", "/var/lib/molq-test"))
GOLDEN = Path(__file__).resolve().parent / "golden"


def need(available: bool, what: str, script: str) -> None:
    """Skip outside CI when a real service is missing; fail in CI."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI (CI=true) but is not available", pytrace=False)
    pytest.skip(f"{what} is not available (start it with tests/services/{script})")


def _atd_running() -> bool:
    if not (shutil.which("at") and shutil.which("atq") and shutil.which("atrm")):
        return False
    try:
        pid = int(Path("/run/atd.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


@pytest.fixture
def atd() -> None:
    """A running atd with the at client programs on PATH."""
    need(_atd_running(), "atd (Debian package `at`)", "at.sh")


def _env_file_vars(path: Path, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        key, _, value = line.strip().removeprefix("export ").partition("=")
        if key.startswith(prefix):
            out[key] = value.strip().strip('"').strip("'")
    return out


@pytest.fixture
def slurm_conf() -> str:
    """``SLURM_CONF`` of the test cluster with accounting (``molqacct``), checked with sinfo."""
    conf = os.environ.get("MOLQ_TEST_SLURM_ACCT_CONF") or _env_file_vars(
        TEST_DIR / "slurm" / "env.sh", "MOLQ_TEST_SLURM_"
    ).get("MOLQ_TEST_SLURM_ACCT_CONF")
    ok = bool(conf) and Path(conf).exists() and shutil.which("sinfo") is not None
    if ok:
        probe = subprocess.run(["sinfo", "--noheader"], env=dict(os.environ, SLURM_CONF=conf),
                               capture_output=True, text=True, timeout=30)
        ok = probe.returncode == 0
    need(ok, "the SLURM test cluster molqacct", "slurm.sh")
    return conf  # type: ignore[return-value]

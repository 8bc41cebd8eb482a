"""The codebase stays ruff- and mypy-clean (configuration in the root pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["molq-core/src", "molq-slurm/src", "molq-pbs/src", "molq-lsf/src", "molq-ssh/src"]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_finds_nothing() -> None:
    result = _run("mypy", *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr

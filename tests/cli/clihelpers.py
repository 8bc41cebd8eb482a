"""Shared helpers of the command-line tests: ``molq`` run as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cli_env(molq_home: Path, *, drop_store_url: bool = True) -> dict[str, str]:
    """This process's environment for ``molq``, on the test's home and no stray config."""
    env = dict(os.environ, MOLQ_HOME=str(molq_home))
    env.pop("MOLQ_CONFIG", None)
    if drop_store_url:
        env.pop("MOLQ_STORE_URL", None)
    return env


def molq_runner(env: dict[str, str], cwd: Path, *, timeout: float) -> Callable[..., Any]:
    """``run(*args, check=0)``: ``molq`` with ``args``; never a traceback, exit ``check`` (None: any)."""

    def run(*args: str, check: int | None = 0, timeout: float = timeout) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "molq", *args], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)
        assert "Traceback" not in proc.stderr, proc.stderr
        if check is not None:
            assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    return run

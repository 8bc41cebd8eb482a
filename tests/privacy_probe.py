"""Another local user trying to read what molq and its jobs created (the privacy tests).

The other user is uid/gid 65534, switched to with setpriv(1); it needs root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest


def require_another_user() -> None:
    """Skip unless this test can act as another user (root, with setpriv)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv(1) to act as another user")


def tree(roots: Iterable[Path]) -> list[Path]:
    """Every root and, for a directory, everything below it."""
    return [p for root in roots for p in ([root, *root.rglob("*")] if root.is_dir() else [root])]


def readable_by_another_user(paths: Iterable[Path]) -> list[str]:
    """The paths uid 65534 can list (a directory) or read (a file)."""
    readable = []
    for p in paths:
        probe = ["ls", "--", str(p)] if p.is_dir() else ["cat", "--", str(p)]
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *probe],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            readable.append(str(p))
    return readable

"""Who and where this molq process is: its home folder and its host identity.

The one place both are resolved. Standard library only, and only ``os`` at import time (the
command line's fast paths use it). ``MOLQ_HOME`` moves the store, profiles, caches and locks;
``MOLQ_HOSTNAME`` overrides the host name recorded on every job and used in lease owners, so
that processes sharing one store (several login nodes, or tests posing as several hosts) can
tell each other apart.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["host_identity", "molq_home", "molq_home_dir", "pid_alive"]


def molq_home_dir() -> str:
    """``$MOLQ_HOME`` or ``~/.molq``, as a string (no :mod:`pathlib` import)."""
    return os.environ.get("MOLQ_HOME") or os.path.join(os.path.expanduser("~"), ".molq")


def molq_home() -> Path:
    """``$MOLQ_HOME`` or ``~/.molq``: where the store, profiles, caches and locks live."""
    from pathlib import Path

    return Path(molq_home_dir())


def host_identity() -> str:
    """``$MOLQ_HOSTNAME`` or this machine's host name."""
    override = os.environ.get("MOLQ_HOSTNAME")
    if override:
        return override
    import socket  # not loaded by the command line's fast paths otherwise

    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists and has not ended (a zombie has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True

"""Who and where this molq process is: its home folder and its host identity.

Standard library only (the command line's fast paths import it). ``MOLQ_HOME`` moves the
store, profiles, caches and locks; ``MOLQ_HOSTNAME`` overrides the host name recorded on every
job and used in lease owners, so that processes sharing one store (several login nodes, or
tests posing as several hosts) can tell each other apart.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["host_identity", "molq_home"]


def molq_home() -> Path:
    """``$MOLQ_HOME`` or ``~/.molq``: where the store, profiles, caches and locks live."""
    return Path(os.environ.get("MOLQ_HOME") or Path.home() / ".molq")


def host_identity() -> str:
    """``$MOLQ_HOSTNAME`` or this machine's host name."""
    return os.environ.get("MOLQ_HOSTNAME") or socket.gethostname()

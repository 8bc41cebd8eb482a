"""Who and where this process is: the host identity records carry, and molq's home folder.

``MOLQ_HOSTNAME`` overrides the host name (tests run several "hosts" on one machine; a site may
prefer a stable name over a login node's). ``MOLQ_HOME`` relocates ``~/.molq``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["host_name", "molq_home"]


def host_name() -> str:
    """The host identity stored on records this process submits."""
    return os.environ.get("MOLQ_HOSTNAME") or socket.gethostname()


def molq_home() -> Path:
    """``$MOLQ_HOME`` or ``~/.molq``."""
    env = os.environ.get("MOLQ_HOME")
    return Path(env).expanduser() if env else Path.home() / ".molq"

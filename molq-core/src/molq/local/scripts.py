"""The POSIX shell scripts that drive a spool, loaded from the package's ``sh`` folder.

Every script is ``lib.sh`` followed by the script's own file, run as
``sh -c TEXT molq SPOOL ARGS...``. The ``advance`` script is also installed in the spool
(``bin/advance.<hash>.sh``), where a job's wrapper runs it when the job ends.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

__all__ = ["script", "advance_name", "SCRIPT_NAMES"]

SCRIPT_NAMES = ("init", "advance", "submit", "poll", "cancel", "queue", "known", "forget", "requeue")


@functools.cache
def _read(name: str) -> str:
    return resources.files("molq.local").joinpath("sh").joinpath(f"{name}.sh").read_text()


@functools.cache
def script(name: str) -> str:
    """The full text of script ``name`` (the library first)."""
    return _read("lib") + "\n" + _read(name)


@functools.cache
def advance_name() -> str:
    """The file name of the installed ``advance`` script: a new text gets a new name, so a
    job's wrapper always runs the text it was written for."""
    return f"advance.{hashlib.sha256(script('advance').encode()).hexdigest()[:12]}.sh"

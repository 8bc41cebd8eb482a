"""Crash points for the fault-injection tests.

``MOLQ_TEST_CRASH_AT=<point>`` makes the process kill itself with SIGKILL when it reaches that
point (nothing is flushed, no handler runs), so the tests can prove that a crash at every step
of a submission, refresh, cancel, retry or release loses and duplicates nothing. Unset (always,
outside the tests) a point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["crash_point", "POINTS"]

#: Every crash point, in the order a job meets them.
POINTS = (
    "submit:after-insert",        # the record exists, the scheduler was not called
    "submit:after-scheduler",     # the scheduler accepted the job, its id is not recorded
    "refresh:after-observe",      # the scheduler was asked, nothing decided yet
    "refresh:after-write",        # decisions written, events and retries not done
    "cancel:after-command",       # the scheduler was asked to stop the jobs, nothing recorded
    "retry:after-claim",          # the next attempt is recorded, not submitted
    "hold:after-claim",           # a held job was taken for release, not submitted
    "adopt:after-find",           # the scheduler named the orphans' jobs, nothing recorded
)


def crash_point(name: str) -> None:
    """SIGKILL this process if the tests asked for a crash at ``name``."""
    if os.environ.get("MOLQ_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)

"""The ``at`` job states and how molq reads them.

``atq`` has no state column: the queue name is the state. A job waiting for its turn sits in
the queue it was submitted to (``b`` for ``batch``); once atd starts it, atq lists it in the
special queue ``=``. A job that finished is simply gone: at keeps no accounting, so the final
state comes from the exit-code file of molq's job wrapper (0: succeeded, anything else: failed,
128+N: killed by signal N). A job that vanished without writing one ends as ``lost``.

The ``# --8<--`` comments mark the parts that the documentation page "Write a plugin" quotes.

>>> map_state("=")
<JobState.RUNNING: 'running'>
>>> map_state("b")
<JobState.QUEUED: 'queued'>
"""

from __future__ import annotations

import string

from molq.model import JobState

__all__ = ["AT_STATES", "RUNNING_QUEUE", "QUEUE_LETTERS", "map_state"]

#: The queue name atq shows for jobs that are running.
RUNNING_QUEUE = "="

#: The names of at's ordinary queues.
QUEUE_LETTERS = string.ascii_letters

# --8<-- [start:states]
#: Native state (atq's queue column) -> (molq state, what at means by it).
AT_STATES: dict[str, tuple[JobState, str]] = {
    "a-z, A-Z": (
        JobState.QUEUED,
        "waiting in that queue: for its start time, or (batch queues) for the load average to drop",
    ),
    RUNNING_QUEUE: (JobState.RUNNING, "started by atd and still running"),
}


def map_state(queue: str) -> JobState:
    """The molq state of a job that atq lists in ``queue``.

    Only ``=`` means running; a listed job in any other queue has not started yet.
    """
    return JobState.RUNNING if queue == RUNNING_QUEUE else JobState.QUEUED
# --8<-- [end:states]

"""The molq data model: immutable values describing jobs, their resources and their history.

Every class is a frozen attrs class. :mod:`molq.serde` turns them into plain data for the store
and for TOML profiles. Import the names from here (``from molq.model import JobSpec``); each
concept lives in its own module:

- :mod:`molq.model.quantities`: :class:`Memory`, :class:`Duration`
- :mod:`molq.model.submission`: :class:`Script`, :class:`JobResources`, :class:`JobScheduling`,
  :class:`JobExecution`, :class:`DependencyRef` (what a user submits)
- :mod:`molq.model.records`: the state machine's legal moves and the persisted values
  (:class:`JobRecord`, :class:`StatusTransition`, :class:`JobDependency`, :class:`QueueEntry`)
- :mod:`molq.model.policies`: :class:`RetryPolicy`, :class:`RetentionPolicy`,
  :class:`SubmitorDefaults` and the merge of a job's settings onto the defaults
- :mod:`molq.model.spec`: :class:`JobSpec`, :class:`SchedulerCapabilities`,
  :class:`SchedulerStatus` (what a scheduler receives and reports)
"""

from __future__ import annotations

# JobState lives in its own small module so that `molq list` can read records without
# importing this package (defining the attrs classes costs tens of milliseconds).
from molq._states import ACTIVE_STATES, TERMINAL_STATES, JobState, SubState
from molq.model.policies import (
    RetentionPolicy,
    RetryBackoff,
    RetryPolicy,
    SubmitorDefaults,
)
from molq.model.policies import merge_onto_default as merge_onto_default
from molq.model.quantities import Duration, Memory
from molq.model.records import ALLOWED_TRANSITIONS as ALLOWED_TRANSITIONS
from molq.model.records import JobDependency, JobRecord, QueueEntry, StatusTransition
from molq.model.spec import CAPABILITY_FIELDS as CAPABILITY_FIELDS
from molq.model.spec import CompiledDependency as CompiledDependency
from molq.model.spec import JobSpec, SchedulerCapabilities, SchedulerStatus, TerminalStatus
from molq.model.submission import (
    DEPENDENCY_CONDITIONS,
    DependencyCondition,
    DependencyRef,
    JobExecution,
    JobResources,
    JobScheduling,
    Script,
)
from molq.model.submission import check_extra_directives as check_extra_directives
from molq.model.submission import upgrade_legacy_scheduling as upgrade_legacy_scheduling

__all__ = [
    "DependencyCondition",
    "DEPENDENCY_CONDITIONS",
    "Memory",
    "Duration",
    "Script",
    "JobResources",
    "JobScheduling",
    "JobExecution",
    "DependencyRef",
    "JobState",
    "SubState",
    "TERMINAL_STATES",
    "ACTIVE_STATES",
    "JobRecord",
    "StatusTransition",
    "JobDependency",
    "QueueEntry",
    "RetryBackoff",
    "RetryPolicy",
    "RetentionPolicy",
    "SubmitorDefaults",
    "SchedulerCapabilities",
    "SchedulerStatus",
    "TerminalStatus",
    "JobSpec",
]

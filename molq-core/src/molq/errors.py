"""Exceptions raised by molq.

Every error a user can cause derives from :class:`MolqError`, so callers (and the CLI) can
catch one type and print one clear line.
"""

from __future__ import annotations


class MolqError(Exception):
    """Base class of every molq error."""


class ConfigError(MolqError, ValueError):
    """Invalid user input: a bad field, an unparsable quantity, an unknown profile.

    Raised before anything is persisted or submitted.
    """


class PluginNotFoundError(ConfigError):
    """A scheduler, transport or store name that no installed plugin provides."""

    def __init__(self, kind: str, name: str, hint: str | None = None) -> None:
        self.kind = kind
        self.name = name
        self.hint = hint or f"pip install molq-{name}"
        super().__init__(
            f"no {kind} named {name!r} is installed; install it with: {self.hint}"
        )


class PluginError(MolqError):
    """Two plugins provide the same name, or a plugin registered something invalid."""


class JobNotFoundError(MolqError, KeyError):
    """No job with that id (or id prefix) exists for this cluster."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "job not found"


class AmbiguousJobIdError(JobNotFoundError):
    """A job-id prefix matches more than one job."""

    def __init__(self, prefix: str, candidates: list[str]) -> None:
        self.prefix = prefix
        self.candidates = candidates
        super().__init__(
            f"job id prefix {prefix!r} is ambiguous; it matches: {', '.join(candidates)}"
        )


class TransportError(MolqError):
    """A transport could not run a command or move a file (connection refused, timeout...)."""


class SchedulerError(MolqError):
    """A scheduler command failed. ``stderr`` holds the scheduler's own message."""

    def __init__(self, message: str, *, stderr: str = "", command: list[str] | None = None) -> None:
        self.stderr = stderr
        self.command = command
        super().__init__(message)


class TransientSchedulerError(SchedulerError):
    """A scheduler command failed in a way that may succeed when retried.

    Examples: socket timeouts, ``slurm_load_jobs error``, a controller that does not answer.
    """


class SubmitError(SchedulerError):
    """The scheduler refused a submission (invalid partition, account, qos...)."""


class SubmitLimitReached(SubmitError):
    """The scheduler refused a submission because the user has as many jobs submitted as the
    site allows (a submit-count limit): not a failure of the job, which waits in molq for room
    (:mod:`molq.engine.room`)."""


class SubmissionDeferred(SchedulerError):
    """A bulk submission ran out of its time before this job's turn: the job was definitely
    not submitted, and is sent again (its record freshly marked as being submitted)."""


class SubmissionUncertainError(SubmitError):
    """The scheduler may or may not have accepted a job (the connection failed mid-submit).

    The record stays ``created``; a later refresh adopts the job if the scheduler has it,
    or fails the record if it does not. ``job_id`` names the record.
    """

    def __init__(self, message: str, *, job_id: str, stderr: str = "") -> None:
        self.job_id = job_id
        super().__init__(message, stderr=stderr)


class StoreError(MolqError):
    """The job store could not be opened or is of an incompatible schema version."""

"""Options and capabilities of the local scheduler."""

from __future__ import annotations

import attrs

from molq.errors import ConfigError
from molq.model import SchedulerCapabilities

__all__ = ["LocalSchedulerOptions", "CAPABILITIES"]


@attrs.frozen
class LocalSchedulerOptions:
    """Options of the local scheduler.

    ``max_cpus``: cores jobs may use at once (default: the host's core count). ``spool_dir``:
    where the queue lives (default ``~/.molq/local-spool`` on the target host).
    ``term_grace_seconds``: how long cancel waits after SIGTERM before SIGKILL.
    ``memory_limit``: how a job's ``resources.memory`` is enforced: ``"auto"`` (a private memory
    cgroup where the host lets molq make one, else ``ulimit -v``) or ``"rlimit"`` (``ulimit -v``
    only).
    """

    max_cpus: int | None = None
    spool_dir: str | None = None
    term_grace_seconds: float = 5.0
    memory_limit: str = "auto"

    def __attrs_post_init__(self) -> None:
        if self.max_cpus is not None and self.max_cpus < 1:
            raise ConfigError(f"max_cpus must be at least 1, got {self.max_cpus}")
        if self.memory_limit not in ("auto", "rlimit"):
            raise ConfigError(f"memory_limit must be 'auto' or 'rlimit', got {self.memory_limit!r}")


CAPABILITIES = SchedulerCapabilities(
    supported=frozenset({"cpu_count", "memory", "dependencies", "job_name", "output_file", "error_file", "env", "cwd"})
)

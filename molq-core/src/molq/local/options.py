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
    """

    max_cpus: int | None = None
    spool_dir: str | None = None
    term_grace_seconds: float = 5.0

    def __attrs_post_init__(self) -> None:
        if self.max_cpus is not None and self.max_cpus < 1:
            raise ConfigError(f"max_cpus must be at least 1, got {self.max_cpus}")


CAPABILITIES = SchedulerCapabilities(
    supported=frozenset({"cpu_count", "dependencies", "job_name", "output_file", "error_file", "env", "cwd"})
)

"""The retry flags ``molq submit`` and ``molq profile add`` share: ``--retry-on``, the growth
factors and their caps. Both build the policy with :func:`molq.retry_rules.policy_from_options`,
so a bad value is the same one-line error before anything is stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = (
    click.option("--retry-on", metavar="CAUSES",
                 help="Retry only these end causes, e.g. oom,timeout (implies one retry without --retries)."),
    click.option("--grow-memory", type=float, metavar="FACTOR",
                 help="Retry an out-of-memory job with its memory times FACTOR (default 1.5, at most 64G)."),
    click.option("--grow-max-memory", metavar="SIZE",
                 help="The most memory --grow-memory grows to, e.g. 128G ('none': no cap)."),
    click.option("--grow-time", type=float, metavar="FACTOR",
                 help="Retry a job that hit its time limit with the limit times FACTOR (default 2, at most "
                      "48h, and never above the partition's own limit when the scheduler tells it)."),
    click.option("--grow-max-time", metavar="DURATION",
                 help="The longest time limit --grow-time grows to, e.g. 3d ('none': only the partition's limit)."),
)


def retry_options(command: F) -> F:
    """Add the shared retry flags to ``command`` (keyword arguments ``retry_on``, ``grow_memory``,
    ``grow_max_memory``, ``grow_time``, ``grow_max_time``)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def retry_policy(retries: int | None, retry_on: str | None, grow_memory: float | None,
                 grow_max_memory: str | None, grow_time: float | None, grow_max_time: str | None) -> Any:
    """The RetryPolicy the flags describe (None: no retries)."""
    from molq.retry_rules import policy_from_options

    return policy_from_options(retries or 0, retry_on, grow_memory, grow_time,
                               grow_max_memory=grow_max_memory, grow_max_time=grow_max_time)

"""Options of the PBS backend (``Cluster(..., "pbs", scheduler_options=PbsOptions(...))``)."""

from __future__ import annotations

from typing import Any

import attrs
from molq.batch import BatchOptions
from molq.errors import ConfigError
from molq.scheduler import optional_name, string_list, string_map

__all__ = ["PbsOptions", "FLAVORS"]

#: Accepted flavour names -> canonical flavour. OpenPBS is PBS Pro's open-source edition.
#: ``auto`` asks ``qstat --version`` once, when the scheduler is built.
FLAVORS: dict[str, str] = {
    "pbspro": "pbspro", "openpbs": "pbspro", "pbs": "pbspro", "torque": "torque", "auto": "auto",
}


def _flavor(value: Any) -> str:
    key = value.strip().lower() if isinstance(value, str) else value
    if key not in FLAVORS:
        raise ConfigError(f"PBS flavor must be 'pbspro' (also 'openpbs'), 'torque' or 'auto', got {value!r}")
    return FLAVORS[key]


@attrs.frozen
class PbsOptions(BatchOptions):
    """How molq talks to one PBS cluster.

    ``flavor`` picks the dialect: ``"pbspro"`` (PBS Professional and OpenPBS, the default),
    ``"torque"`` (Torque / PBS-compatible wrappers) or ``"auto"`` (ask ``qstat --version`` once,
    when the cluster first uses its scheduler). ``binaries`` maps ``qsub``/``qstat``/``qdel``
    to other paths; ``extra_qsub_args`` go on every ``qsub`` command line;
    ``default_queue``/``default_account`` apply when a job names none; ``env`` is added to the
    environment of every PBS command (e.g. ``PBS_DEFAULT`` to pick a server).

    ``gpu_type_resource`` (PBS Pro only) names the site's custom chunk resource for GPU models
    (``gpu_model`` on many sites); without it ``resources.gpu_type`` is refused.
    ``use_history`` adds ``-x`` to status queries so finished jobs are read from the server's job
    history; turn it off for servers with ``job_history_enable = False``. The settings every
    batch cluster has (command timeout and retries, shared polling limits, the circuit breaker,
    ``max_array_size``) come from :class:`~molq.batch.BatchOptions`.

    >>> PbsOptions(flavor="OpenPBS").flavor
    'pbspro'
    """

    flavor: str = attrs.field(default="pbspro", converter=_flavor)
    binaries: dict[str, str] = attrs.field(factory=dict, converter=lambda v: string_map("PbsOptions.binaries")(v), hash=False)
    extra_qsub_args: tuple[str, ...] = attrs.field(default=(), converter=lambda v: string_list("PbsOptions.extra_qsub_args")(v))
    default_queue: str | None = attrs.field(default=None, validator=optional_name("PbsOptions.default_queue", spaces=False))
    default_account: str | None = attrs.field(default=None, validator=optional_name("PbsOptions.default_account", spaces=False))
    env: dict[str, str] = attrs.field(factory=dict, converter=lambda v: string_map("PbsOptions.env")(v), hash=False)
    gpu_type_resource: str | None = attrs.field(default=None, validator=optional_name("PbsOptions.gpu_type_resource", spaces=False))
    use_history: bool = True

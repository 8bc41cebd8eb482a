"""Options of the PBS backend (``Cluster(..., "pbs", scheduler_options=PbsOptions(...))``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from molq.errors import ConfigError
from molq.scheduler import SchedulerOptions

__all__ = ["PbsOptions", "FLAVORS"]

#: Accepted flavour names -> canonical flavour. OpenPBS is PBS Pro's open-source edition.
FLAVORS: dict[str, str] = {"pbspro": "pbspro", "openpbs": "pbspro", "pbs": "pbspro", "torque": "torque"}


def _flavor(value: Any) -> str:
    key = value.strip().lower() if isinstance(value, str) else value
    if key not in FLAVORS:
        raise ConfigError(f"PBS flavor must be 'pbspro' (also 'openpbs') or 'torque', got {value!r}")
    return FLAVORS[key]


def _str_dict(name: str):
    def convert(value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be a mapping of strings, got {value!r}")
        out = {}
        for key, val in value.items():
            if not isinstance(key, str) or not isinstance(val, str):
                raise ConfigError(f"{name} must map strings to strings, got {key!r}: {val!r}")
            out[key] = val
        return out

    return convert


def _str_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"extra_qsub_args must be a list of strings, got {value!r}")
    if not all(isinstance(v, str) for v in value):
        raise ConfigError(f"extra_qsub_args must be a list of strings, got {value!r}")
    return tuple(value)


def _opt_name(name: str):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
            raise ConfigError(f"{name} must be a non-empty string without spaces, got {value!r}")

    return check


def _timeout(_inst: Any, _attr: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"command_timeout must be a positive number of seconds, got {value!r}")


@attrs.frozen
class PbsOptions(SchedulerOptions):
    """How molq talks to one PBS cluster.

    ``flavor`` picks the dialect: ``"pbspro"`` (PBS Professional and OpenPBS, the default) or
    ``"torque"`` (Torque / PBS-compatible wrappers). ``binaries`` maps ``qsub``/``qstat``/``qdel``
    to other paths; ``extra_qsub_args`` go on every ``qsub`` command line;
    ``default_queue``/``default_account`` apply when a job names none; ``env`` is added to the
    environment of every PBS command (e.g. ``PBS_DEFAULT`` to pick a server).

    ``gpu_type_resource`` (PBS Pro only) names the site's custom chunk resource for GPU models
    (``gpu_model`` on many sites); without it ``resources.gpu_type`` is refused.
    ``use_history`` adds ``-x`` to status queries so finished jobs are read from the server's job
    history; turn it off for servers with ``job_history_enable = False``.

    >>> PbsOptions(flavor="OpenPBS").flavor
    'pbspro'
    """

    flavor: str = attrs.field(default="pbspro", converter=_flavor)
    binaries: dict[str, str] = attrs.field(factory=dict, converter=_str_dict("binaries"), hash=False)
    extra_qsub_args: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    default_queue: str | None = attrs.field(default=None, validator=_opt_name("default_queue"))
    default_account: str | None = attrs.field(default=None, validator=_opt_name("default_account"))
    env: dict[str, str] = attrs.field(factory=dict, converter=_str_dict("env"), hash=False)
    command_timeout: float = attrs.field(default=60.0, validator=_timeout)
    gpu_type_resource: str | None = attrs.field(default=None, validator=_opt_name("gpu_type_resource"))
    use_history: bool = True

"""cattrs (un)structuring of the molq model for the store (JSON) and profiles (TOML)."""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import cattrs

from molq.causes import EndCause, parse_causes
from molq.errors import ConfigError
from molq.model import Duration, JobScheduling, Memory

T = TypeVar("T")


@functools.lru_cache(maxsize=2)
def converter(human: bool = False) -> cattrs.Converter:
    """The store's converter, or with ``human=True`` the one for TOML profiles."""
    conv = cattrs.Converter(forbid_extra_keys=True)
    # Quantities travel as their human spelling in TOML and as plain numbers in the store.
    conv.register_unstructure_hook(Memory, (lambda m: m.to_slurm()) if human else (lambda m: m.bytes))
    conv.register_structure_hook(Memory, lambda v, _t: Memory.parse(v))
    conv.register_unstructure_hook(Duration, (lambda d: d.to_slurm()) if human else (lambda d: d.seconds))
    conv.register_structure_hook(Duration, lambda v, _t: Duration.parse(v))

    # End causes may be spelled with their short names ("oom", "timeout") in profiles.
    conv.register_structure_hook(EndCause, lambda v, _t: _cause(v))

    base_sched = cattrs.gen.make_dict_structure_fn(JobScheduling, conv, _cattrs_forbid_extra_keys=True)

    def structure_scheduling(value: Any, _t: Any) -> JobScheduling:
        # 'queue' was renamed 'partition'; old rows still load, with a deprecation warning.
        from molq.model import upgrade_legacy_scheduling

        return base_sched(upgrade_legacy_scheduling(value, source="the job store"), _t)

    conv.register_structure_hook(JobScheduling, structure_scheduling)
    return conv


def _cause(value: Any) -> EndCause:
    try:
        return parse_causes([value])[0]
    except (ValueError, IndexError):
        raise ConfigError(f"unknown end cause {value!r}") from None


def unstructure(obj: Any, *, human: bool = False) -> Any:
    return converter(human).unstructure(obj)


def prune(data: Any) -> Any:
    """Drop None values and empty containers (TOML has no null)."""
    if isinstance(data, dict):
        out = {k: prune(v) for k, v in data.items() if v is not None}
        return {k: v for k, v in out.items() if v not in ({}, [], ())}
    if isinstance(data, (list, tuple)):
        return [prune(v) for v in data]
    return data


def structure(data: Any, cls: type[T], *, what: str | None = None) -> T:
    """Build ``cls`` from plain data; any problem becomes one readable :class:`ConfigError`."""
    try:
        return converter().structure(data, cls)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - cattrs raises exception groups
        raise ConfigError(f"invalid {what or cls.__name__}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    leaves = list(_config_leaves(exc))
    if leaves:
        return "; ".join(str(e) for e in leaves)
    if hasattr(exc, "exceptions"):  # an exception group (cattrs)
        try:
            from cattrs import transform_error

            msgs = transform_error(exc)
            return "; ".join(msgs)
        except Exception:  # noqa: BLE001
            return "; ".join(_describe(e) for e in exc.exceptions)
    return str(exc)


def _config_leaves(exc: BaseException):
    if isinstance(exc, ConfigError):
        yield exc
    for sub in getattr(exc, "exceptions", ()):
        yield from _config_leaves(sub)
    if exc.__cause__ is not None and exc.__cause__ is not exc:
        yield from _config_leaves(exc.__cause__)

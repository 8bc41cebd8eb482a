"""Registration objects returned by plugin hooks (see :mod:`molq.hookspecs`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs

_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


def _valid_name(_inst: Any, _attr: Any, value: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"plugin names are lower-case letters, digits, '-' and '_', starting with a letter: {value!r}"
        )


@attrs.frozen
class SchedulerPlugin:
    """A scheduler kind (``Cluster(name, "<name>")``).

    ``factory(transport, options)`` builds the scheduler; ``options_type`` is the attrs class of
    its options (built from profile tables), or None if it takes none.
    """

    name: str = attrs.field(validator=_valid_name)
    factory: Callable[[Any, Any], Any]
    options_type: type | None = None
    description: str = ""


@attrs.frozen
class TransportPlugin:
    """A transport kind. ``factory(**options)`` builds it (``host=`` for ``ssh``)."""

    name: str = attrs.field(validator=_valid_name)
    factory: Callable[..., Any]
    options_type: type | None = None
    description: str = ""


@attrs.frozen
class StorePlugin:
    """A job store for URLs whose scheme is in ``schemes``. ``factory(url)`` builds it."""

    name: str = attrs.field(validator=_valid_name)
    schemes: tuple[str, ...]
    factory: Callable[[str], Any]
    description: str = ""


@attrs.frozen
class EventSink:
    """Receives every :class:`~molq.events.EventPayload` emitted by any Submitor."""

    name: str = attrs.field(validator=_valid_name)
    handler: Callable[[Any], None]
    description: str = ""


@attrs.frozen
class CliCommand:
    """A ``molq`` subcommand. ``load()`` returns the click command (imported lazily)."""

    name: str = attrs.field(validator=_valid_name)
    load: Callable[[], Any]
    help: str = ""


@attrs.frozen
class PluginInfo:
    """What ``molq plugins`` shows about one discovered plugin."""

    name: str
    distribution: str
    version: str
    kinds: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    error: str | None = None
    blocked: bool = False

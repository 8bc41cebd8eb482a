"""Registration objects returned by plugin hooks (see :mod:`molq.hookspecs`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    import click

    from molq.events import EventPayload
    from molq.scheduler import Scheduler
    from molq.transport import Transport

_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


def _valid_name(_inst: Any, _attr: Any, value: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"plugin names are lower-case letters, digits, '-' and '_', starting with a letter: {value!r}"
        )


class SchedulerFactory(Protocol):
    """Builds a scheduler: ``factory(transport, options)``. ``options`` is an instance of the
    plugin's ``options_type`` (already validated), or None when the user gave none."""

    def __call__(self, transport: Transport, options: Any, /) -> Scheduler: ...


class TransportFactory(Protocol):
    """Builds a transport from its options as keywords: ``factory(**options)``. The keywords
    are the fields of the plugin's ``options_type``, checked against it first; for ``ssh``,
    ``host=`` is one of them."""

    def __call__(self, **options: Any) -> Transport: ...


class StoreFactory(Protocol):
    """Opens the job store at ``url``."""

    def __call__(self, url: str, /) -> Any: ...


class EventHandler(Protocol):
    """Receives one lifecycle event; its failure is logged and never breaks the lifecycle."""

    def __call__(self, payload: EventPayload, /) -> None: ...


class CommandLoader(Protocol):
    """Imports and returns the click command (only when that command is used)."""

    def __call__(self) -> click.Command: ...


@attrs.frozen
class SchedulerPlugin:
    """A scheduler kind (``Cluster(name, "<name>")``).

    ``factory(transport, options)`` builds the scheduler; ``options_type`` is the attrs class of
    its options (built from profile tables), or None if it takes none.
    """

    name: str = attrs.field(validator=_valid_name)
    factory: SchedulerFactory
    options_type: type | None = None
    description: str = ""


@attrs.frozen
class TransportPlugin:
    """A transport kind (``Cluster(..., transport="<name>")``, ``transport = "<name>"`` in a
    profile; ``host=`` is shorthand for ``ssh``). ``factory(**options)`` builds it.

    ``options_type`` is an attrs class whose fields are the options the transport accepts:
    molq checks ``transport_options`` against it (an unknown or invalid field is a
    ConfigError naming the field and the transport) before calling the factory. None means
    the transport takes no options.
    """

    name: str = attrs.field(validator=_valid_name)
    factory: TransportFactory
    options_type: type | None = None
    description: str = ""


@attrs.frozen
class StorePlugin:
    """A job store for URLs whose scheme is in ``schemes``. ``factory(url)`` builds it."""

    name: str = attrs.field(validator=_valid_name)
    schemes: tuple[str, ...]
    factory: StoreFactory
    description: str = ""


@attrs.frozen
class EventSink:
    """Receives every :class:`~molq.events.EventPayload` emitted by any Submitor."""

    name: str = attrs.field(validator=_valid_name)
    handler: EventHandler
    description: str = ""


@attrs.frozen
class CliCommand:
    """A ``molq`` subcommand. ``load()`` returns the click command (imported lazily)."""

    name: str = attrs.field(validator=_valid_name)
    load: CommandLoader
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
    #: Names this plugin provides that another plugin provides too ("scheduler 'x' is also
    #: provided by ..."): each such name is disabled until one of the two goes.
    conflicts: tuple[str, ...] = ()

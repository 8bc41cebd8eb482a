"""Built-in plugins of molq-core: the local scheduler, the local transport and the SQL store.

They register through the same hooks as third-party plugins.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from molq.hookspecs import hookimpl
from molq.plugin_types import SchedulerPlugin, StorePlugin, TransportPlugin

if TYPE_CHECKING:
    from molq.scheduler import Scheduler
    from molq.transport import Transport


def _local_scheduler(transport: Transport, options: Any, /) -> Scheduler:
    from molq.local import make_local_scheduler

    return make_local_scheduler(transport, options)


@hookimpl
def molq_register_schedulers() -> Iterator[SchedulerPlugin]:
    from molq.local import LocalSchedulerOptions

    yield SchedulerPlugin(
        name="local",
        factory=_local_scheduler,
        options_type=LocalSchedulerOptions,
        description="processes on the machine the transport reaches; no batch system",
    )


def _local_transport(**options: Any) -> Transport:
    from molq.errors import ConfigError
    from molq.transport import LocalTransport

    # Cluster refuses options first (no options_type); this guards direct calls.
    if options:
        raise ConfigError(f"the 'local' transport takes no options, got {', '.join(sorted(options))}")
    return LocalTransport()


@hookimpl
def molq_register_transports() -> Iterator[TransportPlugin]:
    yield TransportPlugin(name="local", factory=_local_transport, description="this machine")


def _sql_store(url: str, /) -> Any:
    from molq.store import JobStore

    return JobStore(url)


@hookimpl
def molq_register_stores() -> Iterator[StorePlugin]:
    yield StorePlugin(
        name="sql",
        schemes=("sqlite", "postgresql", "postgres", "mysql", "mariadb"),
        factory=_sql_store,
        description="SQLAlchemy Core store (SQLite by default)",
    )

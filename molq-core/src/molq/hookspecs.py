"""Every hook a molq plugin can implement.

A plugin is a module (or object) named by an entry point in the ``molq`` group::

    [project.entry-points.molq]
    slurm = "molq_slurm.plugin"

and implements one or more of the hooks below with ``@molq.hookimpl``. Each hook returns an
iterable of small registration objects from :mod:`molq.plugin_types`. Import heavy modules
inside the factories, not at module import, so that discovering plugins stays cheap.

molq calls each hook through pluggy once per plugin that implements it, so hook wrappers
(``@hookimpl(wrapper=True)`` or ``hookwrapper=True``) of other plugins see every call.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from molq.plugin_types import (
    CliCommand,
    EventSink,
    SchedulerPlugin,
    StorePlugin,
    TransportPlugin,
)

PROJECT_NAME = "molq"

#: Version of the plugin API described in this module. A plugin may declare the version it
#: was built for as ``MOLQ_PLUGIN_API = 1`` in its entry-point module.
PLUGIN_API_VERSION = 1

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def molq_register_schedulers() -> Iterable[SchedulerPlugin]:  # type: ignore[empty-body]
    """Schedulers this plugin provides.

    Example::

        @hookimpl
        def molq_register_schedulers():
            def factory(transport, options):
                from mypkg.scheduler import MyScheduler
                return MyScheduler(transport, options)
            yield SchedulerPlugin(name="mysched", factory=factory, options_type=MyOptions)
    """


@hookspec
def molq_register_transports() -> Iterable[TransportPlugin]:  # type: ignore[empty-body]
    """Transports this plugin provides (how commands and files reach a cluster), chosen with
    ``Cluster(..., transport="<name>")`` or ``transport = "<name>"`` in a profile.

    ``transport_options`` are checked against ``options_type`` (an attrs class) before
    ``factory(**transport_options)`` runs. Example::

        @hookimpl
        def molq_register_transports():
            yield TransportPlugin(name="gateway", factory=make_gateway, options_type=GatewayOptions)
    """


@hookspec
def molq_register_stores() -> Iterable[StorePlugin]:  # type: ignore[empty-body]
    """Job stores this plugin provides, selected by URL scheme.

    Example::

        @hookimpl
        def molq_register_stores():
            yield StorePlugin(name="sql", schemes=("sqlite", "postgresql"), factory=make_store)
    """


@hookspec
def molq_register_event_sinks() -> Iterable[EventSink]:  # type: ignore[empty-body]
    """Receivers of every lifecycle event of every Submitor in this process.

    Example::

        @hookimpl
        def molq_register_event_sinks():
            yield EventSink(name="audit", handler=lambda payload: print(payload.event, payload.job_id))
    """


@hookspec
def molq_register_cli_commands() -> Iterable[CliCommand]:  # type: ignore[empty-body]
    """Extra ``molq`` subcommands (click commands).

    Example::

        @hookimpl
        def molq_register_cli_commands():
            yield CliCommand(name="hello", load=lambda: hello_command)
    """

"""molq: submit and track batch jobs on the local machine or on HPC clusters.

>>> from molq import Cluster, Submitor
>>> submitor = Submitor(Cluster("laptop"))           # doctest: +SKIP
>>> handle = submitor.submit_job(argv=["echo", "hi"])  # doctest: +SKIP
>>> handle.wait().state                               # doctest: +SKIP
<JobState.SUCCEEDED: 'succeeded'>

Public names are imported lazily so that ``import molq`` (and the ``molq`` command line) stays
fast; heavy modules such as SQLAlchemy load only when a store is opened.
"""

from __future__ import annotations

from molq._version import __version__

# Not `from typing import TYPE_CHECKING`: importing typing costs ~10 ms, and `import molq` is
# on the path of every `molq` command (annotations here are strings, never evaluated).
TYPE_CHECKING = False

_EXPORTS: dict[str, str] = {
    # model
    "Memory": "molq.model",
    "Duration": "molq.model",
    "Script": "molq.model",
    "JobResources": "molq.model",
    "JobScheduling": "molq.model",
    "JobExecution": "molq.model",
    "DependencyRef": "molq.model",
    "DependencyCondition": "molq.model",
    "JobState": "molq.model",
    "SubState": "molq.model",
    "JobRecord": "molq.model",
    "StatusTransition": "molq.model",
    "JobDependency": "molq.model",
    "QueueEntry": "molq.model",
    "RetryPolicy": "molq.model",
    "RetryBackoff": "molq.model",
    "RetentionPolicy": "molq.model",
    "SubmitorDefaults": "molq.model",
    "SchedulerCapabilities": "molq.model",
    "SchedulerStatus": "molq.model",
    "TerminalStatus": "molq.model",
    "EndCause": "molq.causes",
    "Usage": "molq.usage",
    "JobSpec": "molq.model",
    # events
    "EventType": "molq.events",
    "EventPayload": "molq.events",
    "EventBus": "molq.events",
    # config
    "MolqProfile": "molq.config",
    "MolqConfig": "molq.config",
    "load_config": "molq.config",
    "load_profile": "molq.config",
    "save_config": "molq.config",
    # errors
    "MolqError": "molq.errors",
    "ConfigError": "molq.errors",
    "PluginNotFoundError": "molq.errors",
    "PluginError": "molq.errors",
    "JobNotFoundError": "molq.errors",
    "SchedulerError": "molq.errors",
    "SubmitError": "molq.errors",
    "TransportError": "molq.errors",
    # lifecycle
    "Cluster": "molq.cluster",
    "Workspace": "molq.cluster",
    "Project": "molq.cluster",
    "Submitor": "molq.submitor",
    "JobHandle": "molq.submitor",
    "JobStore": "molq.store",
    # transports and schedulers
    "Transport": "molq.transport",
    "LocalTransport": "molq.transport",
    "Scheduler": "molq.scheduler",
    "SchedulerOptions": "molq.scheduler",
    "ShellScheduler": "molq.local",
    "LocalSchedulerOptions": "molq.local",
    # plugins
    "hookimpl": "molq.hookspecs",
    "SchedulerPlugin": "molq.plugin_types",
    "TransportPlugin": "molq.plugin_types",
    "StorePlugin": "molq.plugin_types",
    "EventSink": "molq.plugin_types",
    "CliCommand": "molq.plugin_types",
}

#: Names of the API reference that live in a separate distribution: name -> (import package,
#: plugin kind, plugin name). Using one without its distribution raises PluginNotFoundError
#: with the ``pip install`` line, like a Cluster that names a missing backend.
_OPTIONAL: dict[str, tuple[str, str, str]] = {
    "SshTransport": ("molq_ssh", "transport", "ssh"),
    "SshTransportOptions": ("molq_ssh", "transport", "ssh"),
}

# The optional names stay out of __all__ so that `from molq import *` works without them.
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> object:
    import importlib

    module = _EXPORTS.get(name)
    if module is None:
        if name not in _OPTIONAL:
            raise AttributeError(f"module 'molq' has no attribute {name!r}")
        module, kind, plugin = _OPTIONAL[name]
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            from molq.errors import PluginNotFoundError
            from molq.plugins import install_hint

            raise PluginNotFoundError(kind, plugin, install_hint(plugin)) from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, *_OPTIONAL])


if TYPE_CHECKING:  # pragma: no cover
    from molq_ssh import SshTransport, SshTransportOptions

    from molq.causes import EndCause
    from molq.cluster import Cluster, Project, Workspace
    from molq.config import MolqConfig, MolqProfile, load_config, load_profile, save_config
    from molq.errors import (
        ConfigError,
        JobNotFoundError,
        MolqError,
        PluginError,
        PluginNotFoundError,
        SchedulerError,
        SubmitError,
        TransportError,
    )
    from molq.events import EventBus, EventPayload, EventType
    from molq.hookspecs import hookimpl
    from molq.local import LocalSchedulerOptions, ShellScheduler
    from molq.model import (
        DependencyCondition,
        DependencyRef,
        Duration,
        JobDependency,
        JobExecution,
        JobRecord,
        JobResources,
        JobScheduling,
        JobSpec,
        JobState,
        Memory,
        QueueEntry,
        RetentionPolicy,
        RetryBackoff,
        RetryPolicy,
        SchedulerCapabilities,
        SchedulerStatus,
        StatusTransition,
        SubmitorDefaults,
        SubState,
        TerminalStatus,
    )
    from molq.plugin_types import CliCommand, EventSink, SchedulerPlugin, StorePlugin, TransportPlugin
    from molq.scheduler import Scheduler, SchedulerOptions
    from molq.store import JobStore
    from molq.submitor import JobHandle, Submitor
    from molq.transport import LocalTransport, Transport
    from molq.usage import Usage

"""Plugin discovery for the user interface, as ``molexp.plugins.discover_ui_plugins()`` does it.

When molq is installed, the UI layer learns from a descriptor that scheduler-aware run viewers
and monitor surfaces are available, and which run.json fields they read. The descriptor is
plain data: the UI needs neither molq's object model nor an import of a scheduler backend
(``import molq`` alone loads nothing heavy). Without molq the list is empty and nothing fails.

>>> [d.name for d in discover_ui_plugins()]
['molq']
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["UIPluginDescriptor", "discover_ui_plugins", "EXECUTOR_FIELDS"]

#: The normalised executor metadata in run.json that the molq surfaces read (see sink.py).
EXECUTOR_FIELDS = ("backend", "scheduler", "cluster", "job_id", "scheduler_job_id")


@attrs.frozen
class UIPluginDescriptor:
    """What the UI layer needs to know about one frontend plugin."""

    name: str
    title: str
    version: str
    #: The surfaces the plugin adds: a scheduler-aware run viewer and a monitor.
    surfaces: tuple[str, ...]
    #: run.json keys (under ``executor``) the surfaces rely on.
    executor_fields: tuple[str, ...] = EXECUTOR_FIELDS

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(self).items()}


def discover_ui_plugins() -> list[UIPluginDescriptor]:
    """The UI plugin descriptors this environment offers: the molq one if molq is installed."""
    try:
        import molq
    except ImportError:
        return []
    return [UIPluginDescriptor(
        name="molq",
        title="molq scheduler runs",
        version=molq.__version__,
        surfaces=("run-viewer", "monitor"),
    )]

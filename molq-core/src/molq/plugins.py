"""Plugin discovery and lookup.

Entry points of the ``molq`` group are loaded lazily, once, the first time something asks for a
scheduler, transport, store, event sink or CLI command. Built-ins register through the same
hooks. A plugin that fails to import is recorded (``molq plugins`` shows it) and skipped; a
name provided by two distributions is an error naming both. ``MOLQ_BLOCK_PLUGINS`` (a comma-
separated list of entry-point or distribution names) keeps plugins from loading.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, TypeVar

import pluggy

from molq import hookspecs
from molq.errors import PluginError, PluginNotFoundError
from molq.plugin_types import (
    CliCommand,
    EventSink,
    PluginInfo,
    SchedulerPlugin,
    StorePlugin,
    TransportPlugin,
)

log = logging.getLogger("molq.plugins")

ENTRY_POINT_GROUP = "molq"
BLOCK_ENV = "MOLQ_BLOCK_PLUGINS"
BUILTIN_NAME = "molq-core"

#: Distribution that provides each well-known name, for install hints.
INSTALL_HINTS = {
    "slurm": "pip install molq-slurm",
    "pbs": "pip install molq-pbs",
    "torque": "pip install molq-pbs",
    "lsf": "pip install molq-lsf",
    "ssh": "pip install molq-ssh",
}

T = TypeVar("T")

_KINDS: dict[str, tuple[str, type]] = {
    "scheduler": ("molq_register_schedulers", SchedulerPlugin),
    "transport": ("molq_register_transports", TransportPlugin),
    "store": ("molq_register_stores", StorePlugin),
    "event_sink": ("molq_register_event_sinks", EventSink),
    "cli_command": ("molq_register_cli_commands", CliCommand),
}


def install_hint(name: str) -> str:
    return INSTALL_HINTS.get(name, f"pip install molq-{name}")


def blocked_names() -> set[str]:
    raw = os.environ.get(BLOCK_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


class PluginManager:
    """Typed access to everything plugins provide. Use :func:`get_plugin_manager`."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._load_entry_points = load_entry_points
        self._loaded = False
        self._lock = threading.RLock()
        self._infos: dict[str, PluginInfo] = {}
        self._owner: dict[str, str] = {}  # plugin name -> distribution
        self._registry: dict[str, dict[str, tuple[Any, str]]] = {}

    # -- loading -----------------------------------------------------------------------------
    def register(self, plugin: Any, name: str, distribution: str = "", version: str = "") -> None:
        """Register a plugin object (module or instance) directly, e.g. in tests."""
        with self._lock:
            self._pm.register(plugin, name=name)
            try:
                self._pm.check_pending()
            except pluggy.PluginValidationError as exc:
                self._pm.unregister(plugin)
                self._infos[name] = PluginInfo(name, distribution or name, version, error=str(exc))
                log.warning("plugin %s rejected: %s", name, exc)
                return
            self._owner[name] = distribution or name
            self._infos[name] = PluginInfo(name, distribution or name, version)
            self._registry.clear()

    def unregister(self, name: str) -> None:
        with self._lock:
            plugin = self._pm.get_plugin(name)
            if plugin is not None:
                self._pm.unregister(plugin)
            self._infos.pop(name, None)
            self._owner.pop(name, None)
            self._registry.clear()

    def load(self) -> None:
        """Register built-ins and every (unblocked) entry point, once."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            from molq import _builtin

            version = _core_version()
            self.register(_builtin, name=BUILTIN_NAME, distribution=BUILTIN_NAME, version=version)
            if self._load_entry_points:
                self._load_from_entry_points()

    def _load_from_entry_points(self) -> None:
        from importlib.metadata import entry_points

        blocked = blocked_names()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.name if dist is not None else "?"
            dist_version = dist.version if dist is not None else "?"
            if ep.name in blocked or dist_name in blocked:
                self._infos[ep.name] = PluginInfo(ep.name, dist_name, dist_version, blocked=True)
                continue
            if self._pm.get_plugin(ep.name) is not None:
                other = self._owner.get(ep.name, "?")
                self._infos[f"{ep.name}@{dist_name}"] = PluginInfo(
                    ep.name, dist_name, dist_version,
                    error=f"entry point name {ep.name!r} is also used by {other}",
                )
                continue
            try:
                plugin = ep.load()
                _check_api_version(plugin, ep.name, dist_name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin never breaks molq
                msg = f"{type(exc).__name__}: {exc}"
                log.warning("plugin %s from %s failed to load: %s", ep.name, dist_name, msg)
                self._infos[ep.name] = PluginInfo(ep.name, dist_name, dist_version, error=msg)
                continue
            self.register(plugin, name=ep.name, distribution=dist_name, version=dist_version)

    # -- registry ----------------------------------------------------------------------------
    def _collect(self, kind: str) -> dict[str, tuple[Any, str]]:
        self.load()
        with self._lock:
            if kind in self._registry:
                return self._registry[kind]
            hook_name, cls = _KINDS[kind]
            hook = getattr(self._pm.hook, hook_name)
            found: dict[str, tuple[Any, str]] = {}
            for impl in hook.get_hookimpls():
                dist = self._owner.get(impl.plugin_name, impl.plugin_name)
                try:
                    items = list(impl.function() or ())
                except Exception as exc:  # noqa: BLE001
                    log.warning("plugin %s: %s hook failed: %s", impl.plugin_name, hook_name, exc)
                    self._note_error(impl.plugin_name, f"{hook_name} failed: {exc}")
                    continue
                for item in items:
                    if not isinstance(item, cls):
                        raise PluginError(
                            f"plugin {impl.plugin_name} ({dist}) returned {type(item).__name__} "
                            f"from {hook_name}; expected {cls.__name__}"
                        )
                    if item.name in found:
                        other = found[item.name][1]
                        raise PluginError(
                            f"{kind.replace('_', ' ')} {item.name!r} is provided by two distributions: "
                            f"{other} and {dist}; uninstall one or block it with {BLOCK_ENV}"
                        )
                    found[item.name] = (item, dist)
                    info = self._infos.get(impl.plugin_name)
                    if info is not None:
                        import attrs

                        self._infos[impl.plugin_name] = attrs.evolve(
                            info,
                            kinds=tuple(sorted(set(info.kinds) | {kind})),
                            provides=tuple(sorted(set(info.provides) | {f"{kind}:{item.name}"})),
                        )
            self._registry[kind] = found
            return found

    def _note_error(self, plugin_name: str, error: str) -> None:
        import attrs

        info = self._infos.get(plugin_name)
        if info is not None:
            self._infos[plugin_name] = attrs.evolve(info, error=error)

    def _lookup(self, kind: str, name: str) -> Any:
        found = self._collect(kind)
        if name in found:
            return found[name][0]
        hint = install_hint(name)
        failed = [i for i in self._infos.values() if i.error and i.name == name]
        err = PluginNotFoundError(kind, name, hint)
        if failed:
            err.args = (f"{err.args[0]} (plugin {name!r} from {failed[0].distribution} failed to load: {failed[0].error})",)
        raise err

    def get_scheduler(self, name: str) -> SchedulerPlugin:
        return self._lookup("scheduler", name)

    def get_transport(self, name: str) -> TransportPlugin:
        return self._lookup("transport", name)

    def schedulers(self) -> dict[str, SchedulerPlugin]:
        return {k: v[0] for k, v in self._collect("scheduler").items()}

    def transports(self) -> dict[str, TransportPlugin]:
        return {k: v[0] for k, v in self._collect("transport").items()}

    def store_for_url(self, url: str) -> StorePlugin:
        scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
        for item, _dist in self._collect("store").values():
            if scheme in item.schemes:
                return item
        raise PluginNotFoundError("store", scheme, f"install a molq store plugin for {scheme!r} URLs")

    def event_sinks(self) -> list[EventSink]:
        return [v[0] for v in self._collect("event_sink").values()]

    def cli_commands(self) -> list[CliCommand]:
        return [v[0] for v in self._collect("cli_command").values()]

    def plugin_infos(self) -> list[PluginInfo]:
        """Every discovered plugin, loaded, blocked or broken."""
        for kind in _KINDS:
            try:
                self._collect(kind)
            except PluginError as exc:
                log.warning("%s", exc)
        return sorted(self._infos.values(), key=lambda i: (i.distribution, i.name))


def _core_version() -> str:
    try:
        from molq import __version__

        return __version__
    except Exception:  # noqa: BLE001
        return "?"


def _check_api_version(plugin: Any, name: str, dist: str) -> None:
    declared = getattr(plugin, "MOLQ_PLUGIN_API", None)
    if declared is None:
        return
    if declared != hookspecs.PLUGIN_API_VERSION:
        newer = isinstance(declared, int) and declared > hookspecs.PLUGIN_API_VERSION
        raise PluginError(
            f"plugin {name} ({dist}) was built for molq plugin API {declared}, "
            f"but molq-core {_core_version()} provides API {hookspecs.PLUGIN_API_VERSION}; "
            + ("upgrade molq-core" if newer else f"upgrade {dist}")
        )


_manager: PluginManager | None = None
_manager_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager (entry points load on first lookup)."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = PluginManager()
        return _manager


def reset_plugin_manager() -> None:
    """Forget loaded plugins (tests; or after installing a plugin in a running process)."""
    global _manager
    with _manager_lock:
        _manager = None


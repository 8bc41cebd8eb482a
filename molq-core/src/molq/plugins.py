"""Plugin discovery and lookup.

Entry points of the ``molq`` group are loaded lazily, once, the first time something asks for a
scheduler, transport, store, event sink or CLI command. Built-ins register through the same
hooks. Hooks are called through pluggy (so third-party hook wrappers run as wrappers), one
providing plugin at a time, so that every registration keeps its provenance: which plugin and
distribution provided it.

Failures stay local. A plugin that fails to import, or whose hook raises or returns something
that is not a registration object, is recorded (``molq plugins`` shows it) and skipped. A name
provided by two plugins -- or a store URL scheme claimed by two stores -- disables that name
only: asking for it raises an error naming both providers, and every other name keeps working.
``MOLQ_BLOCK_PLUGINS`` (a comma-separated list of entry-point or distribution names) keeps
plugins from loading.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import Any, Generic, Protocol, TypeVar, cast

import attrs
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

T = TypeVar("T")

_KINDS: dict[str, tuple[str, type]] = {
    "scheduler": ("molq_register_schedulers", SchedulerPlugin),
    "transport": ("molq_register_transports", TransportPlugin),
    "store": ("molq_register_stores", StorePlugin),
    "event_sink": ("molq_register_event_sinks", EventSink),
    "cli_command": ("molq_register_cli_commands", CliCommand),
}


class _Named(Protocol):
    name: str


def install_hint(name: str) -> str:
    """How to get ``name`` when nothing installed knows it: by convention, the distribution
    ``molq-<name>`` (which is how molq-slurm, molq-pbs, molq-lsf and molq-ssh are named)."""
    return f"pip install molq-{name}"


def blocked_names() -> set[str]:
    raw = os.environ.get(BLOCK_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


@attrs.frozen
class Provided(Generic[T]):
    """One registration and where it came from."""

    item: T
    plugin: str
    distribution: str
    version: str

    def describe(self) -> str:
        return self.distribution if self.plugin == self.distribution else f"{self.distribution} (plugin {self.plugin})"


@attrs.frozen
class _Kind:
    """Everything the plugins provide for one kind, after conflicts were set aside."""

    usable: dict[str, Provided[Any]]
    conflicts: dict[str, tuple[Provided[Any], ...]]
    #: Store URL schemes: scheme -> the stores claiming it (usable when exactly one).
    schemes: dict[str, tuple[Provided[Any], ...]] = attrs.field(factory=dict)


def _conflict_message(kind: str, name: str, providers: Iterable[Provided[Any]], what: str = "") -> str:
    names = sorted(p.describe() for p in providers)
    listed = ", ".join(names[:-1]) + " and " + names[-1]
    return (f"{what or kind.replace('_', ' ')} {name!r} is provided by {len(names)} plugins: {listed}; "
            f"it is disabled until one is uninstalled or blocked with {BLOCK_ENV}")


class PluginManager:
    """Typed access to everything plugins provide. Use :func:`get_plugin_manager`."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._load_entry_points = load_entry_points
        self._loaded = False
        self._lock = threading.RLock()
        self._infos: dict[str, PluginInfo] = {}
        self._registry: dict[str, _Kind] = {}
        # What collecting each kind found out about each plugin: provides, conflicts, errors.
        self._found: dict[str, dict[str, tuple[set[str], set[str], list[str]]]] = {}

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
            self._infos[name] = PluginInfo(name, distribution or name, version)
            self._forget()

    def unregister(self, name: str) -> None:
        with self._lock:
            plugin = self._pm.get_plugin(name)
            if plugin is not None:
                self._pm.unregister(plugin)
            self._infos.pop(name, None)
            self._forget()

    def _forget(self) -> None:
        self._registry.clear()
        self._found.clear()

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
                other = self._infos[ep.name].distribution if ep.name in self._infos else "?"
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

    # -- calling the hooks -------------------------------------------------------------------
    def _call_each(self, hook_name: str) -> Iterable[tuple[str, list[Any] | BaseException]]:
        """Call ``hook_name`` through pluggy once per plugin that implements it (wrappers
        excluded: they wrap every call), yielding (plugin name, its registrations or the
        exception it raised). A wrapper that raises is set aside and reported under its own
        plugin's name, so it cannot hide every other plugin's registrations."""
        hook = getattr(self._pm.hook, hook_name)
        impls = [i for i in hook.get_hookimpls() if not (i.hookwrapper or i.wrapper)]
        providers = [i.plugin for i in impls]
        wrappers = {i.plugin_name: i.plugin for i in hook.get_hookimpls()
                    if (i.hookwrapper or i.wrapper) and i.plugin not in providers}
        broken: dict[str, BaseException] = {}
        for impl in impls:
            others = [p for p in providers if p is not impl.plugin]
            outcome = self._call_one(hook_name, others + [wrappers[n] for n in broken])
            if isinstance(outcome, BaseException) and len(broken) < len(wrappers):
                outcome = self._without_broken_wrapper(hook_name, others, wrappers, broken, outcome)
            yield impl.plugin_name, outcome
        yield from broken.items()

    def _without_broken_wrapper(self, hook_name: str, others: list[Any], wrappers: dict[str, Any],
                                broken: dict[str, BaseException], failure: BaseException) -> list[Any] | BaseException:
        """Find the wrapper that made a call fail: the call succeeds once it is left out (or,
        failing that, once all wrappers are). Returns the call's result, or ``failure``."""
        unknown = [n for n in wrappers if n not in broken]
        for suspects in [[n] for n in unknown] + ([unknown] if len(unknown) > 1 else []):
            left_out = others + [wrappers[n] for n in [*broken, *suspects]]
            outcome = self._call_one(hook_name, left_out)
            if not isinstance(outcome, BaseException):
                for name in suspects:
                    broken[name] = failure
                return outcome
        return failure

    def _call_one(self, hook_name: str, without: list[Any]) -> list[Any] | BaseException:
        caller = self._pm.subset_hook_caller(hook_name, remove_plugins=without)
        try:
            # Hooks may be generators: they run while their results are iterated.
            return [item for result in caller() for item in (result or ())]
        except Exception as exc:  # noqa: BLE001 - one plugin's failure stays its own
            return exc

    def _collect(self, kind: str) -> _Kind:
        self.load()
        with self._lock:
            cached = self._registry.get(kind)
            if cached is not None:
                return cached
            hook_name, cls = _KINDS[kind]
            found: dict[str, list[Provided[Any]]] = {}
            notes: dict[str, tuple[set[str], set[str], list[str]]] = {}
            for plugin_name, outcome in self._call_each(hook_name):
                info = self._infos.get(plugin_name) or PluginInfo(plugin_name, plugin_name, "")
                provides, conflicts, errors = notes.setdefault(plugin_name, (set(), set(), []))
                if isinstance(outcome, BaseException):
                    msg = f"{hook_name} failed: {type(outcome).__name__}: {outcome}"
                    log.warning("plugin %s (%s): %s", plugin_name, info.distribution, msg)
                    errors.append(msg)
                    continue
                for item in outcome:
                    if not isinstance(item, cls):
                        msg = f"{hook_name} returned {type(item).__name__}; expected {cls.__name__}"
                        log.warning("plugin %s (%s): %s", plugin_name, info.distribution, msg)
                        errors.append(msg)
                        continue
                    item_name = cast(_Named, item).name
                    if f"{kind}:{item_name}" in provides:
                        errors.append(f"{hook_name} yielded {kind} {item_name!r} twice; the first one is used")
                        continue
                    provides.add(f"{kind}:{item_name}")
                    found.setdefault(item_name, []).append(
                        Provided(item, plugin_name, info.distribution, info.version))
            usable = {name: ps[0] for name, ps in found.items() if len(ps) == 1}
            clashes = {name: tuple(ps) for name, ps in found.items() if len(ps) > 1}
            schemes: dict[str, tuple[Provided[Any], ...]] = {}
            if kind == "store":
                claims: dict[str, list[Provided[Any]]] = {}
                for provided in usable.values():
                    for scheme in provided.item.schemes:
                        claims.setdefault(scheme.lower(), []).append(provided)
                schemes = {scheme: tuple(ps) for scheme, ps in claims.items()}
            for name, providers in clashes.items():
                self._note_conflict(notes, providers, _conflict_message(kind, name, providers))
            for scheme, providers in schemes.items():
                if len(providers) > 1:
                    self._note_conflict(notes, providers, _conflict_message(
                        kind, scheme, providers, what="store URL scheme"))
            registry = _Kind(usable, clashes, schemes)
            self._registry[kind] = registry
            self._found[kind] = notes
            return registry

    @staticmethod
    def _note_conflict(notes: dict[str, tuple[set[str], set[str], list[str]]],
                       providers: Iterable[Provided[Any]], message: str) -> None:
        log.warning("%s", message)
        for provided in providers:
            notes[provided.plugin][1].add(message)

    # -- lookups -----------------------------------------------------------------------------
    def provider(self, kind: str, name: str) -> Provided[Any]:
        """The registration of ``kind`` named ``name`` with its provenance; raises
        :class:`PluginError` when two plugins provide it, :class:`PluginNotFoundError` (with an
        install hint) when none does."""
        registry = self._collect(kind)
        if name in registry.usable:
            return registry.usable[name]
        if name in registry.conflicts:
            raise PluginError(_conflict_message(kind, name, registry.conflicts[name]))
        raise self._not_found(kind.replace("_", " "), name)

    def _not_found(self, kind: str, name: str) -> PluginNotFoundError:
        # A plugin of that name that exists but did not load tells the user more than a
        # convention: its own distribution is the one to (re)install or unblock.
        same = [i for i in self._infos.values() if i.name == name and (i.error or i.blocked)]
        hint = f"pip install {same[0].distribution}" if same and same[0].distribution != "?" else install_hint(name)
        err = PluginNotFoundError(kind, name, hint)
        if same and same[0].blocked:
            err.args = (f"{err.args[0]} (plugin {name!r} from {same[0].distribution} is blocked by {BLOCK_ENV})",)
        elif same:
            err.args = (f"{err.args[0]} (plugin {name!r} from {same[0].distribution} failed to load: "
                        f"{same[0].error})",)
        return err

    def get_scheduler(self, name: str) -> SchedulerPlugin:
        item: SchedulerPlugin = self.provider("scheduler", name).item
        return item

    def get_transport(self, name: str) -> TransportPlugin:
        item: TransportPlugin = self.provider("transport", name).item
        return item

    def providers(self, kind: str) -> dict[str, Provided[Any]]:
        """Every usable registration of ``kind`` (conflicting names left out), by name."""
        return dict(self._collect(kind).usable)

    def schedulers(self) -> dict[str, SchedulerPlugin]:
        return {k: v.item for k, v in self._collect("scheduler").usable.items()}

    def transports(self) -> dict[str, TransportPlugin]:
        return {k: v.item for k, v in self._collect("transport").usable.items()}

    def store_for_url(self, url: str) -> StorePlugin:
        scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
        claims = self._collect("store").schemes.get(scheme, ())
        if len(claims) > 1:
            raise PluginError(_conflict_message("store", scheme, claims, what="store URL scheme"))
        if claims:
            item: StorePlugin = claims[0].item
            return item
        raise PluginNotFoundError("store", scheme, f"install a molq store plugin for {scheme!r} URLs")

    def event_sinks(self) -> list[EventSink]:
        return [v.item for v in self._collect("event_sink").usable.values()]

    def cli_commands(self) -> list[CliCommand]:
        return [v.item for v in self._collect("cli_command").usable.values()]

    def plugin_infos(self) -> list[PluginInfo]:
        """Every discovered plugin, loaded, blocked or broken, with what it provides and any
        name it shares with another plugin (reported in ``error`` too)."""
        with self._lock:
            for kind in _KINDS:
                self._collect(kind)
            out = []
            for key, info in self._infos.items():
                kinds: set[str] = set(info.kinds)
                provides: set[str] = set(info.provides)
                conflicts: set[str] = set()
                errors = [info.error] if info.error else []
                for kind, notes in self._found.items():
                    if key not in notes:
                        continue
                    got, clashes, errs = notes[key]
                    if got:
                        kinds.add(kind)
                    provides |= got
                    conflicts |= clashes
                    errors += errs
                errors += sorted(conflicts)
                out.append(attrs.evolve(info, kinds=tuple(sorted(kinds)), provides=tuple(sorted(provides)),
                                        conflicts=tuple(sorted(conflicts)),
                                        error="; ".join(errors) if errors else None))
            return sorted(out, key=lambda i: (i.distribution, i.name))


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


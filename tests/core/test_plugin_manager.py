"""The plugin manager calls hooks through pluggy, keeps each registration's provenance, and
keeps one plugin's problems (a shared name, a shared URL scheme, a failing hook) to that plugin."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest
from molq import Cluster, PluginNotFoundError
from molq.errors import PluginError
from molq.hookspecs import hookimpl
from molq.plugin_types import SchedulerPlugin, StorePlugin
from molq.plugins import PluginManager, get_plugin_manager


def _local_factory(transport: Any, options: Any) -> Any:
    from molq.local import make_local_scheduler

    return make_local_scheduler(transport, options)


def _manager(*plugins: tuple[object, str, str]) -> PluginManager:
    """Built-ins plus ``(plugin, name, distribution)`` registered the way entry points are."""
    pm = PluginManager(load_entry_points=False)
    pm.load()
    for plugin, name, dist in plugins:
        pm.register(plugin, name=name, distribution=dist, version="1.0")
    return pm


class _Schedulers:
    def __init__(self, *names: str) -> None:
        self.names = names

    @hookimpl
    def molq_register_schedulers(self) -> Iterator[SchedulerPlugin]:
        for name in self.names:
            yield SchedulerPlugin(name=name, factory=_local_factory, description=f"{name} from a test")


class _OldStyleWrapper:
    """A third party's hook wrapper (pluggy's classic ``hookwrapper=True`` form)."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(hookwrapper=True)
    def molq_register_schedulers(self) -> Generator[None, Any, None]:
        self.calls += 1
        outcome = yield
        outcome.get_result()  # only looks


class _NewStyleWrapper:
    """A wrapper in pluggy's newer form, which sees and returns the results."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    @hookimpl(wrapper=True)
    def molq_register_schedulers(self) -> Generator[None, list[Any], list[Any]]:
        results = yield
        self.seen.append(len(results))
        return results


def test_a_third_party_hook_wrapper_runs_as_a_wrapper_and_discovery_still_works() -> None:
    old, new = _OldStyleWrapper(), _NewStyleWrapper()
    pm = _manager((_Schedulers("alpha"), "alpha", "molq-alpha"), (old, "spy", "molq-spy"),
                  (new, "spy2", "molq-spy2"))
    assert set(pm.schedulers()) == {"local", "alpha"}
    # pluggy called the wrappers around the hook (they are not registrations themselves).
    assert old.calls >= 1 and new.seen and all(n == 1 for n in new.seen)
    infos = {i.name: i for i in pm.plugin_infos()}
    assert infos["spy"].error is None and infos["spy"].provides == ()
    assert Cluster("w", "local").scheduler == "local"


class _BrokenWrapper:
    @hookimpl(wrapper=True)
    def molq_register_schedulers(self) -> Generator[None, list[Any], list[Any]]:
        raise RuntimeError("wrapper bug")
        yield  # pragma: no cover


def test_a_wrapper_that_raises_is_set_aside_and_blamed_alone() -> None:
    good = _NewStyleWrapper()
    pm = _manager((_Schedulers("alpha"), "alpha", "molq-alpha"), (_BrokenWrapper(), "buggy", "molq-buggy"),
                  (good, "spy2", "molq-spy2"))
    assert set(pm.schedulers()) == {"local", "alpha"}
    infos = {i.name: i for i in pm.plugin_infos()}
    assert "wrapper bug" in (infos["buggy"].error or "")
    assert infos["spy2"].error is None and infos["alpha"].error is None and infos["molq-core"].error is None
    assert good.seen  # the working wrapper still ran


def test_each_registration_knows_which_plugin_and_distribution_provided_it() -> None:
    pm = _manager((_Schedulers("alpha", "beta"), "ab", "molq-ab"))
    local = pm.provider("scheduler", "local")
    assert (local.plugin, local.distribution) == ("molq-core", "molq-core")
    alpha = pm.provider("scheduler", "alpha")
    assert (alpha.plugin, alpha.distribution, alpha.version) == ("ab", "molq-ab", "1.0")
    assert alpha.item.description == "alpha from a test"
    assert set(pm.providers("scheduler")) == {"local", "alpha", "beta"}


def test_a_name_two_plugins_provide_is_disabled_alone_and_both_are_named() -> None:
    pm = _manager((_Schedulers("dup", "solo"), "one", "molq-one"), (_Schedulers("dup"), "two", "molq-two"))
    # Every other scheduler keeps working...
    assert set(pm.schedulers()) == {"local", "solo"}
    assert pm.get_scheduler("solo").name == "solo"
    assert pm.get_scheduler("local").name == "local"
    # ...and asking for the shared name says who provides it.
    with pytest.raises(PluginError, match=r"scheduler 'dup' is provided by 2 plugins: molq-one \(plugin one\) "
                                          r"and molq-two \(plugin two\)"):
        pm.get_scheduler("dup")
    infos = {i.name: i for i in pm.plugin_infos()}
    for name in ("one", "two"):
        (conflict,) = infos[name].conflicts
        assert "molq-one" in conflict and "molq-two" in conflict
        assert "scheduler 'dup'" in (infos[name].error or "")
    assert infos["one"].provides == ("scheduler:dup", "scheduler:solo")
    assert infos["molq-core"].error is None


def test_a_builtin_name_shadowed_by_a_plugin_is_disabled_only_for_that_name() -> None:
    pm = get_plugin_manager()
    pm.register(_Schedulers("local", "other"), name="shadow", distribution="molq-shadow")
    with pytest.raises(PluginError, match="molq-core and molq-shadow"):
        Cluster("x", "local")
    assert Cluster("x", "other").scheduler == "other"


class _Stores:
    def __init__(self, name: str, *schemes: str) -> None:
        self.name, self.schemes = name, schemes

    @hookimpl
    def molq_register_stores(self) -> Iterator[StorePlugin]:
        yield StorePlugin(name=self.name, schemes=self.schemes, factory=lambda url: url)


def test_a_store_url_scheme_two_stores_claim_is_reported_like_a_shared_name() -> None:
    pm = _manager((_Stores("memo-a", "memo"), "a", "molq-memo-a"), (_Stores("memo-b", "memo", "memob"), "b", "molq-memo-b"))
    with pytest.raises(PluginError, match=r"store URL scheme 'memo' is provided by 2 plugins: "
                                          r"molq-memo-a \(plugin a\) and molq-memo-b \(plugin b\)"):
        pm.store_for_url("memo://somewhere")
    assert pm.store_for_url("memob://x").name == "memo-b"
    assert pm.store_for_url("sqlite:///jobs.db").name == "sql"
    infos = {i.name: i for i in pm.plugin_infos()}
    assert any("'memo'" in c for c in infos["a"].conflicts)
    assert any("'memo'" in c for c in infos["b"].conflicts)


class _Raises:
    @hookimpl
    def molq_register_schedulers(self) -> Iterator[SchedulerPlugin]:
        raise RuntimeError("cannot find libsched.so")
        yield  # pragma: no cover - makes this a generator, as most hooks are


class _WrongType:
    @hookimpl
    def molq_register_schedulers(self) -> list[object]:
        return [SchedulerPlugin(name="fine", factory=_local_factory), "not a registration"]


def test_a_failing_or_malformed_hook_costs_only_its_own_plugin() -> None:
    pm = _manager((_Raises(), "bad", "molq-bad"), (_WrongType(), "odd", "molq-odd"),
                  (_Schedulers("alpha"), "alpha", "molq-alpha"), (_Schedulers("echo", "echo"), "echo", "molq-echo"))
    assert set(pm.schedulers()) == {"local", "alpha", "fine", "echo"}
    infos = {i.name: i for i in pm.plugin_infos()}
    assert infos["bad"].error is not None and "cannot find libsched.so" in infos["bad"].error
    assert infos["odd"].error is not None and "returned str; expected SchedulerPlugin" in infos["odd"].error
    assert infos["alpha"].error is None
    # One plugin naming the same thing twice is its own mistake, not a conflict with itself.
    assert "yielded scheduler 'echo' twice" in (infos["echo"].error or "") and infos["echo"].conflicts == ()


def test_install_hints_follow_the_naming_convention_without_a_table_in_core() -> None:
    import molq.plugins

    assert not hasattr(molq.plugins, "INSTALL_HINTS")
    pm = _manager()  # no entry points: the in-repo backends are "not installed" here
    for name in ("slurm", "pbs", "lsf"):
        with pytest.raises(PluginNotFoundError, match=f"install it with: pip install molq-{name}$"):
            pm.get_scheduler(name)
    with pytest.raises(PluginNotFoundError, match="pip install molq-ssh$"):
        pm.get_transport("ssh")


def test_registering_through_pluggy_rejects_an_unknown_hook() -> None:
    class Typo:
        @hookimpl
        def molq_register_transportz(self) -> list[object]:
            return []

    pm = _manager((Typo(), "typo", "molq-typo"))
    (info,) = [i for i in pm.plugin_infos() if i.name == "typo"]
    assert info.error is not None and "molq_register_transportz" in info.error
    assert set(pm.transports()) == {"local"}

"""Plugin discovery: entry points, duplicates, broken and blocked plugins, install hints."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from molq import Cluster, ConfigError, PluginNotFoundError
from molq.errors import PluginError
from molq.hookspecs import hookimpl
from molq.plugin_types import SchedulerPlugin
from molq.plugins import PluginManager, get_plugin_manager


def test_unknown_scheduler_has_install_hint():
    with pytest.raises(PluginNotFoundError, match="pip install molq-nosuch"):
        Cluster("x", "nosuch")


def test_host_without_ssh_plugin_has_install_hint(monkeypatch):
    monkeypatch.setenv("MOLQ_BLOCK_PLUGINS", "ssh")
    with pytest.raises(PluginNotFoundError, match="pip install molq-ssh"):
        Cluster("x", "local", host="login.example.org")


def test_host_and_transport_are_exclusive():
    from molq import LocalTransport

    with pytest.raises(ConfigError):
        Cluster("x", host="h", transport=LocalTransport())


def test_builtins_register_through_hooks():
    pm = get_plugin_manager()
    assert "local" in pm.schedulers()
    assert "local" in pm.transports()
    assert pm.store_for_url("sqlite:///x.db").name == "sql"
    infos = {i.name: i for i in pm.plugin_infos()}
    assert "scheduler:local" in infos["molq-core"].provides


def test_cluster_construction_runs_no_command(monkeypatch):
    import subprocess as sp

    def boom(*a, **k):
        raise AssertionError("a command ran while constructing a Cluster")

    monkeypatch.setattr(sp, "run", boom)
    monkeypatch.setattr(sp, "Popen", boom)
    c = Cluster("quiet", "local")
    assert c.name == "quiet" and c.scheduler == "local"


class _Dup:
    @hookimpl
    def molq_register_schedulers(self):
        yield SchedulerPlugin(name="local", factory=lambda t, o: None)


def test_duplicate_names_error_names_both_distributions():
    pm = PluginManager(load_entry_points=False)
    pm.load()
    pm.register(_Dup(), name="dup", distribution="molq-fake-dup")
    with pytest.raises(PluginError, match="molq-core and molq-fake-dup|molq-fake-dup and molq-core"):
        pm.get_scheduler("local")


class _Misspelled:
    @hookimpl
    def molq_register_schedulerz(self):  # typo: must not pass silently
        return []


def test_misspelled_hook_is_reported():
    pm = PluginManager(load_entry_points=False)
    pm.load()
    pm.register(_Misspelled(), name="typo", distribution="molq-typo")
    (info,) = [i for i in pm.plugin_infos() if i.name == "typo"]
    assert info.error and "molq_register_schedulerz" in info.error


def _install_fake_dist(site, name, module_source, ep_name):
    """Create an importable distribution with a molq entry point under ``site``."""
    pkg = name.replace("-", "_")
    (site / f"{pkg}.py").write_text(textwrap.dedent(module_source))
    dist = site / f"{pkg}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[molq]\n{ep_name} = {pkg}\n")


def _run_in(site, code, **env):
    full_env = dict(os.environ, PYTHONPATH=str(site), **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_entry_points_broken_blocked_and_duplicates(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install_fake_dist(site, "molq-broken", "raise ImportError('missing libfoo')\n", "broken")
    _install_fake_dist(site, "molq-toy", """
        from molq.hookspecs import hookimpl
        from molq.plugin_types import SchedulerPlugin
        MOLQ_PLUGIN_API = 1
        @hookimpl
        def molq_register_schedulers():
            def factory(transport, options):
                from molq.local import ShellScheduler
                return ShellScheduler(transport)
            yield SchedulerPlugin(name="toy", factory=factory)
    """, "toy")
    _install_fake_dist(site, "molq-future", "MOLQ_PLUGIN_API = 99\n", "future")
    code = """
        from molq import Cluster
        from molq.plugins import get_plugin_manager
        c = Cluster("t", "toy")
        print("toy-ok", type(c.scheduler_impl).__name__)
        for i in get_plugin_manager().plugin_infos():
            print("INFO", i.name, i.distribution, bool(i.error), i.blocked, (i.error or "")[:80])
    """
    out = _run_in(site, code)
    assert out.returncode == 0, out.stderr
    assert "toy-ok ShellScheduler" in out.stdout
    lines = {line.split()[1]: line for line in out.stdout.splitlines() if line.startswith("INFO")}
    assert "molq-broken True False" in lines["broken"]
    assert "missing libfoo" in lines["broken"]
    assert "plugin API 99" in lines["future"]
    blocked = _run_in(site, code.replace('Cluster("t", "toy")', 'None').replace(
        'print("toy-ok", type(c.scheduler_impl).__name__)', ''), MOLQ_BLOCK_PLUGINS="toy,molq-broken")
    blines = {line.split()[1]: line for line in blocked.stdout.splitlines() if line.startswith("INFO")}
    assert "False True" in blines["toy"] and "False True" in blines["broken"]
    gone = _run_in(site, 'from molq import Cluster\nCluster("t", "toy")', MOLQ_BLOCK_PLUGINS="toy")
    assert gone.returncode != 0 and "pip install molq-toy" in gone.stderr


_TWIN = """
    from molq.hookspecs import hookimpl
    from molq.plugin_types import SchedulerPlugin

    def factory(transport, options):
        from molq.local import ShellScheduler
        return ShellScheduler(transport)

    @hookimpl
    def molq_register_schedulers():
        yield SchedulerPlugin(name="twin", factory=factory)
        yield SchedulerPlugin(name="{extra}", factory=factory)
"""


def test_two_distributions_sharing_a_name_through_entry_points(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install_fake_dist(site, "molq-twin-a", _TWIN.format(extra="solo-a"), "twin_a")
    _install_fake_dist(site, "molq-twin-b", _TWIN.format(extra="solo-b"), "twin_b")
    out = _run_in(site, """
        from molq import Cluster
        from molq.errors import PluginError
        print("solo", type(Cluster("t", "solo-a").scheduler_impl).__name__, Cluster("t", "solo-b").scheduler)
        try:
            Cluster("t", "twin")
        except PluginError as exc:
            print("twin-error", exc)
    """)
    assert out.returncode == 0, out.stderr
    assert "solo ShellScheduler solo-b" in out.stdout
    assert ("twin-error scheduler 'twin' is provided by 2 plugins: molq-twin-a (plugin twin_a) and "
            "molq-twin-b (plugin twin_b)") in out.stdout
    listing = subprocess.run([sys.executable, "-m", "molq", "plugins"], capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, PYTHONPATH=str(site)))
    assert listing.returncode == 0 and "Traceback" not in listing.stderr
    for plugin in ("twin_a", "twin_b"):
        assert f"{plugin}: scheduler 'twin' is provided by 2 plugins: molq-twin-a" in listing.stderr

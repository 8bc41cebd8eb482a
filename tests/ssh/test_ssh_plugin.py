"""molq-ssh registers the ``ssh`` transport through the ``molq`` entry point group."""

from __future__ import annotations

import pytest
from molq.errors import ConfigError
from molq.plugins import PluginManager
from molq.transport import Transport
from molq_ssh import SshTransport, SshTransportOptions


@pytest.fixture
def ssh_plugin():
    return PluginManager().get_transport("ssh")


def test_entry_point_provides_the_ssh_transport(ssh_plugin) -> None:
    assert ssh_plugin.name == "ssh"
    assert ssh_plugin.options_type is SshTransportOptions


def test_factory_builds_from_host_and_option_keywords(ssh_plugin) -> None:
    t = ssh_plugin.factory(host="me@login", port=2222, ssh_opts=["-o", "Compression=yes"], connect_timeout=3)
    assert isinstance(t, SshTransport) and isinstance(t, Transport)
    assert t.options == SshTransportOptions(
        host="me@login", port=2222, ssh_opts=("-o", "Compression=yes"), connect_timeout=3
    )
    assert ssh_plugin.factory(host="alias").options == SshTransportOptions(host="alias")


def test_factory_accepts_a_ready_options_object(ssh_plugin) -> None:
    opts = SshTransportOptions(host="alias", port=22)
    assert ssh_plugin.factory(host="alias", options=opts).options is opts
    with pytest.raises(ConfigError):
        ssh_plugin.factory(host="other", options=opts)


def test_factory_names_unknown_options(ssh_plugin) -> None:
    with pytest.raises(ConfigError, match="'hostkey'.*transport 'ssh'"):
        ssh_plugin.factory(host="alias", hostkey="x")
    with pytest.raises(ConfigError, match="host"):
        ssh_plugin.factory(port=22)

"""Transports chosen by name: a third-party transport plugin, its checked options, ``host=`` as
shorthand for ssh, and the Cluster a stored job is rebuilt from."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from molq import Cluster, ConfigError, JobExecution, JobState, PluginNotFoundError, Submitor
from molq.hookspecs import hookimpl
from molq.plugin_types import TransportPlugin
from molq.plugins import get_plugin_manager
from molq.testing import TransportConformance
from molq.transport import BaseTransport, CommandResult, Transport


def _absolute(_inst: Any, _attr: Any, value: str) -> None:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"audit_log must be an absolute path, got {value!r}")


@attrs.frozen
class AuditOptions:
    audit_log: str = attrs.field(validator=_absolute)
    label: str = "audited"


class AuditedTransport(BaseTransport):
    """A third party's transport: this machine, reached only through :meth:`run` (as a remote
    transport is), writing every command it runs to an audit log, one JSON line each."""

    name = "audited"
    is_remote = True

    def __init__(self, options: AuditOptions) -> None:
        self.options = options

    def run(self, argv: Sequence[str], *, input: str | None = None, cwd: str | None = None,
            env: Mapping[str, str] | None = None, timeout: float | None = None) -> CommandResult:
        with open(self.options.audit_log, "a") as log:
            log.write(json.dumps({"label": self.options.label, "argv": list(argv)}) + "\n")
        proc = subprocess.run(list(argv), input=input, cwd=cwd, env={**os.environ, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def upload(self, local: str | Path, remote: str, *, recursive: bool = False) -> None:
        (shutil.copytree if recursive else shutil.copy2)(str(local), remote)

    def download(self, remote: str, local: str | Path, *, recursive: bool = False) -> None:
        (shutil.copytree if recursive else shutil.copy2)(remote, str(local))


def _make(**options: Any) -> AuditedTransport:
    return AuditedTransport(AuditOptions(**options))


class _AuditPlugin:
    @hookimpl
    def molq_register_transports(self) -> Iterator[TransportPlugin]:
        yield TransportPlugin(name="audited", factory=_make, options_type=AuditOptions,
                              description="this machine, every command logged")


@pytest.fixture
def audited() -> None:
    get_plugin_manager().register(_AuditPlugin(), name="audited", distribution="molq-audited")


def _logged(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_third_party_transport_is_chosen_by_name_and_jobs_run_through_it(audited: None, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    cluster = Cluster("box", "local", transport="audited", transport_options={"audit_log": str(log), "label": "t1"})
    assert isinstance(cluster.transport, AuditedTransport) and cluster.transport.options.label == "t1"
    assert cluster.transport_name == "audited" and cluster.host is None
    assert cluster.transport_options == {"audit_log": str(log), "label": "t1"}
    assert "transport='audited'" in repr(cluster)
    record = Submitor(cluster).submit_job(
        argv=["sh", "-c", "echo via-audited > out.txt"], execution=JobExecution(cwd=str(tmp_path)),
    ).wait(timeout=60)
    assert record.state == JobState.SUCCEEDED, record.failure_reason
    assert (tmp_path / "out.txt").read_text() == "via-audited\n"
    entries = _logged(log)
    assert entries and all(e["label"] == "t1" for e in entries)


def test_unknown_transport_option_names_the_field_and_the_transport(audited: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown transport option\(s\) 'colour' for transport 'audited'"):
        Cluster("box", transport="audited", transport_options={"audit_log": str(tmp_path / "a"), "colour": "red"})
    with pytest.raises(ConfigError, match="audit_log must be an absolute path"):
        Cluster("box", transport="audited", transport_options={"audit_log": "relative.log"})
    with pytest.raises(ConfigError, match="transport 'audited' needs the option\\(s\\) 'audit_log'"):
        Cluster("box", transport="audited", transport_options={})
    # host= is one more option: a transport without a host field refuses it by name.
    with pytest.raises(ConfigError, match=r"'host' for transport 'audited'"):
        Cluster("box", host="login1", transport="audited", transport_options={"audit_log": str(tmp_path / "a")})


def test_options_are_checked_before_the_factory_runs(tmp_path: Path) -> None:
    built: list[dict[str, Any]] = []

    class Plugin:
        @hookimpl
        def molq_register_transports(self) -> Iterator[TransportPlugin]:
            def factory(**options: Any) -> AuditedTransport:
                built.append(options)
                return _make(**options)

            yield TransportPlugin(name="counted", factory=factory, options_type=AuditOptions)

    get_plugin_manager().register(Plugin(), name="counted", distribution="molq-counted")
    with pytest.raises(ConfigError):
        Cluster("box", transport="counted", transport_options={"audit_log": "x", "nope": 1})
    assert built == []
    Cluster("box", transport="counted", transport_options={"audit_log": str(tmp_path / "a")})
    assert built == [{"audit_log": str(tmp_path / "a")}]


def test_unknown_transport_name_gives_the_install_hint() -> None:
    with pytest.raises(PluginNotFoundError, match="no transport named 'gridftp' is installed; install it with: "
                                                  "pip install molq-gridftp"):
        Cluster("box", transport="gridftp")


def test_a_transport_without_options_refuses_them() -> None:
    assert Cluster("box", transport="local").transport_name == "local"
    with pytest.raises(ConfigError, match="the 'local' transport takes no options, got port"):
        Cluster("box", transport="local", transport_options={"port": 22})
    with pytest.raises(ConfigError, match="transport_options need host="):
        Cluster("box", transport_options={"port": 22})


def test_host_stays_shorthand_for_the_ssh_transport() -> None:
    pytest.importorskip("molq_ssh")
    from molq_ssh import SshTransport

    by_host = Cluster("hpc", "local", host="user@login.example.org", transport_options={"port": 2222})
    by_name = Cluster("hpc", "local", transport="ssh", transport_options={"host": "user@login.example.org",
                                                                         "port": 2222})
    for cluster in (by_host, by_name):
        assert isinstance(cluster.transport, SshTransport)
        assert cluster.transport_name == "ssh" and cluster.host == "user@login.example.org"
        assert cluster.transport_options == {"port": 2222}
        assert repr(cluster) == "Cluster('hpc', 'local', host='user@login.example.org')"
    with pytest.raises(ConfigError, match=r"unknown transport option\(s\) 'prot' for transport 'ssh'"):
        Cluster("hpc", host="login1", transport_options={"prot": 22})
    with pytest.raises(ConfigError, match="disagree"):
        Cluster("hpc", host="login1", transport_options={"host": "login2"})


def test_a_stored_target_rebuilds_the_named_transport(audited: None, tmp_path: Path) -> None:
    log = str(tmp_path / "audit.jsonl")
    again = Cluster.from_target("box", {"scheduler": "local", "transport": "audited",
                                        "transport_options": {"audit_log": log}})
    assert isinstance(again.transport, AuditedTransport) and again.transport.options.audit_log == log
    # Records written before transports had names: host= means ssh, nothing means this machine.
    assert Cluster.from_target("box", {"scheduler": "local"}).transport_name == "local"
    if importlib.util.find_spec("molq_ssh") is not None:
        assert Cluster.from_target("box", {"scheduler": "local", "host": "login1"}).transport_name == "ssh"


def test_a_profile_chooses_a_transport_by_name(audited: None, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    config = tmp_path / "config.toml"
    config.write_text(f'[profiles.box]\nscheduler = "local"\ntransport = "audited"\n\n'
                      f'[profiles.box.transport_options]\naudit_log = "{log}"\n')
    cluster = Cluster.from_profile("box", config_path=config)
    assert isinstance(cluster.transport, AuditedTransport)


class TestAuditedTransportConformance(TransportConformance):
    """The test's third-party transport, built by name, passes molq's transport kit."""

    @pytest.fixture
    def transport(self, audited: None, tmp_path: Path) -> Transport:
        return Cluster("box", transport="audited",
                       transport_options={"audit_log": str(tmp_path / "audit.jsonl")}).transport

    @pytest.fixture
    def remote_dir(self, tmp_path: Path) -> str:
        d = tmp_path / "remote"
        d.mkdir()
        return str(d)

"""Connection failures become a clear TransportError naming the host, within a bounded time.

The bound (15 s) is a correctness property: nothing may wait for a password, a host-key prompt
or an unbounded TCP timeout.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
from molq.errors import TransportError
from molq_ssh import SshTransport, SshTransportOptions

pytestmark = pytest.mark.sshd

BOUND = 15.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _expect_failure(transport: SshTransport, pattern: str) -> TransportError:
    start = time.monotonic()
    with pytest.raises(TransportError) as info:
        transport.run(["true"])
    elapsed = time.monotonic() - start
    assert elapsed < BOUND, f"took {elapsed:.1f}s"
    message = str(info.value)
    assert transport.host in message
    assert re.search(pattern, message), message
    return info.value


def _direct(sshd, control_dir: str, **kw) -> SshTransport:
    """A transport to the test sshd without its ssh_config alias (every setting explicit)."""
    opts = {
        "host": f"{sshd.user}@{sshd.addr}",
        "port": sshd.port,
        "identity_file": sshd.key,
        "config_file": os.devnull,
        "control_dir": control_dir,
        "ssh_opts": (
            "-o",
            f"UserKnownHostsFile={sshd.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
        ),
    }
    opts.update(kw)
    return SshTransport(SshTransportOptions(**opts))


def test_direct_settings_work(sshd, private_control_dir: str) -> None:
    # The baseline for the failure cases below: only the one setting they change is wrong.
    assert _direct(sshd, private_control_dir).run(["echo", "ok"]).stdout == "ok\n"


def test_closed_port(sshd, private_control_dir: str) -> None:
    t = _direct(sshd, private_control_dir, port=_closed_port())
    _expect_failure(t, "(?i)connection refused")
    assert os.listdir(private_control_dir) == []  # no stale socket left behind


def test_refused_key(sshd, private_control_dir: str, tmp_path: Path) -> None:
    key = tmp_path / "stranger"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    _expect_failure(_direct(sshd, private_control_dir, identity_file=str(key)), "(?i)permission denied")


def test_unknown_host_key_with_strict_checking(sshd, private_control_dir: str, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = _direct(
        sshd,
        private_control_dir,
        ssh_opts=(
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={empty}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ),
    )
    _expect_failure(t, "(?i)host key verification failed")
    assert empty.read_text() == ""  # nothing was trusted behind the user's back


def test_changed_host_key_is_refused(sshd, private_control_dir: str, tmp_path: Path) -> None:
    wrong = tmp_path / "known_hosts"
    other = tmp_path / "other"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    pub = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    wrong.write_text(f"[{sshd.addr}]:{sshd.port} {pub}\n")
    t = _direct(
        sshd,
        private_control_dir,
        ssh_opts=(
            "-o",
            f"UserKnownHostsFile={wrong}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
        ),
    )
    _expect_failure(t, "(?i)host key")


def test_unroutable_host_is_bounded_by_connect_timeout(private_control_dir: str) -> None:
    # TEST-NET-1: never routed. Depending on the network this is refused at once or times out.
    t = SshTransport(
        SshTransportOptions(
            host="root@192.0.2.1", connect_timeout=2, config_file=os.devnull, control_dir=private_control_dir
        )
    )
    _expect_failure(t, ".")


def test_unresolvable_host(private_control_dir: str) -> None:
    t = SshTransport(
        SshTransportOptions(
            host="molq-no-such-host.invalid",
            connect_timeout=2,
            config_file=os.devnull,
            control_dir=private_control_dir,
        )
    )
    _expect_failure(t, "(?i)resolve|name|known")


def test_file_operations_raise_the_same_error(sshd, private_control_dir: str, tmp_path: Path) -> None:
    t = _direct(sshd, private_control_dir, port=_closed_port())
    for op in (
        lambda: t.read_text("/etc/hostname"),
        lambda: t.exists("/"),
        lambda: t.write_text("/tmp/x", "x"),
        lambda: t.upload(__file__, "/tmp/x"),
        lambda: t.download("/etc/hostname", tmp_path / "h"),
        lambda: t.home(),
    ):
        start = time.monotonic()
        with pytest.raises(TransportError, match="127.0.0.1"):
            op()
        assert time.monotonic() - start < BOUND


def test_missing_ssh_client(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    t = SshTransport(SshTransportOptions(host="h", control_dir=str(tmp_path / "cm")))
    with pytest.raises(TransportError, match="OpenSSH client"):
        t.run(["true"])


def test_a_failing_command_is_not_a_transport_error(transport: SshTransport) -> None:
    # ...but the *_check-based operations turn it into one that carries the remote stderr.
    result = transport.run(["ls", "/molq-definitely-missing"])
    assert result.returncode != 0 and "molq-definitely-missing" in result.stderr
    with pytest.raises(TransportError, match="molq-definitely-missing") as info:
        transport.chmod("/molq-definitely-missing", 0o600)
    assert "No such file" in str(info.value)

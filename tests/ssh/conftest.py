"""Fixtures for the SSH transport tests: the real OpenSSH test server and transports bound to it.

The server is started by ``bash tests/services/sshd.sh`` (the test command does this); these
fixtures only find it. Without it, live tests skip with the reason, or FAIL when CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from molq_ssh import SshTransport, SshTransportOptions
from ssh_support import Sshd, locate_sshd, unavailable

_probe_result: tuple[Sshd | None, str] | None = None


def _probe() -> tuple[Sshd | None, str]:
    global _probe_result
    if _probe_result is None:
        info = locate_sshd()
        hint = "start it with: bash tests/services/sshd.sh"
        if shutil.which("ssh") is None:
            _probe_result = (None, "the OpenSSH client (ssh) is not installed")
        elif not os.path.isfile(info.config):
            _probe_result = (None, f"test sshd not set up ({info.config} missing); {hint}")
        else:
            try:
                proc = subprocess.run(
                    [
                        "ssh",
                        "-F",
                        info.config,
                        "-o",
                        "BatchMode=yes",
                        "-o",
                        "ConnectTimeout=5",
                        "-o",
                        "ControlMaster=no",
                        "-o",
                        "ControlPath=none",
                        info.host,
                        "true",
                    ],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=20,
                )
                ok, why = proc.returncode == 0, proc.stderr.strip()
            except subprocess.TimeoutExpired:
                ok, why = False, "timed out"
            _probe_result = (info, "") if ok else (None, f"test sshd not reachable ({why}); {hint}")
    return _probe_result


@pytest.fixture(scope="session")
def sshd() -> Sshd:
    """The running test sshd (skips, or fails under CI=true, when it is not there)."""
    info, reason = _probe()
    if info is None:
        unavailable(reason)
    assert info is not None
    return info


@pytest.fixture(scope="session")
def control_dir() -> Iterator[str]:
    """A short private directory for control sockets, shared by the session's transports.

    Kept out of ~/.molq so tests never touch (or kill) masters of the user or other suites.
    """
    path = tempfile.mkdtemp(prefix="mqssh-", dir="/tmp")
    yield path
    for name in os.listdir(path):
        sock = os.path.join(path, name)
        # Shut masters this session left behind (ssh -S names the socket directly).
        subprocess.run(
            ["ssh", "-S", sock, "-O", "exit", "x"], stdin=subprocess.DEVNULL, capture_output=True, timeout=15
        )
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def private_control_dir() -> Iterator[str]:
    """A control directory for one test (tests that kill or close their master)."""
    path = tempfile.mkdtemp(prefix="mqssh-", dir="/tmp")
    yield path
    for name in os.listdir(path):
        subprocess.run(
            ["ssh", "-S", os.path.join(path, name), "-O", "exit", "x"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=15,
        )
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def make_transport(sshd: Sshd, control_dir: str) -> Callable[..., SshTransport]:
    """Build an SshTransport to the test sshd; keyword arguments override options."""

    def make(**overrides: Any) -> SshTransport:
        fields: dict[str, Any] = {"host": sshd.host, "config_file": sshd.config, "control_dir": control_dir}
        fields.update(overrides)
        return SshTransport(SshTransportOptions(**fields))

    return make


@pytest.fixture(scope="session")
def transport(make_transport: Callable[..., SshTransport]) -> SshTransport:
    """One multiplexed transport shared by the session (cheap calls)."""
    return make_transport()


@pytest.fixture
def remote_dir(transport: SshTransport) -> Iterator[str]:
    """A fresh directory on the remote side, removed afterwards."""
    result = transport.run(["mktemp", "-d", "/tmp/molq-ssh-test.XXXXXX"])
    assert result.returncode == 0, result.stderr
    path = result.stdout.strip()
    yield path
    transport.run(["rm", "-rf", "--", path])

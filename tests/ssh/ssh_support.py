"""Helpers shared by the SSH transport tests (imported by conftest.py and test modules)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Sshd:
    """Where the test sshd lives (see tests/services/sshd.sh)."""

    directory: str
    config: str  # ssh_config with the Host alias below
    host: str  # the alias
    addr: str
    port: int
    user: str
    key: str
    known_hosts: str


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true, when a service the test needs is missing."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing service is a failure)", pytrace=False)
    pytest.skip(reason)


def locate_sshd() -> Sshd:
    """The test sshd's settings, from MOLQ_TEST_SSH_* variables or the default paths."""
    directory = os.environ.get("MOLQ_TEST_SSH_DIR") or os.path.join(
        os.environ.get("MOLQ_TEST_DIR", "/var/lib/molq-test"), "sshd"
    )
    config = os.environ.get("MOLQ_TEST_SSH_CONFIG") or os.path.join(directory, "ssh_config")
    return Sshd(
        directory=directory,
        config=config,
        host=os.environ.get("MOLQ_TEST_SSH_HOST", "molq-test-remote"),
        addr=os.environ.get("MOLQ_TEST_SSH_ADDR", "127.0.0.1"),
        port=int(os.environ.get("MOLQ_TEST_SSH_PORT", "2222")),
        user=os.environ.get("MOLQ_TEST_SSH_USER", "root"),
        key=os.environ.get("MOLQ_TEST_SSH_KEY") or os.path.join(directory, "id_ed25519"),
        known_hosts=os.environ.get("MOLQ_TEST_SSH_KNOWN_HOSTS") or os.path.join(directory, "known_hosts"),
    )


@contextlib.contextmanager
def ssh_calls(transport: Any) -> Iterator[list[str]]:
    """Record every ssh process ``transport`` starts for a command (one entry each)."""
    calls: list[str] = []
    original = transport._exec

    def counting(command: str, **kw: Any) -> Any:
        calls.append(kw.get("what", ""))
        return original(command, **kw)

    transport._exec = counting
    try:
        yield calls
    finally:
        del transport._exec

"""Options of the SSH transport (``Cluster(..., host="alias")`` or a profile's transport table)."""

from __future__ import annotations

import os
from typing import Any

import attrs
from molq.errors import ConfigError

__all__ = ["SshTransportOptions", "FILE_TRANSFER_MODES"]

#: How ``upload``/``download`` move files: rsync when both sides have it, else scp ("auto").
FILE_TRANSFER_MODES: tuple[str, ...] = ("auto", "rsync", "scp")


def _to_str_tuple(value: Any) -> tuple[str, ...]:
    # Profiles come from TOML (lists); a lone string would otherwise be split into characters.
    if isinstance(value, str):
        raise ConfigError(f"expected a list of strings, got the string {value!r}")
    return tuple(str(v) for v in value)


def _optional_path(value: Any) -> str | None:
    if value is None:
        return None
    return os.fspath(value)


def _check_host(_inst: Any, _attr: Any, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("ssh: host must be a non-empty string such as 'user@login.example.org' or an alias")
    # A host starting with '-' would be read by ssh as an option (option injection).
    if value.startswith("-") or any(c.isspace() for c in value) or "\x00" in value:
        raise ConfigError(f"ssh: invalid host {value!r}")


def _check_port(_inst: Any, _attr: Any, value: int | None) -> None:
    if value is not None and not (isinstance(value, int) and 0 < value < 65536):
        raise ConfigError(f"ssh: port must be an integer between 1 and 65535, got {value!r}")


def _positive_int(_inst: Any, attr: attrs.Attribute, value: int) -> None:
    # ssh takes whole seconds for ConnectTimeout/ControlPersist/ServerAliveInterval.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"ssh: {attr.name} must be a whole number of seconds >= 1, got {value!r}")


def _check_transfer(_inst: Any, _attr: Any, value: str) -> None:
    if value not in FILE_TRANSFER_MODES:
        raise ConfigError(
            f"ssh: file_transfer must be one of {', '.join(FILE_TRANSFER_MODES)}, got {value!r}"
        )


@attrs.frozen(kw_only=False)
class SshTransportOptions:
    """How to reach a cluster over OpenSSH.

    Only ``host`` is required; everything else falls back to the user's own ``~/.ssh/config``
    (or ``config_file``), so aliases, ProxyJump, agents and Kerberos work unchanged.

    >>> SshTransportOptions("login.example.org", port=2222).port
    2222

    Attributes:
        host: ``user@host``, ``host`` or an alias from ssh_config.
        port: TCP port (``-o Port=``); None keeps ssh_config's value (default 22).
        identity_file: private key (``-i``); also sets ``IdentitiesOnly=yes`` so the agent's
            other keys are not tried first.
        ssh_opts: extra ssh arguments, placed before molq's defaults so that an ``-o Key=Value``
            given here wins over them. They are also given to rsync (``-e``) and scp, so prefer
            the ``-o Key=Value`` form, which all three accept.
        rsync_opts: rsync options for upload/download.
        config_file: an ssh_config file used instead of ``~/.ssh/config`` (``ssh -F``).
        connect_timeout: seconds before giving up on an unreachable host (``ConnectTimeout``).
        control_persist: seconds the shared master connection stays open after its last use.
        multiplex: share one connection between calls and processes (ControlMaster); set
            False for hosts that forbid session multiplexing.
        control_dir: directory of the control sockets (mode 0700); default ``~/.molq/ssh``, or
            a per-user directory in /tmp when the home path is too long for a unix socket.
        server_alive_interval: seconds between keep-alive probes; a dead connection is noticed
            after three missed probes.
        file_transfer: ``"auto"`` (rsync if both sides have it, else scp), ``"rsync"`` or
            ``"scp"``.
    """

    host: str = attrs.field(validator=_check_host)
    port: int | None = attrs.field(default=None, validator=_check_port)
    identity_file: str | None = attrs.field(default=None, converter=_optional_path)
    ssh_opts: tuple[str, ...] = attrs.field(default=(), converter=_to_str_tuple)
    rsync_opts: tuple[str, ...] = attrs.field(
        default=("-a", "--partial", "--inplace"), converter=_to_str_tuple
    )
    config_file: str | None = attrs.field(default=None, converter=_optional_path)
    connect_timeout: int = attrs.field(default=10, validator=_positive_int)
    control_persist: int = attrs.field(default=600, validator=_positive_int)
    multiplex: bool = True
    control_dir: str | None = attrs.field(default=None, converter=_optional_path)
    server_alive_interval: int = attrs.field(default=15, validator=_positive_int)
    file_transfer: str = attrs.field(default="auto", validator=_check_transfer)

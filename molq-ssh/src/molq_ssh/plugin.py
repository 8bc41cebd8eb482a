"""Registers the SSH transport with molq (entry point group "molq").

``Cluster("hpc", "slurm", host="login.example.org")`` builds it as
``factory(host="login.example.org", **options)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from molq.hookspecs import hookimpl
from molq.plugin_types import TransportPlugin

from molq_ssh.options import SshTransportOptions

MOLQ_PLUGIN_API = 1


def make_transport(host: str | None = None, **options: Any) -> Any:
    """Build an :class:`~molq_ssh.transport.SshTransport` for ``host``.

    ``options`` are :class:`SshTransportOptions` fields (``port``, ``identity_file``,
    ``ssh_opts``...); ``options=SshTransportOptions(...)`` passes a ready-made instance.
    """
    from molq.errors import ConfigError

    from molq_ssh.transport import SshTransport

    ready = options.pop("options", None)
    if ready is not None:
        if options or (host is not None and host != ready.host):
            raise ConfigError("ssh: pass either options=SshTransportOptions(...) or separate option keywords")
        return SshTransport(ready)
    if host is None:
        raise ConfigError("ssh: a host is required, e.g. Cluster(name, scheduler, host='login.example.org')")
    try:
        return SshTransport(SshTransportOptions(host=host, **options))
    except TypeError as exc:
        import attrs

        known = {f.name for f in attrs.fields(SshTransportOptions)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(map(repr, unknown))} for transport 'ssh'; "
                f"known: {', '.join(sorted(known - {'host'}))}"
            ) from exc
        raise ConfigError(f"ssh: {exc}") from exc


@hookimpl
def molq_register_transports() -> Iterator[TransportPlugin]:
    """The ``ssh`` transport."""
    yield TransportPlugin(
        name="ssh",
        factory=make_transport,
        options_type=SshTransportOptions,
        description="OpenSSH (ssh/rsync/scp) with a shared, persistent master connection",
    )

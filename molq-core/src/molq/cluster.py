"""``Cluster``: a submission destination (scheduler kind + transport), and remote directories.

Constructing a Cluster looks up plugins but runs no scheduler command: it is cheap.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from molq.errors import ConfigError
from molq.model import QueueEntry
from molq.plugins import get_plugin_manager

if TYPE_CHECKING:
    from molq.scheduler import Scheduler
    from molq.submitor import JobHandle, Submitor
    from molq.transport import Transport

__all__ = ["Cluster", "Workspace", "Project"]


def _build_options(options_type: type | None, options: Any, scheduler: str) -> Any:
    if options is None:
        return None
    if options_type is None:
        raise ConfigError(f"the {scheduler!r} scheduler takes no scheduler_options")
    if isinstance(options, options_type):
        return options
    if isinstance(options, dict):
        from molq import serde

        return serde.structure(options, options_type, what=f"scheduler_options for {scheduler!r}")
    raise ConfigError(
        f"scheduler_options for {scheduler!r} must be {options_type.__name__} or a dict, "
        f"got {type(options).__name__}"
    )


def _named_transport(name: str, options: dict[str, Any]) -> Transport:
    """Build the transport plugin ``name`` after checking ``options`` against its
    ``options_type`` the way scheduler options are checked."""
    plugin = get_plugin_manager().get_transport(name)
    options_type = plugin.options_type
    if options_type is None:
        if options:
            raise ConfigError(f"the {name!r} transport takes no options, got {', '.join(sorted(options))}")
    elif attrs.has(options_type):
        fields = attrs.fields(options_type)
        known = {f.name for f in fields}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"unknown transport option(s) {', '.join(map(repr, unknown))} for transport {name!r}; "
                f"known: {', '.join(sorted(known)) or 'none'}"
            )
        missing = [f.name for f in fields if f.default is attrs.NOTHING and f.init and f.name not in options]
        if missing:
            raise ConfigError(f"transport {name!r} needs the option(s) {', '.join(map(repr, missing))}")
        # The options class checks the values itself (converters, validators) before the
        # factory runs; built directly, without cattrs, to keep Cluster construction cheap.
        try:
            options_type(**options)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid transport_options for {name!r}: {exc}") from exc
    return plugin.factory(**options)


class Cluster:
    """Where jobs go: a scheduler kind (``"local"``, ``"slurm"``, ``"pbs"``, ``"lsf"``...) bound to
    a transport: this machine, a transport plugin chosen by name (``transport="<name>"`` with
    its ``transport_options``), a ready-made Transport object, or ``host=``, which is shorthand
    for ``transport="ssh"`` with that host (molq-ssh).

    >>> Cluster("laptop")                       # doctest: +SKIP
    >>> Cluster("hpc", "slurm", host="login1")  # doctest: +SKIP
    >>> Cluster("hpc", "slurm", transport="mytransport", transport_options={"gateway": "gw"})  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        scheduler: str = "local",
        *,
        host: str | None = None,
        transport: Transport | str | None = None,
        scheduler_options: Any = None,
        transport_options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"a cluster needs a non-empty name, got {name!r}")
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise ConfigError(f"scheduler must be a name such as 'local' or 'slurm', got {scheduler!r}")
        if transport_options is not None and not isinstance(transport_options, dict):
            raise ConfigError(f"transport_options must be a dict, got {type(transport_options).__name__}")
        pm = get_plugin_manager()
        self._plugin = pm.get_scheduler(scheduler)
        options = dict(transport_options or {})
        transport_name: str | None
        if transport is not None and not isinstance(transport, str):
            if host is not None:
                raise ConfigError("Cluster: pass either host= or a Transport object, not both")
            transport_name = None
        else:
            if isinstance(transport, str) and not transport.strip():
                raise ConfigError("transport must be a transport name such as 'ssh', got an empty string")
            transport_name = transport or ("ssh" if host is not None else None)
            if host is not None:
                if options.get("host", host) != host:
                    raise ConfigError(f"Cluster: host={host!r} and transport_options host="
                                      f"{options['host']!r} disagree")
                options["host"] = host
            if transport_name is None:
                if options:
                    raise ConfigError("transport_options need host= (an SSH destination) or transport= "
                                      "(a transport name)")
                from molq.transport import LocalTransport

                transport_name, transport = "local", LocalTransport()
            else:
                transport = _named_transport(transport_name, options)
        # host travels apart from the other options (target records, repr), whichever way it came.
        host = options.pop("host", host)
        self._name = name
        self._scheduler = scheduler
        self._host = host
        self._transport: Transport = transport
        self._transport_name = transport_name
        self._options = _build_options(self._plugin.options_type, scheduler_options, scheduler)
        self._transport_options = options
        self._impl: Scheduler | None = None

    def __repr__(self) -> str:
        where = f", host={self._host!r}" if self._host else ""
        if self._transport_name not in (None, "local", "ssh"):
            where += f", transport={self._transport_name!r}"
        return f"Cluster({self._name!r}, {self._scheduler!r}{where})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def scheduler(self) -> str:
        return self._scheduler

    @property
    def host(self) -> str | None:
        return self._host

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def transport_name(self) -> str | None:
        """The transport plugin's name (``"local"``, ``"ssh"``...), or None for a Transport
        object passed in directly."""
        return self._transport_name

    @property
    def transport_options(self) -> dict[str, Any]:
        """The options the transport was built with (``host`` aside)."""
        return dict(self._transport_options)

    @property
    def scheduler_options(self) -> Any:
        return self._options

    @property
    def scheduler_impl(self) -> Scheduler:
        """The scheduler object, built on first use."""
        if self._impl is None:
            self._impl = self._plugin.factory(self._transport, self._options)
        return self._impl

    def get_queue(self, *, user: str | None = None) -> list[QueueEntry]:
        """The scheduler's own view of the user's queue (includes jobs not submitted by molq)."""
        return self.scheduler_impl.list_queue(user=user)

    def get_workspace(self, name: str, *, path: str) -> Workspace:
        return Workspace(self, name, path)

    def get_project(self, name: str, *, workspace: Workspace) -> Project:
        if workspace.cluster is not self:
            raise ConfigError("the workspace belongs to another cluster")
        return workspace.get_project(name)

    @classmethod
    def from_target(cls, name: str, target: dict[str, Any] | None, profile_name: str | None = None) -> Cluster:
        """Rebuild the Cluster a stored job was submitted to (CLI, daemon)."""
        if profile_name:
            try:
                return cls.from_profile(profile_name)
            except ConfigError:
                pass  # the profile was removed; fall back to what the record says
        target = target or {}
        options = target.get("scheduler_options")
        if isinstance(options, dict):
            options = {k: v for k, v in options.items() if v is not None}
        # Rows written before transports had names carry none: host= then means ssh.
        transport = target.get("transport")
        return cls(
            name,
            target.get("scheduler", "local"),
            host=target.get("host"),
            transport=transport if transport not in (None, "local") else None,
            scheduler_options=options or None,
            transport_options=target.get("transport_options") or None,
        )

    @classmethod
    def from_profile(cls, profile_name: str, *, config_path: str | Path | None = None) -> Cluster:
        """The destination half of a profile: scheduler, transport (or host) and their options."""
        from molq.config import load_profile

        profile = load_profile(profile_name, config_path)
        # ``transport = "<name>"`` in a profile names a transport plugin, as transport= does.
        transport = getattr(profile, "transport", None)
        return cls(
            profile.effective_cluster_name,
            profile.scheduler,
            host=profile.host,
            transport=transport or None,
            scheduler_options=profile.scheduler_options or None,
            transport_options=profile.transport_options or None,
        )


class Workspace:
    """A base directory on the cluster's filesystem (local or remote, through the transport)."""

    def __init__(self, cluster: Cluster, name: str, path: str) -> None:
        if not path or not str(path).startswith("/"):
            raise ConfigError(f"workspace path must be absolute, got {path!r}")
        self.cluster = cluster
        self.name = name
        self.path = posixpath.normpath(str(path))

    def __repr__(self) -> str:
        return f"Workspace({self.name!r}, path={self.path!r}, cluster={self.cluster.name!r})"

    def get_project(self, name: str) -> Project:
        return Project(self, name)

    def _remote(self, rel: str | None = None) -> str:
        if rel is None:
            return self.path
        rel = str(rel)
        if rel.startswith("/") or ".." in rel.split("/"):
            raise ConfigError(f"path {rel!r} must be relative to the workspace and stay inside it")
        return posixpath.join(self.path, rel)

    def upload(self, local: str | Path, *, recursive: bool = False, remote_rel: str | None = None) -> None:
        """Copy a local file (or directory, with ``recursive=True``) into this directory."""
        local = Path(local)
        if not local.exists():
            raise ConfigError(f"cannot upload {local}: no such file or directory")
        if local.is_dir() and not recursive:
            raise ConfigError(f"{local} is a directory; pass recursive=True")
        self.ensure()
        target = self._remote(remote_rel or local.name)
        self.cluster.transport.upload(local, target, recursive=recursive)

    def download(self, remote_rel: str, local: str | Path, *, recursive: bool = False) -> None:
        self.cluster.transport.download(self._remote(remote_rel), local, recursive=recursive)

    def exists(self) -> bool:
        return self.cluster.transport.exists(self.path)

    def ensure(self) -> None:
        """``mkdir -p`` the directory."""
        self.cluster.transport.mkdir(self.path, parents=True)


class Project(Workspace):
    """A sub-directory of a :class:`Workspace`; jobs submitted through it run inside it."""

    def __init__(self, workspace: Workspace, name: str) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise ConfigError(f"project name must be a single path component, got {name!r}")
        super().__init__(workspace.cluster, name, posixpath.join(workspace.path, name))
        self.workspace = workspace

    def __repr__(self) -> str:
        return f"Project({self.name!r}, path={self.path!r})"

    def submit_job(self, submitor: Submitor, **kwargs: Any) -> JobHandle:
        """``submitor.submit_job(**kwargs)`` with the working directory set to this project."""
        from molq.model import JobExecution

        if submitor.target is not self.cluster:
            if submitor.target.name == self.cluster.name:
                # Same name, different objects: the message must not read "'ws', but ... 'ws'".
                raise ConfigError(
                    f"the submitor and this project use two different Cluster objects that are "
                    f"both named {self.cluster.name!r}; build the Submitor from the project's "
                    "cluster (project.cluster)"
                )
            raise ConfigError(
                f"the submitor targets cluster {submitor.target.name!r}, "
                f"but this project lives on {self.cluster.name!r}"
            )
        execution = kwargs.pop("execution", None) or JobExecution()
        kwargs["execution"] = attrs.evolve(execution, cwd=self.path)
        return submitor.submit_job(**kwargs)

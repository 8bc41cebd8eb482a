"""``Cluster``: a submission destination (scheduler kind + transport), and remote directories.

Constructing a Cluster looks up plugins but runs no scheduler command: it is cheap.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


class Cluster:
    """Where jobs go: a scheduler kind (``"local"``, ``"slurm"``, ``"pbs"``, ``"lsf"``...) bound to
    a transport (this machine, or ``host=`` over SSH with molq-ssh).

    >>> Cluster("laptop")                       # doctest: +SKIP
    >>> Cluster("hpc", "slurm", host="login1")  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        scheduler: str = "local",
        *,
        host: str | None = None,
        transport: Transport | None = None,
        scheduler_options: Any = None,
        transport_options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"a cluster needs a non-empty name, got {name!r}")
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise ConfigError(f"scheduler must be a name such as 'local' or 'slurm', got {scheduler!r}")
        if host is not None and transport is not None:
            raise ConfigError("Cluster: pass either host= or transport=, not both")
        pm = get_plugin_manager()
        self._plugin = pm.get_scheduler(scheduler)
        if transport is None:
            if host is not None:
                transport = pm.get_transport("ssh").factory(host=host, **(transport_options or {}))
            else:
                if transport_options:
                    raise ConfigError("transport_options need host= (an SSH destination)")
                from molq.transport import LocalTransport

                transport = LocalTransport()
        self._name = name
        self._scheduler = scheduler
        self._host = host
        self._transport = transport
        self._options = _build_options(self._plugin.options_type, scheduler_options, scheduler)
        self._transport_options = dict(transport_options or {})
        self._impl: Scheduler | None = None

    def __repr__(self) -> str:
        where = f", host={self._host!r}" if self._host else ""
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
        return cls(
            name,
            target.get("scheduler", "local"),
            host=target.get("host"),
            scheduler_options=options or None,
            transport_options=target.get("transport_options") or None,
        )

    @classmethod
    def from_profile(cls, profile_name: str, *, config_path: str | Path | None = None) -> Cluster:
        """The destination half of a profile: scheduler, host and scheduler options."""
        from molq.config import load_profile

        profile = load_profile(profile_name, config_path)
        return cls(
            profile.effective_cluster_name,
            profile.scheduler,
            host=profile.host,
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
        import attrs

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

"""Helpers shared by the built-in subcommands: the store, the cluster a command targets,
the per-command :class:`Session`, shell completion and the common options."""

from __future__ import annotations

import time
from typing import Any

import click

from molq.errors import ConfigError


def open_store() -> Any:
    """The job store, with a missing database driver or an unusable directory said in one
    line (the store URL named)."""
    from molq.cli.errors import describe_oserror, missing_driver
    from molq.errors import StoreError

    url = store_url()
    try:
        from molq.store import open_store as _open

        return _open()
    except ModuleNotFoundError as exc:
        message = missing_driver(exc, url)
        if message is None:
            raise
        raise StoreError(message) from None
    except OSError as exc:
        raise StoreError(f"cannot open the job store {url}: {describe_oserror(exc)}") from None


def store_url() -> str:
    """The store URL the commands use: the store layer's default (``$MOLQ_STORE_URL``, or
    ``jobs.db`` in molq's home folder). The module it comes from imports no SQLAlchemy."""
    from molq.store.opening import default_store_url

    return default_store_url()


def resolve_target(cluster_name: str | None, profile: str | None, store: Any = None) -> tuple[Any, str | None]:
    """(cluster, profile name or None) named on the command line: ``-p`` a profile, ``-c`` a
    profile or a cluster known to the store, neither the default profile (or the local
    scheduler when no profile is the default). The profile, when there is one, is what
    supplies a submission's defaults."""
    from molq.cluster import Cluster
    from molq.config import load_config

    if profile:
        return Cluster.from_profile(profile), profile
    config = load_config()
    if not cluster_name:
        if config.default_profile:
            return Cluster.from_profile(config.default_profile), config.default_profile
        return Cluster("local"), None
    if cluster_name in config.profiles:
        return Cluster.from_profile(cluster_name), cluster_name
    for prof in config.profiles.values():
        if prof.effective_cluster_name == cluster_name:
            return Cluster.from_profile(prof.name), prof.name
    if store is not None:
        targets = store.cluster_targets()
        if cluster_name in targets:
            target, prof_name = targets[cluster_name]
            return Cluster.from_target(cluster_name, target, prof_name), None
    if cluster_name == "local":
        return Cluster("local"), None
    raise ConfigError(
        f"unknown cluster {cluster_name!r}: no profile and no job in the store names it "
        f"(add one with `molq profile add`)"
    )


def resolve_cluster(cluster_name: str | None, profile: str | None, store: Any = None) -> Any:
    """The cluster of :func:`resolve_target`."""
    return resolve_target(cluster_name, profile, store)[0]


class Session:
    """One store and the Submitors built on it, one per cluster touched by a command."""

    def __init__(self) -> None:
        self.store = open_store()
        self._submitors: dict[str, Any] = {}
        self._targets: dict[str, Any] | None = None

    def submitor(self, cluster_name: str) -> Any:
        from molq.cluster import Cluster
        from molq.submitor import Submitor

        if cluster_name not in self._submitors:
            if self._targets is None:
                self._targets = self.store.cluster_targets()
            target, profile = self._targets.get(cluster_name, (None, None))
            cluster = Cluster.from_target(cluster_name, target, profile)
            self._submitors[cluster_name] = Submitor(cluster, store=self.store, profile_name=profile)
        return self._submitors[cluster_name]

    def find(self, job_id: str) -> tuple[Any, Any]:
        """(submitor, record) for an id or unique prefix, in any cluster."""
        cluster_name, full = self.store.resolve_job_id(None, job_id)
        sub = self.submitor(cluster_name)
        return sub, sub.get_job(full)


def complete_job_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    try:
        store = open_store()
        records = store.list_jobs(None, include_terminal=True, limit=200, newest_first=True)
    except Exception:  # noqa: BLE001 - completion must never fail loudly
        return []
    return [CompletionItem(r.job_id[:8], help=f"{r.state.value} {r.command_display[:40]}")
            for r in records if r.job_id.startswith(incomplete)]


def complete_profiles(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    try:
        from molq.config import load_config

        return [name for name in load_config().profiles if name.startswith(incomplete)]
    except Exception:  # noqa: BLE001
        return []


def cluster_options(fn: Any) -> Any:
    fn = click.option("-p", "--profile", default=None, shell_complete=complete_profiles,
                      help="Use this profile (from ~/.molq/config.toml).")(fn)
    fn = click.option("-c", "--cluster", "cluster_name", default=None,
                      help="Cluster name (a profile or a cluster the store knows). Default: local.")(fn)
    return fn


def json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True,
                        help='Print JSON instead of text (versioned: every object has "schema": 1; see the CLI page).')(fn)


def parse_when(text: str, option: str, now: float | None = None) -> float:
    """A point in time: a duration ago (``90s``, ``30m``, ``2h``, ``1d12h``, ``1w``) or an ISO
    date/time (``2026-03-01``, ``2026-03-01T14:00``, UTC unless it says otherwise)."""
    import datetime as dt
    import re

    now = time.time() if now is None else now
    units = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(min|[smhdw])", text.strip().lower())
    if parts and re.fullmatch(r"(?:\s*\d+(?:\.\d+)?\s*(?:min|[smhdw]))+\s*", text.lower()):
        return now - sum(float(n) * units[u] for n, u in parts)
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"expected a duration ago (2h, 30m, 1d) or an ISO date/time, got {text!r}",
                                 param_hint=option) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()

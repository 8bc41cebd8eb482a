"""Profiles: named destinations and lifecycle settings in ``~/.molq/config.toml``.

Example file::

    default_profile = "hpc"

    [profiles.hpc]
    scheduler = "slurm"
    cluster_name = "hpc"
    host = "login.hpc.example.org"       # optional: run over SSH (needs molq-ssh)

    [profiles.hpc.scheduler_options]
    default_partition = "compute"

    [profiles.hpc.defaults.resources]
    cpu_count = 4
    memory = "8G"

    [profiles.hpc.retry]
    max_attempts = 3
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import attrs

from molq.errors import ConfigError
from molq.model import RetentionPolicy, RetryPolicy, SubmitorDefaults

__all__ = [
    "MolqProfile",
    "MolqConfig",
    "load_config",
    "load_profile",
    "save_config",
    "molq_home",
    "default_config_path",
]


def molq_home() -> Path:
    """``$MOLQ_HOME`` or ``~/.molq``: where the store, profiles and locks live."""
    from molq.identity import molq_home as home

    return home()


def default_config_path() -> Path:
    env = os.environ.get("MOLQ_CONFIG")
    return Path(env) if env else molq_home() / "config.toml"


def _opt_dict(value: Any) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen
class MolqProfile:
    """A named profile: where jobs go (scheduler, host, options) and how they are managed."""

    name: str
    scheduler: str = "local"
    cluster_name: str | None = None
    host: str | None = None
    #: A transport plugin by name (``host`` alone means ssh).
    transport: str | None = None
    defaults: SubmitorDefaults | None = None
    scheduler_options: dict[str, Any] = attrs.field(factory=dict, converter=_opt_dict, hash=False)
    transport_options: dict[str, Any] = attrs.field(factory=dict, converter=_opt_dict, hash=False)
    retry: RetryPolicy | None = None
    retention: RetentionPolicy | None = None
    jobs_dir: str | None = None
    store_url: str | None = None

    @property
    def effective_cluster_name(self) -> str:
        return self.cluster_name or self.name


@attrs.frozen
class MolqConfig:
    """Every profile of a config file, and which one is the default."""

    profiles: dict[str, MolqProfile] = attrs.field(factory=dict, hash=False)
    default_profile: str | None = None

    def get(self, name: str) -> MolqProfile:
        try:
            return self.profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.profiles)) or "none defined"
            raise ConfigError(f"unknown profile {name!r} (known profiles: {known})") from None

    def with_profile(self, profile: MolqProfile, *, make_default: bool = False) -> MolqConfig:
        profiles = dict(self.profiles)
        profiles[profile.name] = profile
        return MolqConfig(profiles, profile.name if make_default else self.default_profile)

    def without_profile(self, name: str) -> MolqConfig:
        self.get(name)
        profiles = {k: v for k, v in self.profiles.items() if k != name}
        default = None if self.default_profile == name else self.default_profile
        return MolqConfig(profiles, default)


def _toml_load(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def load_config(path: str | Path | None = None) -> MolqConfig:
    """Read a config file (default ``~/.molq/config.toml``); a missing file is an empty config."""
    from molq import serde
    from molq.model import upgrade_legacy_scheduling

    p = Path(path) if path is not None else default_config_path()
    if not p.exists():
        if path is not None:
            raise ConfigError(f"config file {p} does not exist")
        return MolqConfig()
    data = _toml_load(p)
    unknown = set(data) - {"profiles", "default_profile"}
    if unknown:
        raise ConfigError(f"{p}: unknown top-level keys: {', '.join(sorted(unknown))}")
    profiles: dict[str, MolqProfile] = {}
    raw_profiles = data.get("profiles", {})
    if not isinstance(raw_profiles, dict):
        raise ConfigError(f"{p}: 'profiles' must be a table")
    for name, body in raw_profiles.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{p}: profile {name!r} must be a table")
        defaults = body.get("defaults")
        if isinstance(defaults, dict) and "scheduling" in defaults:
            scheduling = upgrade_legacy_scheduling(defaults["scheduling"], source=f"{p} (profile {name!r})")
            body = {**body, "defaults": {**defaults, "scheduling": scheduling}}
        profiles[name] = serde.structure({**body, "name": name}, MolqProfile, what=f"profile {name!r} in {p}")
    default = data.get("default_profile")
    if default is not None and default not in profiles:
        raise ConfigError(f"{p}: default_profile {default!r} is not a defined profile")
    return MolqConfig(profiles, default)


def load_profile(name: str, path: str | Path | None = None) -> MolqProfile:
    """One profile by name; :class:`ConfigError` listing the known ones if it does not exist."""
    return load_config(path).get(name)


def save_config(config: MolqConfig, path: str | Path | None = None) -> Path:
    """Write ``config`` as TOML (private to its owner: the file is created 0600)."""
    import tomli_w

    from molq import serde

    p = Path(path) if path is not None else default_config_path()
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data: dict[str, Any] = {}
    if config.default_profile:
        data["default_profile"] = config.default_profile
    profiles = {}
    for name, prof in config.profiles.items():
        body = serde.prune(serde.unstructure(prof, human=True))
        body.pop("name", None)
        profiles[name] = body
    data["profiles"] = profiles
    text = tomli_w.dumps(data)
    tmp = p.with_name(f".{p.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, p)
    return p

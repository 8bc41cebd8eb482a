"""The daemon as a managed service: its pid, status and log files, starting and stopping it.

The loop itself is :func:`molq.engine.loops.run_daemon_many`; this module holds the mechanics
around it. One daemon runs per job store and ``$MOLQ_HOME``: ``molq daemon run`` holds an
exclusive lock on the pid file for as long as it lives, so a pid file whose lock is free is
stale whatever pid it names (a daemon killed with SIGKILL leaves one behind). Across hosts
sharing one store, the per-cluster leases in the store keep two daemons off one cluster.

Only standard modules are imported at module level: ``molq list`` reads the refresh times.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from molq.errors import MolqError
from molq.identity import pid_alive

__all__ = [
    "DaemonFiles", "DaemonInfo", "DaemonRunning", "DaemonStartError", "daemon_files", "running", "hold_pidfile",
    "StatusFile", "spawn", "stop", "systemd_unit", "note_refreshed", "refreshed_at", "ensure_running",
    "advance_later", "auto_enabled", "needs_daemon", "AUTO_DAEMON_ENV", "lease_holder",
]

#: A state refreshed less than this long ago is fresh enough to show without asking again.
FRESH_SECONDS = 5.0
#: A log bigger than this is moved aside (to ``<log>.1``) when the next daemon starts.
LOG_MAX_BYTES = 10 * 1024 * 1024


class DaemonRunning(MolqError):
    """A daemon already serves this store (its pid is in the message)."""

    def __init__(self, pid: int, files: DaemonFiles) -> None:
        super().__init__(f"a molq daemon is already running for this store (pid {pid}, "
                         f"pid file {files.pid}); stop it with `molq daemon stop`")
        self.pid = pid


class DaemonStartError(MolqError):
    """The spawned daemon did not come up."""


class DaemonFiles:
    """Where one store's daemon keeps its pid, status and log files (all under ``$MOLQ_HOME``)."""

    def __init__(self, home: str, store_url: str, default_url: str) -> None:
        # The default store's files have plain names; another store gets its own set.
        suffix = "" if store_url == default_url else "-" + hashlib.sha256(store_url.encode()).hexdigest()[:8]
        self.home = home
        self.store_url = store_url
        self.pid = os.path.join(home, f"daemon{suffix}.pid")
        self.log = os.path.join(home, f"daemon{suffix}.log")
        self.status = os.path.join(home, f"daemon{suffix}.status.json")
        self.refreshed = os.path.join(home, "cache", f"refreshed{suffix}.json")


def daemon_files(store_url: str | None = None) -> DaemonFiles:
    from molq.identity import molq_home_dir

    home = molq_home_dir()
    default = f"sqlite:///{os.path.join(home, 'jobs.db')}"
    return DaemonFiles(home, store_url or os.environ.get("MOLQ_STORE_URL") or default, default)


class DaemonInfo:
    """The running daemon: pid and start time (from its pid file)."""

    def __init__(self, pid: int, started_at: float | None) -> None:
        self.pid = pid
        self.started_at = started_at


def _read_pidfile(path: str) -> tuple[int, float | None] | None:
    try:
        with open(path) as fh:
            parts = fh.read().split()
        return int(parts[0]), (float(parts[1]) if len(parts) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None


def running(files: DaemonFiles) -> DaemonInfo | None:
    """The daemon holding ``files``' pid file lock, or None (no file, or a stale one)."""
    try:
        fd = os.open(files.pid, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            content = _read_pidfile(files.pid)
            # Locked but not yet written: the daemon is starting; its pid is unknown for a moment.
            return DaemonInfo(*content) if content else DaemonInfo(0, None)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def lease_holder(owner: str) -> tuple[str, int | None]:
    """The host and pid named by a daemon's lease owner (``host:pid:random``, see
    :func:`molq.engine.loops.daemon_owner`); the whole owner and None when it is not one."""
    parts = owner.rsplit(":", 2)
    try:
        return parts[0], int(parts[1])
    except (IndexError, ValueError):
        return owner, None


class PreviousDaemon:
    """The daemon of this store that died without removing its pid file (SIGKILL, a crash)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def owns(self, lease_owner: str) -> bool:
        """Whether ``lease_owner`` (``host:pid:random``) is that dead daemon: its pid file
        named the pid, on this host, and no such process lives. Its leases can be taken over
        at once instead of after their TTL."""
        from molq.identity import host_identity

        host, pid = lease_holder(lease_owner)
        if pid is None:
            return False
        return self.pid is not None and pid == self.pid and host == host_identity() and not pid_alive(pid)


@contextlib.contextmanager
def hold_pidfile(files: DaemonFiles) -> Iterator[PreviousDaemon]:
    """Be the store's one daemon for the duration: lock and write the pid file, remove it at
    the end; yields the daemon whose stale pid file it replaced. :class:`DaemonRunning` when
    another process holds it."""
    os.makedirs(files.home, mode=0o700, exist_ok=True)
    fd = os.open(files.pid, os.O_RDWR | os.O_CREAT, 0o600)
    # A reader (:func:`running`) holds a shared lock for an instant; a daemon holds the
    # exclusive one for good, so a lock still taken after a short while is a daemon's.
    deadline = time.monotonic() + 0.5
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            os.close(fd)
            content = _read_pidfile(files.pid)
            raise DaemonRunning(content[0] if content else 0, files) from None
    try:
        previous = _read_pidfile(files.pid)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {time.time():.3f}\n".encode())
        yield PreviousDaemon(previous[0] if previous else None)
    finally:
        # Unlink first, then unlock: a new daemon never sees our file unlocked with our pid.
        with contextlib.suppress(OSError):
            os.unlink(files.pid)
        os.close(fd)


def _write_json(path: str, data: Any) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class StatusFile:
    """What the running daemon did last, per cluster, for ``molq daemon status``."""

    def __init__(self, files: DaemonFiles, interval: float) -> None:
        self.files = files
        self.data: dict[str, Any] = {"pid": os.getpid(), "started_at": time.time(), "interval": interval,
                                     "store": files.store_url, "clusters": {}}

    def cluster(self, name: str) -> dict[str, Any]:
        return self.data["clusters"].setdefault(name, {})  # type: ignore[no-any-return]

    def refreshed(self, name: str, result: Any, error: str | None) -> None:
        now = time.time()
        entry = self.cluster(name)
        entry["last_refresh_at"] = now
        entry["error"] = error
        if result is not None:
            entry["result"] = {"looked_at": result.looked_at, "changed": result.changed,
                               "retries_started": result.retries_started, "problems": list(result.problems)}
            if result.changed or result.retries_started:
                entry["last_change_at"] = now
            note_refreshed(self.files, name, now)
        self.write()

    def lease(self, name: str, held: bool) -> None:
        entry = self.cluster(name)
        if entry.get("lease_held") != held:
            entry["lease_held"] = held
            self.write()

    def write(self) -> None:
        with contextlib.suppress(OSError):
            _write_json(self.files.status, self.data)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.files.status)


def read_status(files: DaemonFiles) -> dict[str, Any]:
    return _read_json(files.status)


def note_refreshed(files: DaemonFiles, cluster_name: str, when: float | None = None) -> None:
    """Remember that ``cluster_name``'s jobs were reconciled with the scheduler at ``when``."""
    with contextlib.suppress(OSError):
        data = _read_json(files.refreshed)
        data[cluster_name] = time.time() if when is None else when
        _write_json(files.refreshed, data)


def refreshed_at(files: DaemonFiles) -> dict[str, float]:
    """When each cluster was last reconciled by a molq command or the daemon, as far as known."""
    return {k: float(v) for k, v in _read_json(files.refreshed).items() if isinstance(v, (int, float))}


def spawn(files: DaemonFiles, interval: float = 5.0, timeout: float = 15.0, exit_when_idle: bool = False,
          lease_ttl: float | None = None, wait: bool = True) -> int:
    """Start ``molq daemon run`` detached (own session, output to the log file) and return its
    pid once it holds the pid file (at once without ``wait``). :class:`DaemonRunning` when one
    already runs, :class:`DaemonStartError` (with the end of its log) when it exits instead."""
    info = running(files)
    if info is not None:
        raise DaemonRunning(info.pid, files)
    os.makedirs(files.home, mode=0o700, exist_ok=True)
    with contextlib.suppress(OSError):
        if os.path.getsize(files.log) > LOG_MAX_BYTES:
            os.replace(files.log, files.log + ".1")
    log_fd = os.open(files.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    env = dict(os.environ, MOLQ_STORE_URL=files.store_url, MOLQ_HOME=files.home)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "molq", "daemon", "run", "--interval", repr(interval),
             *(["--exit-when-idle"] if exit_when_idle else []),
             *(["--lease-ttl", repr(lease_ttl)] if lease_ttl is not None else [])],
            stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, env=env, cwd="/",
            start_new_session=True, close_fds=True)
    finally:
        os.close(log_fd)
    if not wait:
        return proc.pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise DaemonStartError(f"the daemon exited at start (status {code}): {_log_tail(files, 3)}")
        info = running(files)
        if info is not None and info.pid == proc.pid:
            return proc.pid
        time.sleep(0.05)
    raise DaemonStartError(f"the daemon (pid {proc.pid}) did not start within {timeout:g} s; see {files.log}")


def _log_tail(files: DaemonFiles, lines: int) -> str:
    try:
        with open(files.log, errors="replace") as fh:
            tail = fh.read().splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in tail) or "(empty log)"


def stop(files: DaemonFiles, timeout: float = 30.0) -> int | None:
    """SIGTERM the running daemon and wait until it has released the pid file (and so its
    leases); its pid, or None when none runs. :class:`TimeoutError` if it does not end."""
    info = running(files)
    if info is None or info.pid <= 0:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(info.pid):
            return info.pid
        time.sleep(0.05)
    raise TimeoutError(f"the molq daemon (pid {info.pid}) did not stop within {timeout:g} s "
                       f"(kill it with `kill -9 {info.pid}`; its leases expire on their own)")


def systemd_unit(files: DaemonFiles, interval: float = 5.0) -> str:
    """A systemd user unit running ``molq daemon run`` for this store."""
    import shlex

    env = [f"MOLQ_HOME={files.home}", f"MOLQ_STORE_URL={files.store_url}"]
    return "\n".join([
        "[Unit]",
        "Description=molq daemon: advances retries, dependencies and job states",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        *(f"Environment={shlex.quote(e)}" for e in env),
        f"ExecStart={shlex.quote(sys.executable)} -m molq daemon run --interval {interval:g}",
        "Restart=on-failure",
        "RestartSec=10",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ])


def systemd_unit_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "systemd", "user", "molq-daemon.service")


def lease_alive(store: Any, lease: str, now: float | None = None) -> str | None:
    """The owner of ``lease`` when it has not expired, else None."""
    holder = store.lease_owner(lease)
    if holder is None:
        return None
    owner, expires_at = holder
    return str(owner) if expires_at > (time.time() if now is None else now) else None


# The daemon this process started without waiting for it (pid file path -> pid): it may not
# hold its pid file yet, and must not be started twice.
_spawned: dict[str, int] = {}


def ensure_running(store: Any, cluster_name: str, files: DaemonFiles | None = None,
                   wait: bool = True, host_bound: bool = False) -> int | None:
    """Make sure a daemon reconciles ``cluster_name``: nothing to do when a live daemon holds
    its lease or this store's daemon runs (it picks the cluster up); otherwise start one, which
    exits when no work is left, and return its pid. Without ``wait`` the call does not wait
    for the daemon to come up (a second one started meanwhile by another process leaves)."""
    from molq.engine.loops import daemon_lease_name
    from molq.identity import host_identity

    files = files or daemon_files()
    mine = _spawned.get(files.pid)
    if mine is not None and pid_alive(mine):
        return None
    lease = daemon_lease_name(cluster_name, host=host_identity() if host_bound else None)
    if lease_alive(store, lease) is not None or running(files) is not None:
        return None
    try:
        pid = spawn(files, exit_when_idle=True, wait=wait)
    except DaemonRunning:
        return None  # another submission started it a moment ago
    _spawned[files.pid] = pid
    return pid


#: Set to ``0`` to keep :func:`advance_later` from starting daemons (tests, or a site that runs
#: one under systemd and wants no other).
AUTO_DAEMON_ENV = "MOLQ_AUTO_DAEMON"

# (store URL, cluster) pairs this process has already said it could not start a daemon for.
_told: set[tuple[str, str]] = set()


def auto_enabled() -> bool:
    """Whether submissions may start a daemon on demand (``MOLQ_AUTO_DAEMON`` is not 0)."""
    return os.environ.get(AUTO_DAEMON_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _shareable_url(store: Any) -> str | None:
    """The URL another process can open ``store`` with, or None (in memory, a hidden password)."""
    url = getattr(store, "url", None)
    if not isinstance(url, str) or "***" in url:
        return None
    if url.startswith("sqlite") and (url.rstrip("/") in ("sqlite:", "sqlite:/") or ":memory:" in url):
        return None
    return url


def advance_later(ctx: Any, wanted: bool) -> int | None:
    """After a submission through the API: when ``wanted`` (one of the jobs has a retry policy,
    is held by molq, or has dependencies on a batch cluster), make sure a daemon submits its
    retries and releases its dependents once the submitting process is gone. Starts one that
    exits when no work is left (saying so on the ``molq.daemon`` logger, once) and returns its
    pid; None when one runs already or nothing is needed. Never fails the submission."""
    import logging

    if not wanted or not auto_enabled():
        return None
    say = logging.getLogger("molq.daemon").warning
    url = _shareable_url(ctx.store)
    if url is None:
        key = (str(getattr(ctx.store, "url", "?")), ctx.cluster_name)
        if key not in _told:
            _told.add(key)
            say("molq: retries and held dependents of %s advance only while a molq process refreshes "
                "this in-memory or password-protected store (run `Submitor.run_daemon()` or refresh it)",
                ctx.cluster_name)
        return None
    try:
        pid = ensure_running(ctx.store, ctx.cluster_name, daemon_files(url), wait=False,
                             host_bound=ctx.scheduler.host_bound)
    except (MolqError, OSError) as exc:
        key = (url, ctx.cluster_name)
        if key not in _told:
            _told.add(key)
            say("molq: could not start a daemon for the retries and dependencies of %s (%s); "
                "run `molq daemon start`", ctx.cluster_name, exc)
        return None
    if pid is not None:
        say("molq: started a daemon (pid %d) that submits retries and releases dependent jobs of %s "
            "when they are due; it exits when no work is left (`molq daemon status` shows it)",
            pid, ctx.cluster_name)
    return pid


def needs_daemon(ctx: Any, record: Any, has_retry: bool, has_deps: bool) -> bool:
    """Whether a just-submitted job needs a molq process after its submitter is gone: a retry
    policy, a hold by molq (an upstream that may still retry), or dependencies on a batch
    cluster (as ``molq submit`` decides). The local spool starts plain dependents itself."""
    if has_retry:
        return True
    if not has_deps:
        return False
    if ctx.scheduler.name != "local":
        return True
    return bool(ctx.store.internals(ctx.cluster_name, record.job_id).held)

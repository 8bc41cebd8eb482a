"""``molq daemon``: run, start, stop, inspect and install the daemon that advances jobs.

The loop is the engine's (:func:`molq.engine.loops.run_daemon_many`); the service mechanics
(pid, status and log files) are :mod:`molq.daemon`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import click

from molq.cli import render

_INTERVAL_HELP = "Seconds between reconciliation rounds."
_TTL_HELP = ("Seconds the daemon's cluster leases outlive it if it is killed (SIGKILL, a crash) before "
             "another daemon takes its clusters over. Default: four intervals, at least 30 s.")


@click.group("daemon", invoke_without_command=True)
@click.option("--once", is_flag=True, help="Without a subcommand: the same as `molq daemon run --once`.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0,
              help="Without a subcommand: the same as `molq daemon run --interval`.")
@click.option("--no-cleanup", is_flag=True, help="Without a subcommand: the same as `molq daemon run --no-cleanup`.")
@click.pass_context
def daemon(ctx: click.Context, once: bool, interval: float, no_cleanup: bool) -> int | None:
    """The daemon that advances jobs with nobody watching: it refreshes every cluster with
    active jobs or pending retries, submits retries when they fall due and releases
    dependent jobs. One daemon per job store; each cluster has its own lease in the store.

    `molq daemon` with no subcommand runs it in the foreground, as `molq daemon run`."""
    if ctx.invoked_subcommand is None:
        return ctx.invoke(run_cmd, once=once, interval=interval, no_cleanup=no_cleanup)  # type: ignore[no-any-return]
    return None


def _store_url() -> str:
    from molq.cli.common import store_url as url

    return url()


class _Contexts:
    """The engine contexts of the clusters that have work, built once per cluster."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.cache: dict[str, Any] = {}
        self.broken: dict[str, str] = {}

    def __call__(self) -> list[Any]:
        import logging

        from molq.cluster import Cluster
        from molq.engine.context import EngineContext

        names = list(dict.fromkeys(name for name, *_ in self.store.list_clusters()))
        missing = [n for n in names if n not in self.cache]
        if missing:
            targets = self.store.cluster_targets()
            for name in missing:
                target, profile = targets.get(name, (None, None))
                try:
                    cluster = Cluster.from_target(name, target, profile)
                except Exception as exc:  # noqa: BLE001 - one unusable cluster must not stop the others
                    if self.broken.get(name) != str(exc):
                        logging.getLogger("molq.daemon").error("%s: cannot rebuild the cluster: %s", name, exc)
                        self.broken[name] = str(exc)
                    continue
                self.broken.pop(name, None)
                self.cache[name] = EngineContext(target=cluster, store=self.store, profile_name=profile)
        return [self.cache[n] for n in names if n in self.cache]


def _cleanup(ctx: Any) -> None:
    from molq.engine.cleanup import cleanup_jobs

    cleanup_jobs(ctx, ctx.retention_policy)


def _setup_logging() -> None:
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    root = logging.getLogger("molq")
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("molq.daemon").setLevel(logging.INFO)


@daemon.command("run")
@click.option("--once", is_flag=True, help="One reconciliation round over every cluster, print what it did, exit.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, help=_INTERVAL_HELP)
@click.option("--no-cleanup", is_flag=True, help="Do not apply the retention policies (hourly otherwise).")
@click.option("--exit-when-idle", is_flag=True,
              help="Exit once no cluster has active jobs or pending retries (how a submission starts it on demand).")
@click.option("--lease-ttl", type=click.FloatRange(min=1), default=None, help=_TTL_HELP)
def run_cmd(once: bool, interval: float, no_cleanup: bool, exit_when_idle: bool = False,
            lease_ttl: float | None = None) -> int:
    """Run the daemon in the foreground (Ctrl-C or SIGTERM ends it and releases its leases).

    It logs to standard error every refresh that changed something and every error, with
    timestamps. With --once it makes one round and prints one line per cluster.
    """
    from molq.cli.common import open_store
    from molq.daemon import DaemonRunning, daemon_files
    from molq.engine.loops import lease_name_for, run_daemon_many

    files = daemon_files(_store_url())
    store = open_store()
    contexts = _Contexts(store)
    if once:
        done: list[str] = []

        def report(ctx: Any, result: Any, error: str | None) -> None:
            if error is not None:
                done.append(f"{ctx.cluster_name}: refresh failed: {error}")
            else:
                done.append(f"{ctx.cluster_name}: looked at {result.looked_at} job(s), {result.changed} changed, "
                            f"{result.retries_started} retr{'y' if result.retries_started == 1 else 'ies'} started"
                            + "".join(f"; {p}" for p in result.problems))

        def lease(ctx: Any, held: bool) -> None:
            if not held:
                holder = store.lease_owner(lease_name_for(ctx))
                done.append(f"{ctx.cluster_name}: skipped, another daemon reconciles it "
                            f"({holder[0] if holder else '?'})")

        run_daemon_many(contexts, once=True, interval=interval, on_refresh=report, on_lease=lease,
                        cleanup=None if no_cleanup else _cleanup, lease_ttl=lease_ttl)
        for line in done:
            click.echo(line)
        for name, why in contexts.broken.items():
            click.echo(f"{name}: skipped, cannot rebuild the cluster: {why}")
        if not done and not contexts.broken:
            click.echo("nothing to do: no cluster has active jobs or pending retries")
        return 0
    _setup_logging()
    again = False
    while True:
        try:
            if not _serve(files, contexts, interval, no_cleanup, exit_when_idle, lease_ttl):
                return 0
        except DaemonRunning as exc:
            if not again and not exit_when_idle:
                raise
            # Started on demand while another daemon serves the store (or took over): it
            # serves this work too.
            logging.getLogger("molq.daemon").info("not started: %s", exc)
            return 0
        # Leaving when idle races with a submission: its submitter may have seen our pid file
        # still held and started nobody. Looked at again once the file is gone (a submitter
        # that looks later starts its own daemon), so no work is left without a daemon.
        if not exit_when_idle or not _work_left(contexts):
            return 0
        logging.getLogger("molq.daemon").info("work arrived while the daemon was exiting; staying")
        again = True


def _serve(files: Any, contexts: _Contexts, interval: float, no_cleanup: bool, exit_when_idle: bool,
           lease_ttl: float | None) -> bool:
    """Be the store's daemon until the loop ends; False after Ctrl-C."""
    from molq.daemon import StatusFile, hold_pidfile
    from molq.engine.loops import run_daemon_many

    with hold_pidfile(files) as previous:
        status = StatusFile(files, interval)
        status.write()
        try:
            run_daemon_many(contexts, interval=interval,
                            on_refresh=lambda ctx, result, error: status.refreshed(ctx.cluster_name, result, error),
                            on_lease=lambda ctx, held: status.lease(ctx.cluster_name, held),
                            cleanup=None if no_cleanup else _cleanup, exit_when_idle=exit_when_idle,
                            lease_ttl=lease_ttl, owner_is_dead=previous.owns)
        except KeyboardInterrupt:
            return False
        finally:
            status.remove()
        _test_pause("idle-exit")
    return True


def _test_pause(point: str) -> None:
    """Test-only: at ``point`` (``MOLQ_TEST_PAUSE_AT=point:PATH``) create ``PATH.reached`` and
    wait until ``PATH`` exists, once. Lets a test submit work at an exact moment."""
    gate = os.environ.get("MOLQ_TEST_PAUSE_AT", "")
    if not gate.startswith(point + ":"):
        return
    del os.environ["MOLQ_TEST_PAUSE_AT"]
    path = gate.split(":", 1)[1]
    with open(path + ".reached", "w"):
        pass
    while not os.path.exists(path):
        time.sleep(0.05)


def _work_left(contexts: _Contexts) -> bool:
    try:
        return bool(contexts())
    except Exception:  # noqa: BLE001 - a store we cannot read now: nothing to serve either
        return False


@daemon.command("start")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, help=_INTERVAL_HELP)
@click.option("--lease-ttl", type=click.FloatRange(min=1), default=None, help=_TTL_HELP)
def start_cmd(interval: float, lease_ttl: float | None) -> int:
    """Start the daemon in the background (pid and log files under $MOLQ_HOME).

    Refuses when a daemon already runs for this job store, naming it."""
    from molq.daemon import daemon_files, spawn

    files = daemon_files(_store_url())
    pid = spawn(files, interval=interval, lease_ttl=lease_ttl)
    click.echo(f"molq daemon started (pid {pid}); log: {files.log}")
    return 0


@daemon.command("stop")
@click.option("--timeout", type=click.FloatRange(min=0), default=30.0, help="Seconds to wait for it to end.")
def stop_cmd(timeout: float) -> int:
    """Stop the running daemon (SIGTERM; it releases its leases) and wait until it has ended."""
    from molq.daemon import daemon_files, stop

    pid = stop(daemon_files(_store_url()), timeout=timeout)
    if pid is None:
        click.echo("no molq daemon is running for this store", err=True)
        return 0
    click.echo(f"molq daemon (pid {pid}) stopped")
    return 0


def _status_data() -> dict[str, Any]:
    from molq.cli.common import open_store
    from molq.daemon import daemon_files, lease_holder, read_status, running
    from molq.engine.loops import daemon_lease_name
    from molq.engine.shared_poll import pace_summary
    from molq.identity import host_identity

    files = daemon_files(_store_url())
    info = running(files)
    status = read_status(files) if info is not None else {}
    now = time.time()
    store = open_store()
    active = {name for name, *_ in store.list_clusters()}
    clusters = []
    for name in sorted(set(store.all_cluster_names()) | set(status.get("clusters", {}))):
        # A host-bound (local) cluster's lease names this host; any other cluster's does not.
        holder = store.lease_owner(daemon_lease_name(name, host=host_identity())) or store.lease_owner(
            daemon_lease_name(name))
        if holder and holder[1] <= now:
            holder = None  # expired: nobody holds it
        host, pid = lease_holder(holder[0]) if holder else (None, None)
        retries = [r.next_retry_at for r in store.list_pending_retries(name) if r.next_retry_at]
        entry = status.get("clusters", {}).get(name, {})
        clusters.append({
            "name": name,
            "active_jobs": len(store.list_jobs(name)) if name in active else 0,
            "last_refresh_at": render.iso(entry.get("last_refresh_at")),
            "last_change_at": render.iso(entry.get("last_change_at")),
            "last_result": entry.get("result"),
            "last_error": entry.get("error"),
            "next_retry_at": render.iso(min(retries)) if retries else None,
            "lease_owner": holder[0] if holder else None,
            "lease_host": host, "lease_pid": pid,
            "lease_expires_at": render.iso(holder[1]) if holder else None,
            # the circuit breaker's state when the scheduler is failing (molq.engine.shared_poll)
            "scheduler_problem": pace_summary(store, name, now=now),
            "_last_refresh": entry.get("last_refresh_at"), "_next_retry": min(retries) if retries else None,
        })
    started = status.get("started_at") or (info.started_at if info else None)
    return {
        "running": info is not None, "pid": info.pid if info else None,
        "started_at": render.iso(started), "uptime_seconds": round(now - started, 3) if started else None,
        "interval": status.get("interval"), "store": files.store_url, "log_file": files.log,
        "pid_file": files.pid, "clusters": clusters,
    }


def _holder_text(cluster: dict[str, Any]) -> str:
    if not cluster["lease_owner"]:
        return "-"
    if cluster["lease_pid"] is None:
        return str(cluster["lease_owner"])
    return f"{cluster['lease_host']} pid {cluster['lease_pid']}"


@daemon.command("status")
@click.option("--json", "as_json", is_flag=True, help='Print JSON ("schema": 1) instead of text.')
def status_cmd(as_json: bool) -> int:
    """Whether the daemon runs (pid, uptime), and per cluster: active jobs, the last refresh and
    its result, the next retry due, and who holds the cluster's lease. Exit status 3 when no
    daemon runs for this store."""
    data = _status_data()
    if as_json:
        for c in data["clusters"]:
            c.pop("_last_refresh")
            c.pop("_next_retry")
        render.dump_json(render.with_schema(data))
        return 0 if data["running"] else 3
    if data["running"]:
        click.echo(f"molq daemon running: pid {data['pid']}, up {render.span(data['uptime_seconds'] or 0)}"
                   + (f", every {data['interval']:g} s" if data["interval"] else ""))
    else:
        click.echo("molq daemon not running for this store (start it with `molq daemon start`)")
    click.echo(f"store: {data['store']}\nlog:   {data['log_file']}")
    if data["clusters"]:
        rows = []
        for c in data["clusters"]:
            result = c["last_result"]
            if c["last_error"]:
                what = f"error: {c['last_error']}"
            elif result:
                what = f"{result['looked_at']} looked at, {result['changed']} changed, {result['retries_started']} retried"
            else:
                what = "-"
            rows.append([c["name"], str(c["active_jobs"]), render.ago(c["_last_refresh"]) if c["_last_refresh"] else "-",
                         render.truncate(what, 50), render.ago(c["_next_retry"]) if c["_next_retry"] else "-",
                         _holder_text(c)])
        click.echo("")
        click.echo(render.table(["CLUSTER", "ACTIVE", "LAST REFRESH", "RESULT", "NEXT RETRY", "LEASE HELD BY"], rows))
        for c in data["clusters"]:
            if c["scheduler_problem"]:
                click.echo(f"{c['name']}: {c['scheduler_problem']}")
    return 0 if data["running"] else 3


@daemon.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Keep printing what the daemon logs (Ctrl-C to stop).")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=None, help="Only the last N lines.")
def logs_cmd(follow: bool, lines: int | None) -> int:
    """Print the log of the daemon started with `molq daemon start`."""
    from molq.daemon import daemon_files
    from molq.errors import ConfigError

    path = daemon_files(_store_url()).log
    try:
        fh = open(path, errors="replace")  # noqa: SIM115 - kept open to follow it
    except FileNotFoundError:
        raise ConfigError(f"no daemon log yet ({path}); start the daemon with `molq daemon start`") from None
    with fh:
        content = fh.read()
        if lines is not None:
            content = "".join(content.splitlines(keepends=True)[-lines:]) if lines else ""
        click.echo(content, nl=False)
        if not follow:
            return 0
        try:
            while True:
                more = fh.read()
                if more:
                    click.echo(more, nl=False)
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return 0


@daemon.command("install")
@click.option("--systemd", is_flag=True, help="A systemd user unit (the only kind so far).")
@click.option("--write", is_flag=True,
              help="Write it to ~/.config/systemd/user/molq-daemon.service instead of printing it.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, help=_INTERVAL_HELP)
def install_cmd(systemd: bool, write: bool, interval: float) -> int:
    """Print (or write) a service unit that runs the daemon at login, for this store."""
    from molq.daemon import daemon_files, systemd_unit, systemd_unit_path

    if not systemd:
        raise click.UsageError("say which service manager: --systemd")
    unit = systemd_unit(daemon_files(_store_url()), interval=interval)
    if not write:
        click.echo(unit, nl=False)
        return 0
    path = systemd_unit_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(unit)
    click.echo(f"wrote {path}; enable it with: systemctl --user daemon-reload && "
               f"systemctl --user enable --now molq-daemon.service")
    return 0

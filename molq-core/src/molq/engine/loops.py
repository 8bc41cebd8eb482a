"""The two loops: waiting for jobs (``watch``) and reconciling a cluster for ever (the daemon).

Both are here once; the Python API and the CLI call them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from molq.engine.context import EngineContext
from molq.engine.refresh import RefreshResult, refresh
from molq.engine.retry import retry_pending
from molq.errors import MolqError
from molq.identity import host_identity as host_name
from molq.model import JobRecord

log = logging.getLogger("molq.daemon")

__all__ = ["watch", "run_daemon", "run_daemon_many", "daemon_lease_name", "lease_name_for", "daemon_owner", "DaemonAlreadyRunning"]


class DaemonAlreadyRunning(MolqError):
    """Another daemon holds the lease of this cluster on this store."""


#: The longest a daemon waits between two refreshes of this host's local spool: a job that
#: ended just before the wait began wakes nobody.
LOCAL_NAP = 1.0


def daemon_lease_name(cluster_name: str, *, host: str | None = None) -> str:
    """The one lease every daemon of ``cluster_name`` takes, whichever front started it. A
    host-bound cluster (the local scheduler) is reconciled by each host for its own jobs, so
    its lease names the ``host``: one host's daemon never keeps another host's jobs waiting."""
    return f"daemon:{cluster_name}" if host is None else f"daemon:{cluster_name}@{host}"


def lease_name_for(ctx: EngineContext) -> str:
    """The daemon lease of ``ctx``'s cluster as seen from this host."""
    return daemon_lease_name(ctx.cluster_name, host=host_name() if ctx.scheduler.host_bound else None)


def daemon_owner() -> str:
    """A lease owner naming this process: ``<host>:<pid>:<random>``."""
    return f"{host_name()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def watch(ctx: EngineContext, job_ids: Sequence[str] | None = None, timeout: float | None = None,
          poll_interval: float | None = None) -> list[JobRecord]:
    """Block until the jobs (default: every active job) and their retries are final; the final
    record of each job's latest attempt, in order. :class:`TimeoutError` after ``timeout``."""
    store, cluster = ctx.store, ctx.cluster_name
    if job_ids is None:
        roots = list(dict.fromkeys(r.root_job_id for r in store.list_jobs(cluster)))
        roots += [r.root_job_id for r in store.list_pending_retries(cluster) if r.root_job_id not in roots]
    else:
        roots = [rec.root_job_id for rec in ctx.get_many(job_ids)]
    deadline = None if timeout is None else time.monotonic() + timeout
    fast = not ctx.target.transport.is_remote and ctx.scheduler.cheap_status
    min_interval = poll_interval if poll_interval is not None else (0.005 if fast else 0.25)
    max_interval = poll_interval if poll_interval is not None else (0.5 if fast else 5.0)
    interval = min_interval
    last_states: dict[str, Any] = {}
    done: dict[str, JobRecord] = {}
    while True:
        refresh(ctx, waiting=True)
        retry_due: list[float] = []
        open_roots = [r for r in roots if r not in done]
        latest = store.latest_attempts(cluster, open_roots)
        states = {}
        for root in open_roots:
            rec = latest[root]
            states[root] = (rec.job_id, rec.state)
            if retry_pending(rec):
                retry_due.append(rec.next_retry_at or 0.0)
            elif rec.is_terminal:
                done[root] = rec
        finals = [done[r] for r in roots if r in done]
        if len(finals) == len(roots):
            return finals
        interval = min_interval if states != last_states else min(interval * 1.5, max_interval)
        last_states = states
        sleep = interval
        if retry_due and len(finals) + len(retry_due) == len(roots):
            sleep = max(min(retry_due) - time.time(), min_interval)
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"jobs not finished after {timeout} s")
            sleep = min(sleep, remaining)
        ctx.scheduler.wait_for_change(sleep)


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM ends the loop like Ctrl-C, so the lease is released on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_daemon(
    ctx: EngineContext,
    *,
    once: bool = False,
    interval: float = 5.0,
    run_cleanup: bool = True,
    max_iterations: int | None = None,
    cleanup: Callable[[], Any] | None = None,
    on_refresh: Callable[[RefreshResult], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Reconcile ``ctx``'s cluster in a loop; one daemon per cluster and store at a time.

    The lease (:func:`daemon_lease_name`) expires unless renewed, so a daemon killed with
    SIGKILL is taken over after its TTL; SIGTERM and Ctrl-C release it at once. A transient
    error (scheduler down, store briefly locked) is logged and the loop goes on; a daemon that
    lost its lease stops refreshing until it holds it again.
    """
    owner = daemon_owner()
    lease = lease_name_for(ctx)
    ttl = max(interval * 4, 30.0)
    if not ctx.store.acquire_lease(lease, owner, ttl):
        holder = ctx.store.lease_owner(lease)
        raise DaemonAlreadyRunning(
            f"another molq daemon ({holder[0] if holder else '?'}) already reconciles {ctx.cluster_name}")
    log.info("daemon for %s started (lease %s, owner %s)", ctx.cluster_name, lease, owner)
    try:
        with _sigterm_exits():
            iterations = 0
            last_cleanup = 0.0
            holding = True
            while True:
                if holding:
                    _one_round(ctx, on_refresh)
                    if run_cleanup and cleanup is not None and time.time() - last_cleanup > 3600:
                        try:
                            cleanup()
                        except MolqError as exc:
                            log.error("%s: cleanup failed: %s", ctx.cluster_name, exc)
                        last_cleanup = time.time()
                iterations += 1
                if once or (max_iterations is not None and iterations >= max_iterations):
                    return
                sleep(interval)
                try:
                    now_holding = ctx.store.acquire_lease(lease, owner, ttl)
                except MolqError as exc:
                    log.error("%s: cannot renew the daemon lease: %s", ctx.cluster_name, exc)
                    now_holding = False
                if holding and not now_holding:
                    log.warning("%s: the daemon lease is held by another process; pausing", ctx.cluster_name)
                elif now_holding and not holding:
                    log.info("%s: the daemon lease is ours again; resuming", ctx.cluster_name)
                holding = now_holding
    finally:
        try:
            ctx.store.release_lease(lease, owner)
        except MolqError as exc:
            log.error("%s: could not release the daemon lease: %s", ctx.cluster_name, exc)
        log.info("daemon for %s stopped", ctx.cluster_name)


def _one_round(ctx: EngineContext, on_refresh: Callable[[RefreshResult], None] | None) -> None:
    started = time.monotonic()
    try:
        result = refresh(ctx, waiting=True)
    except MolqError as exc:
        log.error("%s: refresh failed: %s", ctx.cluster_name, exc)
        return
    _log_result(ctx, result, started)
    if on_refresh is not None:
        on_refresh(result)


def _log_result(ctx: EngineContext, result: RefreshResult, started: float) -> None:
    took = time.monotonic() - started
    if result.changed or result.retries_started:
        log.info("%s: refresh: %d job(s) looked at, %d changed, %d retr%s started (%.2f s)", ctx.cluster_name,
                 result.looked_at, result.changed, result.retries_started,
                 "y" if result.retries_started == 1 else "ies", took)
    for problem in result.problems:
        log.warning("%s: %s", ctx.cluster_name, problem)


def run_daemon_many(
    contexts: Callable[[], Sequence[EngineContext]],
    *,
    once: bool = False,
    interval: float = 5.0,
    max_iterations: int | None = None,
    cleanup: Callable[[EngineContext], Any] | None = None,
    on_refresh: Callable[[EngineContext, RefreshResult | None, str | None], None] | None = None,
    on_lease: Callable[[EngineContext, bool], None] | None = None,
    exit_when_idle: bool = False,
    lease_ttl: float | None = None,
    owner_is_dead: Callable[[str], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Reconcile many clusters from one process, for ever (or one round with ``once``).

    ``contexts`` is called before every round and returns the clusters to reconcile now (those
    with active jobs or pending retries), so clusters that appear later are picked up. Each
    cluster has its own lease (:func:`daemon_lease_name`): a cluster whose lease another live
    daemon holds is skipped this round and tried again the next one, and a lease no longer
    needed (the cluster has no work) is released. Nothing transient ends the loop: a failed
    discovery, refresh or lease renewal is logged and the next round tries again.
    ``on_refresh(ctx, result, error)`` follows every attempted refresh (``result`` None and
    ``error`` set when it failed); ``on_lease(ctx, held)`` reports whether this process holds
    each cluster's lease. ``exit_when_idle`` returns once no cluster has work left.
    ``lease_ttl`` (default: four intervals, at least 30 s) is how long the leases of a daemon
    killed with SIGKILL keep other daemons off its clusters, unless ``owner_is_dead(owner)``
    can tell for certain that the holder is gone (then its lease is taken at once).
    """
    owner = daemon_owner()
    ttl = lease_ttl if lease_ttl is not None else max(interval * 4, 30.0)
    held: dict[str, EngineContext] = {}
    last_cleanup: dict[str, float] = {}
    waiting: set[str] = set()
    next_at: dict[str, float] = {}  # when each cluster is to be refreshed next (monotonic clock)
    log.info("daemon started (owner %s, every %g s)", owner, interval)
    try:
        with _sigterm_exits():
            iterations = 0
            while True:
                try:
                    wanted = list(contexts())
                except Exception as exc:  # noqa: BLE001 - a store briefly locked or gone: retry next round
                    log.error("cannot list the clusters to reconcile: %s", exc)
                    wanted = [*held.values()]
                else:
                    if exit_when_idle and not wanted:
                        log.info("no cluster has active jobs or pending retries; exiting")
                        return
                names = {c.cluster_name for c in wanted}
                for name in [n for n in held if n not in names]:
                    _release(held.pop(name), owner)
                paced = sleep is time.sleep  # an injected sleep (tests) refreshes everything each round
                for ctx in wanted:
                    name = ctx.cluster_name
                    if paced and name in held and not _local(ctx) and next_at.get(name, 0.0) > time.monotonic():
                        continue  # not due yet: a scheduler is asked at most once per interval
                    result = _many_round(ctx, owner, ttl, held, waiting, on_refresh, on_lease, owner_is_dead)
                    next_at[name] = time.monotonic() + _pause(ctx, interval, result)
                    if cleanup is not None and ctx.cluster_name in held \
                            and time.time() - last_cleanup.get(ctx.cluster_name, 0.0) > 3600:
                        last_cleanup[ctx.cluster_name] = time.time()
                        try:
                            cleanup(ctx)
                        except Exception as exc:  # noqa: BLE001 - retention is never worth stopping for
                            log.error("%s: cleanup failed: %s", ctx.cluster_name, exc)
                iterations += 1
                if once or (max_iterations is not None and iterations >= max_iterations):
                    return
                if paced:
                    _nap([c for c in wanted if c.cluster_name in held], next_at, interval)
                else:
                    sleep(interval)
    finally:
        for ctx in held.values():
            _release(ctx, owner)
        log.info("daemon stopped")


def _many_round(ctx: EngineContext, owner: str, ttl: float, held: dict[str, EngineContext], waiting: set[str],
                on_refresh: Callable[[EngineContext, RefreshResult | None, str | None], None] | None,
                on_lease: Callable[[EngineContext, bool], None] | None,
                owner_is_dead: Callable[[str], bool] | None = None) -> RefreshResult | None:
    name = ctx.cluster_name
    lease = lease_name_for(ctx)
    try:
        ours = ctx.store.acquire_lease(lease, owner, ttl)
        if not ours and owner_is_dead is not None:
            holder = ctx.store.lease_owner(lease)
            if holder is not None and owner_is_dead(holder[0]):
                # Released only if that dead owner still holds it; acquiring stays atomic.
                ctx.store.release_lease(lease, holder[0])
                ours = ctx.store.acquire_lease(lease, owner, ttl)
                if ours:
                    log.info("%s: took over the lease of a daemon that died (%s)", name, holder[0])
    except Exception as exc:  # noqa: BLE001 - store briefly locked: try again next round
        log.error("%s: cannot take the daemon lease: %s", name, exc)
        return None
    if not ours:
        held.pop(name, None)
        if name not in waiting:
            waiting.add(name)
            try:
                holder = ctx.store.lease_owner(lease)
            except Exception:  # noqa: BLE001
                holder = None
            log.warning("%s: another daemon (%s) reconciles this cluster; skipping it while it does",
                        name, holder[0] if holder else "?")
        if on_lease is not None:
            on_lease(ctx, False)
        return None
    if name in waiting:
        waiting.discard(name)
        log.info("%s: the daemon lease is ours; reconciling", name)
    held[name] = ctx
    if on_lease is not None:
        on_lease(ctx, True)
    started = time.monotonic()
    try:
        result = refresh(ctx, waiting=True)
    except Exception as exc:  # noqa: BLE001 - scheduler down, store locked: log it, go on
        if isinstance(exc, MolqError):
            log.error("%s: refresh failed: %s", name, exc)
        else:
            log.exception("%s: refresh failed: %s", name, exc)
        if on_refresh is not None:
            on_refresh(ctx, None, str(exc) or type(exc).__name__)
        return None
    _log_result(ctx, result, started)
    if on_refresh is not None:
        on_refresh(ctx, result, None)
    return result


def _local(ctx: EngineContext) -> bool:
    """A cluster on this host's local spool: refreshing it costs a few file reads."""
    return bool(ctx.scheduler.cheap_status) and not ctx.target.transport.is_remote


def _pause(ctx: EngineContext, interval: float, result: RefreshResult | None) -> float:
    """Seconds until ``ctx``'s next refresh: ``interval`` at most; less when a retry falls due
    sooner, and for this host's local spool, which is cheap to look at (at least once a
    second, sooner after a change: what it started may end soon)."""
    pause = interval
    if _local(ctx):
        pause = min(pause, LOCAL_NAP)
        if result is not None and (result.changed or result.retries_started):
            pause = min(pause, 0.2)
    try:
        pending = ctx.store.list_pending_retries(ctx.cluster_name)
    except Exception:  # noqa: BLE001 - a store briefly locked: the usual pace
        return pause
    due = [r.next_retry_at for r in pending if r.next_retry_at is not None]
    if due:
        pause = min(pause, max(min(due) - time.time(), 0.0) + 0.01)
    return pause


def _nap(contexts: Sequence[EngineContext], next_at: dict[str, float], interval: float) -> None:
    """Wait until the next cluster is due (``interval`` at most). A job on this host's local
    spool that ends wakes the wait early: its end may schedule a retry or release a held
    dependent, and is recorded at once."""
    now = time.monotonic()
    timeout = min([interval, *(next_at.get(c.cluster_name, now) - now for c in contexts)])
    timeout = max(timeout, 0.0)
    waker = next((c for c in contexts if _local(c)), None)
    if waker is None:
        time.sleep(timeout)
        return
    try:
        waker.scheduler.wait_for_change(timeout)
    except Exception:  # noqa: BLE001 - the spool unreadable for a moment: sleep instead
        time.sleep(timeout)


def _release(ctx: EngineContext, owner: str) -> None:
    try:
        ctx.store.release_lease(lease_name_for(ctx), owner)
    except Exception as exc:  # noqa: BLE001
        log.error("%s: could not release the daemon lease: %s", ctx.cluster_name, exc)

"""The engine's multi-cluster daemon loop, in process on a real store and the local
scheduler: each cluster has its own lease, a cluster leased by another daemon is skipped and
taken once free, clusters that appear later are picked up, and a failed round is logged, not
fatal."""

from __future__ import annotations

import logging

import pytest
from molq import Cluster, Submitor
from molq.engine.context import EngineContext
from molq.engine.loops import DaemonAlreadyRunning, run_daemon_many
from molq.engine.loops import daemon_lease_name as _lease
from molq.identity import host_identity
from molq.store import JobStore


def daemon_lease_name(cluster: str) -> str:
    """A local cluster's daemon lease: this host's (another host reconciles its own jobs)."""
    return _lease(cluster, host=host_identity())


def test_leases_per_cluster_late_clusters_and_failed_rounds(caplog):
    store = JobStore()
    first = Submitor(Cluster("local"), store=store)
    job = first.submit_job(argv=["sleep", "30"])
    assert store.acquire_lease(daemon_lease_name("local"), "elsewhere:1:abc", ttl=60)
    contexts: dict[str, EngineContext] = {}
    calls = {"n": 0}

    def discover():
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("database is locked")  # what a briefly locked store looks like
        for name, *_ in store.list_clusters():
            contexts.setdefault(name, EngineContext(target=Cluster(name, "local"), store=store))
        return [contexts[n] for n, *_ in store.list_clusters()]

    leases: list[tuple[int, str, bool]] = []
    refreshed: list[tuple[int, str]] = []
    rounds = {"n": 0}
    other = Submitor(Cluster("other", "local"), store=store)
    late = []

    def between(_seconds):
        rounds["n"] += 1
        if rounds["n"] == 1:
            late.append(other.submit_job(argv=["sleep", "30"]))  # a cluster that appears later
        if rounds["n"] == 3:
            store.release_lease(daemon_lease_name("local"), "elsewhere:1:abc")  # the other daemon left

    caplog.set_level(logging.INFO, logger="molq.daemon")
    try:
        run_daemon_many(discover, interval=0.01, max_iterations=5, sleep=between,
                        on_lease=lambda ctx, held: leases.append((rounds["n"], ctx.cluster_name, held)),
                        on_refresh=lambda ctx, result, error: refreshed.append((rounds["n"], ctx.cluster_name)))
        assert (0, "local", False) in leases and (0, "local") not in refreshed  # skipped, not refreshed
        assert (1, "other", True) in leases and (1, "other") in refreshed       # picked up
        # The round whose discovery failed goes on with the clusters it already held.
        assert [e for e in leases if e[0] == 2] == [(2, "other", True)]
        assert (3, "local", True) in leases and (3, "local") in refreshed       # taken once free
        assert "cannot list the clusters to reconcile: database is locked" in caplog.text
        assert "another daemon (elsewhere:1:abc) reconciles this cluster" in caplog.text
        # Leaving releases every lease it held.
        assert store.lease_owner(daemon_lease_name("local")) is None
        assert store.lease_owner(daemon_lease_name("other")) is None
    finally:
        first.cancel_job(job.job_id)
        for handle in late:
            other.cancel_job(handle.job_id)


def test_submitor_run_daemon_shares_the_lease_of_the_multi_cluster_daemon():
    store = JobStore()
    sub = Submitor(Cluster("local"), store=store)
    job = sub.submit_job(argv=["true"])
    holding: list[str | None] = []

    def during(_seconds):
        owner = store.lease_owner(daemon_lease_name("local"))
        holding.append(owner[0] if owner else None)
        # While the multi-cluster loop holds "daemon:local", the single-cluster one refuses.
        with pytest.raises(DaemonAlreadyRunning):
            sub.run_daemon(once=True)

    run_daemon_many(lambda: [EngineContext(target=Cluster("local"), store=store)] if store.list_clusters() else [],
                    interval=0.01, max_iterations=2, sleep=during)
    assert holding and holding[0] is not None
    sub.run_daemon(once=True)  # free again
    assert sub.watch_jobs([job.job_id], timeout=10)[0].state.value == "succeeded"
    assert store.lease_owner(daemon_lease_name("local")) is None

"""Store conformance tests: what every job store implementation must do.

Subclass :class:`StoreConformance` and provide the ``store_url`` fixture (the URL of a fresh,
empty store that :func:`molq.store.open_store` can open, also from another process)::

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store_url(self, tmp_path):
            return f"mystore://{tmp_path}/jobs"

Override ``open_store`` to build the store another way.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from molq.errors import AmbiguousJobIdError, JobNotFoundError
from molq.model import JobDependency, JobState, RetryPolicy
from molq.store.schema import SCHEMA_VERSION
from molq.store.types import NewSubmission, StoredTarget

__all__ = ["StoreConformance"]

S = JobState


def _values(job_id: str, cluster: str = "conf", **extra: Any) -> dict[str, Any]:
    return {"job_id": job_id, "cluster_name": cluster, "scheduler": "local", "command_type": "argv",
            "command_display": "true", **extra}


def _race_worker(url: str, job_ids: list[str], start_at: float, out: Any) -> None:
    """One process of the multi-process race: try CREATED -> SUBMITTED on every job."""
    from molq.store.opening import open_store

    store = open_store(url)
    try:
        while time.time() < start_at:
            time.sleep(0.001)
        won = [jid for jid in job_ids
               if store.transition("conf", jid, S.CREATED, S.SUBMITTED, scheduler_job_id=jid) is not None]
        out.put(won)
    finally:
        store.close()


class StoreConformance:
    """Behaviour every job store must show (the SQL store passes it on SQLite and PostgreSQL)."""

    @pytest.fixture
    def open_store(self) -> Callable[[str], Any]:
        from molq.store.opening import open_store

        return open_store

    @pytest.fixture
    def store(self, store_url: str, open_store: Callable[[str], Any]) -> Iterator[Any]:
        store = open_store(store_url)
        yield store
        store.close()

    @pytest.fixture
    def other(self, store_url: str, open_store: Callable[[str], Any]) -> Iterator[Any]:
        """A second, independent handle on the same store (another process's view)."""
        store = open_store(store_url)
        yield store
        store.close()

    # -- schema ------------------------------------------------------------------------------
    def test_implements_the_protocol(self, store: Any) -> None:
        from molq.store.protocol import JobStore

        assert isinstance(store, JobStore)  # every method of the interface is there

    def test_schema_version(self, store: Any, other: Any) -> None:
        assert store.schema_version() == SCHEMA_VERSION
        assert other.schema_version() == SCHEMA_VERSION  # opening again neither fails nor migrates

    # -- insert and read ---------------------------------------------------------------------
    def test_insert_then_get(self, store: Any, other: Any) -> None:
        rec = store.insert_job(_values("j1", metadata_json='{"k": "v"}', job_name="first", cwd="/w"),
                               reason="submitted")
        assert rec.state == S.CREATED and rec.root_job_id == "j1" and rec.attempt == 1
        got = other.get_job("conf", "j1")
        assert (got.job_id, got.state, got.metadata, got.job_name, got.cwd) == ("j1", S.CREATED, {"k": "v"}, "first", "/w")
        assert got.created_at == pytest.approx(rec.created_at)
        [t] = other.get_transitions("conf", "j1")
        assert (t.old_state, t.new_state, t.reason) == (None, S.CREATED, "submitted")
        assert other.get_internal("conf", "j1")["submit_host"]
        with pytest.raises(JobNotFoundError):
            other.get_job("conf", "nope")
        with pytest.raises(JobNotFoundError):
            other.get_job("another-cluster", "j1")
        assert set(other.get_jobs("conf", ["j1", "nope"])) == {"j1"}

    def test_duplicate_job_id_is_refused(self, store: Any) -> None:
        store.insert_job(_values("dup"))
        with pytest.raises(Exception):  # noqa: B017 - the driver's integrity error
            store.insert_job(_values("dup"))
        assert len(store.get_transitions("conf", "dup")) == 1

    def test_typed_submission_round_trip(self, store: Any, other: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MOLQ_HOSTNAME", "login-7")
        store.insert_job(_values("up"))
        policy = RetryPolicy(max_attempts=3)
        target = StoredTarget("local", host=None, scheduler_options={"max_jobs": 4})
        sub = NewSubmission(job_id="down", cluster_name="conf", scheduler="local", command_type="argv",
                            command_display="echo hi", metadata={"a": "b"}, spec={"argv": ["echo", "hi"]},
                            retry=policy, target=target, reason="submitted",
                            dependencies=(JobDependency("down", "up", "after_success", None),))
        rec = store.add_submission(sub)
        assert rec.metadata == {"a": "b"} and rec.command_display == "echo hi"
        info = other.internals("conf", "down")
        assert info.spec == {"argv": ["echo", "hi"]}
        assert info.retry == policy and info.target == target
        assert info.submit_host == "login-7" and info.missing_count == 0
        assert other.stored_targets()["conf"] == (target, None)
        assert info.cancel_requested_at is None and info.confirmed_at is None
        assert [d.dependency_job_id for d in other.get_dependencies("conf", "down")] == ["up"]
        assert [d.job_id for d in other.get_dependents("conf", "up")] == ["down"]
        active = {a.record.job_id: a for a in other.active_jobs("conf")}
        assert set(active) == {"up", "down"}
        assert active["down"].has_retry and not active["up"].has_retry
        assert active["down"].submit_host == "login-7"
        light = {r.job_id: (has_retry, misses) for r, has_retry, misses in other.list_active_light("conf")}
        assert light == {"up": (False, 0), "down": (True, 0)}

    def test_listing_and_lookup(self, store: Any) -> None:
        for i, cluster in enumerate(["one", "one", "two"]):
            store.insert_job(_values(f"abc{i}", cluster=cluster))
        store.transition("one", "abc0", S.CREATED, S.FAILED, finished_at=time.time())
        assert [r.job_id for r in store.list_jobs("one")] == ["abc1"]
        assert [r.job_id for r in store.list_jobs("one", include_terminal=True)] == ["abc0", "abc1"]
        assert [r.job_id for r in store.list_jobs(None, include_terminal=True, newest_first=True, limit=2)] == ["abc2", "abc1"]
        assert [r.job_id for r in store.list_jobs(None, states=[S.FAILED])] == ["abc0"]
        assert sorted(store.all_cluster_names()) == ["one", "two"]
        assert sorted(c[0] for c in store.list_clusters()) == ["one", "two"]
        assert store.resolve_job_id("two", "abc") == ("two", "abc2")
        with pytest.raises(AmbiguousJobIdError):
            store.resolve_job_id(None, "abc")
        with pytest.raises(JobNotFoundError):
            store.resolve_job_id(None, "zzz")
        assert store.delete_jobs("one", ["abc0"]) == 1
        with pytest.raises(JobNotFoundError):
            store.get_job("one", "abc0")

    # -- state changes -----------------------------------------------------------------------
    def test_compare_and_set_transition(self, store: Any, other: Any) -> None:
        store.insert_job(_values("cas"))
        now = time.time()
        t = store.transition("conf", "cas", S.CREATED, S.SUBMITTED, reason="accepted", scheduler_job_id="42",
                             submitted_at=now, confirmed_at=now)
        assert t is not None and (t.old_state, t.new_state) == (S.CREATED, S.SUBMITTED)
        # a writer that still believes the job is CREATED loses, and writes nothing
        assert other.transition("conf", "cas", S.CREATED, S.FAILED, failure_reason="stale") is None
        rec = other.get_job("conf", "cas")
        assert (rec.state, rec.scheduler_job_id, rec.failure_reason) == (S.SUBMITTED, "42", None)
        assert other.get_internal("conf", "cas")["confirmed_at"] == pytest.approx(now)
        assert [x.new_state for x in other.get_transitions("conf", "cas")] == [S.CREATED, S.SUBMITTED]
        with pytest.raises(ValueError):
            store.transition("conf", "cas", S.SUCCEEDED, S.RUNNING)

    def test_new_columns_in_update_and_transition(self, store: Any, other: Any) -> None:
        store.insert_job(_values("cx"))
        assert store.transition("conf", "cx", S.CREATED, S.SUBMITTED, scheduler_job_id="1")
        asked = time.time()
        assert store.update_job("conf", "cx", expect_state=S.SUBMITTED, cancel_requested_at=asked)
        assert not store.update_job("conf", "cx", expect_state=S.RUNNING, confirmed_at=asked)
        assert store.transition("conf", "cx", S.SUBMITTED, S.CANCELLED, confirmed_at=asked + 1)
        info = other.internals("conf", "cx")
        assert info.cancel_requested_at == pytest.approx(asked)
        assert info.confirmed_at == pytest.approx(asked + 1)
        with pytest.raises(ValueError):
            store.update_job("conf", "cx", state="running")
        with pytest.raises(ValueError):
            store.update_job("conf", "cx", no_such_column=1)

    def test_transition_and_its_row_are_one_transaction(self, store: Any, other: Any) -> None:
        store.insert_job(_values("tx"))
        with pytest.raises(RuntimeError), store.batch():
            assert store.transition("conf", "tx", S.CREATED, S.SUBMITTED, scheduler_job_id="9")
            assert store.get_job("conf", "tx").state == S.SUBMITTED  # the batch sees its own write
            raise RuntimeError("crash before commit")
        assert other.get_job("conf", "tx").state == S.CREATED
        assert len(other.get_transitions("conf", "tx")) == 1

    def test_batch_commits_everything_at_once(self, store: Any, other: Any) -> None:
        for i in range(5):
            store.insert_job(_values(f"b{i}"))
        with store.batch():
            for i in range(5):
                assert store.transition("conf", f"b{i}", S.CREATED, S.SUBMITTED)
            with store.batch():  # nested: joins the outer one
                store.update_job("conf", "b0", raw_state="PENDING")
        assert {r.state for r in other.list_jobs("conf")} == {S.SUBMITTED}
        assert other.get_job("conf", "b0").raw_state == "PENDING"

    def test_active_jobs_are_the_live_ones_oldest_first(self, store: Any, other: Any) -> None:
        # Inserted newest first, so an answer in insertion order would be wrong.
        for i, job_id in enumerate(["c", "b", "a", "done", "elsewhere"]):
            values = _values(job_id, cluster="two" if job_id == "elsewhere" else "conf", created_at=100.0 - i)
            store.insert_job(values)
        store.transition("conf", "done", S.CREATED, S.FAILED, finished_at=1.0)
        store.insert_job(_values("tie", created_at=98.0))  # the same created_at as "a": job id decides
        assert [a.record.job_id for a in other.active_jobs("conf")] == ["a", "tie", "b", "c"]
        with store.batch():
            assert store.transition("conf", "b", S.CREATED, S.SUBMITTED, scheduler_job_id="7")
            inside = {a.record.job_id: a.record for a in store.active_jobs("conf")}
            assert inside["b"].state == S.SUBMITTED and inside["b"].scheduler_job_id == "7"  # sees its own write
            assert store.transition("conf", "c", S.CREATED, S.CANCELLED, finished_at=2.0)
            assert [a.record.job_id for a in store.active_jobs("conf")] == ["a", "tie", "b"]
        assert [a.record.job_id for a in other.active_jobs("conf")] == ["a", "tie", "b"]

    def test_claim_retry_once(self, store: Any, other: Any) -> None:
        store.insert_job(_values("r1"))
        assert store.claim_retry("conf", "r1", "r2")
        assert not other.claim_retry("conf", "r1", "r3")
        assert other.get_job("conf", "r1").retried_by == "r2"

    # -- concurrency -------------------------------------------------------------------------
    def test_no_double_transition_across_threads(self, store: Any, store_url: str,
                                                 open_store: Callable[[str], Any]) -> None:
        store.insert_job(_values("race"))
        handles = [open_store(store_url) for _ in range(8)]
        barrier = threading.Barrier(len(handles))
        results: list[Any] = []

        def worker(h: Any) -> None:
            barrier.wait()
            results.append(h.transition("conf", "race", S.CREATED, S.SUBMITTED))

        threads = [threading.Thread(target=worker, args=(h,)) for h in handles]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for h in handles:
            h.close()
        assert sum(r is not None for r in results) == 1
        assert len(store.get_transitions("conf", "race")) == 2

    def test_no_double_transition_across_processes(self, store: Any, store_url: str) -> None:
        ids = [f"p{i:03d}" for i in range(40)]
        with store.batch():
            for jid in ids:
                store.insert_job(_values(jid))
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        start_at = time.time() + 3.0  # every process is up and connected by then
        procs = [ctx.Process(target=_race_worker, args=(store_url, ids, start_at, out)) for _ in range(4)]
        for p in procs:
            p.start()
        won = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        flat = [jid for batch in won for jid in batch]
        assert sorted(flat) == ids  # every job moved exactly once
        for jid in ids:
            assert [t.new_state for t in store.get_transitions("conf", jid)] == [S.CREATED, S.SUBMITTED]

    # -- leases ------------------------------------------------------------------------------
    def test_lease_acquire_renew_release(self, store: Any, other: Any) -> None:
        assert store.acquire_lease("daemon:c", "a", ttl=60)
        assert not other.acquire_lease("daemon:c", "b", ttl=60)
        owner, first_expiry = other.lease_owner("daemon:c")
        assert owner == "a"
        time.sleep(0.01)
        assert store.acquire_lease("daemon:c", "a", ttl=60)  # renewal by the holder
        assert other.lease_owner("daemon:c")[1] > first_expiry
        other.release_lease("daemon:c", "b")  # not the holder: no effect
        assert store.lease_owner("daemon:c")[0] == "a"
        store.release_lease("daemon:c", "a")
        assert store.lease_owner("daemon:c") is None
        assert other.acquire_lease("daemon:c", "b", ttl=60)

    def test_expired_lease_is_taken_over(self, store: Any, other: Any) -> None:
        assert store.acquire_lease("daemon:x", "dead-holder", ttl=0.2)
        assert not other.acquire_lease("daemon:x", "b", ttl=60)
        time.sleep(0.3)
        assert other.acquire_lease("daemon:x", "b", ttl=60)
        assert store.lease_owner("daemon:x")[0] == "b"
        # the old holder, back from a pause, does not get it back while the new one holds it
        assert not store.acquire_lease("daemon:x", "dead-holder", ttl=60)

    def test_one_lease_winner_under_contention(self, store_url: str, open_store: Callable[[str], Any],
                                               store: Any) -> None:
        for name, ttl in (("fresh", 60.0), ("expired", 0.05)):
            if name == "expired":
                assert store.acquire_lease(name, "gone", ttl=ttl)
                time.sleep(0.1)
            handles = [open_store(store_url) for _ in range(6)]
            barrier = threading.Barrier(len(handles))
            wins: list[str] = []

            def grab(h: Any, me: str, lease: str, barrier: threading.Barrier, wins: list[str]) -> None:
                barrier.wait()
                if h.acquire_lease(lease, me, ttl=60):
                    wins.append(me)

            threads = [threading.Thread(target=grab, args=(h, f"owner-{i}", name, barrier, wins))
                       for i, h in enumerate(handles)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for h in handles:
                h.close()
            assert len(wins) == 1, (name, wins)
            assert store.lease_owner(name)[0] == wins[0]

    def test_unique_ids_do_not_collide(self, store: Any) -> None:
        ids = [uuid.uuid4().hex for _ in range(50)]
        with store.batch():
            for jid in ids:
                store.insert_job(_values(jid))
        assert set(store.get_jobs("conf", ids)) == set(ids)
        latest = store.latest_attempts("conf", ids[:3])
        assert set(latest) == set(ids[:3])

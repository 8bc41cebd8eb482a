"""The shared polling record (molq_pace) on both databases: read-modify-write, one winner."""

from __future__ import annotations

import threading

import attrs
import pytest
from molq.pacing import ClusterPace
from molq.store import JobStore


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def test_pace_starts_fresh_and_round_trips(url: str) -> None:
    store = JobStore(url)
    try:
        assert store.read_pace("c") == ClusterPace()
        before, after = store.update_pace("c", lambda p: attrs.evolve(p, interval=3.0, failures=2))
        assert before == ClusterPace() and after is not None
        assert store.read_pace("c").interval == 3.0 and store.read_pace("c").failures == 2
        assert store.read_pace("other") == ClusterPace()  # one record per cluster
        assert store.update_pace("c", lambda p: None)[1] is None  # nothing to write
    finally:
        store.close()


def test_concurrent_claims_have_one_winner(url: str) -> None:
    stores = [JobStore(url) for _ in range(6)]
    wins: list[int] = []
    barrier = threading.Barrier(len(stores))

    def claim(k: int) -> None:
        barrier.wait()
        _before, after = stores[k].update_pace(
            "c", lambda p: None if p.claimed_by else attrs.evolve(p, claimed_by=f"p{k}", claimed_until=1e12))
        if after is not None:
            wins.append(k)

    threads = [threading.Thread(target=claim, args=(k,)) for k in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(wins) == 1
        assert stores[0].read_pace("c").claimed_by == f"p{wins[0]}"
    finally:
        for s in stores:
            s.close()

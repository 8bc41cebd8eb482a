"""One process of the shared-store soak test (tests/store/test_soak.py).

    python soak_worker.py STORE_URL JOBS_DIR SECONDS OUT_JSON

Once imported and connected it creates ``OUT_JSON.ready`` and waits for ``OUT_JSON.go``, so
that all eight run for the whole of SECONDS whatever their start-up took.

Its host identity is ``$MOLQ_HOSTNAME`` and its local spool ``$MOLQ_HOME`` (one per host
group). For SECONDS it runs the multi-cluster daemon loop (:func:`run_daemon_many`) in short
lives of a few seconds each (every life is a new lease owner, so leases move between
processes and hosts), and between the daemon's rounds it submits local jobs to its host's
cluster and to one cluster both hosts share, cancels some of them and refreshes explicitly.
Then it waits until every job it submitted has ended. It writes what it did to OUT_JSON:
the jobs with the end each must have, every daemon refresh with its owner and its start and
end times, and every error (exceptions and ERROR log records).
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
import traceback


class _Errors(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"log {record.name}: {record.getMessage()}")


class _EndOfLife(Exception):
    """Ends one daemon life (raised from its sleep)."""


def main() -> int:
    url, jobs_dir, seconds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    from molq import Cluster, JobState, Submitor
    from molq.engine.context import EngineContext
    from molq.engine.loops import run_daemon_many
    from molq.store import JobStore

    host = os.environ["MOLQ_HOSTNAME"]
    rng = random.Random(f"{host}-{os.getpid()}")
    errors: list[str] = []
    logging.getLogger("molq").addHandler(_Errors(errors))
    store = JobStore(url)
    names = [f"soak-{host}", "soak-shared"]
    # Room for every job at once: the soak measures molq and its store, not a queue of sleeps.
    options = {"max_cpus": 64, "term_grace_seconds": 1.0}
    submitors = {n: Submitor(Cluster(n, "local", scheduler_options=options), store=store, jobs_dir=jobs_dir)
                 for n in names}
    contexts = {n: EngineContext(target=Cluster(n, "local", scheduler_options=options), store=store)
                for n in names}
    jobs: list[dict[str, object]] = []  # cluster, job_id, expected end(s)
    mine: list[tuple[str, str]] = []  # still possibly active
    refreshes: list[list[object]] = []  # cluster, owner, start, end
    with open(out + ".ready", "w"):
        pass
    while not os.path.exists(out + ".go"):
        time.sleep(0.05)
    deadline = time.time() + seconds
    acts: list[float] = []

    def act() -> None:
        """What this 'host' does between two daemon rounds."""
        cluster = rng.choice(names)
        roll = rng.random()
        t0 = time.time()
        try:
            if roll < 0.2:
                handle = submitors[cluster].submit_job(argv=["sh", "-c", f"sleep {rng.uniform(0, 0.5):.2f}; exit 3"])
                jobs.append({"cluster": cluster, "job_id": handle.job_id, "ends": ["failed"]})
            else:
                handle = submitors[cluster].submit_job(argv=["sleep", f"{rng.uniform(0, 1.0):.2f}"])
                jobs.append({"cluster": cluster, "job_id": handle.job_id, "ends": ["succeeded"]})
            mine.append((cluster, handle.job_id))
            if rng.random() < 0.25 and mine:
                c, job_id = mine.pop(rng.randrange(len(mine)))
                submitors[c].cancel_job(job_id)
                for job in jobs:
                    if job["job_id"] == job_id:
                        # cancelled, or its real end if it ended before the stop
                        job["ends"] = [*job["ends"], "cancelled"]  # type: ignore[list-item]
            if rng.random() < 0.3:
                submitors[rng.choice(names)].refresh_jobs()
        except Exception:  # noqa: BLE001 - every error is a finding of the soak
            errors.append(traceback.format_exc())
        acts.append(time.time() - t0)

    life = 0
    while time.time() < deadline:
        life += 1
        owner = f"{host}:{os.getpid()}:{life}"
        life_ends = min(deadline, time.time() + rng.uniform(2, 8))
        started: dict[str, float] = {}

        def on_lease(ctx: EngineContext, held: bool, started: dict[str, float] = started) -> None:
            if held:
                started[ctx.cluster_name] = time.time()

        def on_refresh(ctx: EngineContext, result: object, error: str | None, owner: str = owner,
                       started: dict[str, float] = started) -> None:
            refreshes.append([ctx.cluster_name, owner, started.pop(ctx.cluster_name), time.time()])
            if error is not None:
                errors.append(f"daemon refresh of {ctx.cluster_name}: {error}")

        def between_rounds(interval: float, life_ends: float = life_ends) -> None:
            act()
            time.sleep(rng.uniform(0.1, 0.3))
            if time.time() >= life_ends:
                raise _EndOfLife

        def wanted() -> list[EngineContext]:
            return [contexts[n] for n, *_ in store.list_clusters() if n in contexts]

        try:
            run_daemon_many(wanted, interval=0.2, on_lease=on_lease, on_refresh=on_refresh, sleep=between_rounds)
        except _EndOfLife:
            pass
        except Exception:  # noqa: BLE001
            errors.append(traceback.format_exc())

    # Let everything this process submitted end (the jobs are short), then report.
    loop_ended = time.time()
    drain_until = time.time() + 60
    pending = {(str(j["cluster"]), str(j["job_id"])) for j in jobs}
    while pending and time.time() < drain_until:
        for name in names:
            try:
                submitors[name].refresh_jobs()
            except Exception:  # noqa: BLE001
                errors.append(traceback.format_exc())
        pending = {(c, j) for c, j in pending if store.get_job(c, j).state not in
                   (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT, JobState.LOST)}
        time.sleep(0.2)
    for s in submitors.values():
        s.close()
    store.close()
    with open(out, "w") as fh:
        json.dump({"host": host, "pid": os.getpid(), "lives": life, "slowest_act_s": max(acts, default=0), "jobs": jobs, "refreshes": refreshes,
                   "errors": errors, "not_ended": sorted(pending),
                   "overrun_s": loop_ended - deadline, "drain_s": time.time() - loop_ended}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())

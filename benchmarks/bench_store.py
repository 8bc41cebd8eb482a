"""The job store on SQLite and on PostgreSQL, side by side, in one run.

1. Submit ms/job and one refresh of N active local jobs through :class:`molq.Submitor`, and a
   listing of every record through the command line's read path.
2. ``molq list -a``, ``molq show`` and ``molq watch`` (whole commands, as a user runs them:
   the median of several runs) on a store of R finished records, the same on both databases
   (cloned from one real local job, then moved with ``molq store copy``). The figure to hold
   is PostgreSQL within 2x of SQLite.

    . /var/lib/molq-test/env.sh   # MOLQ_TEST_PG_URL (tests/services/postgres.sh)
    python benchmarks/bench_store.py [--jobs 1000] [--records 10000] [--pg-url URL]

The jobs of part 1 are ``sleep 600`` on the local scheduler, so most of them stay queued and
the refresh measures molq and its store, not the processes; they are cancelled at the end.
PostgreSQL runs in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

#: Runs of each command in part 2; the median is reported.
CLI_RUNS = 5


def run(url: str, n: int, workdir: str) -> dict[str, float]:
    from molq import Cluster, JobExecution, Submitor
    from molq.store import JobStore
    from molq.store.read import list_records

    store = JobStore(url)
    submitor = Submitor(Cluster(f"bench-store-{uuid.uuid4().hex[:6]}"), store=store)
    execution = JobExecution(cwd=workdir)
    start = time.perf_counter()
    ids = [submitor.submit_job(argv=["sleep", "600"], execution=execution).job_id for _ in range(n)]
    submit = time.perf_counter() - start
    start = time.perf_counter()
    submitor.refresh_jobs()
    refresh = time.perf_counter() - start
    start = time.perf_counter()
    listed = list_records(url, None, include_terminal=True)
    listing = time.perf_counter() - start
    assert len(listed) == n, len(listed)
    submitor.cancel_jobs(ids)
    submitor.close()
    store.close()
    return {"submit_ms": 1000 * submit / n, "refresh_s": refresh, "list_s": listing}


def fill_finished(url: str, records: int, workdir: str) -> list[str]:
    """``records`` finished jobs in the store at ``url``: one real local job, run to its end,
    cloned with new ids (same columns, same transitions). Returns the job ids."""
    import sqlalchemy as sa
    from molq import Cluster, JobExecution, Submitor
    from molq.store import JobStore
    from molq.store.tables import jobs_table, transitions_table

    store = JobStore(url)
    with Submitor(Cluster("bench-reads"), store=store) as submitor:
        handle = submitor.submit_job(argv=["true"], execution=JobExecution(cwd=workdir))
        handle.wait(timeout=60)
    store.close()
    engine = sa.create_engine(url)
    ids = [uuid.uuid4().hex for _ in range(records - 1)]
    with engine.begin() as conn:
        job = dict(conn.execute(sa.select(jobs_table).where(jobs_table.c.job_id == handle.job_id)).mappings().one())
        steps = [dict(r) for r in conn.execute(
            sa.select(transitions_table).where(transitions_table.c.job_id == handle.job_id)
            .order_by(transitions_table.c.id)).mappings()]
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            conn.execute(jobs_table.insert(), [{**job, "job_id": j, "root_job_id": j} for j in chunk])
            conn.execute(transitions_table.insert(),
                         [{**{k: v for k, v in t.items() if k != "id"}, "job_id": j} for j in chunk for t in steps])
    engine.dispose()
    return [handle.job_id, *ids]


def time_cli(url: str, home: str, args: list[str]) -> float:
    """Median wall time of ``molq ARGS`` on the store at ``url`` (exit 0 required)."""
    env = dict(os.environ, MOLQ_STORE_URL=url, MOLQ_HOME=home)
    env.pop("MOLQ_CONFIG", None)
    # As installed: compiled modules are cached (the first run writes them; the median drops it).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    times = []
    for _ in range(CLI_RUNS):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "molq", *args], env=env, capture_output=True, text=True,
                              timeout=300)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"molq {' '.join(args)} failed on {url.split('@')[-1]}: {proc.stderr.strip()}")
    return statistics.median(times)


def cli_reads(sqlite_url: str, pg_url: str, records: int, scratch: str) -> dict[str, dict[str, float]]:
    from molq.store.transfer import copy_store

    work = os.path.join(scratch, "reads")
    os.makedirs(work)
    ids = fill_finished(sqlite_url, records, work)
    copy_store(sqlite_url, pg_url)
    home = os.environ["MOLQ_HOME"]
    middle = ids[len(ids) // 2]
    commands = {"list": ["list", "-a"], "list --json": ["list", "-a", "--json"], "show": ["show", middle],
                "watch": ["watch", middle, ids[-1]]}
    return {name: {"sqlite": time_cli(sqlite_url, home, args), "postgresql": time_cli(pg_url, home, args)}
            for name, args in commands.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000, help="active local jobs of part 1")
    parser.add_argument("--records", type=int, default=10_000, help="finished records of part 2")
    parser.add_argument("--pg-url", default=os.environ.get("MOLQ_TEST_PG_URL"),
                        help="a PostgreSQL URL whose role may create schemas (default: $MOLQ_TEST_PG_URL)")
    args = parser.parse_args()
    if not args.pg_url:
        raise SystemExit("no PostgreSQL URL: run tests/services/postgres.sh and source /var/lib/molq-test/env.sh")
    import sqlalchemy as sa

    scratch = tempfile.mkdtemp(prefix=".molq-bench-store-", dir=os.path.expanduser("~"))
    schemas = [f"bench_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    admin = sa.create_engine(args.pg_url)
    with admin.begin() as conn:
        for schema in schemas:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in args.pg_url else "?"
    pg_urls = [f"{args.pg_url}{sep}options=-csearch_path%3D{schema}" for schema in schemas]
    results = {}
    try:
        os.environ["MOLQ_HOME"] = os.path.join(scratch, "home")
        for name, url in (("sqlite", f"sqlite:///{scratch}/jobs.db"), ("postgresql", pg_urls[0])):
            work = os.path.join(scratch, name)
            os.makedirs(work)
            results[name] = run(url, args.jobs, work)
        reads = cli_reads(f"sqlite:///{scratch}/reads.db", pg_urls[1], args.records, scratch)
    finally:
        with admin.begin() as conn:
            for schema in schemas:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
        shutil.rmtree(scratch, ignore_errors=True)
    n = args.jobs
    print(f"job store, {n} local jobs (sleep 600, cancelled afterwards), {os.cpu_count()} cores")
    print(f"  {'':24} {'sqlite':>16} {'postgresql':>16} {'pg/sqlite':>10}")
    for key, label, unit in (("submit_ms", "submit", "ms/job"), ("refresh_s", f"one refresh of {n}", "s"),
                             ("list_s", f"list {n} records", "s")):
        a, b = results["sqlite"][key], results["postgresql"][key]
        print(f"  {label:24} {a:9.3f} {unit:6} {b:9.3f} {unit:6} {b / a:9.2f}x")
    print(f"command line on a store of {args.records} finished records (median of {CLI_RUNS} runs, whole command)")
    worst = 0.0
    for name, t in reads.items():
        ratio = t["postgresql"] / t["sqlite"]
        worst = max(worst, ratio)
        print(f"  {'molq ' + name:24} {t['sqlite']:9.3f} {'s':6} {t['postgresql']:9.3f} {'s':6} {ratio:9.2f}x")
    print(f"  worst pg/sqlite ratio {worst:.2f}x ({'within' if worst <= 2 else 'NOT within'} 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

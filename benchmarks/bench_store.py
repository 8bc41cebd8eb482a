"""The job store on SQLite and on PostgreSQL, side by side, in one run: submit ms/job and one
refresh of N active local jobs through :class:`molq.Submitor`, and a listing of every record
through the command line's read path.

    . /var/lib/molq-test/env.sh   # MOLQ_TEST_PG_URL (tests/services/postgres.sh)
    python benchmarks/bench_store.py [--jobs 1000] [--pg-url URL]

The jobs are ``sleep 600`` on the local scheduler, so most of them stay queued and the refresh
measures molq and its store, not the processes; they are cancelled at the end. PostgreSQL runs
in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--pg-url", default=os.environ.get("MOLQ_TEST_PG_URL"),
                        help="a PostgreSQL URL whose role may create schemas (default: $MOLQ_TEST_PG_URL)")
    args = parser.parse_args()
    if not args.pg_url:
        raise SystemExit("no PostgreSQL URL: run tests/services/postgres.sh and source /var/lib/molq-test/env.sh")
    import sqlalchemy as sa

    scratch = tempfile.mkdtemp(prefix=".molq-bench-store-", dir=os.path.expanduser("~"))
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(args.pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in args.pg_url else "?"
    results = {}
    try:
        os.environ["MOLQ_HOME"] = os.path.join(scratch, "home")
        for name, url in (("sqlite", f"sqlite:///{scratch}/jobs.db"),
                          ("postgresql", f"{args.pg_url}{sep}options=-csearch_path%3D{schema}")):
            work = os.path.join(scratch, name)
            os.makedirs(work)
            results[name] = run(url, args.jobs, work)
    finally:
        with admin.begin() as conn:
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

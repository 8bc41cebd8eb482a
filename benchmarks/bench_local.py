"""Local scheduler throughput: submit and wait for N trivial jobs through molq, against the
same commands started with ``subprocess.Popen`` and waited for, measured in the same run.

    python benchmarks/bench_local.py [--jobs 500] [--memory 100M]

With ``--memory`` each run also submits the same jobs with that memory limit (a private memory
cgroup per job where the host allows one, else ``ulimit -v``), and prints what the limit costs
against the jobs without it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def baseline(n: int, workdir: str) -> float:
    start = time.perf_counter()
    procs = [subprocess.Popen(["true"], cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True) for _ in range(n)]
    for p in procs:
        p.wait()
    return time.perf_counter() - start


def molq_run(n: int, workdir: str, memory: str | None = None) -> tuple[float, float]:
    from molq import Cluster, JobExecution, JobResources, JobState, Submitor

    submitor = Submitor(Cluster("bench-local"))
    execution = JobExecution(cwd=workdir)
    start = time.perf_counter()
    resources = JobResources(memory=memory) if memory else None
    ids = [submitor.submit_job(argv=["true"], execution=execution, resources=resources).job_id for _ in range(n)]
    submitted = time.perf_counter() - start
    records = submitor.watch_jobs(ids, timeout=600)
    total = time.perf_counter() - start
    bad = [r for r in records if r.state != JobState.SUCCEEDED]
    if bad:
        raise SystemExit(f"{len(bad)} jobs did not succeed: {bad[0]}")
    submitor.close()
    return submitted, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each side; the median is reported")
    parser.add_argument("--memory", default=None, help="also run the jobs with this memory limit (e.g. 100M)")
    parser.add_argument("--dir", default=os.path.expanduser("~"),
                        help="where the scratch store and job directories go (default: the home "
                             "directory, where molq keeps them by default: ~/.molq)")
    args = parser.parse_args()
    bases, subs, totals, limited = [], [], [], []
    # Every run gets a fresh store and job directories; all are deleted only at the end. Deleting
    # thousands of files between runs makes the next run's file creations wait on the
    # filesystem (on this kind of VM disk, mounted with `discard`, for many seconds), which
    # would charge the benchmark's own cleanup to molq (the baseline creates no files).
    scratch = tempfile.mkdtemp(prefix=".molq-bench-", dir=args.dir)
    try:
        for i in range(args.repeat):
            tmp = os.path.join(scratch, f"run{i}")
            os.environ["MOLQ_HOME"] = os.path.join(tmp, "home")
            work = os.path.join(tmp, "work")
            os.makedirs(work)
            bases.append(baseline(args.jobs, work))
            s, t = molq_run(args.jobs, work)
            subs.append(s)
            totals.append(t)
            if args.memory:
                os.environ["MOLQ_HOME"] = os.path.join(tmp, "home-memory")
                limited.append(molq_run(args.jobs, work, args.memory)[1])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        os.sync()
    base, submitted, total = (sorted(x)[len(x) // 2] for x in (bases, subs, totals))
    n = args.jobs
    print(f"local scheduler, {n} trivial jobs (submit + wait), {os.cpu_count()} cores, median of {args.repeat}, "
          f"scratch in {args.dir}")
    print(f"  baseline Popen+wait : {base:8.3f} s  {n / base:8.1f} jobs/s")
    print(f"  molq submit         : {submitted:8.3f} s  {1000 * submitted / n:8.2f} ms/job")
    print(f"  molq submit + wait  : {total:8.3f} s  {n / total:8.1f} jobs/s")
    print(f"  ratio molq/baseline : {total / base:8.2f}x   (target <= 5x)")
    if limited:
        lim = sorted(limited)[len(limited) // 2]
        print(f"  molq, memory={args.memory:<6}: {lim:8.3f} s  {n / lim:8.1f} jobs/s  "
              f"({lim / total:.2f}x molq without a limit, {lim / base:.2f}x baseline)")
    print("  per run (baseline s / molq s / ratio): "
          + ", ".join(f"{b:.3f}/{t:.3f}/{t / b:.2f}x" for b, t in zip(bases, totals)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

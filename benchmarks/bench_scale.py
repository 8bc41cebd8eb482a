"""Scale and politeness on SLURM: refresh cost against its own scheduler commands, and status
commands per minute with many waiting processes, shared polls against unshared, in one run.

    python benchmarks/bench_scale.py [--cluster acct|noacct] [--jobs 500] [--rounds 3]
                                     [--processes 10] [--wait 30] [--interval 5]

Needs the real test clusters of ``tests/services/slurm.sh`` (found like bench_slurm.py finds
them). Everything runs on a private store in a temporary directory; every job is cancelled.

(a) N held jobs (``--begin=now+1hour``, submitted with ``submit_jobs``); each round times one
    ``refresh_jobs()`` that polls (shared polling off, so every round asks SLURM) against the
    time of the scheduler commands it ran (molq's own command log) and against the same
    ``squeue`` command line run directly (target: refresh <= 1.5x its commands).
(b) ``--processes`` processes each waiting (``watch_jobs``) on one held job for ``--wait`` s,
    with an ``squeue`` shim on PATH counting what SLURM really saw: first with polls shared
    through the store (``poll_interval`` = ``poll_interval_max`` = ``--interval``), then with
    sharing off (every process polls on its own, as before) -- squeue calls per minute.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_slurm import HOLD, Bench, find_conf  # noqa: E402

WORKER = """
import sys
from molq import Cluster, Submitor
from molq.store import JobStore
url, name, conf, jobs_dir, job_id, interval, wait, shared = sys.argv[1:]
cluster = Cluster(name, "slurm", scheduler_options={
    "env": {"SLURM_CONF": conf}, "poll_interval": float(interval), "poll_interval_max": float(interval)})
if shared != "1":
    cluster.scheduler_impl.pacing = None  # every process polls on its own
submitor = Submitor(cluster, store=JobStore(url), jobs_dir=jobs_dir)
try:
    submitor.watch_jobs([job_id], timeout=float(wait))
except TimeoutError:
    pass
"""


def refresh_cost(bench: Bench, url: str, n: int, rounds: int) -> None:
    from molq import Cluster, JobExecution, Submitor
    from molq.store import JobStore

    cluster = Cluster("scale-refresh", "slurm", scheduler_options={"env": {"SLURM_CONF": bench.conf},
                                                                  "extra_sbatch_args": [HOLD]})
    submitor = Submitor(cluster, store=JobStore(url), jobs_dir=str(bench.workdir / "jobs"))
    sched = submitor.scheduler
    sched.pacing = None  # every round polls
    try:
        execution = JobExecution(cwd=str(bench.workdir), output_file="/dev/null")
        start = time.perf_counter()
        handles = submitor.submit_jobs([{"argv": ["true"], "execution": execution} for _ in range(n)])
        submitted = time.perf_counter() - start
        bench.created += [h.scheduler_job_id for h in handles if h.scheduler_job_id]
        failed = [h.error for h in handles if h.error is not None]
        if failed:
            raise SystemExit(f"submission failed: {failed[0]}")
        submitor.refresh_jobs()  # first look: every job goes SUBMITTED -> QUEUED
        sids = [h.scheduler_job_id for h in handles if h.scheduler_job_id]
        argv = sched.dialect.status_argv(sids)
        walls, own, direct = [], [], []
        for _ in range(rounds):
            before = len(sched.command_log)
            t0 = time.perf_counter()
            result = submitor.refresh_jobs()
            walls.append(time.perf_counter() - t0)
            ran = sched.command_log[before:]
            own.append(sum(d for _name, d in ran))
            t0 = time.perf_counter()
            proc = subprocess.run(argv, env=dict(bench.env, SLURM_TIME_FORMAT="%s"), capture_output=True, text=True)
            direct.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise SystemExit(f"squeue failed: {proc.stderr.strip()}")
        wall, cmds, plain = statistics.median(walls), statistics.median(own), statistics.median(direct)
        print(f"(a) one refresh of {n} held jobs, {rounds} rounds, median "
              f"(submitted with submit_jobs in {submitted:.1f} s; last refresh: {result.looked_at} looked at, "
              f"{result.changed} changed; commands: {', '.join(name for name, _ in ran)})")
        print(f"    refresh_jobs()                 : {wall * 1000:8.1f} ms")
        print(f"    its scheduler commands         : {cmds * 1000:8.1f} ms   ratio {wall / cmds:5.2f}x (target <= 1.5x)")
        print(f"    the same squeue run directly   : {plain * 1000:8.1f} ms   ratio {wall / plain:5.2f}x")
    finally:
        bench.scancel(bench.created)
        submitor.close()


def waiting_processes(bench: Bench, url: str, processes: int, wait: float, interval: float) -> None:
    from molq import Cluster, JobExecution, Submitor
    from molq.store import JobStore

    real = shutil.which("squeue")
    if real is None:
        raise SystemExit("squeue is not on PATH")
    shim = bench.workdir / "shim"
    shim.mkdir(exist_ok=True)
    log = bench.workdir / "squeue.log"
    (shim / "squeue").write_text(f"#!/bin/sh\ndate +%s.%N >> {shlex.quote(str(log))}\n"
                                 f"exec {shlex.quote(real)} \"$@\"\n")
    (shim / "squeue").chmod(0o755)
    env = dict(os.environ, PATH=f"{shim}{os.pathsep}{os.environ['PATH']}")
    name = "scale-wait"
    cluster = Cluster(name, "slurm", scheduler_options={"env": {"SLURM_CONF": bench.conf}, "extra_sbatch_args": [HOLD]})
    submitor = Submitor(cluster, store=JobStore(url), jobs_dir=str(bench.workdir / "jobs"))
    try:
        execution = JobExecution(cwd=str(bench.workdir), output_file="/dev/null")
        handles = submitor.submit_jobs([{"argv": ["true"], "execution": execution} for _ in range(processes)])
        bench.created += [h.scheduler_job_id for h in handles if h.scheduler_job_id]
        print(f"(b) {processes} processes each waiting {wait:g} s on a held job, squeue calls seen by SLURM")
        for shared in ("1", "0"):
            log.write_text("")
            start = time.perf_counter()
            procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, name, bench.conf,
                                       str(bench.workdir / "jobs"), h.job_id, str(interval), str(wait), shared],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for h in handles]
            errors = [p.communicate()[1] for p in procs]
            seconds = time.perf_counter() - start
            bad = [e for p, e in zip(procs, errors, strict=True) if p.returncode != 0]
            if bad:
                raise SystemExit(f"a waiting process failed: {bad[0][-500:]}")
            stamps = sorted(float(line) for line in log.read_text().split())
            calls = len(stamps)
            # The rate while they wait: from the first call to the last (process start-up on a
            # loaded machine is not waiting).
            span = stamps[-1] - stamps[0] if calls > 1 else 0.0
            rate = (calls - 1) * 60 / span if span else 0.0
            label = f"shared (interval {interval:g} s)" if shared == "1" else "unshared (each on its own)"
            print(f"    {label:28s}: {calls:4d} calls in {span:5.1f} s of waiting = {rate:6.1f}/min "
                  f"(run {seconds:.1f} s)" + (f"   one per interval: {60 / interval:.1f}/min" if shared == "1" else ""))
    finally:
        bench.scancel(bench.created)
        submitor.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", choices=["acct", "noacct"], default="acct")
    parser.add_argument("--slurm-conf")
    parser.add_argument("--jobs", type=int, default=500, help="held jobs for (a); the 10,000 variant is for a quiet machine")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--wait", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--skip", choices=["a", "b"], action="append", default=[])
    args = parser.parse_args()
    conf = find_conf(args)
    if not conf:
        print("no SLURM test cluster found (tests/services/slurm.sh)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="molq-bench-scale-", dir=Path.home()) as tmp:
        bench = Bench(conf, Path(tmp))
        url = f"sqlite:///{tmp}/jobs.db"
        print(f"SLURM ({args.cluster})")
        try:
            if "a" not in args.skip:
                refresh_cost(bench, url, args.jobs, args.rounds)
            if "b" not in args.skip:
                waiting_processes(bench, url, args.processes, args.wait, args.interval)
        finally:
            bench.scancel(bench.created)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

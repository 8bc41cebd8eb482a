"""Bulk submission on SLURM: ``Submitor.submit_jobs`` against a plain sequential sbatch loop.

    python benchmarks/bench_bulk.py [--cluster acct|noacct] [--jobs 200] [--concurrency 8] [--rounds 3] [--pack]

Needs the real test clusters of ``tests/services/slurm.sh`` (found like bench_slurm.py finds
them). Each round submits N held jobs (``--begin=now+1hour``) both ways, alternating which side
goes first, and compares the medians (target: molq <= 0.5x the loop). With ``--pack`` each round
also submits them with ``pack_bulk`` (one SLURM array for the like jobs), printed next to the
default figure against the same loop. Every job is cancelled.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_slurm import HOLD, Bench, find_conf  # noqa: E402


def molq_bulk(bench: Bench, n: int, concurrency: int, label: str, pack: bool = False) -> float:
    from molq import Cluster, JobExecution, Submitor

    if pack:
        cluster = Cluster(label, "slurm", scheduler_options={
            "env": {"SLURM_CONF": bench.conf}, "extra_sbatch_args": [HOLD], "pack_bulk": True})
        submitor = Submitor(cluster, jobs_dir=str(bench.workdir / "jobs" / label))
    else:
        submitor = bench.submitor(label)
    try:
        jobs = [{"argv": ["true"], "execution": JobExecution(cwd=str(bench.workdir), output_file="/dev/null")}
                for _ in range(n)]
        start = time.perf_counter()
        handles = submitor.submit_jobs(jobs, concurrency=concurrency)
        seconds = time.perf_counter() - start
        failed = [h.error for h in handles if h.error is not None]
        if failed:
            raise SystemExit(f"molq bulk submission failed: {failed[0]}")
        bench.created += [h.scheduler_job_id for h in handles if h.scheduler_job_id]
        return seconds
    finally:
        submitor.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", choices=["acct", "noacct"], default="acct")
    parser.add_argument("--slurm-conf")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pack", action="store_true", help="also measure pack_bulk (one array per like group)")
    args = parser.parse_args()
    conf = find_conf(args)
    if not conf:
        print("no SLURM test cluster found (tests/services/slurm.sh)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="molq-bench-bulk-", dir=Path.home()) as tmp:
        bench = Bench(conf, Path(tmp))
        loop_s: list[float] = []
        bulk_s: list[float] = []
        pack_s: list[float] = []
        times = {"loop": loop_s, "bulk": bulk_s, "pack": pack_s}
        try:
            for rnd in range(args.rounds):
                sides = [("loop", lambda: bench.sbatch_loop(args.jobs)[0]),
                         ("bulk", lambda r=rnd: molq_bulk(bench, args.jobs, args.concurrency, f"bulk{r}"))]
                if args.pack:
                    sides.append(("pack", lambda r=rnd: molq_bulk(bench, args.jobs, args.concurrency, f"pack{r}",
                                                                  pack=True)))
                if rnd % 2:
                    sides.reverse()
                for name, run in sides:
                    times[name].append(run())
                bench.scancel(bench.created)
            loop, bulk = statistics.median(loop_s), statistics.median(bulk_s)
            n = args.jobs
            print(f"SLURM ({args.cluster}), {n} jobs held with {HOLD}, {args.rounds} rounds, median")
            print(f"  plain sequential sbatch loop : {loop * 1000 / n:7.2f} ms/job")
            print(f"  molq submit_jobs (x{args.concurrency:<2})      : {bulk * 1000 / n:7.2f} ms/job")
            print(f"  ratio molq/loop              : {bulk / loop:7.2f}x   (target <= 0.5x)")
            if pack_s:
                pack = statistics.median(pack_s)
                print(f"  molq submit_jobs, pack_bulk  : {pack * 1000 / n:7.2f} ms/job")
                print(f"  ratio packed/loop            : {pack / loop:7.2f}x   (target <= 0.5x)")
        finally:
            bench.scancel(bench.created)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

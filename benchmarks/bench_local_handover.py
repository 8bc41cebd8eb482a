"""Local scheduler hand-over: the delay between a job's end and its dependent's start with
nobody polling (the job's wrapper starts the next job), against two baselines measured in the
same run: the same chain as one plain shell loop (no scheduler at all), and the same molq
chain while a poller refreshes every 0.5 s.

    python benchmarks/bench_local_handover.py [--jobs 21]

Each job writes the time its work starts and ends (``date +%s.%N``); a delay is the next
job's start minus the previous job's end, so it covers the wrapper recording the end, the
queue pass, the start of the next wrapper and its bookkeeping. The submitting process exits
before the first job ends; the benchmark then only watches files.
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

WORK = "date +%s.%N > start.{i}; sleep 0.05; date +%s.%N > end.{i}"

SUBMIT = """
import sys
from molq import Cluster, JobExecution, Submitor
work, n = sys.argv[1], int(sys.argv[2])
s = Submitor(Cluster("bench-handover", "local"))
ex = JobExecution(cwd=work)
prev = None
for i in range(n):
    h = s.submit_job(command=sys.argv[3].format(i=i), execution=ex, after_success=[prev] if prev else None)
    prev = h.job_id
s.close()
"""

POLLER = """
import sys, time
from molq import Cluster, Submitor
s = Submitor(Cluster("bench-handover", "local"))
while True:
    s.refresh_jobs()
    time.sleep(0.5)
"""


def delays(work: str, n: int, timeout: float = 300) -> list[float]:
    deadline = time.monotonic() + timeout
    last = os.path.join(work, f"end.{n - 1}")
    while not os.path.exists(last) or os.path.getsize(last) == 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"the chain did not finish in {timeout} s (see {work})")
        time.sleep(0.05)

    def read(name: str) -> float:
        with open(os.path.join(work, name)) as fh:
            return float(fh.read())

    return [read(f"start.{i + 1}") - read(f"end.{i}") for i in range(n - 1)]


def molq_chain(root: str, n: int, poller: bool) -> list[float]:
    work = tempfile.mkdtemp(dir=root)
    env = dict(os.environ, MOLQ_HOME=os.path.join(work, ".home"))
    watcher = subprocess.Popen([sys.executable, "-c", POLLER], env=env) if poller else None
    try:
        subprocess.run([sys.executable, "-c", SUBMIT, work, str(n), WORK], env=env, check=True)
        return delays(work, n)
    finally:
        if watcher is not None:
            watcher.kill()
            watcher.wait()


def shell_chain(root: str, n: int) -> list[float]:
    work = tempfile.mkdtemp(dir=root)
    script = "; ".join(WORK.format(i=i) for i in range(n))
    subprocess.run(["/bin/sh", "-c", script], cwd=work, check=True)
    return delays(work, n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=21, help="jobs in the chain (delays: jobs - 1)")
    parser.add_argument("--dir", default=os.path.expanduser("~"), help="where scratch files go")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix=".molq-bench-handover-", dir=args.dir)
    try:
        base = shell_chain(scratch, args.jobs)
        alone = molq_chain(scratch, args.jobs, poller=False)
        polled = molq_chain(scratch, args.jobs, poller=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    n = args.jobs - 1

    def ms(xs: list[float]) -> str:
        return f"median {1000 * statistics.median(xs):7.1f} ms  max {1000 * max(xs):7.1f} ms"

    print(f"local scheduler hand-over, chain of {args.jobs} jobs ({n} delays), {os.cpu_count()} cores")
    print(f"  plain sh loop (baseline)       : {ms(base)}")
    print(f"  molq, nobody polling           : {ms(alone)}   (target: median < 1000 ms)")
    print(f"  molq, a poller refreshing 0.5 s: {ms(polled)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

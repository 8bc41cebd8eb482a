"""Command-line start-up: `molq --help`, `molq list` over a 10,000-record store and
`molq submit -- true`, each against `python -c pass`, measured in the same run.

    python benchmarks/bench_cli.py [--records 10000] [--runs 15]
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


def timed(argv: list[str], env: dict[str, str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        samples.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{argv} failed: {proc.stderr.decode()}")
    return statistics.median(samples)


def fill_store(home: str, n: int) -> None:
    """n records in the default store: 1 % active, the rest finished, over 5 clusters."""
    os.environ["MOLQ_HOME"] = home
    from molq.store import JobStore, jobs_table, transitions_table

    store = JobStore()
    now = time.time()
    rows, trs = [], []
    for i in range(n):
        jid = uuid.uuid4().hex
        state = "running" if i % 100 == 0 else ("succeeded" if i % 7 else "failed")
        rows.append({
            "job_id": jid, "cluster_name": f"cluster{i % 5}", "scheduler": "local", "state": state,
            "root_job_id": jid, "attempt": 1, "command_type": "argv", "command_display": f"python run.py --seed {i}",
            "created_at": now - n + i, "submitted_at": now - n + i, "updated_at": now, "metadata_json": "{}",
            "spec_json": "{}", "missing_count": 0, "scheduler_job_id": jid, "exit_code": None if state == "running" else (0 if state == "succeeded" else 1),
        })
        trs.append({"job_id": jid, "old_state": None, "new_state": "created", "timestamp": now, "reason": None})
    with store.engine.begin() as conn:
        conn.execute(jobs_table.insert(), rows)
        conn.execute(transitions_table.insert(), trs)
    store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    # The molq of this interpreter's environment (a `molq` found first on PATH may be another
    # installation, or a version manager's shim that starts a shell first).
    beside = os.path.join(os.path.dirname(sys.executable), "molq")
    molq = beside if os.access(beside, os.X_OK) else (shutil.which("molq") or "")
    cmd = [molq] if molq else [sys.executable, "-m", "molq"]
    with tempfile.TemporaryDirectory(prefix="molq-bench-cli-") as tmp:
        home = os.path.join(tmp, "home")
        fill_store(home, args.records)
        env = dict(os.environ, MOLQ_HOME=home)
        subprocess.run([*cmd, "--help"], env=env, stdout=subprocess.DEVNULL)  # warm the plugin-command index
        base = timed([sys.executable, "-c", "pass"], env, args.runs)
        help_t = timed([*cmd, "--help"], env, args.runs)
        list_t = timed([*cmd, "list"], env, args.runs)
        list_all = timed([*cmd, "list", "--all", "--limit", "50"], env, args.runs)
        submit_t = timed([*cmd, "submit", "--", "true"], env, max(5, args.runs // 2))
    print(f"molq CLI start-up ({args.records} records in the store), median of {args.runs} runs")
    print(f"  python -c pass        : {base * 1000:7.1f} ms")
    for label, value, target in (("molq --help", help_t, "<= 3x"), ("molq list", list_t, "<= 8x"),
                                  ("molq list --all -n 50", list_all, ""), ("molq submit -- true", submit_t, "")):
        print(f"  {label:<22}: {value * 1000:7.1f} ms  {value / base:6.2f}x  {('target ' + target) if target else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

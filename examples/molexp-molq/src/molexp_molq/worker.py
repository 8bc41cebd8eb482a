"""The worker a molq job runs: ``python -m molexp_molq.worker execute <run_dir>``.

It stands in for ``python -m molexp.cli execute <run_dir>``: it reads the run's configuration
from ``run.json``, does the run's work and writes ``result.json`` into the run directory. The
configuration it understands: ``n`` (sum the integers below n), ``sleep`` (seconds to wait
first) and ``exit_code`` (fail with that code after writing the result).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

from molexp_molq.runs import RESULT_FILE, read_run


def execute(run_dir: str) -> int:
    """Run one run directory; the return value is the process exit code."""
    path = Path(run_dir)
    run = read_run(path)
    config = run.get("config", {})
    started = time.time()
    time.sleep(float(config.get("sleep", 0)))
    result = {
        "run_id": run["run_id"],
        "value": sum(range(int(config.get("n", 0)))),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": started,
        "finished_at": time.time(),
    }
    tmp = path / f".{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path / RESULT_FILE)
    print(f"run {run['run_id']}: value={result['value']}")
    return int(config.get("exit_code", 0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m molexp_molq.worker")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="execute one run directory")
    ex.add_argument("run_dir")
    args = parser.parse_args(argv)
    return execute(args.run_dir)


if __name__ == "__main__":
    sys.exit(main())

"""Status refreshes over SSH: 100 refreshes of 50 remote jobs through molq, against 100
``ssh host true`` with a warm shared connection (ControlMaster) and 100 without one, all
measured in the same run.

The jobs are local-scheduler jobs (``sleep 300``) on the remote side of the test sshd of
``tests/services/sshd.sh`` (``MOLQ_TEST_SSH_CONFIG`` / ``MOLQ_TEST_SSH_HOST``, defaults from
``/var/lib/molq-test/sshd``). They are cancelled at the end.

    python benchmarks/bench_ssh.py [--jobs 50] [--refreshes 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def _ssh_target() -> tuple[str, str]:
    directory = os.environ.get("MOLQ_TEST_SSH_DIR") or os.path.join(
        os.environ.get("MOLQ_TEST_DIR", "/var/lib/molq-test"), "sshd"
    )
    config = os.environ.get("MOLQ_TEST_SSH_CONFIG") or os.path.join(directory, "ssh_config")
    host = os.environ.get("MOLQ_TEST_SSH_HOST", "molq-test-remote")
    if not os.path.isfile(config):
        raise SystemExit(f"no ssh config at {config}: start the test sshd with `bash tests/services/sshd.sh`")
    return config, host


def time_commands(argv: list[str], n: int) -> float:
    """Seconds for ``n`` sequential runs of ``argv`` (each must succeed)."""
    start = time.perf_counter()
    for _ in range(n):
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode(errors='replace').strip()}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--refreshes", type=int, default=100)
    args = parser.parse_args()
    config, host = _ssh_target()

    tmp = tempfile.mkdtemp(prefix="molq-bench-ssh-")
    os.environ["MOLQ_HOME"] = os.path.join(tmp, "home")
    control_dir = tempfile.mkdtemp(prefix="mqb-", dir="/tmp")  # unix socket paths must be short

    from molq import Cluster, JobExecution, JobState, Submitor
    from molq_ssh import SshTransport, SshTransportOptions

    transport = SshTransport(SshTransportOptions(host, config_file=config, control_dir=control_dir))
    remote = transport.run(["mktemp", "-d", "/tmp/molq-bench-ssh.XXXXXX"]).stdout.strip()
    if not remote.startswith("/tmp/molq-bench-ssh."):
        raise SystemExit(f"could not create a remote work directory on {host}")
    cluster = Cluster(
        "bench-ssh",
        "local",
        transport=transport,
        # Every job gets a core of its own (`sleep` uses none): all of them run.
        scheduler_options={"max_cpus": max(args.jobs, 1), "spool_dir": f"{remote}/spool"},
    )
    submitor = Submitor(cluster)
    ids: list[str] = []
    try:
        execution = JobExecution(cwd=remote)
        start = time.perf_counter()
        ids = [submitor.submit_job(argv=["sleep", "300"], execution=execution).job_id for _ in range(args.jobs)]
        submitted = time.perf_counter() - start
        submitor.refresh_jobs()
        states = {submitor.get_job(i).state for i in ids}
        if states != {JobState.RUNNING}:
            raise SystemExit(f"expected every job running before timing, got {sorted(s.value for s in states)}")

        # How many ssh processes one refresh costs (counted outside the timed loop).
        calls = 0
        exec_ = transport._exec  # type: ignore[attr-defined]

        def counting(*a: object, **kw: object) -> object:
            nonlocal calls
            calls += 1
            return exec_(*a, **kw)

        transport._exec = counting  # type: ignore[attr-defined]
        submitor.refresh_jobs()
        del transport._exec  # type: ignore[attr-defined]

        # molq and the multiplexed baseline use the same warm master connection.
        mux = ["ssh", *transport.connection_args(), "--", host, "true"]  # type: ignore[attr-defined]
        plain = ["ssh", "-F", config, "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                 host, "true"]
        time_commands(mux, 3)  # warm-up
        time_commands(plain, 3)

        # Interleaved in rounds of ten, so that a change of machine load during the run weighs
        # on all three sides alike.
        molq_time = mux_time = plain_time = 0.0
        done = 0
        while done < args.refreshes:
            k = min(10, args.refreshes - done)
            start = time.perf_counter()
            for _ in range(k):
                submitor.refresh_jobs()
            molq_time += time.perf_counter() - start
            mux_time += time_commands(mux, k)
            plain_time += time_commands(plain, k)
            done += k

        still = {submitor.get_job(i).state for i in ids}
        if still != {JobState.RUNNING}:
            raise SystemExit(f"jobs changed state during the timing: {sorted(s.value for s in still)}")
    finally:
        if ids:
            submitor.cancel_jobs(ids)
        cancelled = sum(submitor.get_job(i).state == JobState.CANCELLED for i in ids)
        transport.run(["rm", "-rf", "--", remote])
        submitor.close()
        transport.close()  # type: ignore[attr-defined]
        shutil.rmtree(control_dir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)

    n = args.refreshes
    per = 1000 / n
    print(f"ssh refresh benchmark: {args.jobs} remote local-scheduler jobs on {host}, {n} refreshes, "
          f"{os.cpu_count()} cores")
    print(f"  submit {args.jobs} jobs                  : {submitted:7.3f} s  {1000 * submitted / args.jobs:7.2f} ms/job")
    print(f"  ssh calls per refresh             : {calls}")
    print(f"  molq refresh_jobs()               : {molq_time:7.3f} s  {molq_time * per:7.2f} ms each")
    print(f"  ssh host true, multiplexed        : {mux_time:7.3f} s  {mux_time * per:7.2f} ms each")
    print(f"  ssh host true, not multiplexed    : {plain_time:7.3f} s  {plain_time * per:7.2f} ms each")
    print(f"  ratio molq / multiplexed ssh      : {molq_time / mux_time:7.2f}x   (target <= 1.5x)")
    print(f"  ratio molq / non-multiplexed ssh  : {molq_time / plain_time:7.2f}x")
    print(f"  jobs cancelled afterwards         : {cancelled}/{len(ids)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

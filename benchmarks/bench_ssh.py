"""SSH benchmarks, each against a baseline measured in the same run.

1. Status refreshes: 100 refreshes of 50 remote jobs through molq, against 100 ``ssh host
   true`` with a warm shared connection (ControlMaster) and 100 without one. The jobs are
   local-scheduler jobs (``sleep 300``) on the remote side, cancelled at the end.
2. Bulk submission: 200 SLURM jobs (held with ``--begin=now+1hour``, so none runs) submitted
   over SSH with one ``Submitor.submit_jobs`` call, against a sequential per-job loop of
   ``ssh host sbatch`` on the same warm shared connection (the least one job costs when each
   one is sent on its own), and against the same bulk call on a local transport (SLURM on
   this machine, no SSH: what the round trips cost). Round trips are ssh processes started
   for commands. Every job is cancelled at the end.

The remote side is the test sshd of ``tests/services/sshd.sh`` (``MOLQ_TEST_SSH_CONFIG`` /
``MOLQ_TEST_SSH_HOST``, defaults from ``/var/lib/molq-test/sshd``), whose alias sends the
``SLURM_CONF`` of the test cluster ``molqacct`` (``tests/services/slurm.sh``).

    python benchmarks/bench_ssh.py [--jobs 50] [--refreshes 100] [--submissions 200]

``--refreshes 0`` or ``--submissions 0`` skips a part.
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
    parser.add_argument("--submissions", type=int, default=200)
    args = parser.parse_args()
    config, host = _ssh_target()
    if args.refreshes > 0:
        bench_refresh(args, config, host)
    if args.submissions > 0:
        bench_submit(args.submissions, config, host)
    return 0


def bench_refresh(args: argparse.Namespace, config: str, host: str) -> None:

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


HOLD = "--begin=now+1hour"


class _Counter:
    """Counts the ssh processes a transport starts for commands."""

    def __init__(self, transport: object) -> None:
        self.transport, self.calls = transport, 0
        self._exec = transport._exec  # type: ignore[attr-defined]

    def __enter__(self) -> _Counter:
        def counting(*a: object, **kw: object) -> object:
            self.calls += 1
            return self._exec(*a, **kw)

        self.transport._exec = counting  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.transport._exec  # type: ignore[attr-defined]


def bench_submit(n: int, config: str, host: str) -> None:
    tmp = tempfile.mkdtemp(prefix="molq-bench-ssh-")
    os.environ["MOLQ_HOME"] = os.path.join(tmp, "home")
    control_dir = tempfile.mkdtemp(prefix="mqb-", dir="/tmp")

    from molq import Cluster, JobExecution, Submitor
    from molq_ssh import SshTransport, SshTransportOptions

    transport = SshTransport(SshTransportOptions(host, config_file=config, control_dir=control_dir))
    remote = transport.run(["mktemp", "-d", "/tmp/molq-bench-ssh.XXXXXX"]).stdout.strip()
    if not remote.startswith("/tmp/molq-bench-ssh."):
        raise SystemExit(f"could not create a remote work directory on {host}")
    conf = transport.run(["sh", "-c", 'printf "%s" "$SLURM_CONF"']).stdout
    if not conf:
        raise SystemExit(f"{host} sends no SLURM_CONF: is the SLURM test cluster set up (tests/services/slurm.sh)?")
    created: list[str] = []
    sbatch = ["sbatch", "--parsable", HOLD, f"--chdir={remote}", "--output=/dev/null", "--wrap", "true"]
    mux = ["ssh", *transport.connection_args(), "--", host, *sbatch]  # type: ignore[attr-defined]

    def molq_bulk(cluster: Cluster, label: str) -> tuple[float, int]:
        submitor = Submitor(cluster, jobs_dir=f"{remote}/jobs/{label}")
        try:
            jobs = [{"argv": ["true"], "execution": JobExecution(cwd=remote, output_file="/dev/null")}
                    for _ in range(n)]
            counter = _Counter(cluster.transport) if isinstance(cluster.transport, SshTransport) else None
            start = time.perf_counter()
            if counter is not None:
                with counter:
                    handles = submitor.submit_jobs(jobs)
            else:
                handles = submitor.submit_jobs(jobs)
            seconds = time.perf_counter() - start
            failed = [h.error for h in handles if h.error is not None]
            if failed:
                raise SystemExit(f"molq bulk submission failed: {failed[0]}")
            created.extend(h.scheduler_job_id for h in handles if h.scheduler_job_id)
            return seconds, counter.calls if counter is not None else 0
        finally:
            submitor.close()

    def loop() -> float:
        start = time.perf_counter()
        for _ in range(n):
            proc = subprocess.run(mux, stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"ssh {host} sbatch failed: {proc.stderr.strip()}")
            created.append(proc.stdout.strip().split(";")[0])
        return time.perf_counter() - start

    extra = {"extra_sbatch_args": [HOLD]}
    over_ssh = Cluster("bench-ssh-submit", "slurm", transport=transport, scheduler_options=extra)
    local = Cluster("bench-local-submit", "slurm", scheduler_options={**extra, "env": {"SLURM_CONF": conf}})
    try:
        time_commands(["ssh", *transport.connection_args(), "--", host, "true"], 3)  # type: ignore[attr-defined]
        molq_bulk(over_ssh, "warm-up-ssh")  # the one-off checks (sbatch lookup, login umask)
        molq_bulk(local, "warm-up-local")
        ssh_s, rounds = molq_bulk(over_ssh, "ssh")
        loop_s = loop()
        local_s, _ = molq_bulk(local, "local")
    finally:
        for i in range(0, len(created), 500):
            transport.run(["scancel", *created[i:i + 500]])
        transport.run(["rm", "-rf", "--", remote])
        transport.close()  # type: ignore[attr-defined]
        shutil.rmtree(control_dir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"ssh bulk submission benchmark: {n} held SLURM jobs on {host}, {os.cpu_count()} cores")
    print(f"  ssh round trips, molq submit_jobs : {rounds}   (target: constant, whatever the number of jobs)")
    print(f"  ssh round trips, per-job loop     : {n}")
    print(f"  molq submit_jobs over ssh         : {ssh_s:7.3f} s  {1000 * ssh_s / n:7.2f} ms/job")
    print(f"  ssh host sbatch, one per job      : {loop_s:7.3f} s  {1000 * loop_s / n:7.2f} ms/job")
    print(f"  molq submit_jobs, local transport : {local_s:7.3f} s  {1000 * local_s / n:7.2f} ms/job")
    print(f"  ratio molq over ssh / per-job loop: {ssh_s / loop_s:7.2f}x")
    print(f"  ratio molq over ssh / local       : {ssh_s / local_s:7.2f}x")


if __name__ == "__main__":
    sys.exit(main())

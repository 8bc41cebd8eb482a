"""SLURM through molq against plain SLURM commands (and psij-python), measured in the same run.

    python benchmarks/bench_slurm.py [--cluster acct|noacct] [--jobs 200] [--rounds 3]

Needs the real test clusters of ``tests/services/slurm.sh``. The cluster's ``slurm.conf`` comes
from ``--slurm-conf``, else ``MOLQ_TEST_SLURM_{ACCT,NOACCT}_CONF`` (environment or
``$MOLQ_TEST_DIR/env.sh``, default ``/var/lib/molq-test``), else ``SLURM_CONF``.

(a) submitting N jobs: ``Submitor.submit_job(argv=["true"])`` vs one bash process running N
    ``sbatch --parsable ... --wrap true``; rounds alternate which side goes first and the
    medians are compared (target: molq <= 1.3x the plain loop).
(b) the same N through psij-python's SLURM executor, run in a child interpreter (``--psij-python``,
    default: this one) so its polling thread and imports stay out of molq's process.
(c) scheduler commands of one ``refresh_jobs()`` with N queued jobs, and with N jobs that just
    finished (target <= 2), with their times.
(d) cancelling the N queued jobs with ``cancel_jobs`` (target: one ``scancel``).
(e) one array job of ``--array-size`` tasks through molq vs that many ``sbatch`` calls
    (target <= 0.1x); ``--array-size 0`` skips it.

Submitted jobs are kept from running with ``--begin=now+1hour`` (the same option for every
side, so the comparison stays fair; psij can only pass options that take a value), then
cancelled. Every job this script created is cancelled at the end, even on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOLD = "--begin=now+1hour"

PSIJ_WORKER = r"""
import json, os, sys, time
from pathlib import Path
try:
    from psij import Job, JobAttributes, JobExecutor, JobSpec
    from psij.executors.batch.slurm import SlurmExecutorConfig
except Exception as exc:  # not installed, or broken
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
    sys.stdout.flush()
    os._exit(0)
n, workdir = int(sys.argv[1]), Path(sys.argv[2])
executor = JobExecutor.get_instance("slurm", config=SlurmExecutorConfig(work_directory=workdir / "psij"))
attributes = {"slurm.begin": "now+1hour"}
ids = []
try:
    start = time.perf_counter()
    for _ in range(n):
        job = Job(JobSpec(executable="true", directory=workdir, attributes=JobAttributes(custom_attributes=attributes)))
        executor.submit(job)
        ids.append(job.native_id)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "ids": ids}))
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "ids": ids}))
sys.stdout.flush()
os._exit(0)  # psij's queue-polling thread must not keep the worker alive
"""


def read_env_file() -> dict[str, str]:
    base = Path(os.environ.get("MOLQ_TEST_DIR", "/var/lib/molq-test"))
    out: dict[str, str] = {}
    for path in (base / "env.sh", base / "slurm" / "env.sh"):
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            key, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and key not in out:
                out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def find_conf(args: argparse.Namespace) -> str | None:
    if args.slurm_conf:
        return args.slurm_conf
    var = f"MOLQ_TEST_SLURM_{args.cluster.upper()}_CONF"
    return os.environ.get(var) or read_env_file().get(var) or os.environ.get("SLURM_CONF")


class Bench:
    def __init__(self, conf: str, workdir: Path) -> None:
        self.conf = conf
        self.workdir = workdir
        self.env = dict(os.environ, SLURM_CONF=conf)
        self.created: list[str] = []  # every SLURM job id this run made, for the final cleanup

    def slurm(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=timeout)

    def scancel(self, ids: list[str]) -> None:
        for start in range(0, len(ids), 2000):
            try:
                self.slurm("scancel", *ids[start : start + 2000])
            except subprocess.TimeoutExpired:
                # A loaded controller may answer late (it usually still cancels): go on with
                # the other ids rather than leave them queued.
                print(f"scancel of {len(ids[start : start + 2000])} jobs timed out; check with squeue",
                      file=sys.stderr)

    # -- (a) baseline: plain sbatch in one bash process ------------------------------------------
    def sbatch_loop(self, n: int) -> tuple[float, float, list[str]]:
        """Wall seconds, client CPU seconds (bash + every sbatch), job ids."""
        script = (
            f'for i in $(seq {n}); do sbatch --parsable {HOLD} --chdir="$1" --output=/dev/null '
            f"--wrap true || exit 1; done"
        )
        cpu = children_cpu()
        start = time.perf_counter()
        proc = subprocess.run(["bash", "-c", script, "bench", str(self.workdir)], env=self.env,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
        cpu = children_cpu() - cpu
        ids = [line.split(";")[0] for line in proc.stdout.split()]
        self.created += ids
        if proc.returncode != 0 or len(ids) != n:
            raise SystemExit(f"plain sbatch loop failed: {proc.stderr.strip()}")
        return seconds, cpu, ids

    # -- molq ------------------------------------------------------------------------------------
    def submitor(self, name: str, extra: tuple[str, ...] = (HOLD,)):
        from molq import Cluster, Submitor

        cluster = Cluster(name, "slurm", scheduler_options={"env": {"SLURM_CONF": self.conf},
                                                            "extra_sbatch_args": list(extra)})
        return Submitor(cluster, jobs_dir=str(self.workdir / "jobs" / name))

    def molq_submit(self, submitor, n: int) -> tuple[float, float, float, list[str]]:
        """Wall seconds for n submissions, seconds of those spent running sbatch, client CPU
        seconds (this process + every sbatch), molq ids."""
        from molq import JobExecution

        execution = JobExecution(cwd=str(self.workdir))
        log = submitor.scheduler.command_log
        first = len(log)
        ids = []
        cpu = time.process_time() + children_cpu()
        start = time.perf_counter()
        try:
            for _ in range(n):
                ids.append(submitor.submit_job(argv=["true"], execution=execution).job_id)
        finally:
            seconds = time.perf_counter() - start
            cpu = time.process_time() + children_cpu() - cpu
            self.created += [sid for sid in (submitor.get_job(j).scheduler_job_id for j in ids) if sid]
        in_sbatch = sum(d for name, d in log[first:] if name == "sbatch")
        return seconds, in_sbatch, cpu, ids

    # -- (b) psij-python -------------------------------------------------------------------------
    def psij_submit(self, python: str, n: int) -> tuple[float | None, str | None]:
        proc = subprocess.run([python, "-c", PSIJ_WORKER, str(n), str(self.workdir)], env=self.env,
                              capture_output=True, text=True, timeout=600)
        try:
            answer = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return None, f"psij worker failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
        self.created += [i for i in answer.get("ids", []) if i]
        if "error" in answer:
            return None, answer["error"]
        return answer["seconds"], None


def children_cpu() -> float:
    """User + system CPU seconds of the waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def commands_of(submitor, action) -> tuple[list[str], float]:
    log = submitor.scheduler.command_log
    first = len(log)
    start = time.perf_counter()
    action()
    return [name for name, _ in log[first:]], time.perf_counter() - start


def wait_done(bench: Bench, sids: list[str], timeout: float = 300) -> None:
    """Wait, asking SLURM directly, until none of ``sids`` is pending or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = bench.slurm("squeue", "--noheader", "--states=all", "--jobs=" + ",".join(sids), "--format=%T")
        states = proc.stdout.split()
        if proc.returncode == 0 and len(states) == len(sids) and not {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING"} & set(states):
            return
        time.sleep(1)
    raise SystemExit("jobs did not finish in time")


def fmt(cmds: list[str]) -> str:
    return f"{len(cmds)} ({' + '.join(cmds) or 'none'})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cluster", choices=("acct", "noacct"), default="acct")
    parser.add_argument("--slurm-conf", help="slurm.conf of the cluster to use (overrides --cluster)")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of (a)-(d); medians are reported")
    parser.add_argument("--array-size", type=int, default=1000, help="tasks of the array in (e); 0 skips it")
    parser.add_argument("--psij-python", default=os.environ.get("MOLQ_BENCH_PSIJ_PYTHON", sys.executable),
                        help="interpreter with psij-python installed (default: this one)")
    parser.add_argument("--dir", default=os.path.expanduser("~"),
                        help="where the scratch store and job directories go (default: the home "
                             "directory, where molq keeps them by default: ~/.molq)")
    parser.add_argument("--profile", action="store_true", help="also profile molq's submissions (cProfile)")
    args = parser.parse_args()
    n = args.jobs

    conf = find_conf(args)
    if not conf or not Path(conf).exists():
        print(f"no slurm.conf found for cluster {args.cluster!r} (start tests/services/slurm.sh)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix=".molq-bench-slurm-", dir=args.dir))
    os.environ["MOLQ_HOME"] = str(tmp / "home")  # a fresh store, before molq opens one
    bench = Bench(conf, tmp)
    probe = bench.slurm("sinfo", "--noheader", "--format=%t", timeout=60)
    if probe.returncode != 0:
        print(f"SLURM at {conf} does not answer: {probe.stderr.strip()}", file=sys.stderr)
        return 2

    began = time.perf_counter()
    base_s, base_cpu, molq_s, molq_cpu, sbatch_s, psij_s = [], [], [], [], [], []
    psij_problem = None
    refresh_queued, refresh_again, cancels = [], [], []
    try:
        # One Submitor for every round, as one program submitting many jobs would use it. Its
        # one-time costs (plugin discovery, store creation) are measured apart, with one job.
        start = time.perf_counter()
        submitor = bench.submitor("bench")
        _, _, _, warm = bench.molq_submit(submitor, 1)
        submitor.cancel_jobs(warm)
        setup_s = time.perf_counter() - start
        for rnd in range(args.rounds):
            # Alternate the order: the cluster's load drifts, and each side gets both slots.
            order = ["base", "molq", "psij"] if rnd % 2 == 0 else ["psij", "molq", "base"]
            for side in order:
                if side == "base":
                    seconds, cpu, ids = bench.sbatch_loop(n)
                    base_s.append(seconds)
                    base_cpu.append(cpu)
                    bench.scancel(ids)
                elif side == "psij" and psij_problem is None:
                    before = len(bench.created)
                    seconds, problem = bench.psij_submit(args.psij_python, n)
                    if problem:
                        psij_problem = problem
                    else:
                        psij_s.append(seconds)
                    bench.scancel(bench.created[before:])
                elif side == "molq":
                    seconds, in_sbatch, cpu, ids = bench.molq_submit(submitor, n)
                    molq_s.append(seconds)
                    sbatch_s.append(in_sbatch)
                    molq_cpu.append(cpu)
                    # (c) one refresh with n queued jobs (all move SUBMITTED -> QUEUED), and again
                    refresh_queued.append(commands_of(submitor, submitor.refresh_jobs))
                    refresh_again.append(commands_of(submitor, submitor.refresh_jobs))
                    # (d) cancel them all
                    cancels.append(commands_of(submitor, lambda ids=ids: submitor.cancel_jobs(ids)))
        submitor.close()

        # (c') n jobs that ran and just finished (SLURM still lists them): one refresh
        runner = bench.submitor("bench-finished", extra=())
        _, _, _, ids = bench.molq_submit(runner, n)
        wait_done(bench, [runner.get_job(j).scheduler_job_id for j in ids])
        refresh_finished = commands_of(runner, runner.refresh_jobs)
        finished_states = {str(runner.get_job(j).state) for j in ids}
        runner.close()

        # (e) one array of m tasks vs m sbatch calls
        array = None
        if args.array_size > 0:
            from molq import JobExecution, JobScheduling

            m = args.array_size
            loop_s, _, loop_ids = bench.sbatch_loop(m)
            bench.scancel(loop_ids)
            arr = bench.submitor("bench-array")
            arr.scheduler  # noqa: B018 -- plugin loading is not part of the submission
            log = arr.scheduler.command_log
            start = time.perf_counter()
            job = arr.submit_job(argv=["true"], scheduling=JobScheduling(array_spec=f"1-{m}"),
                                 execution=JobExecution(cwd=str(tmp)))
            array_s = time.perf_counter() - start
            bench.created.append(job.scheduler_job_id)
            array_cmds = [name for name, _ in log]
            array_cancel = commands_of(arr, lambda: arr.cancel_jobs([job.job_id]))
            arr.close()
            array = (m, loop_s, array_s, array_cmds, array_cancel)

        profile_text = None
        if args.profile:
            import cProfile
            import io
            import pstats

            prof_submitor = bench.submitor("bench-profile")
            prof_submitor.scheduler  # noqa: B018
            profiler = cProfile.Profile()
            profiler.enable()
            _, _, _, ids = bench.molq_submit(prof_submitor, n)
            profiler.disable()
            prof_submitor.cancel_jobs(ids)
            prof_submitor.close()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
            profile_text = out.getvalue()
    finally:
        bench.scancel(bench.created)

    from molq.plugins import get_plugin_manager

    sinks = ", ".join(sink.name for sink in get_plugin_manager().event_sinks())
    med = statistics.median
    base, molq, in_sbatch = med(base_s), med(molq_s), med(sbatch_s)

    def per(seconds: float) -> float:
        return 1000 * seconds / n

    def rounds(values: list[float]) -> str:
        return ", ".join(f"{per(v):.2f}" for v in values)

    print(f"SLURM benchmark: {n} jobs, {args.rounds} rounds (medians), {conf}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"    event sinks loaded: {sinks or 'none'} (each transition also reads the record back for them; "
          f"MOLQ_BLOCK_PLUGINS=<name> leaves one out)")
    print("(a) submission, ms per job")
    print(f"    plain sbatch loop (one bash)    : {per(base):7.2f}   rounds: {rounds(base_s)}")
    print(f"    molq Submitor.submit_job        : {per(molq):7.2f}   rounds: {rounds(molq_s)}")
    print(f"      time inside sbatch            : {per(in_sbatch):7.2f}   molq's own work: {per(molq - in_sbatch):.2f}")
    ratios = [m / b for m, b in zip(molq_s, base_s, strict=True)]
    print(f"    ratio molq / plain sbatch       : {molq / base:7.2f}x  (target <= 1.3x)")
    print(f"      per round                     : {', '.join(f'{r:.2f}' for r in ratios)}; median {med(ratios):.2f}x")
    print(f"    client CPU, plain sbatch loop   : {per(med(base_cpu)):7.2f}   (bash + sbatch processes)")
    print(f"    client CPU, molq                : {per(med(molq_cpu)):7.2f}   (python + sbatch processes)")
    print(f"    molq one-time setup             : {1000 * setup_s:7.0f} ms (plugins, store, first job)")
    print("(b) psij-python, ms per job")
    if psij_s:
        psij = med(psij_s)
        print(f"    psij SlurmJobExecutor.submit    : {per(psij):7.2f}   rounds: {rounds(psij_s)}")
        print(f"    ratio psij / plain sbatch       : {psij / base:7.2f}x")
        print(f"    ratio molq / psij               : {molq / psij:7.2f}x  (per round median "
              f"{med(m / q for m, q in zip(molq_s, psij_s, strict=True)):.2f}x)")
    else:
        print(f"    not measured: {psij_problem}")
        print(f"    (interpreter {args.psij_python}; install psij-python there or pass --psij-python)")
    print("(c) one refresh_jobs()")
    cmds, _ = refresh_queued[-1]
    print(f"    {n} queued, first refresh       : {fmt(cmds)}, {1000 * med(s for _, s in refresh_queued):.0f} ms "
          f"(records move to queued)")
    cmds, _ = refresh_again[-1]
    print(f"    {n} queued, nothing changed     : {fmt(cmds)}, {1000 * med(s for _, s in refresh_again):.0f} ms")
    cmds, secs = refresh_finished
    print(f"    {n} just finished               : {fmt(cmds)}, {1000 * secs:.0f} ms -> {', '.join(sorted(finished_states))}")
    worst = max(len(c) for c, _ in [*refresh_queued, *refresh_again, refresh_finished])
    print(f"    most commands in one refresh    : {worst}  (target <= 2)")
    print("(d) cancel_jobs()")
    cmds, _ = cancels[-1]
    most_scancel = max(c.count("scancel") for c, _ in cancels)
    print(f"    {n} queued jobs                 : {fmt(cmds)}, {1000 * med(s for _, s in cancels):.0f} ms; "
          f"scancel calls: {most_scancel}  (target 1)")
    if array:
        m, loop_s, array_s, array_cmds, (cancel_cmds, _) = array
        print("(e) array")
        print(f"    {m} sbatch calls (one bash)    : {loop_s:7.3f} s")
        print(f"    molq, one job --array=1-{m}   : {array_s:7.3f} s   {fmt(array_cmds)}")
        print(f"    ratio array / loop              : {array_s / loop_s:7.3f}x  (target <= 0.1x); cancel: {fmt(cancel_cmds)}")
    print(f"total {time.perf_counter() - began:.1f} s; {len(bench.created)} SLURM jobs created, all cancelled")
    if profile_text:
        print(profile_text)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

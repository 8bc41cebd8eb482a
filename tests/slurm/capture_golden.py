"""Capture real SLURM output for the golden-file tests (run by hand, not by pytest).

    python3 tests/slurm/capture_golden.py            # needs tests/services/slurm.sh up

For each test cluster (with and without accounting) it submits a fixed set of scenario jobs,
then saves what the dialect's own command lines print while they run and after they ended,
into ``tests/slurm/golden/real/<cluster>/``. ``scenarios.json`` maps each scenario to its job
id so the tests can check every row. Takes about two minutes (one job runs into its limit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from molq_slurm.dialect import SlurmDialect

HERE = Path(__file__).resolve().parent
ENV_FILE = Path(os.environ.get("MOLQ_TEST_DIR", "/var/lib/molq-test")) / "slurm" / "env.sh"
WEIRD_NAME = "weird name | with \"quotes\" and ünïcödé 名前 = x"


def read_env() -> dict[str, str]:
    out = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            out[key] = value.strip().strip('"')
    return out


def run(argv: list[str], conf: str, *, epoch: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SLURM_CONF=conf)
    env.pop("SLURM_TIME_FORMAT", None)
    if epoch:
        env["SLURM_TIME_FORMAT"] = "%s"
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def save(folder: Path, name: str, proc: subprocess.CompletedProcess[str]) -> None:
    (folder / f"{name}.stdout").write_text(proc.stdout)
    if proc.stderr or proc.returncode:
        (folder / f"{name}.stderr").write_text(proc.stderr)
    (folder / f"{name}.rc").write_text(f"{proc.returncode}\n")


def sbatch(conf: str, workdir: str, *args: str, script: str, het: bool = False) -> str:
    path = Path(workdir) / f"job{time.monotonic_ns()}.sh"
    components = "#SBATCH --ntasks=1\n#SBATCH hetjob\n#SBATCH --ntasks=1\n" if het else ""
    path.write_text("#!/bin/bash\n" + components + script + "\n")
    proc = run(["sbatch", "--parsable", f"--chdir={workdir}", f"--output={workdir}/%j.out", *args, str(path)], conf)
    if proc.returncode:
        raise RuntimeError(f"sbatch failed: {proc.stderr}")
    return proc.stdout.strip().split(";")[0]


def capture(cluster: str, conf: str, accounting: bool) -> None:
    dialect = SlurmDialect()
    folder = HERE / "golden" / "real" / cluster
    folder.mkdir(parents=True, exist_ok=True)
    work = tempfile.mkdtemp(prefix="molq-golden-")
    ids: dict[str, str] = {}
    ids["ok"] = sbatch(conf, work, "--job-name=ok", script="exit 0")
    ids["exit7"] = sbatch(conf, work, "--job-name=exit7", script="exit 7")
    ids["exit137"] = sbatch(conf, work, "--job-name=exit137", script="exit 137")
    ids["script_killed"] = sbatch(conf, work, "--job-name=killed", script="kill -9 $$")
    ids["timeout"] = sbatch(conf, work, "--job-name=timeout", "--time=1", script="sleep 300")
    ids["running"] = sbatch(conf, work, "--job-name=running", script="sleep 300")
    ids["cancel_running"] = sbatch(conf, work, "--job-name=cancel-running", script="sleep 300")
    ids["held"] = sbatch(conf, work, "--job-name=held", "--hold", script="true")
    ids["cancel_pending"] = sbatch(conf, work, "--job-name=cancel-pending", "--hold", script="true")
    ids["dep_never"] = sbatch(conf, work, "--job-name=dep-never", f"--dependency=afterok:{ids['exit7']}", script="true")
    ids["array"] = sbatch(conf, work, "--job-name=array", "--array=1-4", script="exit $((SLURM_ARRAY_TASK_ID % 2))")
    ids["array_throttled"] = sbatch(
        conf, work, "--job-name=array-throttled", "--array=1-3%1", script="sleep 20"
    )
    ids["weird_name"] = sbatch(conf, work, f"--job-name={WEIRD_NAME}", "--comment=molq-0123456789abcdef", script="sleep 300")
    ids["requeued"] = sbatch(conf, work, "--job-name=requeued", "--requeue", script="sleep 6; exit 3")
    # Two components; on the one-node test cluster it stays pending, then is cancelled.
    ids["het"] = sbatch(conf, work, "--job-name=het", "--comment=molq-het", script="true", het=True)
    time.sleep(4)
    run(["scontrol", "requeue", ids["requeued"]], conf)
    run(["scancel", ids["cancel_running"]], conf)
    run(["scancel", ids["cancel_pending"]], conf)
    time.sleep(2)

    all_ids = list(ids.values())
    save(folder, "squeue_status_active", run(dialect.status_argv(all_ids), conf))
    save(folder, "squeue_status_active_iso", run(dialect.status_argv(all_ids), conf, epoch=False))
    save(folder, "squeue_queue", run(dialect.queue_argv(None), conf))
    save(folder, "squeue_adopt", run(dialect.adopt_argv(["molq-0123456789abcdef"]) or [], conf))
    save(folder, "squeue_status_unknown_single", run(dialect.status_argv(["999999"]), conf))
    save(folder, "squeue_status_unknown_many", run(dialect.status_argv(["999998", "999999"]), conf))

    # Let the time limit hit (limit 1 min; the controller checks every 30 s).
    deadline = time.time() + 150
    while time.time() < deadline:
        proc = run(["squeue", "--noheader", "--jobs=" + ids["timeout"], "--Format=State"], conf)
        if proc.stdout.strip() in ("", "TIMEOUT"):
            break
        time.sleep(5)
    for key in ("running", "weird_name", "held", "het"):
        run(["scancel", ids[key]], conf)
    time.sleep(22)  # the throttled array finishes its last task
    # The requeued job runs again once its begin time (requeue + ~2 min) has passed.
    deadline = time.time() + 150
    while time.time() < deadline:
        proc = run(["squeue", "--noheader", "--states=all", "--jobs=" + ids["requeued"], "--Format=State"], conf)
        if proc.stdout.strip() not in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING"):
            break
        time.sleep(5)
    time.sleep(3)
    save(folder, "squeue_status_final", run(dialect.status_argv(all_ids), conf))
    save(folder, "scontrol_all", run(dialect.fallback_argv(all_ids), conf))
    save(folder, "scontrol_single", run(dialect.fallback_argv([ids["exit7"]]), conf))
    save(folder, "scontrol_unknown", run(dialect.fallback_argv(["999999"]), conf))
    save(folder, "scancel_finished", run(dialect.cancel_argv([ids["ok"], "999999"]), conf))
    if accounting:
        time.sleep(3)  # slurmctld -> slurmdbd is asynchronous
    save(folder, "sacct", run(dialect.terminal_argv(all_ids, time.time() - 3600) or [], conf))
    run(["scancel", ids["dep_never"]], conf)  # it would stay pending forever
    (folder / "scenarios.json").write_text(json.dumps(ids, indent=2) + "\n")
    print(f"{cluster}: saved {len(list(folder.iterdir()))} files to {folder}")


def main() -> None:
    import threading

    env = read_env()
    wanted = set(sys.argv[1:]) or {"acct", "noacct"}
    threads = [
        threading.Thread(target=capture, args=(env[f"MOLQ_TEST_SLURM_{kind.upper()}_CLUSTER"], env[f"MOLQ_TEST_SLURM_{kind.upper()}_CONF"], kind == "acct"))
        for kind in ("acct", "noacct")
        if kind in wanted
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()

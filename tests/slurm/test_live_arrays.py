"""Arrays above the site's MaxArraySize, on the real SLURM test cluster with accounting.

The test cluster's MaxArraySize is 10001 and the cluster is shared, so it is not lowered: the
profile's ``max_array_size`` override (4 here) stands in for a site limit. What SLURM does with
the parts is real: sacct shows each part as its own array whose indices stay below the limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from molq import Cluster, JobExecution, JobScheduling, Submitor
from molq.array_runner import max_array_size
from molq.arrays import part_ids
from molq.model import JobState
from molq.store import JobStore

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# Task T fails (exit 1) when T % 4 == 3, the first time only: the marker file remembers it ran.
COMMAND = ('m="marks/$SLURM_ARRAY_TASK_ID"; if [ -e "$m" ]; then exit 0; fi; : > "$m"; '
           '[ $((SLURM_ARRAY_TASK_ID % 4)) -ne 3 ]')

#: The lines around MaxArraySize of `scontrol show config` on this project's SLURM 22.05.8
#: test cluster (live capture, 2026-12-02).
SHOW_CONFIG = """Configuration data as of 2026-12-02T00:49:48
AccountingStorageBackupHost = (null)
AccountingStorageEnforce = none
MaxArraySize            = 10001
MaxDBDMsgs              = 100004
MaxJobCount             = 50000
"""


def test_the_site_limit_is_read_once_from_scontrol(acct_cluster) -> None:
    from molq.transport import CommandResult

    sched = Cluster("limits", "slurm", scheduler_options={"env": dict(acct_cluster.env)}).scheduler_impl
    assert sched.dialect.parse_max_array_size(CommandResult(("scontrol",), 0, SHOW_CONFIG, "")) == 10001
    real = acct_cluster.run("scontrol", "show", "config").stdout
    want = int(next(line.split("=")[1] for line in real.splitlines() if line.startswith("MaxArraySize")))
    before = len(sched.command_log)
    assert max_array_size(sched) == want
    assert max_array_size(sched) == want
    assert [name for name, _ in sched.command_log[before:]] == ["scontrol"]  # asked once


def test_a_split_array_is_one_job_and_its_failed_tasks_rerun_in_one_call(acct_cluster, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    cluster = Cluster("split-" + acct_cluster.name, "slurm",
                      scheduler_options={"env": dict(acct_cluster.env), "max_array_size": 4})
    submitor = Submitor(cluster, store=JobStore(url), jobs_dir=str(tmp_path / "jobs"))
    (tmp_path / "marks").mkdir()
    handle = submitor.submit_job(command=COMMAND, execution=JobExecution(cwd=str(tmp_path)),
                                 scheduling=JobScheduling(array_spec="0-9%2"))
    record = submitor.get_job(handle.job_id)
    sids = part_ids(record.scheduler_job_id)
    all_sids = list(sids)
    try:
        assert len(sids) == 3  # 0-3, 4-7 and 8-9 shifted to 0-3, 0-3, 0-1
        final = submitor.watch_jobs([handle.job_id], timeout=180)[0]
        assert final.state == JobState.FAILED and final.exit_code == 1, final
        # Every task ran with the index the user asked for, in the one job directory.
        job_dir = Path(final.job_dir or "")
        codes = {i: (job_dir / f"exit_code.{i}").read_text() for i in range(10)}
        assert codes == {i: ("1\n" if i % 4 == 3 else "0\n") for i in range(10)}
        assert sorted(int(p.name) for p in (tmp_path / "marks").iterdir()) == list(range(10))
        # SLURM saw three arrays, none with an index at or above the limit.
        want = sorted(f"{s}_{i}" for s, n in zip(sids, (4, 4, 2), strict=True) for i in range(n))
        deadline = time.monotonic() + 90
        while True:  # accounting may lag the controller by a few seconds
            tasks = acct_cluster.run("sacct", "-n", "-X", "-P", "--format=JobID", "-j", ",".join(sids)).stdout.split()
            if sorted(tasks) == want or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert sorted(tasks) == want

        env = dict(os.environ, MOLQ_STORE_URL=url, MOLQ_HOME=str(tmp_path / "home"))
        proc = subprocess.run([sys.executable, "-m", "molq", "resubmit", handle.job_id[:10], "--failed-tasks"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "attempt 2" in proc.stdout and "tasks 3,7" in proc.stdout, proc.stdout
        latest = submitor.store.latest_attempts(submitor.cluster_name, [handle.job_id])[handle.job_id]
        all_sids += part_ids(latest.scheduler_job_id)
        assert latest.attempt == 2
        final2 = submitor.watch_jobs([handle.job_id], timeout=180)[0]
        assert final2.state == JobState.SUCCEEDED, final2
        rerun_dir = Path(final2.job_dir or "")
        assert sorted(p.name for p in rerun_dir.glob("exit_code.*")) == ["exit_code.3", "exit_code.7"]
        # Nothing left to re-run: said plainly, no traceback.
        proc = subprocess.run([sys.executable, "-m", "molq", "resubmit", handle.job_id, "--failed-tasks"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and "nothing to re-run" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        if all_sids:
            acct_cluster.run("scancel", *all_sids)
        submitor.close()


def test_dependencies_on_a_split_array_wait_for_every_part(acct_cluster, tmp_path: Path) -> None:
    cluster = Cluster("split-dep-" + acct_cluster.name, "slurm",
                      scheduler_options={"env": dict(acct_cluster.env), "max_array_size": 4})
    submitor = Submitor(cluster, store=JobStore(f"sqlite:///{tmp_path}/jobs.db"), jobs_dir=str(tmp_path / "jobs"))
    (tmp_path / "done").mkdir()
    here = JobExecution(cwd=str(tmp_path))
    # The last part's tasks (8, 9) finish last: a dependency on the first part alone would
    # start the dependent before they are done.
    up = submitor.submit_job(
        command='[ "$SLURM_ARRAY_TASK_ID" -lt 8 ] || sleep 6; : > "done/$SLURM_ARRAY_TASK_ID"',
        execution=here, scheduling=JobScheduling(array_spec="0-9"))
    sids = part_ids(submitor.get_job(up.job_id).scheduler_job_id)
    try:
        assert len(sids) == 3
        ok = submitor.submit_job(command="ls done | wc -l > seen_ok", execution=here, after_success=[up.job_id])
        any_end = submitor.submit_job(command="ls done | wc -l > seen_any", execution=here, after=[up.job_id])
        # "Failed" is "one part failed": no scheduler says that over several jobs, so molq holds it.
        failed = submitor.submit_job(command="true", execution=here, after_failure=[up.job_id])
        assert submitor.get_job(failed.job_id).state == JobState.CREATED
        assert "array submitted in parts" in (submitor.store.internals(submitor.cluster_name, failed.job_id).held
                                              or "")
        for h in (ok, any_end):
            (dep,) = submitor.get_dependencies(h.job_id)
            assert sorted(part_ids(",".join((dep.scheduler_dependency or "").replace("afterok:", "")
                                            .replace("afterany:", "").split(",")))) == sorted(sids)
        finals = submitor.watch_jobs([up.job_id, ok.job_id, any_end.job_id, failed.job_id], timeout=240)
        assert [r.state for r in finals] == [JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.SUCCEEDED,
                                             JobState.FAILED]
        assert (tmp_path / "seen_ok").read_text().strip() == "10"
        assert (tmp_path / "seen_any").read_text().strip() == "10"
        assert "never" in (finals[3].failure_reason or "")
    finally:
        acct_cluster.run("scancel", *sids)
        submitor.close()


CUT_BETWEEN_PARTS = r"""
import sys
from molq import Cluster, JobExecution, JobScheduling, Submitor
from molq.store import JobStore
tmp, conf, sbatch = sys.argv[1:4]
sub = Submitor(Cluster("split-cut", "slurm", scheduler_options={
    "env": {"SLURM_CONF": conf}, "max_array_size": 4, "binaries": {"sbatch": sbatch},
    "extra_sbatch_args": ["--begin=now+1hour"]}), store=JobStore(f"sqlite:///{tmp}/jobs.db"), jobs_dir=tmp + "/jobs")
sub.submit_job(argv=["true"], execution=JobExecution(cwd=tmp), scheduling=JobScheduling(array_spec="0-9"))
print("no crash")
"""

# The first part is accepted; the submitter dies before the second reaches SLURM.
SECOND_PART_KILLS = """#!/bin/sh
echo x >> "$0.calls"
if [ "$(wc -l < "$0.calls")" -ge 2 ]; then kill -9 "$PPID"; exit 1; fi
exec {sbatch} "$@"
"""


def test_a_submission_cut_between_parts_is_not_adopted_as_the_whole_job(acct_cluster, tmp_path: Path) -> None:
    import shutil

    real = shutil.which("sbatch")
    assert real
    stand_in = tmp_path / "sbatch"
    stand_in.write_text(SECOND_PART_KILLS.replace("{sbatch}", real))
    stand_in.chmod(0o700)
    env = dict(os.environ, MOLQ_HOME=str(tmp_path / "home"))
    child = subprocess.run([sys.executable, "-c", CUT_BETWEEN_PARTS, str(tmp_path), acct_cluster.conf, str(stand_in)],
                           env=env, capture_output=True, text=True, timeout=150)
    assert child.returncode == -9, child.stdout + child.stderr
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    (record,) = store.list_jobs("split-cut", include_terminal=True)
    tag = f"molq-{record.job_id}"
    assert record.state == JobState.CREATED and (Path(record.job_dir or "") / "array_parts").read_text() == "3\n"
    sub = Submitor(Cluster("split-cut", "slurm", scheduler_options={
        "env": dict(acct_cluster.env), "max_array_size": 4, "command_timeout": 2}), store=store,
        jobs_dir=str(tmp_path / "jobs"))

    def tagged_alive() -> list[str]:
        out = acct_cluster.run("squeue", "--noheader", "--me", "--states=PENDING,RUNNING",
                               "--Format=ArrayJobID:|,Comment:|").stdout
        return [line.split("|")[0] for line in out.splitlines() if line.strip().endswith(f"|{tag}|")
                or line.split("|")[1:2] == [tag]]

    try:
        assert len(set(tagged_alive())) == 1  # the one part SLURM got
        deadline = time.monotonic() + 90
        while not sub.get_job(record.job_id).is_terminal:
            assert time.monotonic() < deadline, sub.get_job(record.job_id)
            sub.refresh_jobs()
            time.sleep(0.5)
        final = sub.get_job(record.job_id)
        # A third of the array is not the job: the part is cancelled and the job never ran.
        assert final.state == JobState.FAILED and "never ran" in (final.failure_reason or ""), final
        assert tagged_alive() == []
    finally:
        for sid in set(tagged_alive()):
            acct_cluster.run("scancel", sid)
        sub.close()
        store.close()

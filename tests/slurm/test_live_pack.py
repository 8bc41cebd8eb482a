"""``pack_bulk`` on the real SLURM: a bulk submission's like jobs go as one array, and every job
still ends exactly as it would alone (its own exit, cancel, output, dependency)."""

from __future__ import annotations

from pathlib import Path

import pytest
from molq import Cluster, JobExecution, JobState, Submitor
from shims import CommandShim
from waiting import wait_for

pytestmark = [pytest.mark.slurm]

#: sacct's state -> molq's, for the states this test expects.
SACCT = {"COMPLETED": JobState.SUCCEEDED, "FAILED": JobState.FAILED, "CANCELLED": JobState.CANCELLED}


def _sacct_states(cluster, sids: list[str]) -> dict[str, str]:
    proc = cluster.run("sacct", "--parsable2", "--noheader", "--allocations", "--duplicates",
                       "--jobs=" + ",".join(sids), "--format=JobID,State")
    assert proc.returncode == 0, proc.stderr
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        job_id, _, state = line.partition("|")
        out[job_id] = state.split()[0] if state else ""
    return out


def test_packed_jobs_end_exactly_as_alone(slurm_cluster, tmp_path) -> None:
    shim = CommandShim.install(tmp_path, "sbatch")
    cluster = Cluster(f"pack-{slurm_cluster.name}", "slurm", scheduler_options={
        "env": dict(slurm_cluster.env), "pack_bulk": True,
        "binaries": {"sbatch": str(shim.bin_dir / "sbatch")}})
    sub = Submitor(cluster, jobs_dir=str(tmp_path / "jobs"))
    here = JobExecution(cwd=str(tmp_path))
    jobs = []
    for i in range(20):
        tail = "exit 3" if i == 5 else ("sleep 60" if i == 9 else "sleep 1")
        jobs.append({"command": f"echo out-{i}; echo err-{i} >&2; {tail}", "execution": here})
    handles = sub.submit_jobs(jobs, concurrency=4)
    assert [h.error for h in handles] == [None] * 20
    assert len(shim.calls()) == 1  # one sbatch for the whole group
    sids = [h.scheduler_job_id or "" for h in handles]
    array = sids[0].split("_")[0]
    assert sids == [f"{array}_{k}" for k in range(20)]

    later = sub.submit_job(command="echo later", execution=here, after_success=[handles[2].job_id])
    assert len(shim.calls()) == 2
    script = (Path(sub.get_job(later.job_id).job_dir or "") / "job.sh").read_text()
    assert f"#SBATCH --dependency=afterok:{array}_2\n" in script

    def running() -> bool:
        sub.refresh_jobs()
        return sub.get_job(handles[9].job_id).state == JobState.RUNNING

    wait_for(running, timeout=90, interval=0.5, what="packed job 9 running")
    sub.cancel_job(handles[9].job_id)
    sub.watch_jobs([h.job_id for h in handles] + [later.job_id], timeout=180, poll_interval=0.5)

    records = [sub.get_job(h.job_id) for h in handles]
    expected = [JobState.FAILED if i == 5 else JobState.CANCELLED if i == 9 else JobState.SUCCEEDED
                for i in range(20)]
    assert [r.state for r in records] == expected
    assert records[5].exit_code == 3
    assert sub.get_job(later.job_id).state == JobState.SUCCEEDED
    for i, record in enumerate(records):
        job_dir = Path(record.job_dir or "")
        assert (job_dir / "stdout").read_text() == f"out-{i}\n"
        if i != 9:
            assert (job_dir / "stderr").read_text() == f"err-{i}\n"
        # The wrapper recorded the job's own task, not the array.
        assert (job_dir / "slurm_job_id").read_text().strip() == sids[i]
        if i != 9:
            assert (job_dir / "exit_code").read_text().strip() == ("3" if i == 5 else "0")
    if slurm_cluster.accounting:
        # The final states are SLURM's own (accounting may take a moment to record the ends).
        def recorded() -> bool:
            states = _sacct_states(slurm_cluster, sids)
            return all(states.get(sid) in SACCT for sid in sids)

        wait_for(recorded, timeout=60, interval=1, what="sacct has every task's end")
        states = _sacct_states(slurm_cluster, sids)
        assert [SACCT[states[sid]] for sid in sids] == expected

        # Each job's usage is its own task's, as for a job submitted alone.
        def used() -> bool:
            sub.refresh_jobs()
            return all(sub.get_job(h.job_id).usage is not None for h in handles if h is not handles[9])

        wait_for(used, timeout=60, interval=1, what="usage of every packed job")
        usage = sub.get_job(handles[0].job_id).usage
        assert usage is not None and usage.covered_tasks == 1
    sub.close()


def test_unlike_jobs_are_not_packed(slurm_cluster, tmp_path) -> None:
    """Jobs with different directives, or a dependency, go on their own; like ones still pack."""
    from molq import JobResources

    shim = CommandShim.install(tmp_path, "sbatch")
    cluster = Cluster(f"pack2-{slurm_cluster.name}", "slurm", scheduler_options={
        "env": dict(slurm_cluster.env), "pack_bulk": True,
        "binaries": {"sbatch": str(shim.bin_dir / "sbatch")}})
    sub = Submitor(cluster, jobs_dir=str(tmp_path / "jobs"))
    jobs = [{"argv": ["true"]}, {"argv": ["true"]}, {"argv": ["true"], "resources": JobResources(cpu_count=2)},
            {"argv": ["true"]}]
    handles = sub.submit_jobs(jobs)
    assert [h.error for h in handles] == [None] * 4
    array = (handles[0].scheduler_job_id or "").split("_")[0]
    assert [h.scheduler_job_id for h in (handles[0], handles[1], handles[3])] == [
        f"{array}_0", f"{array}_1", f"{array}_2"]
    assert "_" not in (handles[2].scheduler_job_id or "")
    assert len(shim.calls()) == 2
    sub.watch_jobs([h.job_id for h in handles], timeout=120, poll_interval=0.5)
    assert [sub.get_job(h.job_id).state for h in handles] == [JobState.SUCCEEDED] * 4
    sub.close()


"""The local scheduler's queue on the far side of the real test sshd advances with no molq
process alive: the job wrapper hands over on the remote host itself."""

from __future__ import annotations

import time
from typing import Any

import pytest
from molq import Cluster, JobExecution, JobResources, JobState, Submitor
from molq.errors import ConfigError
from molq_ssh import SshTransport
from ssh_support import Sshd


def remote_local(sshd: Sshd, control_dir: str, **options: Any) -> Cluster:
    return Cluster("remote-queue", "local", host=sshd.host,
                   transport_options={"config_file": sshd.config, "control_dir": control_dir},
                   scheduler_options=options)


def read_remote(transport: SshTransport, path: str) -> str | None:
    result = transport.run(["cat", "--", path])
    return result.stdout if result.returncode == 0 else None


@pytest.mark.sshd
def test_a_remote_pipeline_advances_with_nobody_polling(sshd: Sshd, control_dir: str, transport: SshTransport,
                                                        remote_dir: str) -> None:
    cluster = remote_local(sshd, control_dir, spool_dir=f"{remote_dir}/spool", max_cpus=2)
    s = Submitor(cluster)
    ex = JobExecution(cwd=remote_dir)
    a = s.submit_job(command="sleep 1; date +%s.%N > a_end", execution=ex)
    b = s.submit_job(command="date +%s.%N > b_start", execution=ex, after_success=[a.job_id])
    c = s.submit_job(command="touch c_ran", execution=ex, after_failure=[a.job_id])
    d = s.submit_job(command="date +%s.%N > d_start", execution=ex, resources=JobResources(cpu_count=2))
    ids = [a.job_id, b.job_id, c.job_id, d.job_id]
    dirs = {i: s.get_job(i).job_dir for i in ids}
    s.close()  # from here on no molq process runs a pass
    deadline = time.monotonic() + 60
    while read_remote(transport, f"{remote_dir}/d_start") is None:
        assert time.monotonic() < deadline, "the queue did not advance on the remote host"
        time.sleep(0.2)
    never = read_remote(transport, f"{dirs[c.job_id]}/never_ran")
    assert never is not None and "never satisfied" in never
    a_end = float(read_remote(transport, f"{remote_dir}/a_end") or 0)
    b_start = float(read_remote(transport, f"{remote_dir}/b_start") or 0)
    assert 0 <= b_start - a_end < 1.0
    s = Submitor(cluster)
    try:
        records = s.watch_jobs(ids, timeout=60)
        assert [r.state for r in records] == [JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.FAILED,
                                              JobState.SUCCEEDED]
        # Times from the wrapper on the remote host, not from when this refresh looked.
        first = records[0]
        assert first.started_at is not None and first.finished_at is not None
        assert first.started_at >= first.submitted_at
        assert abs(first.finished_at - a_end) < 0.5 and first.finished_at - first.started_at >= 0.9
        assert read_remote(transport, f"{remote_dir}/c_ran") is None
        assert s.scheduler.list_queue() == []
    finally:
        s.close()


@pytest.mark.sshd
def test_remote_list_queue_and_nul_bytes(sshd: Sshd, control_dir: str, transport: SshTransport,
                                        remote_dir: str) -> None:
    s = Submitor(remote_local(sshd, control_dir, spool_dir=f"{remote_dir}/spool", max_cpus=1))
    try:
        with pytest.raises(ConfigError, match="NUL"):
            s.submit_job(argv=["echo", "a\x00b"], execution=JobExecution(cwd=remote_dir))
        assert s.list_jobs(include_terminal=True) == []
        ex = JobExecution(cwd=remote_dir)
        a = s.submit_job(command=f"while [ ! -e {remote_dir}/go ]; do sleep 0.05; done", execution=ex)
        b = s.submit_job(command="true", execution=ex, after_success=[a.job_id])
        rows = s.scheduler.list_queue()
        assert [(r.scheduler_job_id, r.state) for r in rows] == [(a.job_id, JobState.RUNNING),
                                                                 (b.job_id, JobState.QUEUED)]
        assert f"waits for {a.job_id} to end" in rows[1].raw_state
        transport.run(["touch", f"{remote_dir}/go"])
        assert [r.state for r in s.watch_jobs([a.job_id, b.job_id], timeout=60)] == [JobState.SUCCEEDED] * 2
    finally:
        transport.run(["touch", f"{remote_dir}/go"])  # nothing left waiting
        s.close()

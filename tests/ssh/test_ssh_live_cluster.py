"""``Cluster(name, scheduler, host=...)`` builds the SSH transport, and jobs run on the far side.

The local (no batch system) scheduler is driven entirely through the transport here, so a job
submitted this way really runs through ssh: its environment shows the SSH session.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from molq import Cluster, JobExecution, JobState, Submitor
from molq_ssh import SshTransport

pytestmark = pytest.mark.sshd


@pytest.fixture
def cluster(sshd, control_dir: str) -> Cluster:
    return Cluster(
        "ssh-live",
        "local",
        host=sshd.host,
        transport_options={"config_file": sshd.config, "control_dir": control_dir},
    )


def test_cluster_host_builds_an_ssh_transport(cluster: Cluster, sshd, control_dir: str) -> None:
    t = cluster.transport
    assert isinstance(t, SshTransport)
    assert (t.host, t.options.config_file, t.options.control_dir) == (sshd.host, sshd.config, control_dir)


def test_jobs_run_over_ssh(cluster: Cluster, remote_dir: str) -> None:
    submitor = Submitor(cluster)
    ok = submitor.submit_job(
        argv=["sh", "-c", 'printf "%s|%s" "$GREETING" "${SSH_CONNECTION:+over-ssh}" > result.txt'],
        execution=JobExecution(cwd=remote_dir, env={"GREETING": "hi 'there' $x"}),
    )
    bad = submitor.submit_job(argv=["sh", "-c", "exit 3"], execution=JobExecution(cwd=remote_dir))
    assert ok.wait(timeout=60).state == JobState.SUCCEEDED
    assert Path(remote_dir, "result.txt").read_text() == "hi 'there' $x|over-ssh"
    failed = bad.wait(timeout=60)
    assert (failed.state, failed.exit_code) == (JobState.FAILED, 3)


def test_workspace_upload_and_download(cluster: Cluster, remote_dir: str, tmp_path: Path) -> None:
    ws = cluster.get_workspace("w", path=f"{remote_dir}/work space")
    ws.ensure()
    assert ws.exists()
    src = tmp_path / "inputs"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "data.txt").write_text("payload ü")
    ws.upload(src, recursive=True)  # lands as <workspace>/inputs
    assert Path(remote_dir, "work space", "inputs", "sub", "data.txt").read_text() == "payload ü"
    ws.download("inputs", tmp_path / "back", recursive=True)
    assert (tmp_path / "back" / "sub" / "data.txt").read_text() == "payload ü"

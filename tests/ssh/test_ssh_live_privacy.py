"""The local scheduler over the real test sshd: another user reads nothing molq or the job made.

The remote login's umask (022 on the test sshd) would leave output files 0644; molq's spool
scripts and the job wrapper create them 0600 and give the user's command the login umask back.
The other user is uid/gid 65534 (setpriv), reading through folders that anyone may enter (the
sshd runs on this machine, so the remote files are local files).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from molq import Cluster, JobExecution, Submitor
from molq.store import JobStore
from privacy_probe import readable_by_another_user, require_another_user, tree
from ssh_support import Sshd


@pytest.mark.sshd
def test_another_user_reads_nothing_the_remote_local_scheduler_or_the_job_made(sshd: Sshd, control_dir: str) -> None:
    require_another_user()
    base = Path(tempfile.mkdtemp(prefix="molq-ssh-priv-", dir="/tmp"))
    try:
        os.chmod(base, 0o711)
        work = base / "work"
        work.mkdir()
        os.chmod(work, 0o777)  # the user's own folder, shared on purpose
        login_umask = subprocess.run(["ssh", "-F", sshd.config, sshd.host, "umask"],
                                     capture_output=True, text=True, timeout=30).stdout.strip()
        assert login_umask.isdigit()
        cluster = Cluster("priv-remote", "local", host=sshd.host,
                          transport_options={"config_file": sshd.config, "control_dir": control_dir},
                          scheduler_options={"spool_dir": str(base / "spool")})
        store = JobStore(f"sqlite:///{base}/jobs.db")
        try:
            s = Submitor(cluster, store=store, jobs_dir=str(base / "jobs"))
            h = s.submit_job(command="echo secret; echo mine > mine.txt; umask",
                             execution=JobExecution(cwd=str(work), output_file="out.txt", error_file="err.txt"))
            assert s.watch_jobs([h.job_id], timeout=60)[0].state.value == "succeeded"
            job_dir = Path(s.get_job(h.job_id).job_dir)
        finally:
            store.close()
        out = work / "out.txt"
        assert out.read_text() == f"secret\n{int(login_umask, 8):04o}\n"  # the command kept the login umask
        assert stat.S_IMODE((work / "mine.txt").stat().st_mode) == 0o666 & ~int(login_umask, 8)
        made = [base / "spool", job_dir, out, work / "err.txt"]
        paths = tree(made)
        readable = readable_by_another_user(p for p in paths if not p.is_symlink())
        assert len(paths) > 8 and readable == []
    finally:
        shutil.rmtree(base, ignore_errors=True)

"""Privacy on the real SLURM cluster under umask 000: another local user reads nothing.

slurmstepd creates a job's output and error files itself, with the umask sbatch recorded, so
``output_file``/``error_file`` outside the private job directory used to be 0666 under umask
000. molq runs sbatch with ``SLURM_UMASK=0077`` and the wrapper gives the user's command its
umask back (molq_slurm.privacy): every file molq or SLURM creates is private, and a file the
user's command creates keeps the user's umask. ``private_outputs = false`` is SLURM's own
behaviour, for outputs shared on purpose.

The other user is uid/gid 65534 (setpriv), reading through folders that anyone may enter.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from privacy_probe import readable_by_another_user, require_another_user, tree

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CHILD = r"""
import json, sys
from molq import Cluster, JobExecution, Submitor
work, conf, private = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
options = {"env": {"SLURM_CONF": conf}, "private_outputs": private}
s = Submitor(Cluster("priv-slurm", "slurm", scheduler_options=options))
h = s.submit_job(command="echo secret; echo secret-err >&2; echo mine > mine.txt; umask",
                 execution=JobExecution(cwd=work, output_file="out.txt", error_file="err.txt"))
rec = s.watch_jobs([h.job_id], timeout=120, poll_interval=0.5)[0]
print(json.dumps({"state": rec.state.value, "job_dir": s.get_job(h.job_id).job_dir}))
s.close()
"""


@pytest.fixture
def open_base() -> Iterator[Path]:
    require_another_user()
    # Reachable by anyone (0711 up to here): only each file's own mode protects it.
    base = Path(tempfile.mkdtemp(prefix="molq-slurm-priv-", dir="/tmp"))
    os.chmod(base, 0o711)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_under_umask_000(base: Path, conf: str, *, private: bool) -> tuple[dict[str, str], Path, Path]:
    home, work = base / "home", base / "work"
    home.mkdir()
    work.mkdir()
    os.chmod(home, 0o711)
    os.chmod(work, 0o777)  # the user's own folder, shared on purpose
    env = dict(os.environ, MOLQ_HOME=str(home))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(work), conf, "1" if private else "0"], env=env,
                          capture_output=True, text=True, timeout=180, preexec_fn=lambda: os.umask(0))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), home, work


def test_another_user_reads_nothing_molq_or_slurm_created_under_umask_000(acct_cluster, open_base: Path) -> None:
    result, home, work = _run_under_umask_000(open_base, acct_cluster.conf, private=True)
    assert result["state"] == "succeeded", result
    job_dir = Path(result["job_dir"])
    out, err, mine = work / "out.txt", work / "err.txt", work / "mine.txt"
    assert out.read_text() == "secret\n0000\n"  # the user's command ran with the user's umask
    assert err.read_text() == "secret-err\n"
    for p in (out, err):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    # A file of the user's own command follows the user's umask (000): molq narrows nothing else.
    assert stat.S_IMODE(mine.stat().st_mode) == 0o666
    made = [home, job_dir, out, err, *(p for p in work.iterdir() if p.name.startswith(".molq"))]
    paths = tree(made)
    paths = [p for p in paths if not p.is_symlink()]
    assert len(paths) > 8 and readable_by_another_user(paths) == []
    assert readable_by_another_user([mine]) == [str(mine)]  # the probe can read what is readable


def test_shared_outputs_follow_the_submitting_umask_when_asked(acct_cluster, open_base: Path) -> None:
    result, _home, work = _run_under_umask_000(open_base, acct_cluster.conf, private=False)
    assert result["state"] == "succeeded", result
    out = work / "out.txt"
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 and out.read_text() == "secret\n0000\n"
    assert readable_by_another_user([out]) == [str(out)]


def test_over_ssh_outputs_are_private_and_the_command_keeps_the_login_umask(acct_cluster, ssh_login, open_base: Path) -> None:
    from molq import Cluster, JobExecution, Submitor
    from molq.store import JobStore

    work = open_base / "work"
    work.mkdir()
    os.chmod(work, 0o777)
    login_umask = subprocess.run(["ssh", "-F", ssh_login["config"], ssh_login["host"], "umask"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
    assert login_umask.isdigit()
    control_dir = tempfile.mkdtemp(prefix="mqpriv-", dir="/tmp")  # sockets need short paths
    cluster = Cluster("priv-over-ssh", "slurm", host=ssh_login["host"],
                      transport_options={"config_file": ssh_login["config"], "control_dir": control_dir},
                      scheduler_options={"env": acct_cluster.env})
    store = JobStore(f"sqlite:///{open_base}/jobs.db")
    try:
        submitor = Submitor(cluster, store=store, jobs_dir=str(open_base / "jobs"))
        job = submitor.submit_job(command="echo secret; echo mine > mine.txt; umask",
                                  execution=JobExecution(cwd=str(work), output_file="out.txt", error_file="err.txt"))
        assert job.wait(timeout=120).state.value == "succeeded"
    finally:
        store.close()
        close = getattr(cluster.transport, "close", None)
        if callable(close):
            close()
        shutil.rmtree(control_dir, ignore_errors=True)
    out = work / "out.txt"
    assert out.read_text() == f"secret\n{int(login_umask, 8):04o}\n"
    assert [stat.S_IMODE((work / n).stat().st_mode) for n in ("out.txt", "err.txt")] == [0o600, 0o600]
    assert stat.S_IMODE((work / "mine.txt").stat().st_mode) == 0o666 & ~int(login_umask, 8)
    assert readable_by_another_user([out, work / "err.txt"]) == []

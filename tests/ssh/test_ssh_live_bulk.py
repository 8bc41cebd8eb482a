"""Bulk submission to SLURM over the real test sshd: a constant number of ssh round trips however
many jobs, user data that never becomes shell code, per-job failures, and a connection that
breaks in the middle of a batch (no job failed, none sent twice; adoption sorts them out)."""

from __future__ import annotations

import contextlib
import shlex
import time
from typing import Any

import pytest
from molq import Cluster, JobExecution, JobScheduling, JobState, Script, Submitor
from molq.engine import adopt as adopt_mod
from molq.errors import SubmissionUncertainError, SubmitError
from molq_ssh import SshTransport
from ssh_support import Sshd, ssh_calls, unavailable

pytestmark = [pytest.mark.sshd, pytest.mark.slurm]


def slurm_over_ssh(sshd: Sshd, control_dir: str, name: str, **options: Any) -> Cluster:
    return Cluster(name, "slurm", host=sshd.host,
                   transport_options={"config_file": sshd.config, "control_dir": control_dir},
                   scheduler_options=options or None)


@pytest.fixture
def reachable(transport: SshTransport) -> None:
    probe = transport.run(["squeue", "--noheader", "--me"])
    if probe.returncode != 0:
        unavailable(f"SLURM is not reachable over ssh ({probe.stderr.strip()}); run tests/services/up.sh")


def cancel_all(submitor: Submitor) -> None:
    with contextlib.suppress(Exception):
        submitor.cancel_jobs([r.job_id for r in submitor.list_jobs() if not r.is_terminal])


def test_a_batch_costs_the_same_round_trips_whatever_its_size(reachable: None, sshd: Sshd, control_dir: str,
                                                              remote_dir: str) -> None:
    submitor = Submitor(slurm_over_ssh(sshd, control_dir, "bulk-rt"), jobs_dir=f"{remote_dir}/jobs")
    transport = submitor.target.transport
    execution = JobExecution(cwd=remote_dir)
    try:
        submitor.submit_jobs([{"argv": ["true"], "execution": execution}] * 2)  # command -v, umask: once
        sizes = {}
        handles = []
        for n in (3, 40):
            jobs: list[dict[str, Any]] = [{"argv": ["echo", f"{n}-{i}"], "execution": execution} for i in range(n)]
            jobs[1] = {"argv": ["true"], "execution": execution, "scheduling": JobScheduling(partition="no-such")}
            with ssh_calls(transport) as calls:
                got = submitor.submit_jobs(jobs)
            sizes[n] = len(calls)
            assert [i for i, h in enumerate(got) if h.error is not None] == [1]
            assert isinstance(got[1].error, SubmitError) and "partition" in str(got[1].error)
            assert submitor.get_job(got[1].job_id).state == JobState.FAILED
            handles += [(n, i, h) for i, h in enumerate(got) if i != 1]
        # One command creates the job directories, one writes the scripts and runs every sbatch.
        assert sizes == {3: 2, 40: 2}
        sids = [h.scheduler_job_id for _n, _i, h in handles]
        assert len(set(sids)) == len(sids) == 2 + 39
        records = submitor.watch_jobs([h.job_id for _n, _i, h in handles], timeout=240)
        assert {r.state for r in records} == {JobState.SUCCEEDED}
        for (n, i, _h), record in zip(handles, records, strict=True):
            assert transport.read_text(f"{record.job_dir}/stdout") == f"{n}-{i}\n"
    finally:
        cancel_all(submitor)
        submitor.close()


def test_user_data_in_a_batch_is_never_shell_code(reachable: None, sshd: Sshd, control_dir: str,
                                                  remote_dir: str) -> None:
    canary = f"{remote_dir}/canary"
    nasty = f"it's \"q\" $(touch {canary}) `touch {canary}` ${{HOME}} ; |"
    jobs_dir = f"{remote_dir}/jobs {nasty}"  # SLURM refuses a newline in --output paths
    submitor = Submitor(slurm_over_ssh(sshd, control_dir, "bulk-quote"), jobs_dir=jobs_dir)
    transport = submitor.target.transport
    args = [nasty, "a\nb", "\\n", "'", "*"]
    try:
        handles = submitor.submit_jobs([
            {"script": Script.inline(f"#!/bin/sh\nprintf '%s' {shlex.quote(nasty)}\n"),
             "execution": JobExecution(cwd=remote_dir)},
        ] + [
            {"argv": ["printf", "%s|", *args],
             "execution": JobExecution(cwd=remote_dir, job_name=f"q{i} {nasty}", env={"MOLQ_NASTY": nasty + "\nend"})}
            for i in range(4)
        ] + [{"command": 'printf "%s" "$MOLQ_NASTY"', "execution": JobExecution(cwd=remote_dir,
                                                                                env={"MOLQ_NASTY": nasty + "\nend"})}])
        assert [h.error for h in handles] == [None] * 6
        records = submitor.watch_jobs([h.job_id for h in handles], timeout=180)
        assert {r.state for r in records} == {JobState.SUCCEEDED}
        assert transport.read_text(f"{records[0].job_dir}/stdout") == nasty
        for record in records[1:5]:
            assert record.job_dir.startswith(jobs_dir + "/")
            assert transport.read_text(f"{record.job_dir}/stdout") == "".join(a + "|" for a in args)
        assert transport.read_text(f"{records[5].job_dir}/stdout") == nasty + "\nend"
        assert not transport.exists(canary)
    finally:
        cancel_all(submitor)
        submitor.close()


def test_job_directories_that_cannot_be_made_fail_their_jobs_before_any_submission(
    reachable: None, sshd: Sshd, control_dir: str, remote_dir: str, transport: SshTransport,
) -> None:
    transport.write_text(f"{remote_dir}/a-file", "")
    submitor = Submitor(slurm_over_ssh(sshd, control_dir, "bulk-nodir"), jobs_dir=f"{remote_dir}/a-file/jobs")
    try:
        with ssh_calls(submitor.target.transport) as calls:
            handles = submitor.submit_jobs([{"argv": ["true"], "execution": JobExecution(cwd=remote_dir)}] * 3)
        assert all(isinstance(h.error, SubmitError) and "creating" in str(h.error) for h in handles)
        assert {submitor.get_job(h.job_id).state for h in handles} == {JobState.FAILED}
        # The sbatch lookup, the site's submit limits (read once), then the one command that
        # tried the directories: no submission.
        assert len(calls) == 3 and "command -v" in calls[0] and "sacctmgr" in calls[1], calls
    finally:
        submitor.close()


def test_a_slow_batch_goes_in_rounds_and_each_job_once(reachable: None, sshd: Sshd, control_dir: str,
                                                        remote_dir: str, transport: SshTransport) -> None:
    real = transport.run(["sh", "-c", "command -v sbatch"]).stdout.strip()
    slow = f"{remote_dir}/slow-sbatch"
    counter = f"{remote_dir}/slow-calls"
    transport.write_text(slow, f"#!/bin/sh\necho x >> '{counter}'\nsleep 1.2\nexec '{real}' \"$@\"\n", mode=0o755)
    # A submit command may take 2 s: a round stops starting submissions after 1 s, and the
    # jobs it did not reach are marked again and sent in the next one.
    cluster = slurm_over_ssh(sshd, control_dir, "bulk-slow", binaries={"sbatch": slow}, command_timeout=2,
                             extra_sbatch_args=["--begin=now+1hour"])
    submitor = Submitor(cluster, jobs_dir=f"{remote_dir}/jobs")
    try:
        submitor.submit_jobs([{"argv": ["true"], "execution": JobExecution(cwd=remote_dir)}] * 2)  # one-off checks
        before = {r.job_id for r in submitor.list_jobs()}
        with ssh_calls(cluster.transport) as calls:
            handles = submitor.submit_jobs([{"argv": ["true"], "execution": JobExecution(cwd=remote_dir)}] * 4)
        assert [h.error for h in handles] == [None] * 4
        assert len({h.scheduler_job_id for h in handles}) == 4
        assert cluster.transport.read_text(counter) == "x\n" * 6  # every job once
        assert 3 <= len(calls) <= 5, calls  # the directories, then two to four rounds
        assert {submitor.get_job(h.job_id).state for h in handles} == {JobState.SUBMITTED}
        assert before.isdisjoint(h.job_id for h in handles)
    finally:
        cancel_all(submitor)
        submitor.close()


def test_a_connection_lost_mid_batch_leaves_every_job_to_adoption(
    reachable: None, sshd: Sshd, private_control_dir: str, remote_dir: str, transport: SshTransport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = transport.run(["sh", "-c", "command -v sbatch"]).stdout.strip()
    assert real, "sbatch not found over ssh"
    counter = f"{remote_dir}/sbatch-calls"
    # The third sbatch is accepted, then the ssh connection carrying the batch is killed on the
    # server side (its sshd process): what the client saw of the batch is lost with it.
    wrapper = f"{remote_dir}/sbatch-then-cut"
    transport.write_text(wrapper, f"""#!/bin/sh
echo x >> '{counter}'
'{real}' "$@"; s=$?
if [ "$(wc -l < '{counter}')" -eq 3 ]; then
  p=$$
  while p=$(ps -o ppid= -p "$p" | tr -d ' ') && [ "${{p:-1}}" -gt 1 ]; do
    case $(ps -o comm= -p "$p") in sshd*) kill -9 "$p"; sleep 5; break;; esac
  done
fi
exit $s
""", mode=0o755)
    cluster = slurm_over_ssh(sshd, private_control_dir, "bulk-cut", binaries={"sbatch": wrapper},
                             command_timeout=5)
    submitor = Submitor(cluster, jobs_dir=f"{remote_dir}/jobs")
    try:
        handles = submitor.submit_jobs([{"argv": ["sleep", "300"], "execution": JobExecution(cwd=remote_dir)}] * 8)
        assert all(isinstance(h.error, SubmissionUncertainError) for h in handles), [h.error for h in handles]
        assert {submitor.get_job(h.job_id).state for h in handles} == {JobState.CREATED}
        assert cluster.transport.read_text(counter) == "x\n" * 3  # the batch stopped where it broke

        monkeypatch.setattr(adopt_mod, "ORPHAN_AGE_SECONDS", 0.0)
        deadline = time.monotonic() + 60
        while any(submitor.get_job(h.job_id).state == JobState.CREATED for h in handles):
            assert time.monotonic() < deadline, [submitor.get_job(h.job_id) for h in handles]
            submitor.refresh_jobs()
            time.sleep(0.5)
        states = [submitor.get_job(h.job_id).state for h in handles]
        # The three SLURM accepted are adopted (by their molq tag), the five it never saw fail
        # as never run, and nothing was submitted again.
        assert states[:3].count(JobState.FAILED) == 0 and states[3:] == [JobState.FAILED] * 5
        adopted = {submitor.get_job(h.job_id).scheduler_job_id for h in handles[:3]}
        assert len(adopted) == 3 and None not in adopted
        assert cluster.transport.read_text(counter) == "x\n" * 3
    finally:
        cancel_all(submitor)
        submitor.close()

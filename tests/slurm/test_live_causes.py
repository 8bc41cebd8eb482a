"""Why a job ended, and the retry that follows, on the real SLURM with accounting (``molqacct``):
a job over its ``--mem`` (killed by ``JobAcctGatherParams=OverMemoryKill``: no cgroups here),
a job past its ``--time``, and a job an operator requeues while it runs.

Each job goes through ``Submitor`` with a retry policy; the stored family of attempts is what
is checked: the cause of the end, what the next attempt asked for (as ``molq show`` prints
it), and that the grown attempt succeeds. The out-of-memory job asks for
``--acctg-freq=task=1`` (an extra directive of its own) so that its memory is sampled every
second instead of every 30 s, the cluster's setting.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from molq import Cluster, EndCause, JobResources, JobScheduling, RetryBackoff, RetryPolicy, Submitor
from molq.cli.render import resources_text
from molq.model import JobRecord, JobState, SchedulerStatus
from molq.retry_rules import Grow
from molq.transport import CommandResult
from molq.wrapper import STDERR_FILE
from molq_slurm.dialect import SlurmDialect
from waiting import until

pytestmark = pytest.mark.slurm

FAST = RetryBackoff(mode="fixed", initial_seconds=0.0)
# Sample the job's memory every second: OverMemoryKill acts at each sample.
SAMPLE_EVERY_SECOND = JobScheduling(extra_directives=("--acctg-freq=task=1",))
# Touches every byte (b"x" * n fills the buffer), so the pages count in the resident size,
# then holds them long enough for a few samples.
GRAB = "import time\nheld = b'x' * ({mb} << 20)\ntime.sleep({hold})\n"


def _submitor(acct_cluster, tmp_path: Path, label: str) -> Submitor:
    options = {"env": dict(acct_cluster.env), "poll_interval": 0.5, "poll_interval_max": 2.0}
    return Submitor(Cluster(f"{label}-{acct_cluster.name}", "slurm", scheduler_options=options),
                    jobs_dir=str(tmp_path / "jobs"))


def _family(submitor: Submitor, job_id: str) -> list[JobRecord]:
    return sorted(submitor.get_retry_family(job_id), key=lambda r: r.attempt)


def _shown_resources(submitor: Submitor, record: JobRecord) -> str:
    """The ``resources:`` line of ``molq show`` for one attempt."""
    return resources_text(dict(submitor.store.internals(record.cluster_name, record.job_id).spec))


def _accounting(acct_cluster, sid: str) -> SchedulerStatus | None:
    """Accounting's final word on ``sid`` through molq's own sacct command and parser (the
    record may reach the database a moment after the controller has it)."""
    dialect = SlurmDialect()
    argv = dialect.terminal_argv([sid], time.time() - 3600)
    assert argv is not None and argv[0] == "sacct"
    env = dict(os.environ, SLURM_CONF=acct_cluster.conf, SLURM_TIME_FORMAT="%s")

    def final() -> SchedulerStatus | None:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        status = dialect.parse_terminal(CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr),
                                        [sid]).statuses.get(sid)
        return status if status is not None and status.state.is_terminal else None

    return until(final, timeout=60)


def _cleanup(acct_cluster, submitor: Submitor) -> None:
    live = [r.scheduler_job_id for r in submitor.list_jobs() if r.scheduler_job_id]
    if live:
        acct_cluster.run("scancel", *live)
    submitor.close()


#: Jobs over their memory at once. Right after such a job ends, sacct may print an unreadable
#: ReqMem ("16?"; corpus sample sacct_live_overmemorykill_reqmem_unreadable): several jobs give
#: that moment more chances to be read here. The corpus sample is what pins it down.
OOM_JOBS = 3


def test_jobs_over_their_memory_end_out_of_memory_and_succeed_with_more(acct_cluster, tmp_path) -> None:
    submitor = _submitor(acct_cluster, tmp_path, "oom")
    # 200 MB: over the first 128M, well under the grown 384M (the interpreter adds ~10-20 MB).
    policy = RetryPolicy(max_attempts=2, backoff=FAST, on_out_of_memory=Grow(memory=3.0))
    try:
        handles = [submitor.submit_job(argv=[sys.executable, "-c", GRAB.format(mb=200, hold=4)],
                                       resources=JobResources(memory="128M"), scheduling=SAMPLE_EVERY_SECOND,
                                       retry=policy) for _ in range(OOM_JOBS)]
        finals = [handle.wait(timeout=240) for handle in handles]
    finally:
        _cleanup(acct_cluster, submitor)
    for handle, final in zip(handles, finals):
        first, *rest = _family(submitor, handle.job_id)
        story = [(t.new_state, t.reason) for t in submitor.get_transitions(first.job_id)]
        assert (first.state, first.end_cause) == (JobState.FAILED, EndCause.OUT_OF_MEMORY), (first, story)
        assert "out of memory" in (first.failure_reason or ""), first.failure_reason
        assert first.usage is not None and first.usage.requested_memory_bytes == 128 << 20, first.usage
        assert first.usage.max_rss_bytes is not None and first.usage.max_rss_bytes > 128 << 20, first.usage
        # SLURM's own words, in the job's error file (molq's default one)
        assert "exceeded memory limit" in Path(first.job_dir or "", STDERR_FILE).read_text().lower()
        assert _shown_resources(submitor, first) == "memory=128M"
        assert len(rest) == 1, rest
        second = rest[0]
        assert second.attempt == 2 and second.scheduler_job_id != first.scheduler_job_id
        assert _shown_resources(submitor, second) == "memory=384M"
        script = Path(second.job_dir or "", "job.sh").read_text()
        assert "#SBATCH --mem=384M" in script and "#SBATCH --acctg-freq=task=1" in script, script
        assert (final.job_id, final.state, final.exit_code) == (second.job_id, JobState.SUCCEEDED, 0), final
        assert final.end_cause == EndCause.COMPLETED


@pytest.mark.slow
def test_a_job_past_its_time_limit_succeeds_with_a_longer_one(acct_cluster, tmp_path) -> None:
    submitor = _submitor(acct_cluster, tmp_path, "timelimit")
    # slurmctld checks time limits every 30 s, so a 1-minute job is stopped 60-90 s in: the
    # job sleeps past that, and well within the grown limit. Ten times 1 minute is more than
    # the partition allows (short: MaxTime=00:03:00), so the growth stops at 3 minutes.
    policy = RetryPolicy(max_attempts=2, backoff=FAST, on_time_limit=Grow(time=10.0))
    try:
        handle = submitor.submit_job(argv=["sleep", "95"], resources=JobResources(time_limit="1m"), retry=policy,
                                     scheduling=JobScheduling(partition="short"))
        final = handle.wait(timeout=420)
    finally:
        _cleanup(acct_cluster, submitor)
    first, *rest = _family(submitor, handle.job_id)
    assert (first.state, first.end_cause) == (JobState.TIMED_OUT, EndCause.TIME_LIMIT), first
    assert _shown_resources(submitor, first) == "time=00:01:00"
    truth = _accounting(acct_cluster, first.scheduler_job_id or "")
    assert truth is not None and (truth.state, truth.end_cause) == (JobState.TIMED_OUT, EndCause.TIME_LIMIT), truth
    assert len(rest) == 1, rest
    second = rest[0]
    assert second.attempt == 2 and _shown_resources(submitor, second) == "time=00:03:00"  # the partition's cap
    assert (final.job_id, final.state, final.exit_code) == (second.job_id, JobState.SUCCEEDED, 0), final


def _squeue_state(acct_cluster, sid: str) -> str:
    return acct_cluster.run("squeue", "--noheader", "--states=all", f"--jobs={sid}", "--Format=State").stdout.strip()


def test_a_requeued_job_is_tracked_under_its_id_without_a_new_attempt(acct_cluster, tmp_path) -> None:
    submitor = _submitor(acct_cluster, tmp_path, "requeue")
    marker = tmp_path / "first-run"
    # The first run waits to be requeued; the run after the requeue ends by itself, exit 0.
    quoted = shlex.quote(str(marker))
    command = f"if [ ! -e {quoted} ]; then touch {quoted}; sleep 300; fi; sleep 5"
    policy = RetryPolicy(max_attempts=2, backoff=FAST)
    try:
        handle = submitor.submit_job(command=command, retry=policy)
        job_id = handle.job_id

        def running() -> JobRecord | None:
            submitor.refresh_jobs()
            rec = submitor.get_job(job_id)
            return rec if rec.state == JobState.RUNNING and marker.exists() else None

        record = until(running, timeout=60, interval=0.5)
        assert record, submitor.get_job(job_id)
        sid = record.scheduler_job_id
        assert sid
        proc = acct_cluster.run("scontrol", "requeue", sid)
        assert proc.returncode == 0, proc.stderr

        def pending_again() -> JobRecord | None:
            submitor.refresh_jobs()
            rec = submitor.get_job(job_id)
            assert not rec.is_terminal, "the requeue was taken for the job's end"
            return rec if rec.state == JobState.QUEUED and _squeue_state(acct_cluster, sid) == "PENDING" else None

        waiting = until(pending_again, timeout=60, interval=0.3)
        assert waiting and waiting.scheduler_job_id == sid, (submitor.get_job(job_id), _squeue_state(acct_cluster, sid))
        # SLURM holds a requeued job back two minutes; bring it forward (after the second in
        # which its launch credential was revoked: see test_live_state_truth).
        time.sleep(2.0)
        acct_cluster.run("scontrol", "update", f"JobId={sid}", "StartTime=now")
        final = handle.wait(timeout=120)
    finally:
        _cleanup(acct_cluster, submitor)
    family = _family(submitor, job_id)
    assert [r.job_id for r in family] == [job_id], "a requeue is not a new attempt"
    assert (final.job_id, final.attempt, final.scheduler_job_id) == (job_id, 1, sid)
    assert (final.state, final.exit_code, final.end_cause) == (JobState.SUCCEEDED, 0, EndCause.COMPLETED), final
    history = [t.new_state for t in submitor.get_transitions(job_id)]
    assert [s for s in history if s.is_terminal] == [JobState.SUCCEEDED], history
    assert history.count(JobState.RUNNING) == 2 and JobState.LOST not in history, history
    # Accounting keeps both runs under the one id (REQUEUED, then COMPLETED): the latest counts.
    truth = _accounting(acct_cluster, sid)
    assert truth is not None and (truth.state, truth.exit_code, truth.end_cause) == (
        JobState.SUCCEEDED, 0, EndCause.COMPLETED), truth

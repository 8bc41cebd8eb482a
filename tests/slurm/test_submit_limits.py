"""The site's submit limits on SLURM: which refusals are a submit limit, and what molq does
with jobs past the limit (held in molq, released oldest first, cancelled without scancel).
The sacctmgr parsing itself is checked on captured output in tests/corpus/slurm."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "corpus"))

from fakecmd import FakeCommands, on_path  # noqa: E402
from molq import Cluster, JobScheduling, JobState, Submitor, SubState  # noqa: E402
from molq.cli.render import jobs_table  # noqa: E402
from molq.errors import ConfigError  # noqa: E402
from molq.transport import CommandResult  # noqa: E402
from molq_slurm.dialect import SlurmDialect  # noqa: E402

GENERIC = ("sbatch: error: Batch job submission failed: Job violates accounting/QOS policy "
           "(job submit limit, user's size and/or time limits)\n")
NO_ACCOUNTING = {"returncode": 1, "stderr": "You are not running a supported accounting_storage plugin\n"}
REFUSED = {"returncode": 1, "stderr": "sbatch: error: QOSMaxSubmitJobPerUserLimit\n" + GENERIC}


def _refusal(stderr: str) -> CommandResult:
    return CommandResult(("sbatch", "--parsable"), 1, "", stderr)


@pytest.mark.parametrize(("stderr", "is_limit"), [
    ("sbatch: error: QOSMaxSubmitJobPerUserLimit\n" + GENERIC, True),
    ("sbatch: error: AssocMaxSubmitJobLimit\n" + GENERIC, True),
    ("sbatch: error: QOSGrpSubmitJobsLimit\n" + GENERIC, True),
    ("sbatch: error: AssocGrpSubmitJobsLimit\n" + GENERIC, True),
    # Size and time limits share the generic line: waiting never cures them.
    ("sbatch: error: QOSMaxWallDurationPerJobLimit\n" + GENERIC, False),
    ("sbatch: error: QOSGrpGRES\n" + GENERIC, False),
    # The generic line alone (older SLURM) does not say which limit: not called a submit limit.
    (GENERIC, False),
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified\n",
     False),
])
def test_which_refusals_are_a_submit_limit(stderr: str, is_limit: bool) -> None:
    assert SlurmDialect().is_submit_limit(_refusal(stderr)) is is_limit
    assert SlurmDialect().is_submit_limit(CommandResult(("sbatch",), 0, "123\n", "")) is False


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCommands:
    fakes = on_path(tmp_path, monkeypatch)
    fakes.set("squeue", stdout="")
    fakes.set("sacct", stdout="")
    fakes.set("scontrol", stdout="No jobs in the system\n")
    fakes.set("scancel", stdout="")
    return fakes


def _submitor(tmp_path: Path) -> Submitor:
    return Submitor(Cluster("limits", "slurm", scheduler_options={"retry_attempts": 1}),
                    jobs_dir=str(tmp_path / "jobs"))


def test_a_known_limit_holds_what_does_not_fit_and_refuses_an_array_that_never_could(
        fakes: FakeCommands, tmp_path: Path) -> None:
    fakes.set("sacctmgr", {"stdout": "root|q,normal|q||\n"}, {"stdout": "normal|||\nq|2||\n"})
    fakes.set("sbatch", "101\n", "102\n")
    sub = _submitor(tmp_path)
    with pytest.raises(ConfigError, match=r"job 2 of 2: the array has 3 tasks, but the site allows 2"):
        sub.submit_jobs([{"argv": ["true"]}, {"argv": ["true"], "scheduling": JobScheduling(array_spec="1-3")}])
    assert sub.list_jobs() == [] and fakes.calls("sbatch") == []
    handles = sub.submit_jobs([{"argv": ["true"]} for _ in range(4)], concurrency=1)
    assert [h.scheduler_job_id for h in handles] == ["101", "102", None, None]
    assert len(fakes.calls("sbatch")) == 2
    held = sub.get_job(handles[2].job_id)
    assert (held.state, held.sub_state) == (JobState.CREATED, SubState.HELD)
    assert held.sub_state_reason == "waiting for room: the site allows 2 submitted jobs (QOS q)"
    table = jobs_table([held], columns=["id", "state", "sub", "reason"], max_width=400)
    assert "held" in table and "waiting for room: the site allows 2 submitted jobs (QOS q)" in table
    sub.refresh_jobs()  # the two submitted are still there (squeue has not lost them long enough)
    assert len(fakes.calls("sbatch")) == 2
    sub.cancel_jobs([handles[3].job_id])
    assert sub.get_job(handles[3].job_id).state == JobState.CANCELLED
    assert fakes.calls("scancel") == []  # it never reached SLURM


def test_a_refusal_holds_the_job_and_a_refresh_releases_the_oldest_first(fakes: FakeCommands, tmp_path: Path) -> None:
    fakes.set("sacctmgr", NO_ACCOUNTING)  # no limit known to molq
    fakes.set("sbatch", "101\n", REFUSED, REFUSED)
    sub = _submitor(tmp_path)
    handles = sub.submit_jobs([{"argv": ["true"]} for _ in range(3)], concurrency=1)
    assert [(h.scheduler_job_id, h.error) for h in handles] == [("101", None), (None, None), (None, None)]
    for handle in handles[1:]:
        record = sub.get_job(handle.job_id)
        assert record.state == JobState.CREATED
        assert record.sub_state_reason == ("waiting for room: the site refused it for its submit limit "
                                           "(QOSMaxSubmitJobPerUserLimit)")
    # Still full: the oldest is tried, refused again, and the younger one is not tried at all.
    fakes.set("sbatch", REFUSED)
    sub.refresh_jobs()
    assert len(fakes.calls("sbatch")) == 1
    assert sub.get_job(handles[1].job_id).state == JobState.CREATED
    fakes.set("sbatch", "102\n", "103\n")
    sub.refresh_jobs()
    assert [sub.get_job(h.job_id).scheduler_job_id for h in handles] == ["101", "102", "103"]
    released = sub.get_job(handles[2].job_id)
    assert (released.state, released.sub_state, released.sub_state_reason) == (JobState.SUBMITTED, None, None)
    assert sub.store.get_internal("limits", handles[2].job_id)["held"] is None

"""Arrays above LSF's MAX_JOB_ARRAY_SIZE, on the LSF simulator with the limit set to 10.

LSF indices start at 1 and the limit bounds the largest index, so 1-25 becomes three LSF arrays
(1-10, 1-10, 1-5 with offsets 0, 10, 20) tracked as one molq job. The simulator refuses an
index above the limit as LSF does, so a part that was not shifted would fail to submit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lsfsim_harness import LsfSimulator
from molq import Cluster, JobExecution, JobScheduling, Submitor
from molq.array_runner import max_array_size
from molq.arrays import part_ids
from molq.errors import ConfigError, SubmitError
from molq.model import JobState
from molq.store import JobStore

LIMIT = 10

# Each task appends its index to marks/<index>; task 13 fails (exit 3) the first time only.
COMMAND = ('m="marks/$LSB_JOBINDEX"; first=; [ -e "$m" ] || first=1; echo "$LSB_JOBINDEX" >> "$m"; '
           '[ "$LSB_JOBINDEX" != 13 ] || [ -z "$first" ] || exit 3')


@pytest.fixture
def sim(tmp_path: Path) -> LsfSimulator:
    sim = LsfSimulator(tmp_path / "lsf", max_array_size=LIMIT)
    yield sim
    sim.shutdown()


def submitor_on(sim: LsfSimulator, tmp_path: Path, **options: object) -> Submitor:
    cluster = Cluster("lsfsplit", "lsf", scheduler_options={"binaries": sim.binaries, "env": sim.env, **options})
    return Submitor(cluster, store=JobStore(f"sqlite:///{tmp_path}/jobs.db"), jobs_dir=str(tmp_path / "jobs"))


@pytest.fixture
def submitor(sim: LsfSimulator, tmp_path: Path) -> Submitor:
    sub = submitor_on(sim, tmp_path)
    (tmp_path / "marks").mkdir()
    yield sub
    sub.close()


def lsf_arrays(sim: LsfSimulator, sids: list[str]) -> list[list[int]]:
    """The indices LSF itself holds for each part."""
    jobs = sim.state()["jobs"]
    return [sorted(int(i) for i in jobs[sid]["elements"]) for sid in sids]


def marks(tmp_path: Path) -> dict[int, list[str]]:
    return {int(p.name): p.read_text().split() for p in (tmp_path / "marks").iterdir()}


def test_the_simulator_refuses_an_index_above_max_job_array_size_as_lsf_does(sim: LsfSimulator) -> None:
    assert sim.run("bparams", "-a").stdout.count(f"MAX_JOB_ARRAY_SIZE = {LIMIT}\n") == 1
    refused = sim.run("bsub", "-J", f"a[1-{LIMIT + 1}]", "true")
    assert refused.returncode == 255 and refused.stderr.strip() == "Job array index too large. Job not submitted."
    assert sim.bsub("-J", f"a[{LIMIT}]", "true")  # the limit itself is a valid index


def test_the_site_limit_is_read_once_from_bparams(submitor: Submitor) -> None:
    sched = submitor.scheduler
    before = len(sched.command_log)
    assert max_array_size(sched) == LIMIT + 1  # molq's "largest index + 1"
    assert max_array_size(sched) == LIMIT + 1
    assert [name for name, _ in sched.command_log[before:]] == ["bparams"]


def test_a_split_array_runs_every_task_once_and_its_failed_task_reruns(
        submitor: Submitor, sim: LsfSimulator, tmp_path: Path) -> None:
    handle = submitor.submit_job(command=COMMAND, execution=JobExecution(cwd=str(tmp_path)),
                                 scheduling=JobScheduling(array_spec="1-25"))
    sids = part_ids(submitor.get_job(handle.job_id).scheduler_job_id)
    assert lsf_arrays(sim, sids) == [list(range(1, 11)), list(range(1, 11)), list(range(1, 6))]
    final = submitor.watch_jobs([handle.job_id], timeout=120)[0]
    assert final.state == JobState.FAILED and final.exit_code == 3, final
    # Every task ran exactly once, and saw the index the user asked for.
    assert marks(tmp_path) == {i: [str(i)] for i in range(1, 26)}
    job_dir = Path(final.job_dir or "")
    codes = {int(p.name.split(".")[1]): p.read_text() for p in job_dir.glob("exit_code.*")}
    assert codes == {i: ("3\n" if i == 13 else "0\n") for i in range(1, 26)}

    again = submitor.rerun_failed_tasks(handle.job_id)
    latest = submitor.store.latest_attempts(submitor.cluster_name, [handle.job_id])[handle.job_id]
    assert latest.attempt == 2
    # Task 13 alone, shifted to LSF's index 1 (13 is above the limit).
    assert lsf_arrays(sim, part_ids(latest.scheduler_job_id)) == [[1]]
    final2 = submitor.watch_jobs([again.job_id], timeout=120)[0]
    assert final2.state == JobState.SUCCEEDED, final2
    assert marks(tmp_path)[13] == ["13", "13"]
    assert sorted(p.name for p in Path(final2.job_dir or "").glob("exit_code.*")) == ["exit_code.13"]


def test_a_split_array_whose_tasks_all_succeed_is_one_succeeded_job(
        submitor: Submitor, sim: LsfSimulator, tmp_path: Path) -> None:
    handle = submitor.submit_job(command='echo "$LSB_JOBINDEX" >> "marks/$LSB_JOBINDEX"',
                                 execution=JobExecution(cwd=str(tmp_path)),
                                 scheduling=JobScheduling(array_spec="3-30:3%2"))
    sids = part_ids(submitor.get_job(handle.job_id).scheduler_job_id)
    # 3..12 (offset 2), 15..24 (offset 14), 27..30 (offset 26).
    assert lsf_arrays(sim, sids) == [[1, 4, 7, 10], [1, 4, 7, 10], [1, 4]]
    assert all(sim.state()["jobs"][sid]["limit"] == 2 for sid in sids)  # the throttle on every part
    [rec] = submitor.list_jobs(include_terminal=True)
    assert rec.job_id == handle.job_id  # one molq job
    final = submitor.watch_jobs([handle.job_id], timeout=120)[0]
    assert final.state == JobState.SUCCEEDED, final
    assert marks(tmp_path) == {i: [str(i)] for i in range(3, 31, 3)}


def test_cancel_stops_every_part(submitor: Submitor, sim: LsfSimulator, tmp_path: Path) -> None:
    handle = submitor.submit_job(command="sleep 60", scheduling=JobScheduling(array_spec="1-25"))
    sids = part_ids(submitor.get_job(handle.job_id).scheduler_job_id)
    assert len(sids) == 3
    submitor.cancel_job(handle.job_id)
    assert submitor.get_job(handle.job_id).state == JobState.CANCELLED
    for sid in sids:
        stats = {el["stat"] for el in sim.state()["jobs"][sid]["elements"].values()}
        assert stats <= {"EXIT"}, (sid, stats)


def test_the_profile_override_splits_without_asking_bparams(sim: LsfSimulator, tmp_path: Path) -> None:
    sub = submitor_on(sim, tmp_path, max_array_size=4)
    try:
        handle = sub.submit_job(argv=["true"], scheduling=JobScheduling(array_spec="1-10"))
        sids = part_ids(sub.get_job(handle.job_id).scheduler_job_id)
        assert lsf_arrays(sim, sids) == [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2]]
        assert "bparams" not in [name for name, _ in sub.scheduler.command_log]
        assert sub.watch_jobs([handle.job_id], timeout=120)[0].state == JobState.SUCCEEDED
    finally:
        sub.close()


def test_index_zero_is_refused_before_anything_is_submitted(submitor: Submitor, sim: LsfSimulator) -> None:
    with pytest.raises(ConfigError, match="index 0 is below 1"):
        submitor.submit_job(argv=["true"], scheduling=JobScheduling(array_spec="0-20"))
    assert submitor.list_jobs(include_terminal=True) == []  # nothing stored
    assert sim.state()["jobs"] == {}


def test_a_refused_part_cancels_the_parts_already_accepted(sim: LsfSimulator, tmp_path: Path) -> None:
    # The profile says 20 while LSF says 10: the first part (1-20) is refused by LSF itself.
    sub = submitor_on(sim, tmp_path, max_array_size=20)
    try:
        with pytest.raises(SubmitError, match="Job array index too large"):
            sub.submit_job(argv=["true"], scheduling=JobScheduling(array_spec="1-25"))
        assert sim.state()["jobs"] == {}
    finally:
        sub.close()


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "10"])
def test_a_bad_max_array_size_is_refused(bad: object) -> None:
    from molq_lsf import LsfOptions

    with pytest.raises(ConfigError, match="MAX_JOB_ARRAY_SIZE"):
        LsfOptions(max_array_size=bad)  # type: ignore[arg-type]
    assert LsfOptions(max_array_size=10).array_limit == 11
    assert LsfOptions().array_limit is None


def test_adoption_finds_every_part_of_a_split_array(submitor: Submitor) -> None:
    from molq.scheduler import TrackedJob

    handle = submitor.submit_job(command="sleep 30", scheduling=JobScheduling(array_spec="1-25"))
    rec = submitor.get_job(handle.job_id)
    try:
        assert len(part_ids(rec.scheduler_job_id)) == 3
        lost = TrackedJob(handle.job_id, None, rec.job_dir)
        assert submitor.scheduler.find_adoptable([lost]) == {handle.job_id: rec.scheduler_job_id}
    finally:
        submitor.cancel_job(handle.job_id)


def test_a_dependency_on_a_split_array_waits_for_every_part(
        submitor: Submitor, sim: LsfSimulator, tmp_path: Path) -> None:
    here = JobExecution(cwd=str(tmp_path))
    # The last part's tasks (21-25) finish last: a dependency on the first part alone would
    # start the dependent before they are done.
    up = submitor.submit_job(command='[ "$LSB_JOBINDEX" -lt 21 ] || sleep 3; : > "marks/$LSB_JOBINDEX"',
                             execution=here, scheduling=JobScheduling(array_spec="1-25"))
    sids = part_ids(submitor.get_job(up.job_id).scheduler_job_id)
    assert len(sids) == 3
    ok = submitor.submit_job(command="ls marks | wc -l > seen_ok", execution=here, after_success=[up.job_id])
    # bsub -w names every part (the dependency record lists them too).
    ok_sid = submitor.get_job(ok.job_id).scheduler_job_id
    assert sim.state()["jobs"][ok_sid]["dependency_text"] == " && ".join(f"done({sid})" for sid in sids)
    finals = submitor.watch_jobs([up.job_id, ok.job_id], timeout=120)
    assert [r.state for r in finals] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    assert (tmp_path / "seen_ok").read_text().strip() == "25"


def test_each_task_of_a_split_array_has_its_own_output_files(submitor: Submitor, tmp_path: Path) -> None:
    """LSF names a task's default files by its index, which in a part is the shifted one: tasks
    1, 11 and 21 are each LSF's index 1 of their part. Each must still get its own files,
    named by the index the user asked for."""
    handle = submitor.submit_job(command='echo "out $LSB_JOBINDEX"; echo "err $LSB_JOBINDEX" >&2',
                                 scheduling=JobScheduling(array_spec="1-25"))
    final = submitor.watch_jobs([handle.job_id], timeout=120)[0]
    assert final.state == JobState.SUCCEEDED, final
    job_dir = Path(final.job_dir or "")
    for stream in ("out", "err"):
        files = {int(p.name.rsplit(".", 1)[1]): p.read_text() for p in job_dir.glob(f"std{stream}.*")}
        assert files == {i: f"{stream} {i}\n" for i in range(1, 26)}, stream

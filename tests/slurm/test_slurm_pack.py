"""pack_bulk without a cluster: which jobs pack, the dispatcher, and reading packed jobs' tasks
from squeue, sacct and scontrol answers (as SLURM prints them)."""

from __future__ import annotations

import os
import subprocess

import pytest
from molq.batch.packing import PACK_FILE, groups, pack_file_text, pack_tag, read_pack_file
from molq.errors import ConfigError
from molq.model import CompiledDependency, JobExecution, JobResources, JobScheduling, JobState
from molq.transport import CommandResult
from molq_slurm import SlurmDialect, SlurmOptions
from molq_slurm.dialect import SACCT_FIELDS, SLURM_JOB_ID_FILE, STATUS_FIELDS

D = SlurmDialect()


def _groups(specs, max_tasks=1000):
    return groups([(s, f"/jobs/{i}") for i, s in enumerate(specs)], D.pack_key, max_tasks)


def test_like_jobs_pack_whatever_their_names_outputs_and_directories(spec_factory) -> None:
    specs = [spec_factory(), spec_factory(command="echo hi", cwd="/tmp/a"),
             spec_factory(execution=JobExecution(output_file="out.txt", error_file="err.txt")),
             spec_factory(argv=("sleep", "1"))]
    assert _groups(specs) == [[0, 1, 2, 3]]


def test_what_does_not_pack(spec_factory) -> None:
    dep = CompiledDependency(job_id="up", scheduler_job_id="12", condition="after_success")
    specs = [
        spec_factory(), spec_factory(),
        spec_factory(resources=JobResources(cpu_count=2)),  # other directives: its own group
        spec_factory(scheduling=JobScheduling(array_spec="0-3")),  # an array
        spec_factory(dependencies=(dep,)),  # a dependency
        spec_factory(scheduling=JobScheduling(dependency="afterok:12")),  # a raw one
        spec_factory(execution=JobExecution(output_file="out-%j.txt")),  # SLURM's patterns
        spec_factory(scheduling=JobScheduling(email="me@example.org")),  # one mail per array
        spec_factory(),
    ]
    assert _groups(specs) == [[0, 1, 8]]  # a group of one (2) goes the normal way


def test_a_group_above_the_array_limit_is_cut(spec_factory) -> None:
    specs = [spec_factory() for _ in range(7)]
    assert _groups(specs, max_tasks=3) == [[0, 1, 2], [3, 4, 5]]  # the seventh alone: not packed
    assert _groups(specs, max_tasks=1) == []


def test_the_option_is_a_boolean_on_every_batch_backend() -> None:
    assert SlurmOptions(pack_bulk=True).runner_settings()["pack_bulk"] is True
    assert SlurmOptions().runner_settings()["pack_bulk"] is False
    with pytest.raises(ConfigError, match="pack_bulk"):
        SlurmOptions(pack_bulk="yes")  # type: ignore[arg-type]


def test_pack_file_round_trip() -> None:
    tag = pack_tag("abc")
    assert read_pack_file(pack_file_text(tag, 7)) == (tag, 7)
    assert read_pack_file(None) is None
    assert read_pack_file(f"{tag}\n") is None  # cut short: not whole
    assert read_pack_file("molq-abc\n1\n") is None


def test_each_task_runs_its_own_job_as_if_alone(spec_factory, tmp_path) -> None:
    """The dispatcher, run by bash as slurmstepd would run one array task."""
    odd = tmp_path / "it's a \"dir\" $(touch pwned)"
    odd.mkdir()
    specs = [spec_factory(command="echo one; pwd", cwd=str(odd)),
             spec_factory(command='echo "two $SLURM_ARRAY_TASK_ID."; echo e >&2; exit 3')]
    dirs = []
    for i, spec in enumerate(specs):
        job_dir = tmp_path / f"job{i}"
        job_dir.mkdir()
        (job_dir / "job.sh").write_text(D.render_script(spec, str(job_dir)))
        dirs.append(str(job_dir))
    members = list(zip(specs, dirs, strict=True))
    dispatcher = tmp_path / "pack.sh"
    dispatcher.write_text(D.render_pack(pack_tag(specs[0].job_id), members))
    assert "#SBATCH --array=0-1\n" in dispatcher.read_text()
    for k in range(2):
        env = dict(os.environ, SLURM_ARRAY_JOB_ID="500", SLURM_ARRAY_TASK_ID=str(k), SLURM_JOB_ID=str(501 + k))
        proc = subprocess.run(["bash", str(dispatcher)], env=env, capture_output=True, text=True, timeout=30)
        assert proc.returncode == (0, 3)[k]
        assert open(f"{dirs[k]}/{SLURM_JOB_ID_FILE}").read().strip() == f"500_{k}"
        assert open(f"{dirs[k]}/exit_code").read().strip() == ("0", "3")[k]  # not exit_code.<k>
    assert open(f"{dirs[0]}/stdout").read() == f"one\n{odd}\n"
    assert open(f"{dirs[1]}/stdout").read() == "two .\n"  # no array variables: not an array task
    assert open(f"{dirs[1]}/stderr").read() == "e\n"
    assert not (tmp_path / "pwned").exists()


def _squeue(rows: list[str]) -> CommandResult:
    return CommandResult(("squeue",), 0, "\n".join(rows) + "\n", "")


def _row(job_id, array_id, task, state, comment="molq-pack-x", code="0:0") -> str:
    # JobID ArrayJobID ArrayTaskID HetJobID HetJobOffset State Reason exit_code Start End Submit Comment
    return "|".join([job_id, array_id, task, "N/A", "N/A", state, "None", code, "N/A", "N/A", "100", comment])


def test_squeue_asks_for_tasks_one_per_row_only_for_packed_jobs() -> None:
    assert "--array" in D.status_argv(["24_2", "30"])
    assert "--array" not in D.status_argv(["24", "30"])
    assert len(STATUS_FIELDS) == 12


def test_squeue_rows_of_packed_tasks_and_the_collapsed_pending_record() -> None:
    rows = [
        _row("27", "24", "2", "RUNNING"),
        _row("24", "24", "3", "COMPLETED"),  # the array's own id is its last task
        _row("28", "28", "0-1,3", "PENDING"),  # collapsed: tasks 0, 1 and 3, not 2
        _row("31", "31", "[0-7%2]", "PENDING"),
    ]
    wanted = ["24_2", "24_3", "24_0", "28_1", "28_2", "28_3", "31_7"]
    answer = D.parse_status(_squeue(rows), wanted)
    states = {sid: st.state for sid, st in answer.statuses.items()}
    assert states == {"24_2": JobState.RUNNING, "24_3": JobState.SUCCEEDED, "28_1": JobState.QUEUED,
                      "28_3": JobState.QUEUED, "31_7": JobState.QUEUED}


def test_a_packed_task_under_another_jobs_tag_is_not_ours(spec_factory) -> None:
    from molq.scheduler import TrackedJob

    bound = D.for_jobs([TrackedJob(job_id="j1", scheduler_job_id="24_2", job_dir="/jobs/j1")])
    rows = [_row("27", "24", "2", "RUNNING", comment="molq-someone-else")]
    assert bound.parse_status(_squeue(rows), ["24_2"]).statuses == {}
    rows = [_row("27", "24", "2", "RUNNING", comment="molq-pack-j0")]
    assert set(bound.parse_status(_squeue(rows), ["24_2"]).statuses) == {"24_2"}


def _sacct(rows: list[dict[str, str]]) -> CommandResult:
    lines = ["|".join(r.get(f, "") for f in SACCT_FIELDS) for r in rows]
    return CommandResult(("sacct",), 0, "\n".join(lines) + "\n", "")


def test_sacct_records_of_packed_tasks() -> None:
    rows = [
        {"JobID": "24_2", "JobIDRaw": "27", "State": "COMPLETED", "ExitCode": "0:0", "Submit": "100"},
        {"JobID": "24_2.batch", "JobIDRaw": "27.batch", "State": "COMPLETED", "ExitCode": "0:0"},
        {"JobID": "24_5", "JobIDRaw": "30", "State": "FAILED", "ExitCode": "3:0", "Submit": "100"},
        {"JobID": "24_9", "JobIDRaw": "34", "State": "CANCELLED by 1000", "ExitCode": "0:15", "Submit": "100"},
        # tasks cancelled before they started: one collapsed record
        {"JobID": "28_[0-1,3]", "JobIDRaw": "28", "State": "CANCELLED by 1000", "ExitCode": "0:0", "Submit": "100"},
    ]
    answer = D.parse_sacct(_sacct(rows), ["24_2", "24_5", "24_9", "28_1", "28_2"])
    got = {sid: (st.state, st.exit_code) for sid, st in answer.statuses.items()}
    assert got == {"24_2": (JobState.SUCCEEDED, 0), "24_5": (JobState.FAILED, 3),
                   "24_9": (JobState.CANCELLED, got["24_9"][1]), "28_1": (JobState.CANCELLED, None)}
    assert answer.proves_absent("28_2")


def test_scontrol_lines_of_packed_tasks() -> None:
    out = ("JobId=27 ArrayJobId=24 ArrayTaskId=2 JobName=x JobState=COMPLETED Reason=None ExitCode=0:0 "
           "SubmitTime=100 StartTime=101 EndTime=102\n"
           "JobId=28 ArrayJobId=28 ArrayTaskId=1-3 JobName=x JobState=PENDING Reason=BeginTime ExitCode=0:0 "
           "SubmitTime=100 StartTime=Unknown EndTime=Unknown\n")
    answer = D.parse_fallback_terminal(CommandResult(("scontrol",), 0, out, ""), ["24_2", "28_3"])
    assert {sid: st.state for sid, st in answer.statuses.items()} == {"24_2": JobState.SUCCEEDED,
                                                                      "28_3": JobState.QUEUED}


def test_dependencies_and_cancel_name_the_task() -> None:
    dep = CompiledDependency(job_id="up", scheduler_job_id="24_2", condition="after_success")
    assert D.compile_dependencies([dep]) == "afterok:24_2"
    assert D.cancel_argv(["24_2"]) == ["scancel", "24_2"]
    result = CommandResult(("scancel", "24_2"), 1, "",
                           "scancel: error: Kill job error on job id 24_2: Job/step already completing or completed\n")
    assert D.parse_cancel(result, ["24_2"])["24_2"].name == "ALREADY_ENDED"


def test_adoption_finds_the_pack_by_its_tag() -> None:
    rows = ["27|24|2|RUNNING|molq-pack-j0", "28|24|[0-1,3]|PENDING|molq-pack-j0", "40|N/A|N/A|RUNNING|molq-j9"]
    found = D.parse_adopt(_squeue(rows), ["molq-pack-j0", "molq-j9"])
    assert found == {"molq-pack-j0": "24", "molq-j9": "40"}
    assert D.pack_member_id("24", 3) == "24_3"
    assert PACK_FILE == "pack"


def test_pack_bulk_is_refused_where_it_cannot_pack() -> None:
    """PBS and LSF cannot pack (yet): the option is refused, not silently ignored."""
    from molq.transport import LocalTransport
    from molq_pbs import PbsOptions, PbsScheduler

    with pytest.raises(ConfigError, match="pack_bulk"):
        PbsScheduler(LocalTransport(), PbsOptions(pack_bulk=True))

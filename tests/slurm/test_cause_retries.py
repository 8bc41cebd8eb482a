"""Retries that act on the end cause, through molq's public path on SLURM text: the corpus's
real records (out of memory under OverMemoryKill, a time limit, a preemption) answered by fake
``sbatch``/``squeue``/``sacct`` on PATH; the next attempt's script and stored row say what it
asks for."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "corpus"))

from fakecmd import FakeCommands, on_path  # noqa: E402
from molq import Cluster, ConfigError, JobResources, RetryBackoff, RetryPolicy, Submitor  # noqa: E402
from molq.causes import EndCause  # noqa: E402
from molq.model import JobState  # noqa: E402
from molq.retry_rules import Grow, Resubmit  # noqa: E402

NOW = "1700000000"
# Rows in molq's sacct layout (see tests/corpus/slurm/README.md); {tag} is the job's molq tag.
OVER_MEMORY = ("{sid}|{sid}|FAILED|0:9|1700000000|1700000031|None|1700000000|0:9|0|100M||31|00:00:02|1|"
               "billing=1,cpu=1,mem=100M,node=1|n1|{tag}\n"
               "{sid}.batch|{sid}.batch|CANCELLED by 0|0:9|1700000000|1700000031||1700000000||||153600K|31|"
               "00:00:02|1|cpu=1,mem=100M,node=1|n1|\n")
TIMEOUT = "{sid}|{sid}|TIMEOUT|0:0|1700000000|1700000600|TimeLimit|1700000000||0|||600||1||n1|{tag}\n"
PREEMPTED = "{sid}|{sid}|PREEMPTED|0:0|1700000000|1700000100|None|1700000000||0|||100||1||n1|{tag}\n"
COMPLETED = "{sid}|{sid}|COMPLETED|0:0|1700000000|1700000100|None|1700000000||0|||100||1||n1|{tag}\n"


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCommands:
    return on_path(tmp_path, monkeypatch)


def _submitor(fakes: FakeCommands, tmp_path: Path) -> Submitor:
    fakes.set("sbatch", "101\n", "102\n", "103\n")
    fakes.set("squeue", "")  # the controller has forgotten every job: accounting answers
    fakes.set("scontrol", "No jobs in the system\n")
    cluster = Cluster("retry", "slurm", scheduler_options={"retry_attempts": 1, "retry_initial_delay": 0.0})
    return Submitor(cluster, jobs_dir=str(tmp_path / "jobs"))


def _end(fakes: FakeCommands, sub: Submitor, job_id: str, row: str) -> None:
    rec = sub.get_job(job_id)
    sub.store.update_job("retry", job_id, submitted_at=1.0)
    fakes.set("sacct", row.format(sid=rec.scheduler_job_id, tag=f"molq-{job_id}"))
    sub.refresh_jobs()


def _next(sub: Submitor, job_id: str):  # type: ignore[no-untyped-def]
    family = sub.get_retry_family(job_id)
    return family[-1] if len(family) > 1 else None


FAST = RetryBackoff(mode="fixed", initial_seconds=0.0)


def test_out_of_memory_is_retried_with_more_memory(fakes, tmp_path) -> None:
    sub = _submitor(fakes, tmp_path)
    policy = RetryPolicy(max_attempts=2, backoff=FAST)
    first = sub.submit_job(command="true", resources=JobResources(memory="100M"), retry=policy)
    _end(fakes, sub, first.job_id, OVER_MEMORY)
    rec = sub.get_job(first.job_id)
    assert (rec.state, rec.end_cause) == (JobState.FAILED, EndCause.OUT_OF_MEMORY)
    second = _next(sub, first.job_id)
    assert second is not None and second.attempt == 2 and second.scheduler_job_id == "102"
    script = Path(second.job_dir, "job.sh").read_text()
    assert "#SBATCH --mem=150M" in script, script
    spec = sub.store.internals("retry", second.job_id).spec
    assert spec["resources"]["memory"] == 150 << 20
    # ... and its success ends the family.
    _end(fakes, sub, second.job_id, COMPLETED)
    assert sub.get_job(second.job_id).end_cause == EndCause.COMPLETED
    assert _next(sub, first.job_id).job_id == second.job_id


def test_memory_growth_stops_at_its_cap(fakes, tmp_path) -> None:
    sub = _submitor(fakes, tmp_path)
    policy = RetryPolicy(max_attempts=2, backoff=FAST, on_out_of_memory=Grow(memory=4.0, max="120M"))
    first = sub.submit_job(command="true", resources=JobResources(memory="100M"), retry=policy)
    _end(fakes, sub, first.job_id, OVER_MEMORY)
    second = _next(sub, first.job_id)
    assert second is not None
    assert "#SBATCH --mem=120M" in Path(second.job_dir, "job.sh").read_text()


def test_time_limit_is_retried_with_a_longer_limit(fakes, tmp_path) -> None:
    sub = _submitor(fakes, tmp_path)
    policy = RetryPolicy(max_attempts=2, backoff=FAST)
    first = sub.submit_job(command="true", resources=JobResources(time_limit="10m"), retry=policy)
    _end(fakes, sub, first.job_id, TIMEOUT)
    assert sub.get_job(first.job_id).end_cause == EndCause.TIME_LIMIT
    second = _next(sub, first.job_id)
    assert second is not None
    assert "#SBATCH --time=00:20:00" in Path(second.job_dir, "job.sh").read_text()


# A partition with MaxTime=3-00:00:00, the default one (hpcugent/vsc-administration's scontrol
# test data, SLURM 20.11.6), beside one whose name holds spaces and whose MaxTime is UNLIMITED
# (skypilot-org/skypilot's Slurm adaptor tests); abridged.
PARTITIONS = ("PartitionName=mypart AllowGroups=gabc,wheel AllowAccounts=ALL Default=YES QoS=N/A "
              "DefaultTime=01:00:00 MaxNodes=UNLIMITED MaxTime=3-00:00:00 MinNodes=0 Nodes=node1,node2 State=UP\n"
              "PartitionName=CPU nodes (amd) AllowGroups=ALL AllowAccounts=ALL Default=NO QoS=N/A "
              "DefaultTime=NONE MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 Nodes=ip-10-3-0-193 State=UP\n")


@pytest.mark.parametrize(("partition", "grown"), [(None, "3-00:00:00"), ("CPU nodes (amd)", "4-00:00:00")])
def test_time_growth_without_a_max_stops_at_the_partitions_max_time(fakes, tmp_path, partition, grown) -> None:
    from molq import JobScheduling

    sub = _submitor(fakes, tmp_path)
    fakes.set("scontrol", PARTITIONS)
    policy = RetryPolicy(max_attempts=3, backoff=FAST, on_time_limit=Grow(time=2.0))
    first = sub.submit_job(command="true", resources=JobResources(time_limit="2d"),
                           scheduling=JobScheduling(partition=partition), retry=policy)
    _end(fakes, sub, first.job_id, TIMEOUT)
    second = _next(sub, first.job_id)
    assert second is not None
    assert f"#SBATCH --time={grown}\n" in Path(second.job_dir, "job.sh").read_text()
    # Once more: the limits were read once, and a job already at the limit stays there.
    _end(fakes, sub, second.job_id, TIMEOUT)
    third = _next(sub, second.job_id)
    assert third is not None and third.job_id != second.job_id
    if partition is None:
        assert "#SBATCH --time=3-00:00:00\n" in Path(third.job_dir, "job.sh").read_text()
    assert [c["argv"] for c in fakes.calls("scontrol")] == [["--all", "--oneliner", "show", "partition"]]


def test_preempted_job_is_resubmitted_without_counting_an_attempt(fakes, tmp_path) -> None:
    sub = _submitor(fakes, tmp_path)
    # max_attempts=1: no retry at all for a failure of the job's own...
    first = sub.submit_job(command="true", retry=RetryPolicy(max_attempts=1, backoff=FAST))
    _end(fakes, sub, first.job_id, PREEMPTED)
    assert sub.get_job(first.job_id).end_cause == EndCause.PREEMPTED
    second = _next(sub, first.job_id)
    assert second is not None, "a preemption does not use up an attempt"
    # ... while a preemption with a counting rule is an ordinary failure.
    other = sub.submit_job(command="true", retry=RetryPolicy(max_attempts=1, backoff=FAST,
                                                              on_preempted=Resubmit(count_as_attempt=True)))
    _end(fakes, sub, other.job_id, PREEMPTED)
    assert _next(sub, other.job_id) is None


def test_retry_on_causes_limits_retries_to_those_causes(fakes, tmp_path) -> None:
    sub = _submitor(fakes, tmp_path)
    policy = RetryPolicy(max_attempts=3, backoff=FAST, retry_on_causes=["oom"])
    first = sub.submit_job(command="true", retry=policy)
    _end(fakes, sub, first.job_id, TIMEOUT)
    assert _next(sub, first.job_id) is None


@pytest.mark.parametrize("bad", [
    {"retry_on_causes": ["ooom"]},
    {"on_out_of_memory": {"memory": 0.5}},
    {"on_time_limit": {"time": 2.0, "max": "forever"}},
])
def test_invalid_rules_are_refused_before_anything_is_submitted(fakes, tmp_path, bad) -> None:
    sub = _submitor(fakes, tmp_path)
    with pytest.raises((ConfigError, TypeError)):
        data = dict(bad)
        if "on_out_of_memory" in data:
            data["on_out_of_memory"] = Grow(**data["on_out_of_memory"])
        if "on_time_limit" in data:
            data["on_time_limit"] = Grow(**data["on_time_limit"])
        sub.submit_job(command="true", retry=RetryPolicy(max_attempts=2, **data))
    assert fakes.calls("sbatch") == [] and sub.list_jobs() == []

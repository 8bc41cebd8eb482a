"""Bad input is refused before anything is persisted or submitted."""

from __future__ import annotations

import pytest
from molq import Cluster, ConfigError, JobExecution, Submitor
from molq.store import JobStore


@pytest.fixture
def store(tmp_path):
    s = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    yield s
    s.close()


def _nothing_stored(store, cluster):
    assert store.list_jobs(cluster, include_terminal=True) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"argv": ["echo", "a\x00b"]},
        {"argv": ["echo", "\udc80"]},
        {"command": "echo \x00"},
        {"argv": ["true"], "execution": JobExecution(cwd="/tmp/a\nb")},
        {"argv": ["true"], "execution": JobExecution(cwd="/tmp/a\x00b")},
        {"argv": ["true"], "metadata": {"k": "\udcff"}},
    ],
)
def test_text_no_scheduler_can_pass_is_refused_first(store, tmp_path, kwargs):
    sub = Submitor(Cluster("v", "local"), store=store, jobs_dir=str(tmp_path / "jobs"))
    with pytest.raises(ConfigError):
        sub.submit_job(**kwargs)
    _nothing_stored(store, "v")


def test_a_missing_working_directory_is_refused(store, tmp_path):
    sub = Submitor(Cluster("v", "local"), store=store, jobs_dir=str(tmp_path / "jobs"))
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(ConfigError, match="does not exist"):
        sub.submit_job(argv=["true"], execution=JobExecution(cwd=str(missing)))
    assert not missing.parent.exists()
    _nothing_stored(store, "v")


@pytest.mark.parametrize("scheduler", ["slurm", "pbs", "lsf"])
def test_a_missing_submit_command_is_refused_before_the_record(store, tmp_path, scheduler):
    key = {"slurm": "sbatch", "pbs": "qsub", "lsf": "bsub"}[scheduler]
    cluster = Cluster("b", scheduler, scheduler_options={"binaries": {key: str(tmp_path / "nope" / key)}})
    sub = Submitor(cluster, store=store, jobs_dir=str(tmp_path / "jobs"))
    with pytest.raises(ConfigError, match=f"submit command .*{key}.* was not found"):
        sub.submit_job(argv=["true"])
    _nothing_stored(store, "b")

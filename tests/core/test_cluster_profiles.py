"""Cluster, Workspace/Project and profiles."""

import pytest
from molq import (
    Cluster,
    ConfigError,
    JobExecution,
    JobResources,
    JobState,
    MolqConfig,
    MolqProfile,
    RetryPolicy,
    Submitor,
    SubmitorDefaults,
    load_config,
    load_profile,
    save_config,
)
from molq.local import LocalSchedulerOptions


def test_workspace_and_project_round_trip(tmp_path):
    cluster = Cluster("ws")
    ws = cluster.get_workspace("data", path=str(tmp_path / "remote ws"))
    assert not ws.exists()
    ws.ensure()
    assert ws.exists()
    proj = cluster.get_project("p1", workspace=ws)
    assert proj.path == f"{ws.path}/p1"
    local = tmp_path / "input.txt"
    local.write_text("42\n")
    proj.upload(local)
    submitor = Submitor(cluster)
    rec = proj.submit_job(submitor, command="cat input.txt > doubled.txt; cat input.txt >> doubled.txt",
                          execution=JobExecution(job_name="in-project")).wait(timeout=20)
    assert rec.state == JobState.SUCCEEDED and rec.cwd == proj.path
    proj.download("doubled.txt", tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "42\n42\n"
    other = Submitor(Cluster("elsewhere"))
    with pytest.raises(ConfigError):
        proj.submit_job(other, argv=["true"])
    with pytest.raises(ConfigError):
        ws.download("../escape", tmp_path / "x")
    with pytest.raises(ConfigError):
        cluster.get_workspace("rel", path="relative/path")


def test_profiles_build_cluster_and_submitor(tmp_path, molq_home):
    prof = MolqProfile(
        name="two-cores",
        scheduler="local",
        cluster_name="bench",
        scheduler_options={"max_cpus": 2},
        defaults=SubmitorDefaults(resources=JobResources(cpu_count=1)),
        retry=RetryPolicy(max_attempts=2),
        jobs_dir=str(tmp_path / "jobs"),
    )
    path = save_config(MolqConfig().with_profile(prof, make_default=True))
    assert path == molq_home / "config.toml"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_profile("two-cores") == prof
    cluster = Cluster.from_profile("two-cores")
    assert cluster.name == "bench" and cluster.scheduler_options == LocalSchedulerOptions(max_cpus=2)
    sub = Submitor.from_profile("two-cores")
    assert sub.default_retry_policy == RetryPolicy(max_attempts=2)
    rec = sub.submit_job(argv=["true"]).wait(timeout=20)
    assert rec.job_dir.startswith(str(tmp_path / "jobs"))
    assert rec.profile_name == "two-cores"
    with pytest.raises(ConfigError, match="unknown profile 'nope'.*two-cores"):
        load_profile("nope")


def test_bad_profile_file_is_a_clear_error(molq_home):
    (molq_home / "config.toml").write_text('[profiles.x]\nscheduler = "local"\nbogus = 1\n')
    with pytest.raises(ConfigError, match="bogus"):
        load_config()
    (molq_home / "config.toml").write_text('[profiles.x]\ndefaults.resources.memory = "lots"\n')
    with pytest.raises(ConfigError, match="memory"):
        load_config()
    (molq_home / "config.toml").write_text('not toml [')
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config()


def test_legacy_queue_key_in_profiles(molq_home):
    (molq_home / "config.toml").write_text('[profiles.old]\nscheduler = "local"\n[profiles.old.defaults.scheduling]\nqueue = "short"\n')
    assert load_profile("old").defaults.scheduling.partition == "short"


def test_scheduler_options_are_validated():
    with pytest.raises(ConfigError):
        Cluster("x", scheduler_options={"max_cpus": 0})
    with pytest.raises(ConfigError):
        Cluster("x", scheduler_options={"no_such_option": 1})

"""The API reference (seed 000) and the consumer page (seed 001), point by point (issue 20).

Each test names the seed lines it checks. Everything goes through molq's public names; the live
SLURM test uses the real test cluster without accounting (tests/services/slurm.sh).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import molq
import pytest
from molq import (
    Cluster,
    ConfigError,
    Duration,
    JobExecution,
    JobResources,
    JobScheduling,
    JobState,
    PluginNotFoundError,
    RetryBackoff,
    RetryPolicy,
    Submitor,
    SubmitorDefaults,
    load_profile,
)

TEST_DIR = Path(os.environ.get("MOLQ_TEST_DIR", "/var/lib/molq-test"))


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


# -- seed 000, "Transport" and "Cluster": SshTransport, SshTransportOptions, SchedulerOptions --


def test_reference_names_are_exported_from_molq() -> None:
    """Seed 000 l.10-11, 146-156: ``from molq import SshTransport, SshTransportOptions,
    SchedulerOptions``."""
    from molq import SchedulerOptions, SshTransport, SshTransportOptions
    from molq_ssh import SshTransport as Direct

    assert SshTransport is Direct
    options = SshTransportOptions(host="user@login.example.org", port=2222)
    assert (options.host, options.port, options.rsync_opts) == ("user@login.example.org", 2222,
                                                                ("-a", "--partial", "--inplace"))
    cluster = Cluster("hpc", "slurm", host="user@login.example.org")
    assert isinstance(cluster.transport, SshTransport)
    # Every backend's options class is a SchedulerOptions (the type of Cluster(scheduler_options=)).
    from molq_lsf import LsfOptions
    from molq_pbs import PbsOptions
    from molq_slurm import SlurmOptions

    assert all(issubclass(cls, SchedulerOptions) for cls in (SlurmOptions, PbsOptions, LsfOptions))
    assert {"SshTransport", "SshTransportOptions", "SchedulerOptions"} <= set(dir(molq))


def test_import_molq_stays_light_with_the_new_names() -> None:
    """Importing molq loads neither the ssh backend nor the model; using the name loads it."""
    out = python(
        "import sys, json, molq\n"
        "before = sorted(m for m in ('molq_ssh', 'molq.model', 'molq.cluster', 'attrs') if m in sys.modules)\n"
        "molq.SshTransport\n"
        "print(json.dumps([before, 'molq_ssh' in sys.modules]))\n"
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [[], True]


def test_ssh_names_without_molq_ssh_raise_the_install_hint() -> None:
    """Seed 000 l.146 (SshTransport lives in molq-ssh): without it, the install hint."""
    out = python(
        "import sys\n"
        "sys.modules['molq_ssh'] = None  # as if molq-ssh were not installed\n"
        "import molq\n"
        "from molq import PluginNotFoundError\n"
        "for name in ('SshTransport', 'SshTransportOptions'):\n"
        "    try:\n"
        "        exec(f'from molq import {name}')\n"
        "    except PluginNotFoundError as exc:\n"
        "        print(name, exc)\n"
        "from molq import *  # still works: the optional names are not in __all__\n"
        "print('star ok', 'Cluster' in dir())\n"
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == [
        f"{name} no transport named 'ssh' is installed; install it with: pip install molq-ssh"
        for name in ("SshTransport", "SshTransportOptions")
    ]
    assert lines[2] == "star ok True"
    assert issubclass(PluginNotFoundError, ConfigError)


def test_unknown_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="SshTransportz"):
        molq.SshTransportz  # noqa: B018


# -- seed 000, "Scheduler protocol": the implementations' names --------------------------------


def test_reference_scheduler_names_are_importable() -> None:
    """Seed 000 l.168-170: ShellScheduler, SlurmScheduler, PBSScheduler, LSFScheduler."""
    from molq import LocalTransport, ShellScheduler
    from molq.batch import BatchScheduler
    from molq_lsf import LsfOptions, LSFScheduler
    from molq_pbs import PbsOptions, PBSScheduler
    from molq_slurm import SlurmScheduler

    transport = LocalTransport()
    built = {
        "local": ShellScheduler(transport),
        "slurm": SlurmScheduler(transport),
        "pbs": PBSScheduler(transport, PbsOptions(flavor="torque", default_queue="batch")),
        "lsf": LSFScheduler(transport, LsfOptions(default_queue="short")),
    }
    for kind, sched in built.items():
        # The same class a Cluster of that kind builds, and the shared batch runner for clusters.
        assert type(sched) is type(Cluster("x", kind).scheduler_impl), kind
        assert sched.transport is transport
    assert all(isinstance(built[k], BatchScheduler) for k in ("slurm", "pbs", "lsf"))
    assert built["pbs"].dialect.default_queue == "batch"


# -- seed 000 l.245, 259: the legacy 'queue' key ------------------------------------------------


def write_profile(home: Path, scheduling: str) -> Path:
    path = home / "config.toml"
    path.write_text(f'[profiles.old]\nscheduler = "local"\n[profiles.old.defaults.scheduling]\n{scheduling}\n')
    return path


def test_legacy_queue_in_a_profile_loads_and_warns_once(molq_home: Path) -> None:
    """Seed 000 l.259: profiles using the legacy queue key still load (one-release deprecation)."""
    write_profile(molq_home, 'queue = "short"')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = load_profile("old")
        again = load_profile("old")
    assert first.defaults.scheduling.partition == "short" == again.defaults.scheduling.partition
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(deprecations) == 1, [str(w.message) for w in caught]
    message = str(deprecations[0].message)
    assert "'queue' is deprecated" in message and "'partition'" in message and "profile 'old'" in message


def test_legacy_queue_with_a_null_partition_fills_it(tmp_path: Path) -> None:
    """{'queue': 'gpu', 'partition': None} gives partition='gpu' (issue 20)."""
    from molq.model import upgrade_legacy_scheduling

    with pytest.warns(DeprecationWarning, match="'queue' is deprecated"):
        data = upgrade_legacy_scheduling({"queue": "gpu", "partition": None}, source=str(tmp_path / "row"))
    assert JobScheduling(**data).partition == "gpu"
    # A second load from the same source does not warn again.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert upgrade_legacy_scheduling({"queue": "gpu"}, source=str(tmp_path / "row")) == {"partition": "gpu"}


def test_legacy_queue_in_a_stored_row_warns_and_fills_a_null_partition(monkeypatch) -> None:
    from molq import model, serde

    monkeypatch.setattr(model.submission, "_LEGACY_QUEUE_WARNED", set())  # warned once per process

    with pytest.warns(DeprecationWarning, match="'queue' is deprecated"):
        scheduling = serde.structure({"queue": "gpu", "partition": None}, JobScheduling)
    assert scheduling.partition == "gpu"


def test_legacy_queue_contradicting_partition_is_refused(molq_home: Path) -> None:
    write_profile(molq_home, 'queue = "short"\npartition = "long"')
    with pytest.raises(ConfigError, match="both queue = 'short' and partition = 'long'"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            load_profile("old")
    write_profile(molq_home, 'queue = "long"\npartition = "long"')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert load_profile("old").defaults.scheduling.partition == "long"


def test_queue_alias_property_reads_partition() -> None:
    """Seed 000 l.245: ``partition`` was 'queue'."""
    assert JobScheduling(partition="gpu").queue == "gpu"


# -- seed 000 l.229-231: Duration.parse("04:00:00") -- clock fields in range --------------------


@pytest.mark.parametrize("text, seconds", [
    ("04:00:00", 4 * 3600),
    ("30:00", 1800),
    ("90:00", 5400),          # minutes:seconds, the leading field is not a clock field
    ("100:00:00", 360000),    # hours may exceed 24 (PBS walltime)
    ("1-02:00:00", 93600),
    ("1-23:59:59", 86400 + 86399),
    ("2-12", 2 * 86400 + 12 * 3600),
    ("0:59", 59),
])
def test_duration_clock_forms(text: str, seconds: int) -> None:
    assert Duration.parse(text).seconds == seconds


@pytest.mark.parametrize("text, problem", [
    ("10:70", "seconds must be at most 59, got 70"),
    ("1:99:99", "minutes must be at most 59, got 99"),
    ("1:00:60", "seconds must be at most 59, got 60"),
    ("1-24:00:00", "hours must be at most 23, got 24"),
    ("1-2:61", "minutes must be at most 59, got 61"),
])
def test_duration_refuses_out_of_range_clock_fields(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        Duration.parse(text)
    with pytest.raises(ConfigError, match=problem):
        JobResources(time_limit=text)


# -- seed 000 l.186, 244-256: a job's explicit values win over SubmitorDefaults -----------------


def test_job_scheduling_keeps_the_reference_constructor_repr_and_equality() -> None:
    """Seed 000 l.244-256: the constructor, its defaults, and value equality."""
    assert JobScheduling() == JobScheduling(exclusive_node=False, dependencies=())
    assert hash(JobScheduling()) == hash(JobScheduling(exclusive_node=False))
    assert repr(JobScheduling(partition="gpu")) == (
        "JobScheduling(partition='gpu', account=None, priority=None, dependency=None, dependencies=(), "
        "node_count=None, exclusive_node=False, array_spec=None, email=None, qos=None, reservation=None)"
    )
    assert JobScheduling("gpu", "acct").account == "acct"


def slurm_conf() -> str | None:
    env = TEST_DIR / "slurm" / "env.sh"
    conf = os.environ.get("MOLQ_TEST_SLURM_NOACCT_CONF")
    if not conf and env.exists():
        for line in env.read_text().splitlines():
            key, _, value = line.strip().removeprefix("export ").partition("=")
            if key == "MOLQ_TEST_SLURM_NOACCT_CONF":
                conf = value.strip().strip("'\"")
    return conf if conf and Path(conf).exists() else None


def oversubscribe(conf: str, scheduler_job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "-o", scheduler_job_id], capture_output=True, text=True,
                         timeout=30, env={**os.environ, "SLURM_CONF": conf}).stdout
    return dict(f.split("=", 1) for f in out.split() if "=" in f)["OverSubscribe"]


@pytest.mark.slurm
def test_defaults_can_be_switched_off_for_one_job(tmp_path: Path) -> None:
    """SubmitorDefaults(exclusive_node=True) plus a job with exclusive_node=False runs shared,
    as the real SLURM controller reports it (``scontrol show job``: OverSubscribe=NO for
    ``--exclusive``, OK otherwise)."""
    conf = slurm_conf()
    if conf is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("the SLURM test cluster is required in CI (CI=true)")
        pytest.skip("the SLURM test cluster is not available (tests/services/slurm.sh)")
    cluster = Cluster("molqnoacct", "slurm", scheduler_options={"env": {"SLURM_CONF": conf}})
    defaults = SubmitorDefaults(
        resources=JobResources(cpu_count=1),
        scheduling=JobScheduling(partition="debug", exclusive_node=True),
        execution=JobExecution(env={"FROM_DEFAULT": "1", "SHARED": "default"}),
    )
    with Submitor(cluster, defaults=defaults, jobs_dir=tmp_path / "jobs") as sub:
        inherit = sub.submit_job(argv=["true"], execution=JobExecution(cwd=str(tmp_path)))
        switched = sub.submit_job(argv=["sh", "-c", 'echo "$FROM_DEFAULT $SHARED"'],
                                  scheduling=JobScheduling(exclusive_node=False),
                                  execution=JobExecution(cwd=str(tmp_path), env={"SHARED": "job"}))
        finals = sub.watch_jobs([inherit.job_id, switched.job_id], timeout=120)
        assert [r.state for r in finals] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
        assert oversubscribe(conf, inherit.scheduler_job_id) == "NO"
        assert oversubscribe(conf, switched.scheduler_job_id) == "OK"
        out = subprocess.run([sys.executable, "-m", "molq", "logs", switched.job_id],
                             capture_output=True, text=True, timeout=60)
    # env merges by variable: the default's other variables stay, the job's own value wins.
    assert out.stdout.strip() == "1 job", out.stderr


def test_explicit_values_win_and_unset_fields_inherit() -> None:
    """The merge a Submitor applies (seed 000 l.186), on every kind of field."""
    from molq.model import merge_onto_default

    default = JobScheduling(partition="gpu", account="a", exclusive_node=True, qos="high")
    merged = merge_onto_default(default, JobScheduling(exclusive_node=False, qos="low"))
    assert (merged.partition, merged.account, merged.exclusive_node, merged.qos) == ("gpu", "a", False, "low")
    assert merge_onto_default(default, JobScheduling()) == default
    assert merge_onto_default(default, JobScheduling(partition=None)).partition == "gpu"
    # An explicit empty dependency list wins over a default raw dependency string.
    raw = JobScheduling(dependency="afterok:1")
    assert merge_onto_default(raw, JobScheduling(dependencies=())).dependency is None
    assert merge_onto_default(raw, JobScheduling(partition="x")).dependency == "afterok:1"
    res = merge_onto_default(JobResources(cpu_count=4, memory="1G"), JobResources(cpu_count=1))
    assert (res.cpu_count, res.memory) == (1, JobResources(memory="1G").memory)
    ex = merge_onto_default(JobExecution(env={"A": "1", "B": "2"}, job_name="d"), JobExecution(env={"B": "3"}))
    assert (ex.env, ex.job_name) == ({"A": "1", "B": "3"}, "d")


# -- seed 000 l.93-101: JobHandle.scheduler_job_id follows the latest attempt ------------------


def test_handle_describes_the_latest_attempt_after_wait(tmp_path: Path) -> None:
    """Seed 000 l.94: wait() follows the latest attempt; the handle's fields describe it too."""
    marker = tmp_path / "first-attempt-done"
    script = f'if [ -e "{marker}" ]; then exit 0; fi; touch "{marker}"; exit 1'
    retry = RetryPolicy(max_attempts=2, backoff=RetryBackoff(mode="fixed", initial_seconds=0))
    with Submitor(Cluster("laptop"), jobs_dir=tmp_path / "jobs") as sub:
        handle = sub.submit_job(argv=["sh", "-c", script], retry=retry)
        first_id = handle.scheduler_job_id
        final = handle.wait(timeout=60)
        family = sub.get_retry_family(handle.job_id)
    assert [r.state for r in family] == [JobState.FAILED, JobState.SUCCEEDED]
    assert final.job_id == family[-1].job_id
    assert first_id == family[0].scheduler_job_id
    assert family[0].scheduler_job_id != family[1].scheduler_job_id
    assert handle.scheduler_job_id == family[1].scheduler_job_id
    assert handle.job_id == family[0].job_id  # the root id of the family (seed 000 l.94)
    assert repr(handle).endswith(f"scheduler_job_id={family[1].scheduler_job_id!r})")


# -- seed 000 l.134: Project.submit_job validates that submitor.target is self.cluster ---------


def test_project_names_two_clusters_with_the_same_name(tmp_path: Path) -> None:
    project = Cluster("ws").get_workspace("w", path=str(tmp_path)).get_project("p")
    with Submitor(Cluster("ws"), jobs_dir=tmp_path / "jobs") as other:
        with pytest.raises(ConfigError) as info:
            project.submit_job(other, argv=["true"])
        assert other.list_jobs(include_terminal=True) == []
    message = str(info.value)
    assert "two different Cluster objects" in message and "'ws'" in message
    assert "but this project lives on" not in message
    with Submitor(Cluster("elsewhere"), jobs_dir=tmp_path / "jobs") as far:
        with pytest.raises(ConfigError, match="targets cluster 'elsewhere', but this project lives on 'ws'"):
            project.submit_job(far, argv=["true"])

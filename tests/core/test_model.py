import pytest
from molq import (
    ConfigError,
    DependencyRef,
    Duration,
    JobExecution,
    JobResources,
    JobScheduling,
    JobState,
    Memory,
    RetryBackoff,
    RetryPolicy,
    Script,
)
from molq.model import JobRecord, JobSpec, SchedulerCapabilities
from molq.serde import structure, unstructure


@pytest.mark.parametrize("text,nbytes", [
    ("32G", 32 * 1024**3), ("512MB", 512 * 1024**2), ("1.5GiB", int(1.5 * 1024**3)),
    ("800K", 800 * 1024), ("2t", 2 * 1024**4), ("100b", 100),
])
def test_memory_parse(text, nbytes):
    assert Memory.parse(text).bytes == nbytes


@pytest.mark.parametrize("bad", ["", "12", "4Q", "-1G", "G", "1.2.3G", "0M"])
def test_memory_parse_rejects(bad):
    with pytest.raises(ConfigError):
        Memory.parse(bad)


def test_memory_renderings():
    assert Memory.gb(32).to_slurm() == "32G"
    assert Memory.mb(1536).to_slurm() == "1536M"
    assert Memory.gb(2).to_pbs() == "2gb"
    assert Memory.mb(1536).to_pbs() == "1536mb"
    assert Memory(1000).to_slurm() == "1K"  # rounded up to SLURM's smallest unit
    assert Memory.mb(1).to_lsf_kb() == 1024
    assert Memory.gb(1).to_unit("MB") == 1024


@pytest.mark.parametrize("text,seconds", [
    ("2h30m", 9000), ("90s", 90), ("1d", 86400), ("04:00:00", 14400), ("30:00", 1800),
    ("1-02:00:00", 93600), ("1-2", 93600), ("1.5h", 5400), ("1h 30m", 5400),
])
def test_duration_parse(text, seconds):
    assert Duration.parse(text).seconds == seconds


@pytest.mark.parametrize("bad", ["", "60", "2x", "h", "00:00:00", "abc", "1h foo"])
def test_duration_parse_rejects(bad):
    with pytest.raises(ConfigError):
        Duration.parse(bad)


def test_duration_renderings():
    d = Duration.parse("1-02:03:04")
    assert d.to_slurm() == "1-02:03:04"
    assert d.to_pbs() == "26:03:04"
    assert Duration(61).to_lsf_minutes() == 2
    assert Duration.minutes(5).to_slurm() == "00:05:00"


def test_resources_validation():
    assert JobResources(memory="4G").memory == Memory.gb(4)
    for kwargs in ({"cpu_count": 0}, {"cpu_count": -2}, {"gpu_count": 0}, {"cpu_count": 1.5},
                   {"gpu_type": "a100"}, {"time_limit": "soon"}):
        with pytest.raises(ConfigError):
            JobResources(**kwargs)


def test_scheduling_dependency_exclusivity():
    with pytest.raises(ValueError):
        JobScheduling(dependency="afterok:1", dependencies=(DependencyRef("abc"),))
    with pytest.raises(ConfigError):
        DependencyRef("abc", "after_lunch")
    with pytest.raises(ConfigError):
        JobScheduling(array_spec="1-x")
    assert JobScheduling(array_spec="1-10%2").array_spec == "1-10%2"


@pytest.mark.parametrize(("spec", "problem"), [
    ("5-1", "empty range"), ("1-3,9-4", "'9-4' is an empty range"), ("1-3%0", "throttle %0"),
    ("1-9:0", "step of 0"),
])
def test_array_specs_that_parse_but_mean_nothing_are_refused(spec: str, problem: str) -> None:
    # Well formed, yet no scheduler could run them as meant: refused before anything is stored.
    with pytest.raises(ConfigError, match=problem):
        JobScheduling(array_spec=spec)


@pytest.mark.parametrize("spec", ["3", "3-3", "0-9:3", "1-100000%50", "1,5,7-9%1", "1 - 4"])
def test_array_specs_with_sound_values_are_kept(spec: str) -> None:
    assert JobScheduling(array_spec=spec).array_spec == spec


def test_legacy_queue_key_loads():
    assert structure({"queue": "gpu"}, JobScheduling).partition == "gpu"
    assert JobScheduling(partition="gpu").queue == "gpu"


def test_execution_env_validation():
    with pytest.raises(ConfigError):
        JobExecution(env={"1BAD": "x"})
    with pytest.raises(ConfigError):
        JobExecution(env={"OK": 3})


def test_script_variants():
    assert Script.inline("echo hi").variant == "inline"
    assert Script.path("/x/run.sh").file_path == "/x/run.sh"
    with pytest.raises(ConfigError):
        Script.inline("   ")


def test_round_trip_through_cattrs():
    sched = JobScheduling(partition="p", dependencies=(DependencyRef("a", "after"),), exclusive_node=True)
    assert structure(unstructure(sched), JobScheduling) == sched
    res = JobResources(cpu_count=2, memory="1G", time_limit="1h", gpu_count=1, gpu_type="a100")
    assert structure(unstructure(res), JobResources) == res
    pol = RetryPolicy(max_attempts=3, retry_on_exit_codes=(1, 2), backoff=RetryBackoff("fixed", 1))
    assert structure(unstructure(pol), RetryPolicy) == pol


def test_retry_policy_decisions():
    rec = JobRecord(job_id="x", cluster_name="c", scheduler="local", state=JobState.FAILED, root_job_id="x",
                    attempt=1, exit_code=2)
    assert RetryPolicy(max_attempts=2).should_retry(rec)
    assert not RetryPolicy(max_attempts=1).should_retry(rec)
    assert not RetryPolicy(max_attempts=2, retry_on_exit_codes=(1,)).should_retry(rec)
    assert RetryBackoff(initial_seconds=2, factor=3, maximum_seconds=10).delay(3) == 10
    assert RetryBackoff(initial_seconds=2, factor=3, maximum_seconds=100).delay(2) == 6


def test_capabilities_name_field_and_scheduler():
    caps = SchedulerCapabilities(supported=frozenset({"cpu_count"}))
    spec = JobSpec(job_id="x", command_type="argv", argv=("true",), scheduling=JobScheduling(partition="gpu"))
    with pytest.raises(ConfigError, match=r"scheduling.partition is not supported by the 'local' scheduler"):
        caps.check(spec, "local")


@pytest.mark.parametrize(("text", "code"), [
    (None, None), ("", None), ("3", None), ("-1", None),  # no newline yet: still being written
    ("0\n", 0), ("3\n", 3), ("137\n", 137), ("-9\n", -9), ("x\n", None), ("\n", None),
])
def test_exit_code_file_counts_only_as_a_complete_line(text, code):
    from molq import wrapper

    assert wrapper.parse_exit_code(text) == code


def test_wrapper_writes_its_exit_code_as_one_complete_line(tmp_path):
    import subprocess

    from molq import wrapper

    spec = JobSpec(job_id="j1", command_type="argv", argv=("sh", "-c", "echo out; echo err >&2; exit 5"))
    script = tmp_path / "job.sh"
    script.write_text(wrapper.render_local_script(spec, str(tmp_path)))
    assert subprocess.run(["/bin/sh", str(script)], stdout=subprocess.DEVNULL).returncode == 5
    assert (tmp_path / "exit_code").read_bytes() == b"5\n"
    assert (tmp_path / "stdout").read_text() == "out\n"
    assert (tmp_path / "stderr").read_text() == "err\n"
    assert wrapper.parse_exit_code((tmp_path / "exit_code").read_text()) == 5


def test_an_inline_script_read_from_a_file_is_shown_by_its_name():
    from molq import Script
    from molq.model import JobSpec

    spec = JobSpec(job_id="j", command_type="script", script=Script.inline("#!/bin/sh\necho hi\n", name="run.sh"))
    assert spec.display() == "script run.sh (copied at submission)"
    assert JobSpec(job_id="j", command_type="script", script=Script.inline("#!/bin/sh\necho hi\n")).display() == \
        "inline script: #!/bin/sh"

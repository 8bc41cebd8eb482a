"""The job script SlurmDialect writes: one #SBATCH directive per field, quoted the way sbatch reads."""

from __future__ import annotations

import os
import subprocess

import pytest
from molq import wrapper
from molq.errors import ConfigError
from molq.model import (
    CompiledDependency,
    JobExecution,
    JobResources,
    JobScheduling,
    SchedulerCapabilities,
)
from molq_slurm import SlurmDialect
from molq_slurm.dialect import SLURM_JOB_ID_FILE

JOB_DIR = "/home/u/.molq/jobs/abc"


def directives(dialect: SlurmDialect, spec, job_dir: str = JOB_DIR) -> list[str]:
    return dialect.render_directives(spec, job_dir)


def test_minimal_job_gets_name_tag_and_job_dir_outputs(spec_factory) -> None:
    spec = spec_factory(job_id="0123456789abcdef0123456789abcdef")
    assert directives(SlurmDialect(), spec) == [
        "#SBATCH --job-name=molq-01234567",
        "#SBATCH --comment=molq-0123456789abcdef0123456789abcdef",
        f"#SBATCH --output={JOB_DIR}/stdout",
        f"#SBATCH --error={JOB_DIR}/stderr",
    ]


def test_every_field_has_its_directive(spec_factory) -> None:
    spec = spec_factory(
        resources=JobResources(cpu_count=8, memory="1536M", gpu_count=2, gpu_type="a100", time_limit="1d2h"),
        scheduling=JobScheduling(
            partition="gpu",
            account="proj42",
            qos="high",
            reservation="maint",
            node_count=2,
            exclusive_node=True,
            array_spec="1-10%2",
            email="me@example.org",
        ),
        execution=JobExecution(job_name="train", output_file="logs/out.txt", error_file="/abs/err.txt"),
        cwd="/work/run1",
        dependencies=(
            CompiledDependency("after_success", "a", "11"),
            CompiledDependency("after_failure", "b", "12"),
            CompiledDependency("after_started", "c", "13"),
            CompiledDependency("after", "d", "14"),
            CompiledDependency("after_success", "e", "15"),
        ),
    )
    lines = directives(SlurmDialect(mail_type="ALL"), spec)
    assert lines[:2] == ["#SBATCH --job-name=train", f"#SBATCH --comment={spec.tag}"]
    assert set(lines[2:]) == {
        "#SBATCH --output=/work/run1/logs/out.txt",
        "#SBATCH --error=/abs/err.txt",
        "#SBATCH --chdir=/work/run1",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj42",
        "#SBATCH --qos=high",
        "#SBATCH --reservation=maint",
        "#SBATCH --time=1-02:00:00",
        "#SBATCH --nodes=2",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=1536M",
        "#SBATCH --gres=gpu:a100:2",
        "#SBATCH --exclusive",
        "#SBATCH --array=1-10%2",
        "#SBATCH --open-mode=append",
        "#SBATCH --mail-user=me@example.org",
        "#SBATCH --mail-type=ALL",
        "#SBATCH --dependency=afterok:11:15,afternotok:12,after:13,afterany:14",
    }
    assert len(lines) == 20


def test_gpus_without_type(spec_factory) -> None:
    spec = spec_factory(resources=JobResources(gpu_count=1))
    assert "#SBATCH --gres=gpu:1" in directives(SlurmDialect(), spec)


def test_default_partition_and_account_apply_only_when_the_job_names_none(spec_factory) -> None:
    dialect = SlurmDialect(default_partition="compute", default_account="proj")
    plain = directives(dialect, spec_factory())
    assert "#SBATCH --partition=compute" in plain and "#SBATCH --account=proj" in plain
    own = directives(dialect, spec_factory(scheduling=JobScheduling(partition="gpu", account="other")))
    assert "#SBATCH --partition=gpu" in own and "#SBATCH --account=other" in own
    assert not any(x in own for x in ("#SBATCH --partition=compute", "#SBATCH --account=proj"))


@pytest.mark.parametrize(
    "name, rendered",
    [
        ("two words", '"two words"'),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("a | b ünï", '"a | b ünï"'),
        ("#hash $HOME `x`", '"#hash $HOME `x`"'),
        ("plain-name_1.0", "plain-name_1.0"),
    ],
)
def test_values_are_quoted_for_sbatch(spec_factory, name: str, rendered: str) -> None:
    spec = spec_factory(execution=JobExecution(job_name=name))
    assert directives(SlurmDialect(), spec)[0] == f"#SBATCH --job-name={rendered}"


def test_percent_in_the_job_dir_is_not_a_slurm_pattern(spec_factory) -> None:
    lines = directives(SlurmDialect(), spec_factory(), job_dir="/data/100%/jobs/x")
    # sbatch reads "\\" as one backslash; a backslash makes SLURM drop it and expand nothing.
    assert '#SBATCH --output="/data/100\\\\%/jobs/x/stdout"' in lines


def test_user_output_file_keeps_slurm_patterns(spec_factory) -> None:
    spec = spec_factory(execution=JobExecution(output_file="out_%A_%a.txt"), cwd="/w")
    assert "#SBATCH --output=/w/out_%A_%a.txt" in directives(SlurmDialect(), spec)


def test_a_newline_cannot_reach_a_directive(spec_factory) -> None:
    with pytest.raises(ConfigError, match="newline"):
        directives(SlurmDialect(), spec_factory(cwd="/tmp/a\nb"))


def test_raw_dependency_is_passed_through(spec_factory) -> None:
    spec = spec_factory(scheduling=JobScheduling(dependency="afterok:5?afterany:6"))
    assert "#SBATCH --dependency=afterok:5?afterany:6" in directives(SlurmDialect(), spec)


def test_raw_and_molq_dependencies_must_all_hold(spec_factory) -> None:
    deps = (CompiledDependency("after", "x", "9"),)
    spec = spec_factory(scheduling=JobScheduling(dependency="singleton"), dependencies=deps)
    assert "#SBATCH --dependency=singleton,afterany:9" in directives(SlurmDialect(), spec)
    bad = spec_factory(scheduling=JobScheduling(dependency="afterok:1?afterok:2"), dependencies=deps)
    with pytest.raises(ConfigError, match="cannot be combined"):
        directives(SlurmDialect(), bad)


@pytest.mark.parametrize(
    "condition, native",
    [("after_success", "afterok:7"), ("after_failure", "afternotok:7"), ("after_started", "after:7"), ("after", "afterany:7")],
)
def test_native_condition(condition: str, native: str) -> None:
    assert SlurmDialect().native_condition(condition, "7") == native


def test_compile_dependencies_deduplicates_and_handles_arrays() -> None:
    deps = [CompiledDependency("after_success", "a", "5"), CompiledDependency("after_success", "a2", "5")]
    assert SlurmDialect().compile_dependencies(deps) == "afterok:5"
    assert SlurmDialect().compile_dependencies([]) is None


def test_priority_is_refused_before_submission(spec_factory) -> None:
    caps: SchedulerCapabilities = SlurmDialect.capabilities
    with pytest.raises(ConfigError, match="scheduling.priority.*'slurm'"):
        caps.check(spec_factory(scheduling=JobScheduling(priority="10")), "slurm")
    everything = spec_factory(
        resources=JobResources(cpu_count=1, memory="1G", gpu_count=1, gpu_type="v100", time_limit="1h"),
        scheduling=JobScheduling(partition="p", account="a", node_count=1, exclusive_node=True,
                                 array_spec="1-2", email="e@x", qos="q", reservation="r"),
        execution=JobExecution(env={"A": "1"}, cwd="/w", job_name="n", output_file="o", error_file="e"),
        dependencies=(CompiledDependency("after", "x", "1"),),
    )
    caps.check(everything, "slurm")  # every other field is honoured


def test_submit_command_line() -> None:
    assert SlurmDialect().submit_argv("/jobs/x/job.sh", None) == ["sbatch", "--parsable", "/jobs/x/job.sh"]  # type: ignore[arg-type]


def test_script_puts_directives_before_any_command(spec_factory) -> None:
    spec = spec_factory(resources=JobResources(cpu_count=2))
    script = SlurmDialect().render_script(spec, JOB_DIR)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    sbatch_lines = [i for i, line in enumerate(lines) if line.startswith("#SBATCH")]
    assert sbatch_lines and max(sbatch_lines) < first_command


def test_script_records_the_slurm_job_id_and_exit_code(spec_factory, tmp_path) -> None:
    """Run the rendered script with bash as slurmstepd would (no SLURM needed for this)."""
    spec = spec_factory(command="echo out; exit 3", cwd=str(tmp_path))
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    script = job_dir / "job.sh"
    script.write_text(SlurmDialect().render_script(spec, str(job_dir)))
    env = dict(os.environ, SLURM_JOB_ID="4242")
    env.pop("SLURM_ARRAY_JOB_ID", None)
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3
    assert (job_dir / SLURM_JOB_ID_FILE).read_text().strip() == "4242"
    assert (job_dir / "exit_code").read_text().strip() == "3"
    env["SLURM_ARRAY_JOB_ID"] = "4000"
    subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=30)
    assert (job_dir / SLURM_JOB_ID_FILE).read_text().strip() == "4000"


def test_a_requeued_attempt_starts_without_the_previous_attempts_exit_code(spec_factory, tmp_path) -> None:
    """A requeued job runs its script again in the same directory. If the new attempt dies
    without writing an exit code (SIGKILL, node failure), the first attempt's code must not
    be taken for the job's end (issue 12: a requeued job judged on its first attempt)."""
    import signal
    import time

    gate = tmp_path / "second-attempt"
    spec = spec_factory(command=f"if [ -e {gate} ]; then sleep 300; fi; exit 0", cwd=str(tmp_path))
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    script = job_dir / "job.sh"
    script.write_text(SlurmDialect().render_script(spec, str(job_dir)))
    env = dict(os.environ, SLURM_JOB_ID="4242")
    subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=30, check=True)
    assert (job_dir / "exit_code").read_text() == "0\n"  # the first attempt ended with 0
    gate.touch()
    started = job_dir / "started"
    started.unlink()
    # The second attempt is SIGKILLed while its command runs: no trap, no exit-code write.
    proc = subprocess.Popen(["bash", str(script)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not started.exists():
        assert time.monotonic() < deadline, "the second attempt never started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert wrapper.parse_exit_code((job_dir / "exit_code").read_text()) is None

"""SlurmOptions, the plugin registration and the runner SlurmScheduler builds.

The runner tests use small stand-in SLURM commands (shell scripts given through
``binaries``), run as real processes by LocalTransport, so argv, environment and retries are
observed exactly as a real cluster would receive them.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from molq.batch import BatchScheduler
from molq.cluster import Cluster
from molq.errors import ConfigError, TransientSchedulerError
from molq.model import JobState
from molq.plugins import get_plugin_manager
from molq.scheduler import TrackedJob
from molq.transport import LocalTransport
from molq_slurm import SlurmDialect, SlurmOptions, SlurmScheduler


def fake_command(tmp_path: Path, name: str, body: str) -> str:
    """An executable stand-in for a SLURM command; it logs argv and env as JSON lines."""
    log = tmp_path / f"{name}.log"
    path = tmp_path / f"fake-{name}"
    path.write_text(
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        f"with open({str(log)!r}, 'a') as fh:\n"
        "    fh.write(json.dumps({'argv': sys.argv[1:], 'env': {k: v for k, v in os.environ.items() "
        "if k.startswith(('SLURM', 'MOLQ_T'))}}) + '\\n')\n"
        f"{body}\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def calls(tmp_path: Path, name: str) -> list[dict]:
    log = tmp_path / f"{name}.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


# -- options ---------------------------------------------------------------------------------


def test_defaults() -> None:
    options = SlurmOptions()
    assert options.binaries == {} and options.extra_sbatch_args == ()
    assert options.use_accounting is None and options.mail_type == "END,FAIL"


def test_options_load_from_a_profile_table() -> None:
    from molq import serde

    options = serde.structure(
        {
            "binaries": {"sbatch": "/opt/slurm/bin/sbatch"},
            "extra_sbatch_args": ["--constraint=skylake"],
            "default_partition": "compute",
            "default_account": "proj",
            "env": {"SLURM_CONF": "/etc/slurm/alt.conf"},
            "use_accounting": False,
            "command_timeout": 30,
            "retry_attempts": 5,
        },
        SlurmOptions,
    )
    assert options.extra_sbatch_args == ("--constraint=skylake",)
    assert options.use_accounting is False and options.retry_attempts == 5
    with pytest.raises(ConfigError, match="partiton"):
        serde.structure({"default_partiton": "x"}, SlurmOptions)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"binaries": {"sbtach": "/x"}}, "unknown command"),
        ({"extra_sbatch_args": "--exclusive --mem=1G"}, "list of arguments"),
        ({"use_accounting": "yes"}, "use_accounting"),
        ({"retry_attempts": 0}, "retry_attempts"),
        ({"command_timeout": -1}, "command_timeout"),
        ({"default_partition": ""}, "default_partition"),
        ({"env": {"SLURM_CONF": 3}}, "env"),
    ],
)
def test_bad_options_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SlurmOptions(**kwargs)


# -- plugin ----------------------------------------------------------------------------------


def test_plugin_registers_slurm() -> None:
    plugin = get_plugin_manager().get_scheduler("slurm")
    assert plugin.options_type is SlurmOptions
    sched = plugin.factory(LocalTransport(), SlurmOptions(default_partition="p"))
    # No SLURM subclass of the runner: core's BatchScheduler with the SLURM dialect.
    assert type(sched) is BatchScheduler and isinstance(sched.dialect, SlurmDialect)
    assert sched.dialect.default_partition == "p"


def test_cluster_builds_the_slurm_scheduler_from_a_dict() -> None:
    cluster = Cluster("hpc", "slurm", scheduler_options={"default_account": "proj", "use_accounting": False})
    sched = cluster.scheduler_impl
    assert isinstance(sched, BatchScheduler) and isinstance(sched.dialect, SlurmDialect)
    assert sched.dialect.default_account == "proj" and sched.dialect.use_accounting is False
    assert sched.env["SLURM_TIME_FORMAT"] == "%s"
    assert "priority" not in sched.capabilities().supported


def test_options_map_onto_the_runner() -> None:
    options = SlurmOptions(
        binaries={"squeue": "/opt/bin/squeue"},
        extra_sbatch_args=("--x",),
        env={"SLURM_CONF": "/c", "SLURM_TIME_FORMAT": "standard"},
        command_timeout=12,
        retry_attempts=4,
        retry_initial_delay=0.1,
        retry_factor=3,
    )
    sched = SlurmScheduler(LocalTransport(), options)
    assert sched.binaries == {"squeue": "/opt/bin/squeue"}
    assert sched.extra_submit_args == ("--x",)
    # the user's values win; SLURM_UMASK makes the output files private (molq_slurm.privacy)
    assert sched.env == {"SLURM_CONF": "/c", "SLURM_TIME_FORMAT": "standard", "SLURM_UMASK": "0077"}
    assert (sched.retry.attempts, sched.retry.initial_delay, sched.retry.factor, sched.retry.command_timeout) == (4, 0.1, 3, 12)


# -- runner through stand-in commands ----------------------------------------------------------


def test_submit_uses_binaries_extra_args_and_env(tmp_path: Path, spec_factory) -> None:
    stdin_copy = tmp_path / "stdin.txt"
    sbatch = fake_command(tmp_path, "sbatch", f"open({str(stdin_copy)!r}, 'w').write(sys.stdin.read()); print('4242;cluster')")
    sched = SlurmScheduler(
        LocalTransport(),
        SlurmOptions(binaries={"sbatch": sbatch}, extra_sbatch_args=("--constraint=a b",), env={"SLURM_CONF": "/etc/x.conf"}),
    )
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    assert sched.submit(spec_factory(), str(job_dir)) == "4242"
    (call,) = calls(tmp_path, "sbatch")
    # The script goes on stdin (sbatch reads it there when given no file); job.sh is the copy.
    assert call["argv"] == ["--constraint=a b", "--parsable"]
    assert call["env"]["SLURM_CONF"] == "/etc/x.conf" and call["env"]["SLURM_TIME_FORMAT"] == "%s"
    assert stdin_copy.read_text().startswith("#!/bin/bash\n#SBATCH --job-name=")
    assert (job_dir / "job.sh").read_text() == stdin_copy.read_text()


def test_a_failed_job_sh_copy_does_not_fail_an_accepted_submission(tmp_path: Path, spec_factory, caplog) -> None:
    stdin_copy = tmp_path / "stdin.txt"
    sbatch = fake_command(tmp_path, "sbatch", f"open({str(stdin_copy)!r}, 'w').write(sys.stdin.read()); print('77')")
    sched = SlurmScheduler(LocalTransport(), SlurmOptions(binaries={"sbatch": sbatch}))
    missing = tmp_path / "no-such-dir"  # the copy cannot be written there
    with caplog.at_level("WARNING"):
        assert sched.submit(spec_factory(), str(missing)) == "77"
    assert stdin_copy.read_text().startswith("#!/bin/bash\n")  # SLURM got the whole script
    assert "copy of its script could not be written" in caplog.text


def test_transient_status_failure_is_retried_with_backoff(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    squeue = fake_command(
        tmp_path,
        "squeue",
        f"n = int(open({str(counter)!r}).read()) if os.path.exists({str(counter)!r}) else 0\n"
        f"open({str(counter)!r}, 'w').write(str(n + 1))\n"
        "if n < 2:\n"
        "    sys.stderr.write('slurm_load_jobs error: Socket timed out on send/recv operation\\n'); sys.exit(1)\n"
        "print('77|77|N/A|N/A|N/A|RUNNING|None|0|1700000000|1800000000|1699999999|molq-j')",
    )
    sleeps: list[float] = []
    sched = SlurmScheduler(LocalTransport(), SlurmOptions(binaries={"squeue": squeue}), sleep=sleeps.append)
    answer = sched.poll_many([TrackedJob("j", "77", str(tmp_path))])
    assert answer["j"].state == JobState.RUNNING
    assert sleeps == [0.5, 1.0] and len(calls(tmp_path, "squeue")) == 3


def test_a_query_that_keeps_failing_changes_nothing(tmp_path: Path) -> None:
    squeue = fake_command(
        tmp_path, "squeue", "sys.stderr.write('slurm_load_jobs error: Unable to contact slurm controller (connect failure)\\n'); sys.exit(1)"
    )
    sched = SlurmScheduler(LocalTransport(), SlurmOptions(binaries={"squeue": squeue}, retry_attempts=2), sleep=lambda s: None)
    with pytest.raises(TransientSchedulerError):
        sched.poll_many([TrackedJob("j", "77", str(tmp_path))])
    assert len(calls(tmp_path, "squeue")) == 2


def test_ambiguous_submission_is_not_resent(tmp_path: Path, spec_factory) -> None:
    sbatch = fake_command(
        tmp_path, "sbatch", "sys.stderr.write('sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\\n'); sys.exit(1)"
    )
    sched = SlurmScheduler(LocalTransport(), SlurmOptions(binaries={"sbatch": sbatch}), sleep=lambda s: None)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    with pytest.raises(TransientSchedulerError, match="may or may not be queued"):
        sched.submit(spec_factory(), str(job_dir))
    assert len(calls(tmp_path, "sbatch")) == 1


@pytest.mark.parametrize("file_code, expected", [("137", (137, 9)), ("9", (9, None)), (None, (9, None))])
def test_sacct_minus_128_is_corrected_from_the_exit_code_file(tmp_path: Path, file_code, expected) -> None:
    sacct = fake_command(tmp_path, "sacct", "print('5|5|FAILED|9:0|1700000000|1700000010|None|1699999999||||||||||')")
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    if file_code is not None:
        (job_dir / "exit_code").write_text(file_code + "\n")
    sched = SlurmScheduler(LocalTransport(), SlurmOptions(binaries={"sacct": sacct}))
    answer = sched.resolve_terminal_many([TrackedJob("j", "5", str(job_dir))])
    assert (answer["j"].exit_code, answer["j"].exit_signal) == expected
    assert answer["j"].state == JobState.FAILED


def test_disabled_accounting_falls_back_to_scontrol_then_exit_file(tmp_path: Path) -> None:
    sacct = fake_command(tmp_path, "sacct", "sys.stderr.write('Slurm accounting storage is disabled\\n'); sys.exit(1)")
    scontrol = fake_command(
        tmp_path,
        "scontrol",
        "print('JobId=8 JobName=a b UserId=u(1) GroupId=g(1) MCS_label=N/A JobState=FAILED Reason=NonZeroExitCode "
        "ExitCode=3:0 StartTime=1700000000 EndTime=1700000005 WorkDir=/w')",
    )
    dirs = {}
    for name in ("a", "b"):
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
    (dirs["b"] / "exit_code").write_text("4\n")
    sched = SlurmScheduler(LocalTransport(), SlurmOptions(binaries={"sacct": sacct, "scontrol": scontrol}))
    answer = sched.resolve_terminal_many([TrackedJob("a", "8", str(dirs["a"])), TrackedJob("b", "9", str(dirs["b"]))])
    assert (answer["a"].state, answer["a"].exit_code) == (JobState.FAILED, 3)
    assert (answer["b"].state, answer["b"].exit_code) == (JobState.FAILED, 4)
    assert calls(tmp_path, "scontrol")[0]["argv"] == ["show", "job", "-o"]
    assert len(calls(tmp_path, "sacct")) == 1  # "disabled" is not retried


def test_use_accounting_false_never_calls_sacct(tmp_path: Path) -> None:
    sacct = fake_command(tmp_path, "sacct", "sys.exit(1)")
    scontrol = fake_command(tmp_path, "scontrol", "sys.stderr.write('slurm_load_jobs error: Invalid job id specified\\n'); sys.exit(1)")
    sched = SlurmScheduler(
        LocalTransport(), SlurmOptions(binaries={"sacct": sacct, "scontrol": scontrol}, use_accounting=False)
    )
    assert sched.resolve_terminal_many([TrackedJob("a", "8", str(tmp_path))]) == {}
    assert calls(tmp_path, "sacct") == [] and len(calls(tmp_path, "scontrol")) == 1


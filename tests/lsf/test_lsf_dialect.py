"""The LSF dialect's command lines, capabilities, options and plugin registration."""

from __future__ import annotations

import shlex

import pytest
from molq.batch import BatchScheduler
from molq.errors import ConfigError
from molq.model import (
    CompiledDependency,
    JobExecution,
    JobResources,
    JobScheduling,
    JobSpec,
)
from molq.plugins import PluginManager
from molq.transport import LocalTransport
from molq_lsf import LsfDialect, LsfOptions, build_scheduler

JOB_DIR = "/scratch/run 1/.molq/jobs/abc"
SCRIPT = JOB_DIR + "/job.sh"


def spec(**kwargs) -> JobSpec:
    return JobSpec(
        job_id="0123456789abcdef",
        command_type="argv",
        argv=("python", "train.py"),
        resources=kwargs.pop("resources", JobResources()),
        scheduling=kwargs.pop("scheduling", JobScheduling()),
        execution=kwargs.pop("execution", JobExecution()),
        **kwargs,
    )


def option(argv: list[str], flag: str) -> str | None:
    """The value following ``flag`` in ``argv`` (None when absent)."""
    return argv[argv.index(flag) + 1] if flag in argv else None


def test_minimal_submission():
    argv = LsfDialect().submit_argv(SCRIPT, spec())
    assert argv[0] == "bsub"
    assert option(argv, "-J") == "molq-01234567"
    assert option(argv, "-Jd") == "molq-0123456789abcdef"  # the adoption tag
    assert option(argv, "-o") == JOB_DIR + "/stdout"
    assert option(argv, "-e") == JOB_DIR + "/stderr"
    for flag in ("-q", "-P", "-n", "-M", "-R", "-W", "-gpu", "-x", "-w", "-cwd", "-u"):
        assert flag not in argv
    # The job's command is the script, quoted for the shell LSF runs it with.
    assert argv[-1] == shlex.quote(SCRIPT)
    assert shlex.split(argv[-1]) == [SCRIPT]


def test_full_resource_mapping():
    s = spec(
        resources=JobResources(cpu_count=4, memory="3G", gpu_count=2, gpu_type="TeslaV100",
                               time_limit="2h30m"),
        scheduling=JobScheduling(partition="long", account="chem-42", exclusive_node=True,
                                 email="me@example.org", priority="50", reservation="maint#1"),
        execution=JobExecution(job_name="relax", output_file="out.log", error_file="/abs/err.log"),
        cwd="/scratch/run 1",
    )
    argv = LsfDialect(LsfOptions(unit_for_limits="MB")).submit_argv(SCRIPT, s)
    assert option(argv, "-J") == "relax"
    assert option(argv, "-q") == "long"
    assert option(argv, "-P") == "chem-42"
    assert option(argv, "-n") == "4"
    assert option(argv, "-M") == "3072"
    assert option(argv, "-R") == "rusage[mem=3072] span[hosts=1]"
    assert option(argv, "-W") == "150"
    assert option(argv, "-gpu") == "num=2:gmodel=TeslaV100"
    assert "-x" in argv and "-N" in argv
    assert option(argv, "-u") == "me@example.org"
    assert option(argv, "-sp") == "50"
    assert option(argv, "-U") == "maint#1"
    assert option(argv, "-cwd") == "/scratch/run 1"
    assert option(argv, "-o") == "/scratch/run 1/out.log"  # relative to the job's cwd
    assert option(argv, "-e") == "/abs/err.log"


@pytest.mark.parametrize(
    ("unit", "expected"), [("KB", "1572864"), ("MB", "1536"), ("GB", "2"), ("tb", "1")]
)
def test_memory_is_written_in_the_clusters_unit(unit, expected):
    argv = LsfDialect(LsfOptions(unit_for_limits=unit)).submit_argv(
        SCRIPT, spec(resources=JobResources(memory="1536M"))
    )
    assert option(argv, "-M") == expected
    assert option(argv, "-R") == f"rusage[mem={expected}]"


def test_default_unit_is_kb():
    argv = LsfDialect().submit_argv(SCRIPT, spec(resources=JobResources(memory="1G")))
    assert option(argv, "-M") == "1048576"


def test_time_limit_rounds_up_to_whole_minutes():
    argv = LsfDialect().submit_argv(SCRIPT, spec(resources=JobResources(time_limit="61s")))
    assert option(argv, "-W") == "2"


@pytest.mark.parametrize(
    ("cpus", "nodes", "n", "req"),
    [(1, None, "1", None), (8, None, "8", "span[hosts=1]"), (None, 1, None, "span[hosts=1]"),
     (4, 3, "12", "span[ptile=4]"), (None, 2, "2", "span[ptile=1]")],
)
def test_cpus_and_nodes(cpus, nodes, n, req):
    argv = LsfDialect().submit_argv(
        SCRIPT, spec(resources=JobResources(cpu_count=cpus), scheduling=JobScheduling(node_count=nodes))
    )
    assert option(argv, "-n") == n
    assert option(argv, "-R") == req


def test_gpu_without_model():
    argv = LsfDialect().submit_argv(SCRIPT, spec(resources=JobResources(gpu_count=1)))
    assert option(argv, "-gpu") == "num=1"


def test_bad_gpu_model_and_priority_are_config_errors():
    with pytest.raises(ConfigError, match="gpu_type"):
        LsfDialect().submit_argv(SCRIPT, spec(resources=JobResources(gpu_count=1, gpu_type="a:b")))
    with pytest.raises(ConfigError, match="priority"):
        LsfDialect().submit_argv(SCRIPT, spec(scheduling=JobScheduling(priority="high")))


@pytest.mark.parametrize(
    ("array", "name"),
    [("1-10%2", "sweep[1-10]%2"), ("1-10", "sweep[1-10]"), ("1,3,5", "sweep[1,3,5]"),
     ("1-9:2%3", "sweep[1-9:2]%3")],
)
def test_arrays(array, name):
    argv = LsfDialect().submit_argv(
        SCRIPT, spec(scheduling=JobScheduling(array_spec=array), execution=JobExecution(job_name="sweep"))
    )
    assert option(argv, "-J") == name
    # Each element writes its own output files.
    assert option(argv, "-o") == JOB_DIR + "/stdout.%I"
    assert option(argv, "-e") == JOB_DIR + "/stderr.%I"


def test_brackets_in_names_cannot_turn_a_job_into_an_array():
    argv = LsfDialect().submit_argv(SCRIPT, spec(execution=JobExecution(job_name="fit [v2] ✓")))
    assert option(argv, "-J") == "fit (v2) ✓"


def test_all_four_dependency_conditions():
    deps = [
        CompiledDependency("after_success", "a", "11"),
        CompiledDependency("after_failure", "b", "12"),
        CompiledDependency("after_started", "c", "13"),
        CompiledDependency("after", "d", "14"),
    ]
    dialect = LsfDialect()
    expected = "done(11) && exit(12) && started(13) && ended(14)"
    assert dialect.compile_dependencies(deps) == expected
    assert option(dialect.submit_argv(SCRIPT, spec(dependencies=tuple(deps))), "-w") == expected
    assert dialect.compile_dependencies([]) is None
    assert [dialect.native_condition(d.condition, d.scheduler_job_id) for d in deps] == [
        "done(11)", "exit(12)", "started(13)", "ended(14)"]


def test_raw_dependency_string_is_passed_through():
    argv = LsfDialect().submit_argv(SCRIPT, spec(scheduling=JobScheduling(dependency="done(5) || exit(6)")))
    assert option(argv, "-w") == "done(5) || exit(6)"


def test_defaults_from_options_and_explicit_values_win():
    dialect = LsfDialect(LsfOptions(default_queue="short", default_project="p0"))
    argv = dialect.submit_argv(SCRIPT, spec())
    assert (option(argv, "-q"), option(argv, "-P")) == ("short", "p0")
    argv = dialect.submit_argv(SCRIPT, spec(scheduling=JobScheduling(partition="long", account="p1")))
    assert (option(argv, "-q"), option(argv, "-P")) == ("long", "p1")


def test_script_records_the_options_without_bsub_directives():
    text = LsfDialect().render_script(spec(resources=JobResources(cpu_count=2)), JOB_DIR)
    assert text.startswith("#!/bin/bash\n")
    assert "#BSUB" not in text  # the command line is authoritative
    assert "# Submitted by molq with: bsub " in text and "-n 2" in text


def test_capabilities_reject_qos_only():
    caps = LsfDialect().capabilities
    with pytest.raises(ConfigError, match="qos"):
        caps.check(spec(scheduling=JobScheduling(qos="high")), "lsf")
    caps.check(
        spec(resources=JobResources(cpu_count=2, memory="1G", gpu_count=1, gpu_type="A100", time_limit="1h"),
             scheduling=JobScheduling(partition="q", account="a", array_spec="1-2", email="e@x",
                                      reservation="r", exclusive_node=True, node_count=1, priority="1"),
             dependencies=(CompiledDependency("after", "x", "1"),)),
        "lsf",
    )
    assert caps.dependency_conditions == {"after_success", "after_failure", "after_started", "after"}


def test_query_command_lines():
    dialect = LsfDialect()
    status = dialect.status_argv(["1", "2"])
    assert status[:2] == ["bjobs", "-a"] and status[-3:] == ["-json", "1", "2"]
    assert "exit_reason" in option(status, "-o") and "jobindex" in option(status, "-o")
    # bjobs -a already lists finished jobs: there is no second (accounting) query.
    assert dialect.terminal_argv(["1"], None) is None
    # No user-chosen text (job name) is asked for in the status query.
    assert "job_name" not in option(status, "-o") and "job_description" not in option(status, "-o")
    assert dialect.cancel_argv(["1", "2[3]"]) == ["bkill", "1", "2[3]"]
    assert dialect.queue_argv(None)[-1] == "-json"
    assert dialect.queue_argv("alice")[-2:] == ["-u", "alice"]
    assert "job_description" in option(dialect.adopt_argv(["molq-x"]), "-o")


def test_options_validation():
    with pytest.raises(ConfigError, match="unit_for_limits"):
        LsfOptions(unit_for_limits="PB")
    with pytest.raises(ConfigError):
        LsfOptions(extra_bsub_args="-H")
    with pytest.raises(ConfigError):
        LsfOptions(binaries={"bsub": 1})
    with pytest.raises(ConfigError):
        LsfOptions(command_timeout=0)
    with pytest.raises(ConfigError):
        LsfOptions(default_queue="")
    assert LsfOptions(extra_bsub_args=["-app", "gpu"]).extra_bsub_args == ("-app", "gpu")


def test_build_scheduler_wires_options():
    options = LsfOptions(binaries={"bsub": "/opt/lsf/bin/bsub"}, extra_bsub_args=("-H",),
                         env={"LSF_ENVDIR": "/etc/lsf"}, command_timeout=5)
    sched = build_scheduler(LocalTransport(), options)
    assert isinstance(sched, BatchScheduler)
    assert sched.binaries == {"bsub": "/opt/lsf/bin/bsub"}
    assert sched.extra_submit_args == ("-H",)
    assert sched.env == {"LSF_ENVDIR": "/etc/lsf"}
    assert sched.retry.command_timeout == 5
    assert sched.dialect.options is options
    with pytest.raises(ConfigError):
        build_scheduler(LocalTransport(), {"unit_for_limits": "MB"})


def test_lsf_scheduler_is_the_public_factory_of_a_plain_batch_scheduler():
    import molq_lsf
    from molq_lsf import LSFScheduler

    sched = LSFScheduler(LocalTransport(), LsfOptions(default_queue="short"))
    assert type(sched) is BatchScheduler and isinstance(sched.dialect, LsfDialect)
    assert sched.dialect.options.default_queue == "short"
    assert "LSFScheduler" in molq_lsf.__all__


def test_plugin_registers_the_lsf_scheduler():
    manager = PluginManager()
    plugin = manager.get_scheduler("lsf")
    assert plugin.options_type is LsfOptions
    sched = plugin.factory(LocalTransport(), LsfOptions(default_queue="short"))
    assert sched.name == "lsf"
    assert sched.dialect.options.default_queue == "short"
    assert plugin.factory(LocalTransport(), None).dialect.options == LsfOptions()

"""What the PBS dialects render: directives, command lines, capabilities, options, plugin."""

from __future__ import annotations

import shutil
import subprocess

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
from molq.transport import LocalTransport
from molq_pbs import PbsOptions, PbsProDialect, PBSScheduler, PbsScheduler, TorqueDialect
from molq_pbs.dialect import sanitize_job_name


def spec(**fields) -> JobSpec:
    return JobSpec(job_id=fields.pop("job_id", "0123456789ab"), command_type="argv", argv=("true",), **fields)


def directives(dialect, s: JobSpec) -> list[str]:
    return [line.removeprefix("#PBS ") for line in dialect.render_directives(s, "/jobs/x")]


def test_pbspro_full_directives():
    s = spec(
        resources=JobResources(cpu_count=4, memory="1536M", gpu_count=2, time_limit="1d2h"),
        scheduling=JobScheduling(
            partition="long",
            account="proj1",
            node_count=3,
            exclusive_node=True,
            array_spec="1-10:2%3",
            email="me@example.org",
            priority="-5",
        ),
        execution=JobExecution(job_name="sweep"),
        dependencies=(
            CompiledDependency("after_success", "a", "11.srv"),
            CompiledDependency("after_failure", "b", "12.srv"),
            CompiledDependency("after_started", "c", "13.srv"),
            CompiledDependency("after", "d", "14.srv"),
            CompiledDependency("after_success", "e", "15[].srv"),
        ),
    )
    assert directives(PbsProDialect(), s) == [
        "-N sweep",
        "-q long",
        "-A proj1",
        "-l select=3:ncpus=4:mem=1536mb:ngpus=2",
        "-l place=scatter:excl",
        "-l walltime=26:00:00",
        "-J 1-10:2%3",
        "-W depend=afterok:11.srv:15[].srv,afternotok:12.srv,after:13.srv,afterany:14.srv",
        "-M me@example.org",
        "-m ae",
        "-p -5",
        "-v MOLQ_TAG=molq-0123456789ab",
    ]


def test_pbspro_minimal_job_has_no_resource_lines():
    assert directives(PbsProDialect(), spec()) == ["-N molq-01234567", "-v MOLQ_TAG=molq-0123456789ab"]


@pytest.mark.parametrize(
    "sched,expected",
    [
        (JobScheduling(node_count=2), ["-l select=2:ncpus=1", "-l place=scatter"]),
        (JobScheduling(exclusive_node=True), ["-l place=excl"]),
        (JobScheduling(node_count=1), ["-l select=1:ncpus=1"]),
    ],
)
def test_pbspro_nodes_and_placement(sched, expected):
    lines = directives(PbsProDialect(), spec(scheduling=sched))
    assert [ln for ln in lines if ln.startswith("-l")] == expected


def test_torque_directives():
    s = spec(
        resources=JobResources(cpu_count=4, memory="2G", gpu_count=1, time_limit="90m"),
        scheduling=JobScheduling(node_count=2, exclusive_node=True, array_spec="1,3,5-7%2"),
        execution=JobExecution(job_name="a rather long job name"),
        dependencies=(CompiledDependency("after", "d", "14"),),
    )
    assert directives(TorqueDialect(), s) == [
        "-N a_rather_long_j",
        "-l nodes=2:ppn=4:gpus=1",
        "-l mem=4gb",  # per-node memory times two nodes
        "-l walltime=01:30:00",
        "-n",
        "-t 1,3,5-7%2",
        "-W depend=afterany:14",
        "-v MOLQ_TAG=molq-0123456789ab",
    ]


def test_raw_dependency_string_is_kept_next_to_compiled_ones():
    s = spec(scheduling=JobScheduling(dependency="afterany:99.srv"))
    assert "-W depend=afterany:99.srv" in directives(PbsProDialect(), s)


def test_defaults_apply_only_when_the_job_names_none():
    d = PbsProDialect(default_queue="workq", default_account="lab")
    assert directives(d, spec())[1:3] == ["-q workq", "-A lab"]
    mine = directives(d, spec(scheduling=JobScheduling(partition="long", account="other")))
    assert mine[1:3] == ["-q long", "-A other"]


@pytest.mark.parametrize(
    "name,max_len,numeric,expected",
    [
        ("my job", 236, True, "my_job"),
        ("données été", 236, True, "donn_es__t_"),
        ("tab\tand\"quote'#", 236, True, "tab_and_quote__"),
        ("9lives", 236, True, "9lives"),
        ("9lives", 15, False, "j9lives"),
        ("_hidden", 236, True, "j_hidden"),
        ("x" * 300, 236, True, "x" * 236),
    ],
)
def test_job_name_sanitizing(name, max_len, numeric, expected):
    assert sanitize_job_name(name, max_length=max_len, numeric_first=numeric) == expected


@pytest.mark.parametrize("bad", ["1,2,5", "7", "1-10,20"])
def test_pbspro_refuses_arrays_it_cannot_express(bad):
    with pytest.raises(ConfigError, match="array"):
        PbsProDialect().render_directives(spec(scheduling=JobScheduling(array_spec=bad)), "/j")


@pytest.mark.parametrize(("given", "option"), [("1,3,5", "-J 1-5:2"), ("0,1%1", "-J 0-1%1"), ("2-8:3", "-J 2-8:3")])
def test_pbspro_writes_indices_in_one_step_as_its_one_range(given, option):
    # The last part of a split array can be such a list ("0,1").
    lines = PbsProDialect().render_directives(spec(scheduling=JobScheduling(array_spec=given)), "/j")
    assert f"#PBS {option}" in lines


def test_torque_refuses_array_steps():
    with pytest.raises(ConfigError, match="step"):
        TorqueDialect().render_directives(spec(scheduling=JobScheduling(array_spec="1-10:2")), "/j")


@pytest.mark.parametrize(
    "sched,field",
    [
        (JobScheduling(partition="my queue"), "scheduling.partition"),
        (JobScheduling(account="a'b"), "scheduling.account"),
        (JobScheduling(email="a@b #c"), "scheduling.email"),
    ],
)
def test_values_that_would_break_a_directive_are_refused(sched, field):
    with pytest.raises(ConfigError, match=field):
        PbsProDialect().render_directives(spec(scheduling=sched), "/j")


@pytest.mark.parametrize("priority", ["high", "5000", "-2000"])
def test_priority_must_be_a_pbs_integer(priority):
    with pytest.raises(ConfigError, match="priority"):
        PbsProDialect().render_directives(spec(scheduling=JobScheduling(priority=priority)), "/j")


def test_unsafe_job_ids_get_no_tag():
    lines = directives(PbsProDialect(), spec(job_id="a,b=c"))
    assert not any(ln.startswith("-v") for ln in lines)


# -- capabilities ----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [PbsProDialect(), TorqueDialect()])
@pytest.mark.parametrize("sched", [JobScheduling(qos="high"), JobScheduling(reservation="R12")])
def test_unsupported_scheduling_fields_are_refused(dialect, sched):
    with pytest.raises(ConfigError, match="not supported by the 'pbs' scheduler"):
        dialect.capabilities.check(spec(scheduling=sched), "pbs")


def test_gpu_type_needs_a_site_resource_on_pbspro():
    s = spec(resources=JobResources(gpu_count=1, gpu_type="a100"))
    with pytest.raises(ConfigError, match="resources.gpu_type"):
        PbsProDialect().capabilities.check(s, "pbs")
    with pytest.raises(ConfigError, match="resources.gpu_type"):
        TorqueDialect().capabilities.check(s, "pbs")
    d = PbsProDialect(gpu_type_resource="gpu_model")
    d.capabilities.check(s, "pbs")
    assert "-l select=1:ngpus=1:gpu_model=a100" in directives(d, s)


def test_everything_else_is_supported():
    s = spec(
        resources=JobResources(cpu_count=1, memory="1G", gpu_count=1, time_limit="1h"),
        scheduling=JobScheduling(
            partition="q",
            account="a",
            priority="1",
            node_count=1,
            exclusive_node=True,
            array_spec="1-2",
            email="a@b",
        ),
        execution=JobExecution(env={"A": "1"}, cwd="/tmp", job_name="n", output_file="o", error_file="e"),
    )
    PbsProDialect().capabilities.check(s, "pbs")
    TorqueDialect().capabilities.check(s, "pbs")


# -- command lines ---------------------------------------------------------------------------


def test_submit_argv_puts_output_paths_on_the_command_line():
    d = PbsProDialect()
    assert d.submit_argv("/w/.molq/jobs/x/job.sh", spec()) == [
        "qsub",
        "-o",
        "/w/.molq/jobs/x/stdout",
        "-e",
        "/w/.molq/jobs/x/stderr",
        "/w/.molq/jobs/x/job.sh",
    ]
    joined = spec(execution=JobExecution(output_file="all.log", error_file="all.log"), cwd="/w")
    assert d.submit_argv("/w/j/job.sh", joined) == ["qsub", "-j", "oe", "-o", "/w/all.log", "/w/j/job.sh"]
    with pytest.raises(ConfigError, match="':'"):
        d.submit_argv("/w/j/job.sh", spec(execution=JobExecution(output_file="/w/a:b")))


def test_query_command_lines():
    assert PbsProDialect().status_argv(["1.s", "2[].s"]) == [
        "qstat",
        "-f",
        "-F",
        "json",
        "-x",
        "-t",
        "1.s",
        "2[].s",
    ]
    assert PbsProDialect(use_history=False).status_argv(["1.s"]) == ["qstat", "-f", "-F", "json", "-t", "1.s"]
    assert TorqueDialect().status_argv(["1"]) == ["qstat", "-f", "-1", "1"]
    assert PbsProDialect().cancel_argv(["1.s", "2.s"]) == ["qdel", "1.s", "2.s"]
    assert PbsProDialect().queue_argv("bob") == ["qstat", "-f", "-F", "json"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash to syntax-check the script")
@pytest.mark.parametrize("dialect", [PbsProDialect(), TorqueDialect()])
def test_rendered_script_is_valid_shell_with_directives_first(dialect, tmp_path):
    s = spec(resources=JobResources(cpu_count=2, time_limit="1h"), execution=JobExecution(job_name="x y"))
    text = dialect.render_script(s, str(tmp_path))
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    first_command = next(i for i, ln in enumerate(lines) if ln and not ln.startswith("#"))
    assert all(ln.startswith("#PBS ") for ln in lines[1:first_command] if not ln.startswith("# molq"))
    path = tmp_path / "job.sh"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


# -- options and plugin ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "given,flavor", [("pbspro", "pbspro"), ("OpenPBS", "pbspro"), ("torque", "torque"), ("Auto", "auto")]
)
def test_flavor_names(given, flavor):
    assert PbsOptions(flavor=given).flavor == flavor


@pytest.mark.parametrize(
    "fields",
    [
        {"flavor": "lsf"},
        {"extra_qsub_args": "-h"},
        {"default_queue": "two words"},
        {"command_timeout": 0},
        {"binaries": {"qsub": 1}},
    ],
)
def test_bad_options(fields):
    with pytest.raises(ConfigError):
        PbsOptions(**fields)


def test_plugin_registers_pbs_and_builds_both_flavours():
    from molq_pbs import plugin

    (registration,) = list(plugin.molq_register_schedulers())
    assert registration.name == "pbs" and registration.options_type is PbsOptions
    pro = registration.factory(LocalTransport(), None)
    # No PBS subclass of the runner: the public names are factories of a plain BatchScheduler.
    assert type(pro) is BatchScheduler and isinstance(pro.dialect, PbsProDialect)
    assert type(PbsScheduler(LocalTransport())) is BatchScheduler
    assert PBSScheduler is PbsScheduler
    assert pro.dialect.queue_filters_user_itself is False
    torque = registration.factory(
        LocalTransport(),
        PbsOptions(
            flavor="torque",
            binaries={"qsub": "/opt/t/qsub"},
            extra_qsub_args=["-V"],
            env={"PBS_DEFAULT": "srv"},
            command_timeout=5,
            default_queue="batch",
        ),
    )
    assert isinstance(torque.dialect, TorqueDialect)
    assert torque.binaries == {"qsub": "/opt/t/qsub"}
    assert torque.extra_submit_args == ("-V",)
    assert torque.env == {"PBS_DEFAULT": "srv"}
    assert torque.retry.command_timeout == 5
    assert torque.dialect.default_queue == "batch"


def test_plugin_is_discovered_through_the_entry_point():
    from molq.plugins import PluginManager

    manager = PluginManager()
    assert manager.get_scheduler("pbs").options_type is PbsOptions

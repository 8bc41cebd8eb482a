"""The molexp-style consumer (examples/molexp-molq) against the local scheduler and real SLURM.

What is checked: the scheduler flags become the right molq objects, a run directory is
submitted as the worker command, run.json gets the normalised executor metadata, and the run's
status is written by the event sink registered through molq's entry points -- in whatever
process refreshes the job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from molexp_molq import (
    BackendMissingError,
    RunDirError,
    SubmitFlags,
    SubmitHandler,
    SubmitInputError,
    create_run,
    discover_ui_plugins,
    read_run,
    worker_argv,
)
from molexp_molq.cli import cli
from molq import ConfigError, Duration, JobState, Memory, Submitor, load_config, save_config
from molq.config import MolqConfig, MolqProfile
from molq.plugins import get_plugin_manager

EXECUTOR_KEYS = {"backend", "scheduler", "cluster", "job_id", "scheduler_job_id"}


def states(run: dict) -> list[str]:
    return [h["state"] for h in run["history"]]


# -- flags -> molq objects -------------------------------------------------------------------


def test_flags_become_molq_objects() -> None:
    flags = SubmitFlags(scheduler="slurm", partition="gpu", account="proj", qos="high", cluster="hpc",
                        cpus=8, mem="32G", gpus=2, gpu_type="a100", time="2h30m")
    res = flags.resources()
    assert (res.cpu_count, res.memory, res.gpu_count, res.gpu_type, res.time_limit) == (
        8, Memory.gb(32), 2, "a100", Duration.minutes(150))
    sched = flags.scheduling()
    assert (sched.partition, sched.account, sched.qos) == ("gpu", "proj", "high")
    ex = flags.execution("/runs/r1", "abc")
    assert (ex.cwd, ex.job_name) == ("/runs/r1", "molexp-abc")
    # The interpreter is the cluster's, not this machine's sys.executable (seed 001: "python -m ...").
    assert worker_argv("/runs/r1") == ["python3", "-m", "molexp_molq.worker", "execute", "/runs/r1"]
    assert worker_argv("/r", "/opt/conda/bin/python")[0] == "/opt/conda/bin/python"


def test_bad_flag_values_are_refused() -> None:
    with pytest.raises(ConfigError):
        SubmitFlags(mem="lots").resources()
    with pytest.raises(ConfigError, match="gpu_type needs gpu_count"):
        SubmitFlags(gpu_type="a100").resources()


def test_cli_flags_parse_into_submit_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = {}

    class Recorder:
        def __init__(self, flags: SubmitFlags, *, python: str) -> None:
            seen["flags"], seen["python"] = flags, python
            raise BackendMissingError("stop here")

    monkeypatch.setattr("molexp_molq.cli.SubmitHandler", Recorder)
    result = CliRunner().invoke(cli, [
        "submit", str(tmp_path), "--scheduler", "lsf", "--queue", "short", "--account", "a", "--qos", "q",
        "--cluster", "c", "--cpus", "4", "--mem", "8G", "--gpus", "1", "--gpu-type", "v100", "--time", "1h",
    ])
    assert result.exit_code == 1 and "stop here" in result.output
    assert seen["flags"] == SubmitFlags(scheduler="lsf", partition="short", account="a", qos="q", cluster="c",
                                        cpus=4, mem="8G", gpus=1, gpu_type="v100", time="1h")
    assert seen["python"] == "python3"


# -- plugin registration and fail-fast -------------------------------------------------------


def test_event_sink_registered_through_molq_entry_points() -> None:
    pm = get_plugin_manager()
    assert "molexp-runs" in [s.name for s in pm.event_sinks()]
    info = {i.name: i for i in pm.plugin_infos()}["molexp"]
    assert info.distribution == "molexp-molq" and "event_sink:molexp-runs" in info.provides


@pytest.mark.parametrize("scheduler, hint", [("pbs", "pip install molq-pbs"), ("nosuch", "pip install molq-nosuch")])
def test_missing_backend_fails_fast_with_install_hint(
    scheduler: str, hint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOLQ_BLOCK_PLUGINS", "molq-pbs")
    from molq.plugins import reset_plugin_manager

    reset_plugin_manager()
    run = create_run(tmp_path / "r1", {"n": 3})
    before = (run / "run.json").read_text()
    with pytest.raises(BackendMissingError, match=hint):
        SubmitHandler(SubmitFlags(scheduler=scheduler))
    result = CliRunner().invoke(cli, ["submit", str(run), "--scheduler", scheduler])
    assert result.exit_code != 0 and hint in result.output
    assert (run / "run.json").read_text() == before
    assert not (run / ".molq").exists()


def test_profile_and_scheduler_must_agree(tmp_path: Path) -> None:
    save_config(MolqConfig({"box": MolqProfile("box", scheduler="local")}))
    with pytest.raises(ConfigError, match="'local' scheduler"):
        SubmitHandler(SubmitFlags(scheduler="slurm", cluster="box"))


def test_flag_the_scheduler_cannot_honour_is_refused_before_submitting(tmp_path: Path) -> None:
    run = create_run(tmp_path / "r1")
    with SubmitHandler(SubmitFlags(partition="gpu"), python=sys.executable) as handler:
        with pytest.raises(ConfigError, match="scheduling.partition"):
            handler.submit_run(run)
        assert handler.submitor.list_jobs(include_terminal=True) == []
    assert read_run(run)["status"] == "created"


# -- validate every run first, one-line errors ----------------------------------------------


def store_jobs() -> list:
    """Every job molq recorded for the default local cluster of these tests."""
    from molq import Cluster

    with Submitor(Cluster("local")) as sub:
        return sub.list_jobs(include_terminal=True)


def one_line_error(result) -> str:
    """The error a CLI call printed; fails unless it is exactly one line and no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def untouched(runs: list[Path]) -> list[dict]:
    return [read_run(r) for r in runs]


def test_run_dir_without_run_json_submits_none(tmp_path: Path) -> None:
    good = [create_run(tmp_path / "a"), create_run(tmp_path / "c")]
    bare = tmp_path / "b"
    bare.mkdir()
    before = untouched(good)
    result = CliRunner().invoke(cli, ["submit", str(good[0]), str(bare), str(good[1]), "--python", sys.executable])
    line = one_line_error(result)
    assert f"{bare}: no run.json" in line and "molexp-molq init" in line
    assert untouched(good) == before
    assert store_jobs() == []
    assert not (good[0] / ".molq").exists()


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not valid JSON"),
    ('{"status": "created"}', "has no run_id"),
    ("[1, 2]", "has no run_id"),
])
def test_broken_run_json_submits_none(tmp_path: Path, content: str, problem: str) -> None:
    good = create_run(tmp_path / "good")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text(content)
    with SubmitHandler(SubmitFlags(), python=sys.executable) as handler:
        with pytest.raises(RunDirError, match=problem):
            handler.submit_runs([good, broken])
    assert read_run(good)["status"] == "created" and "executor" not in read_run(good)
    assert store_jobs() == []


def test_flag_the_scheduler_cannot_honour_submits_none_from_the_cli(tmp_path: Path) -> None:
    runs = [create_run(tmp_path / f"r{i}") for i in range(3)]
    before = untouched(runs)
    result = CliRunner().invoke(cli, ["submit", *map(str, runs), "--partition", "gpu", "--gpus", "1"])
    line = one_line_error(result)
    assert "is not supported by the 'local' scheduler" in line
    assert untouched(runs) == before
    assert store_jobs() == []


@pytest.mark.parametrize("args, problem", [
    (["--mem", "lots"], "memory"),
    (["--time", "10:70"], "seconds must be at most 59"),
    (["--gpu-type", "a100"], "gpu_type needs gpu_count"),
])
def test_bad_flag_value_is_one_line(tmp_path: Path, args: list[str], problem: str) -> None:
    run = create_run(tmp_path / "r")
    line = one_line_error(CliRunner().invoke(cli, ["submit", str(run), *args]))
    assert problem in line
    assert read_run(run)["status"] == "created" and store_jobs() == []


def test_same_run_twice_is_refused(tmp_path: Path) -> None:
    run = create_run(tmp_path / "r")
    line = one_line_error(CliRunner().invoke(cli, ["submit", str(run), str(tmp_path / "." / "r")]))
    assert "given twice" in line
    assert store_jobs() == []


def test_bad_interpreter_is_refused(tmp_path: Path) -> None:
    run = create_run(tmp_path / "r")
    line = one_line_error(CliRunner().invoke(cli, ["submit", str(run), "--python", " "]))
    assert "worker interpreter" in line
    with pytest.raises(SubmitInputError):
        SubmitHandler(SubmitFlags(), python="python3\nrm -rf ~")


def test_status_and_init_errors_are_one_line(tmp_path: Path) -> None:
    assert "no run.json" in one_line_error(CliRunner().invoke(cli, ["status", str(tmp_path)]))
    run = create_run(tmp_path / "r")
    assert "already exists" in one_line_error(CliRunner().invoke(cli, ["init", str(run)]))
    bad_json = CliRunner().invoke(cli, ["init", str(tmp_path / "new"), "--config", "{oops"])
    assert bad_json.exit_code == 2 and "Traceback" not in bad_json.output and "not JSON" in bad_json.output
    assert not (tmp_path / "new").exists()


@pytest.mark.slurm
def test_scheduler_refusal_names_the_runs_left(tmp_path: Path, slurm_conf: str) -> None:
    """A refusal only the scheduler can know about (a partition that does not exist) stops at
    the first run; the message says which runs were not submitted."""
    save_config(MolqConfig({"molqacct": MolqProfile(
        "molqacct", scheduler="slurm", scheduler_options={"env": {"SLURM_CONF": slurm_conf}})}))
    runs = [create_run(tmp_path / f"r{i}") for i in range(2)]
    result = CliRunner().invoke(cli, ["submit", *map(str, runs), "--scheduler", "slurm", "--cluster", "molqacct",
                                      "--partition", "no-such-partition", "--python", sys.executable])
    line = one_line_error(result)
    assert f"{runs[0]}: " in line and "no-such-partition" in line
    assert f"not submitted: {runs[0]}, {runs[1]}" in line
    # molq recorded the refused submission as failed, and the sink said so in run.json; the
    # second run was never tried.
    assert [read_run(r)["status"] for r in runs] == ["failed", "created"]


# -- the worker's interpreter ---------------------------------------------------------------


def test_worker_runs_with_the_python3_on_the_clusters_path(tmp_path: Path) -> None:
    """No --python: the job runs `python3` from the PATH the job sees, not this sys.executable."""
    bindir = tmp_path / "cluster-bin"
    bindir.mkdir()
    marker = tmp_path / "used-cluster-python3"
    shim = bindir / "python3"
    # The cluster's python3 (a stand-in that records its use, then runs the real interpreter).
    shim.write_text(f'#!/bin/sh\ntouch "{marker}"\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    run = create_run(tmp_path / "r", {"n": 4})
    env = {k: v for k, v in os.environ.items() if k != "MOLEXP_MOLQ_PYTHON"}
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    proc = subprocess.run([sys.executable, "-c", "from molexp_molq.cli import main; main()",
                           "submit", str(run), "--block", "--timeout", "60"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()
    assert json.loads((run / "result.json").read_text())["value"] == 6
    (job,) = store_jobs()
    assert job.command_display == f"python3 -m molexp_molq.worker execute {run}"


def test_configured_interpreter_is_the_one_submitted(tmp_path: Path) -> None:
    run = create_run(tmp_path / "r", {"n": 3})
    with SubmitHandler(SubmitFlags(), python=sys.executable) as handler:
        info = handler.submit_run(run)
        final = handler.wait([run], timeout=60)[0]
        record = handler.submitor.get_job(info["job_id"])
    assert record.command_display.split()[0] == sys.executable
    assert final["status"] == "succeeded"


# -- UI plugin discovery (seed 001) ---------------------------------------------------------


def test_ui_plugin_descriptor_when_molq_is_installed() -> None:
    import molq

    (descriptor,) = discover_ui_plugins()
    assert descriptor.name == "molq" and descriptor.version == molq.__version__
    assert set(descriptor.surfaces) == {"run-viewer", "monitor"}
    assert set(descriptor.executor_fields) == EXECUTOR_KEYS
    shown = json.loads(CliRunner().invoke(cli, ["ui-plugins"]).output)
    assert shown == [descriptor.to_dict()]


def test_no_ui_plugin_without_molq() -> None:
    """Without molq the discovery returns nothing and does not fail (a fresh interpreter in
    which molq cannot be imported)."""
    code = ("import sys; sys.modules['molq'] = None\n"
            "from molexp_molq.plugins import discover_ui_plugins\n"
            "print(discover_ui_plugins())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# -- local scheduler ------------------------------------------------------------------------


def test_local_run_end_to_end(tmp_path: Path) -> None:
    good = create_run(tmp_path / "good", {"n": 101})
    bad = create_run(tmp_path / "bad", {"n": 5, "exit_code": 3})
    # This test's "cluster" is this machine: the worker runs with this interpreter.
    with SubmitHandler(SubmitFlags(cpus=1, cluster="laptop"), python=sys.executable) as handler:
        info = handler.submit_run(good)
        handler.submit_run(bad)
        runs = handler.wait([good, bad], timeout=60)
        record = handler.submitor.get_job(info["job_id"])
    ok, failed = runs
    assert set(ok["executor"]) == EXECUTOR_KEYS
    assert ok["executor"] == {"backend": "molq", "scheduler": "local", "cluster": "laptop",
                              "job_id": record.job_id, "scheduler_job_id": record.scheduler_job_id}
    assert ok["status"] == "succeeded" and ok["exit_code"] == 0
    assert states(ok)[0] == "submitted" and states(ok)[-1] == "succeeded"
    assert json.loads((good / "result.json").read_text())["value"] == sum(range(101))
    assert record.cwd == str(good)
    assert failed["status"] == "failed" and failed["exit_code"] == 3
    assert json.loads((bad / "result.json").read_text())["value"] == sum(range(5))


def test_status_follows_events_of_another_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Submit without waiting, then let the `molq` CLI (another process) drive the job: the
    entry-point sink updates run.json there. With the plugin blocked in that process, the
    same refresh leaves run.json alone: the adapter itself never polls."""
    blocked_run = create_run(tmp_path / "blocked", {"n": 3})
    run = create_run(tmp_path / "followed", {"n": 7})
    runner = CliRunner()
    # Two clusters: a refresh reconciles every active job of its cluster.
    for r, cluster in ((blocked_run, "laptop-blocked"), (run, "laptop")):
        result = runner.invoke(cli, ["submit", str(r), "--cluster", cluster, "--python", sys.executable])
        assert result.exit_code == 0, result.output
    assert read_run(run)["status"] == "submitted"
    env = dict(os.environ, MOLQ_BLOCK_PLUGINS="molexp-molq")
    blocked_job = read_run(blocked_run)["executor"]["job_id"]
    proc = subprocess.run([sys.executable, "-m", "molq", "watch", blocked_job, "--timeout", "60"],
                          env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert read_run(blocked_run)["status"] == "submitted"
    job = read_run(run)["executor"]["job_id"]
    proc = subprocess.run([sys.executable, "-m", "molq", "watch", job, "--timeout", "60"],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    final = read_run(run)
    assert final["status"] == "succeeded"
    assert states(final)[0] == "submitted" and states(final)[-1] == "succeeded"
    status = runner.invoke(cli, ["status", str(run)])
    assert status.output.strip() == f"{run}: succeeded local {final['executor']['scheduler_job_id']}"


def test_cli_block_exit_code(tmp_path: Path) -> None:
    run = create_run(tmp_path / "r", {"exit_code": 2})
    result = CliRunner(env={"MOLEXP_MOLQ_PYTHON": sys.executable}).invoke(
        cli, ["submit", str(run), "--block", "--timeout", "60"])
    assert result.exit_code == 1
    assert f"{run}: failed" in result.output


# -- real SLURM -----------------------------------------------------------------------------


@pytest.mark.slurm
def test_slurm_runs_with_every_flag(slurm_conf: str, tmp_path: Path) -> None:
    # The molq profile carries what flags cannot: which SLURM cluster (SLURM_CONF).
    save_config(MolqConfig({"molqacct": MolqProfile(
        "molqacct", scheduler="slurm", scheduler_options={"env": {"SLURM_CONF": slurm_conf}})}))
    assert load_config().profiles["molqacct"].scheduler == "slurm"
    runs = [create_run(tmp_path / f"r{i}", {"n": 10 * i, "exit_code": 0 if i < 2 else 4}) for i in range(3)]
    flags = SubmitFlags(scheduler="slurm", cluster="molqacct", partition="long", account="molqtest",
                        qos="molqtest", cpus=1, mem="100M", time="5m")
    # The SLURM node is this machine: its interpreter with molexp-molq is this one.
    with SubmitHandler(flags, python=sys.executable) as handler:
        infos = handler.submit_runs(runs)
        finals = handler.wait(runs, timeout=120)
    assert [f["status"] for f in finals] == ["succeeded", "succeeded", "failed"]
    assert finals[2]["exit_code"] == 4
    for run, info, final in zip(runs, infos, finals, strict=True):
        assert final["executor"] == info
        assert info["backend"] == "molq" and info["scheduler"] == "slurm" and info["cluster"] == "molqacct"
        assert info["scheduler_job_id"].isdigit()
        # The controller's own record of the job (kept for MinJobAge after it ended).
        shown = subprocess.run(["scontrol", "show", "job", "-o", info["scheduler_job_id"]],
                               env=dict(os.environ, SLURM_CONF=slurm_conf),
                               capture_output=True, text=True, timeout=30).stdout
        fields = dict(f.split("=", 1) for f in shown.split() if "=" in f)
        name, partition, account, qos = fields["JobName"], fields["Partition"], fields["Account"], fields["QOS"]
        cpus, limit = fields["NumCPUs"], fields["TimeLimit"]
        assert name == f"molexp-{read_run(run)['run_id']}"
        assert (partition, account, qos, cpus) == ("long", "molqtest", "molqtest", "1")
        assert limit in ("00:05:00", "5:00")
        assert json.loads((run / "result.json").read_text())["value"] == sum(range(10 * runs.index(run)))
    # The same records are visible to plain molq, under the cluster name the flags chose.
    sub = Submitor.from_profile("molqacct")
    assert {r.state for r in sub.list_jobs(include_terminal=True)} == {JobState.SUCCEEDED, JobState.FAILED}
    sub.close()

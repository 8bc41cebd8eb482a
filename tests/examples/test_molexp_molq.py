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
from molexp_molq import BackendMissingError, SubmitFlags, SubmitHandler, create_run, read_run, worker_argv
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
    assert worker_argv("/runs/r1") == [sys.executable, "-m", "molexp_molq.worker", "execute", "/runs/r1"]


def test_bad_flag_values_are_refused() -> None:
    with pytest.raises(ConfigError):
        SubmitFlags(mem="lots").resources()
    with pytest.raises(ConfigError, match="gpu_type needs gpu_count"):
        SubmitFlags(gpu_type="a100").resources()


def test_cli_flags_parse_into_submit_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = {}

    class Recorder:
        def __init__(self, flags: SubmitFlags) -> None:
            seen["flags"] = flags
            raise BackendMissingError("stop here")

    monkeypatch.setattr("molexp_molq.cli.SubmitHandler", Recorder)
    result = CliRunner().invoke(cli, [
        "submit", str(tmp_path), "--scheduler", "lsf", "--queue", "short", "--account", "a", "--qos", "q",
        "--cluster", "c", "--cpus", "4", "--mem", "8G", "--gpus", "1", "--gpu-type", "v100", "--time", "1h",
    ])
    assert result.exit_code == 1 and "stop here" in result.output
    assert seen["flags"] == SubmitFlags(scheduler="lsf", partition="short", account="a", qos="q", cluster="c",
                                        cpus=4, mem="8G", gpus=1, gpu_type="v100", time="1h")


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
    with SubmitHandler(SubmitFlags(partition="gpu")) as handler:
        with pytest.raises(ConfigError, match="scheduling.partition"):
            handler.submit_run(run)
        assert handler.submitor.list_jobs(include_terminal=True) == []
    assert read_run(run)["status"] == "created"


# -- local scheduler ------------------------------------------------------------------------


def test_local_run_end_to_end(tmp_path: Path) -> None:
    good = create_run(tmp_path / "good", {"n": 101})
    bad = create_run(tmp_path / "bad", {"n": 5, "exit_code": 3})
    with SubmitHandler(SubmitFlags(cpus=1, cluster="laptop")) as handler:
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
        result = runner.invoke(cli, ["submit", str(r), "--cluster", cluster])
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
    result = CliRunner().invoke(cli, ["submit", str(run), "--block", "--timeout", "60"])
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
    with SubmitHandler(flags) as handler:
        infos = [handler.submit_run(r) for r in runs]
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

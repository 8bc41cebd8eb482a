"""Shared polls, the command budget and the circuit breaker (molq.engine.shared_poll), driven
through ``Submitor`` and the real SLURM runner, with fake ``sbatch``/``squeue`` on PATH.

Two ``Submitor`` objects on two ``JobStore`` objects opened on one SQLite file stand for two
processes: they share nothing but the file. The failing answer is the controller-down text
captured on this project's SLURM test cluster (tests/corpus/slurm/squeue_controller_down_live.toml).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import tomllib

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "corpus"))

from fakecmd import Answer, FakeCommands, on_path  # noqa: E402
from molq import Cluster, Submitor  # noqa: E402
from molq.engine import shared_poll  # noqa: E402
from molq.engine.loops import watch  # noqa: E402
from molq.engine.refresh import refresh  # noqa: E402
from molq.model import JobState  # noqa: E402
from molq.pacing import PacingPolicy  # noqa: E402
from molq.store import JobStore  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "slurm"
NOW = int(time.time())


def _controller_down() -> Answer:
    with (CORPUS / "squeue_controller_down_live.toml").open("rb") as fh:
        sample = tomllib.load(fh)
    return Answer(sample["stdout"], sample["stderr"], sample["returncode"])


def _line(sid: str, state: str) -> str:
    # molq's squeue --Format: JobID|ArrayJobID|ArrayTaskID|HetJobID|HetJobOffset|State|Reason|
    # exit_code|StartTime|EndTime|SubmitTime|Comment
    start = str(NOW) if state == "RUNNING" else "N/A"
    return f"{sid}|{sid}|N/A|N/A|N/A|{state}|None|0|{start}|N/A|{NOW}|\n"


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCommands:
    shared_poll._warned.clear()
    return on_path(tmp_path, monkeypatch)


def _pair(tmp_path: Path, policy: PacingPolicy) -> tuple[Submitor, Submitor]:
    """Two submitors ("processes") on one store file and one cluster."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    out = []
    for _ in range(2):
        cluster = Cluster("shared", "slurm", scheduler_options={"retry_attempts": 1, "retry_initial_delay": 0.0})
        cluster.scheduler_impl.pacing = policy
        out.append(Submitor(cluster, store=JobStore(url), jobs_dir=str(tmp_path / "jobs")))
    return out[0], out[1]


def test_a_second_process_uses_the_first_ones_answer(fakes: FakeCommands, tmp_path: Path) -> None:
    fakes.set("sbatch", "101\n")
    fakes.set("squeue", _line("101", "RUNNING"))
    a, b = _pair(tmp_path, PacingPolicy(min_interval=0.6, max_interval=5.0))
    job = a.submit_job(command="true")
    a.refresh_jobs()
    assert len(fakes.calls("squeue")) == 1
    b.refresh_jobs()  # the store already holds a's answer, younger than the minimum interval
    assert len(fakes.calls("squeue")) == 1
    assert b.get_job(job.job_id).state == JobState.RUNNING
    time.sleep(0.7)
    b.refresh_jobs()
    assert len(fakes.calls("squeue")) == 2


def test_a_new_job_is_polled_at_once_when_asked(fakes: FakeCommands, tmp_path: Path) -> None:
    fakes.set("sbatch", "101\n", "102\n")
    fakes.set("squeue", _line("101", "RUNNING"), _line("101", "RUNNING") + _line("102", "PENDING"))
    a, b = _pair(tmp_path, PacingPolicy(min_interval=30.0, max_interval=60.0))
    a.submit_job(command="true")
    a.refresh_jobs()
    second = b.submit_job(command="true")
    b.refresh_jobs()  # no poll has seen job 102 yet: an asked-for refresh polls
    assert len(fakes.calls("squeue")) == 2
    assert a.get_job(second.job_id).state == JobState.QUEUED


def test_waiting_loops_grow_the_interval_while_nothing_moves(fakes: FakeCommands, tmp_path: Path) -> None:
    fakes.set("sbatch", "101\n")
    fakes.set("squeue", _line("101", "PENDING"))
    a, _b = _pair(tmp_path, PacingPolicy(min_interval=0.2, max_interval=0.5))
    a.submit_job(command="true")
    with pytest.raises(TimeoutError):
        watch(a._ctx, timeout=3.0, poll_interval=0.05)  # wakes up 60 times
    polls = len(fakes.calls("squeue"))
    # 3 s: intervals 0.2, 0.3, 0.45, then 0.5 each: about 7 polls, never one per watch wake-up
    assert 4 <= polls <= 9, polls
    assert a.store.read_pace("shared").interval == pytest.approx(0.5)
    fakes.set("squeue", _line("101", "RUNNING"))
    time.sleep(0.5)
    refresh(a._ctx, waiting=True)
    assert a.store.read_pace("shared").interval == pytest.approx(0.2)  # a change: back to the minimum


def test_circuit_breaker_pauses_every_process_then_one_probe_resumes(fakes: FakeCommands, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    fakes.set("sbatch", "101\n")
    fakes.set("squeue", _line("101", "PENDING"))
    policy = PacingPolicy(min_interval=2.0, max_interval=4.0, backoff_initial=0.8, backoff_max=1.6)
    a, b = _pair(tmp_path, policy)
    job = a.submit_job(command="true")
    a.refresh_jobs()
    assert a.get_job(job.job_id).state == JobState.QUEUED
    fakes.set("squeue", _controller_down())
    time.sleep(2.1)
    a.refresh_jobs()  # fails: the breaker opens for 0.8 s
    assert len(fakes.calls("squeue")) == 1
    pace = a.store.read_pace("shared")
    assert pace.failures == 1 and "Unable to contact slurm controller" in (pace.last_error or "")
    assert "paused" in (shared_poll.pace_summary(b.store, "shared") or "")
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:  # both processes keep refreshing during the pause
        assert b.refresh_jobs() is not None
        a.refresh_jobs()
        time.sleep(0.02)
    assert len(fakes.calls("squeue")) == 1, "no command while the breaker is open"
    assert any("paused" in r.getMessage() for r in caplog.records)
    time.sleep(0.3)
    b.refresh_jobs()  # the probe, still failing: the pause doubles
    a.refresh_jobs()
    assert len(fakes.calls("squeue")) == 2
    pace = a.store.read_pace("shared")
    assert pace.failures == 2 and pace.paused_until - time.time() > 1.0
    assert a.get_job(job.job_id).state == JobState.QUEUED, "a failed poll is no evidence"
    fakes.set("squeue", _line("101", "RUNNING"))
    time.sleep(1.7)
    for _ in range(4):  # recovery: one probe, then the normal interval, no burst
        a.refresh_jobs()
        b.refresh_jobs()
    assert len(fakes.calls("squeue")) == 1  # (set() reset the log): exactly the probe
    assert a.store.read_pace("shared").failures == 0
    assert b.get_job(job.job_id).state == JobState.RUNNING
    assert shared_poll.pace_summary(a.store, "shared") is None


def test_command_budget_binds_every_process(fakes: FakeCommands, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    fakes.set("sbatch", "101\n")
    fakes.set("squeue", _line("101", "PENDING"))
    a, b = _pair(tmp_path, PacingPolicy(min_interval=0.01, max_interval=0.01, commands_per_minute=3))
    a.submit_job(command="true")
    for _ in range(5):
        a.refresh_jobs()
        b.refresh_jobs()
        time.sleep(0.02)
    assert len(fakes.calls("squeue")) == 3
    assert sum("budget of 3 scheduler commands per minute" in r.getMessage() for r in caplog.records) == 1


def test_an_unpaced_scheduler_polls_every_time(fakes: FakeCommands, tmp_path: Path) -> None:
    fakes.set("sbatch", "101\n")
    fakes.set("squeue", _line("101", "PENDING"))
    a, b = _pair(tmp_path, PacingPolicy())
    a.scheduler.pacing = None
    b.scheduler.pacing = None
    a.submit_job(command="true")
    for _ in range(3):
        a.refresh_jobs()
        b.refresh_jobs()
    assert len(fakes.calls("squeue")) == 6


def test_profile_keys_set_the_pacing_and_bad_values_are_refused() -> None:
    from molq.errors import ConfigError

    cluster = Cluster("p", "slurm", scheduler_options={"poll_interval": 3, "poll_interval_max": 45,
                                                        "commands_per_minute": 20})
    assert cluster.scheduler_impl.pacing == PacingPolicy(3, 45, 20)
    with pytest.raises(ConfigError, match="poll_interval_max"):
        _ = Cluster("p", "slurm", scheduler_options={"poll_interval": 10, "poll_interval_max": 5}).scheduler_impl
    with pytest.raises(ConfigError, match="commands_per_minute"):
        _ = Cluster("p", "slurm", scheduler_options={"commands_per_minute": 0}).scheduler_impl


def test_daemon_status_says_the_scheduler_is_failing(fakes: FakeCommands, tmp_path: Path) -> None:
    import json
    import os
    import subprocess

    fakes.set("sbatch", "101\n")
    fakes.set("squeue", _controller_down())
    a, _b = _pair(tmp_path, PacingPolicy(min_interval=1.0, backoff_initial=120.0, backoff_max=240.0))
    a.submit_job(command="true")
    a.refresh_jobs()
    env = dict(os.environ, MOLQ_STORE_URL=f"sqlite:///{tmp_path}/jobs.db")
    proc = subprocess.run([sys.executable, "-m", "molq", "daemon", "status", "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr  # no daemon runs; the status is still printed
    (entry,) = [c for c in json.loads(proc.stdout)["clusters"] if c["name"] == "shared"]
    assert "polling paused" in entry["scheduler_problem"]
    assert "Unable to contact slurm controller" in entry["scheduler_problem"]
    text = subprocess.run([sys.executable, "-m", "molq", "daemon", "status"], env=env,
                          capture_output=True, text=True, timeout=60).stdout
    assert "shared: scheduler failing (1 in a row" in text

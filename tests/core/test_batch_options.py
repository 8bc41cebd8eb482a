"""Every batch backend shares one set of command, polling and circuit-breaker options
(:class:`molq.batch.BatchOptions`), and with them the shared polls across processes.

The shared-poll check runs on the PBS and LSF simulators (they really run jobs): two
``Submitor`` objects on two ``JobStore`` objects opened on one SQLite file stand for two
processes, and only their command logs are counted.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from molq import Cluster, Submitor
from molq.batch import BatchOptions
from molq.errors import ConfigError
from molq.model import JobState
from molq.store import JobStore

SIMULATORS = Path(__file__).resolve().parents[1] / "simulators"
for sub in ("pbs", "lsf"):
    if str(SIMULATORS / sub) not in sys.path:
        sys.path.insert(0, str(SIMULATORS / sub))


def _options(backend: str, **fields: Any) -> BatchOptions:
    if backend == "slurm":
        from molq_slurm import SlurmOptions

        return SlurmOptions(**fields)
    if backend == "pbs":
        from molq_pbs import PbsOptions

        return PbsOptions(**fields)
    from molq_lsf import LsfOptions

    return LsfOptions(**fields)


@pytest.mark.parametrize("backend", ["slurm", "pbs", "lsf"])
def test_the_shared_options_reach_every_batch_scheduler(backend: str) -> None:
    options = {"poll_interval": 4.0, "poll_interval_max": 40.0, "commands_per_minute": 12,
               "backoff_initial": 7.0, "backoff_max": 70.0, "retry_attempts": 2, "command_timeout": 9.0}
    sched = Cluster(f"opts-{backend}", backend, scheduler_options=options).scheduler_impl
    pacing = sched.pacing
    assert pacing is not None
    assert (pacing.min_interval, pacing.max_interval, pacing.commands_per_minute) == (4.0, 40.0, 12)
    assert (pacing.backoff_initial, pacing.backoff_max) == (7.0, 70.0)
    assert (sched.retry.attempts, sched.retry.command_timeout) == (2, 9.0)  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["slurm", "pbs", "lsf"])
@pytest.mark.parametrize(("field", "value", "said"), [
    ("poll_interval", 0, "poll_interval must be a positive number"),
    ("commands_per_minute", 2.5, "commands_per_minute must be a whole number"),
    ("backoff_max", 1.0, "backoff_max must be at least backoff_initial"),
    ("retry_factor", 0.5, "retry_factor must be >= 1"),
])
def test_bad_shared_options_are_refused_naming_the_backend(backend: str, field: str, value: object,
                                                           said: str) -> None:
    with pytest.raises(ConfigError) as info:
        _options(backend, **{field: value})
    assert said in str(info.value)
    assert type(_options(backend)).__name__ in str(info.value)


def _simulated(backend: str, tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    if backend == "pbs":
        from pbssim_harness import PbsSim

        sim: Any = PbsSim(tmp_path / "pbssim")
        return sim, {"binaries": sim.binaries, "env": sim.env, "command_timeout": 30.0}
    from lsfsim_harness import LsfSimulator

    sim = LsfSimulator(tmp_path / "lsfsim")
    return sim, {"binaries": sim.binaries, "env": sim.env}


@pytest.mark.parametrize(("backend", "status_command"), [("pbs", "qstat"), ("lsf", "bjobs")])
def test_a_second_process_uses_the_first_ones_answer(backend: str, status_command: str, tmp_path: Path) -> None:
    sim, wiring = _simulated(backend, tmp_path)
    url = f"sqlite:///{tmp_path}/jobs.db"
    try:
        pair = [Submitor(Cluster(f"shared-{backend}", backend, scheduler_options=_options(
                    backend, poll_interval=5.0, poll_interval_max=10.0, **wiring)),
                         store=JobStore(url), jobs_dir=str(tmp_path / "jobs")) for _ in range(2)]
        a, b = pair

        def polls() -> int:
            return sum(name == status_command for s in pair for name, _ in s.scheduler.command_log)

        job = a.submit_job(argv=["sleep", "30"])
        a.refresh_jobs()
        assert polls() == 1
        state = a.get_job(job.job_id).state
        assert state in (JobState.QUEUED, JobState.RUNNING)
        b.refresh_jobs()  # a's answer is in the store and younger than the minimum interval
        assert polls() == 1
        assert b.get_job(job.job_id).state == state
        time.sleep(5.1)
        b.refresh_jobs()
        assert polls() == 2
        a.cancel_jobs([job.job_id])
        for s in pair:
            s.close()
    finally:
        sim.shutdown()

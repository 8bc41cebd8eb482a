"""Fixtures for the LSF backend: a simulated LSF cluster and a molq scheduler driving it.

The simulator (``tests/simulators/lsf``) runs jobs for real as local processes, so these
fixtures need nothing but Python and Linux ``/proc``.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from molq.model import (
    TERMINAL_STATES,
    CompiledDependency,
    JobExecution,
    JobResources,
    JobScheduling,
    JobSpec,
    JobState,
    SchedulerStatus,
)
from molq.scheduler import TrackedJob
from molq.transport import LocalTransport
from molq_lsf import LsfOptions, build_scheduler

SIM_DIR = Path(__file__).resolve().parents[1] / "simulators" / "lsf"
if str(SIM_DIR) not in sys.path:
    sys.path.insert(0, str(SIM_DIR))

from lsfsim_harness import LsfSimulator  # noqa: E402


class LsfCluster:
    """A molq LSF scheduler wired to one simulator, with helpers to submit and wait."""

    def __init__(self, sim: LsfSimulator, root: Path, **options: Any) -> None:
        self.sim = sim
        # A working directory with a space and non-ASCII text exercises every quoting path.
        self.root = root / "work dir ✓"
        self.root.mkdir(parents=True, exist_ok=True)
        self.options = LsfOptions(binaries=sim.binaries, env=sim.env, **options)
        self.scheduler = build_scheduler(LocalTransport(), self.options, sleep=lambda _s: None)

    def with_options(self, **options: Any) -> LsfCluster:
        """Another scheduler on the same simulator and directory."""
        return LsfCluster(self.sim, self.root.parent, **options)

    def spec(
        self,
        argv: Sequence[str] | None = None,
        *,
        command: str | None = None,
        after: Sequence[tuple[str, TrackedJob]] = (),
        **fields: Any,
    ) -> JobSpec:
        """A JobSpec; resource/scheduling/execution fields go by name (``cpu_count=2``)."""
        groups: dict[str, dict[str, Any]] = {"resources": {}, "scheduling": {}, "execution": {}}
        for key, value in fields.items():
            for group, cls in (("resources", JobResources), ("scheduling", JobScheduling),
                               ("execution", JobExecution)):
                if key in attrs.fields_dict(cls):
                    groups[group][key] = value
                    break
            else:
                raise TypeError(f"unknown field {key}")
        deps = tuple(CompiledDependency(cond, job.job_id, job.scheduler_job_id) for cond, job in after)
        return JobSpec(
            job_id=uuid.uuid4().hex,
            command_type="command" if command is not None else "argv",
            argv=None if command is not None else tuple(argv or ("true",)),
            command=command,
            resources=JobResources(**groups["resources"]),
            scheduling=JobScheduling(**groups["scheduling"]),
            execution=JobExecution(**groups["execution"]),
            cwd=str(self.root),
            dependencies=deps,
        )

    def submit(self, spec: JobSpec) -> TrackedJob:
        job_dir = self.root / ".molq" / "jobs" / spec.job_id
        job_dir.mkdir(parents=True)
        sid = self.scheduler.submit(spec, str(job_dir))
        return TrackedJob(spec.job_id, sid, str(job_dir), time.time())

    def run(self, argv: Sequence[str] | None = None, **kwargs: Any) -> TrackedJob:
        return self.submit(self.spec(argv, **kwargs))

    def status(self, job: TrackedJob) -> SchedulerStatus | None:
        """What molq learns in one refresh: the queue, then accounting for jobs that left it."""
        found = self.scheduler.poll_many([job]).get(job.job_id)
        if found is None:
            found = self.scheduler.resolve_terminal_many([job]).get(job.job_id)
        return found

    def wait(self, job: TrackedJob, states: Sequence[JobState] = tuple(TERMINAL_STATES),
             timeout: float = 30.0) -> SchedulerStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(job)
            if status is not None and status.state in states:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job.scheduler_job_id} still {status}, wanted {states}")
            time.sleep(0.1)

    def read(self, job: TrackedJob, name: str = "stdout") -> str:
        return (Path(job.job_dir) / name).read_text()


@pytest.fixture
def lsf_sim(tmp_path: Path) -> Iterator[LsfSimulator]:
    """A fresh simulated LSF cluster (queues ``normal`` and ``long``; 1 LSF minute = 1 s)."""
    sim = LsfSimulator(tmp_path / "lsf-home")
    yield sim
    sim.shutdown()


@pytest.fixture
def lsf(lsf_sim: LsfSimulator, tmp_path: Path) -> LsfCluster:
    """A molq LSF scheduler driving ``lsf_sim``."""
    return LsfCluster(lsf_sim, tmp_path)

"""Test harness around the PBS Pro simulator: one isolated server per test, ready-made molq
schedulers pointed at it, and a Submitor-like wait loop.

Reusable outside ``tests/pbs`` (e.g. by molq.testing's conformance kit)::

    sim = PbsSim(tmp_path / "pbs")
    scheduler = sim.scheduler()           # molq_pbs PbsScheduler over LocalTransport
    ...
    sim.shutdown()                        # deletes what still runs, waits for the runners
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from molq.batch import RetrySettings
from molq.model import SchedulerStatus
from molq.scheduler import TrackedJob
from molq.transport import LocalTransport

SIM_DIR = Path(__file__).resolve().parent
BIN_DIR = SIM_DIR / "bin"
COMMANDS = ("qsub", "qstat", "qdel", "qrls")


class PbsSim:
    """One simulated PBS Pro server whose state lives in ``home``."""

    def __init__(self, home: Path, *, kill_delay: float = 0.3, queues: str = "workq,long") -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "MOLQ_PBSSIM_HOME": str(self.home),
            "MOLQ_PBSSIM_KILL_DELAY": str(kill_delay),
            "MOLQ_PBSSIM_QUEUES": queues,
        }
        self.binaries = {name: str(BIN_DIR / name) for name in COMMANDS}

    # -- molq side ---------------------------------------------------------------------------
    def options(self, **overrides: Any) -> Any:
        """:class:`molq_pbs.PbsOptions` for this server (PBS Pro flavour)."""
        from molq_pbs import PbsOptions

        fields = {"binaries": self.binaries, "env": self.env, "command_timeout": 30.0}
        fields.update(overrides)
        return PbsOptions(**fields)

    def scheduler(self, *, retry: RetrySettings | None = None, **overrides: Any) -> Any:
        """A :class:`molq_pbs.PbsScheduler` talking to this server, retrying without sleeping
        (retries are counted, not waited for)."""
        from molq_pbs.plugin import build_scheduler

        sched = build_scheduler(LocalTransport(), self.options(**overrides))
        if retry is not None:
            sched.retry = retry
        sched._sleep = lambda _seconds: None
        return sched

    # -- server side -------------------------------------------------------------------------
    def command(self, name: str, *args: str, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
        """Run one simulator command directly (as a user at a shell would)."""
        return subprocess.run(
            [self.binaries[name], *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**os.environ, **self.env},
            timeout=60,
        )

    def set_outage(self, *commands: str) -> None:
        """Make ``commands`` fail as if the server were down (none: end the outage)."""
        path = self.home / "outage"
        if commands:
            path.write_text(",".join(commands))
        elif path.exists():
            path.unlink()

    def state(self) -> dict:
        """The server's raw state (for assertions on what the simulator did)."""
        try:
            return json.loads((self.home / "state.json").read_text())
        except FileNotFoundError:
            return {"next": 1, "jobs": {}}

    def shutdown(self, timeout: float = 15.0) -> None:
        """Delete every unfinished job and wait until no job runner is left."""
        self.set_outage()
        active = [
            jid
            for jid, job in self.state()["jobs"].items()
            if job["job_state"] not in "FX" and not job.get("array_id")
        ]
        if active:
            self.command("qdel", *active)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.command("qstat")  # advances the world: collects finished runners
            if not any(j["job_state"] in "RE" for j in self.state()["jobs"].values()):
                return
            time.sleep(0.1)


def wait_final(
    scheduler: Any, jobs: Sequence[TrackedJob], *, timeout: float = 30.0, interval: float = 0.1
) -> dict[str, SchedulerStatus]:
    """Poll like molq's Submitor until every job has a terminal status (or time runs out).

    Jobs that leave the queue are resolved with ``resolve_terminal_many`` (accounting, then the
    wrapper's exit-code file). Returns the terminal statuses found, keyed by molq job id.
    """
    pending = {job.job_id: job for job in jobs}
    final: dict[str, SchedulerStatus] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        statuses = scheduler.poll_many(list(pending.values()))
        for job_id, status in statuses.items():
            if status.state.is_terminal:
                final[job_id] = status
                pending.pop(job_id, None)
        missing = [job for job_id, job in pending.items() if job_id not in statuses]
        if missing:
            for job_id, status in scheduler.resolve_terminal_many(missing).items():
                final[job_id] = status
                pending.pop(job_id, None)
        if pending:
            time.sleep(interval)
    return final


def wait_for(predicate: Any, *, timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Call ``predicate`` until it returns something truthy; return that (or fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)

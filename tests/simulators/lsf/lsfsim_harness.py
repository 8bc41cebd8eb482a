"""Test-side handle on one LSF simulator instance (see ``lsfsim.py``).

Reusable by any test suite (and by molq.testing's conformance kit)::

    sim = LsfSimulator(tmp_path / "lsf", minute_seconds=1)
    scheduler = build_scheduler(LocalTransport(), LsfOptions(binaries=sim.binaries, env=sim.env))
    ...
    sim.shutdown()   # kills whatever is still running
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import lsfsim

BIN_DIR = Path(lsfsim.__file__).resolve().parent / "bin"
COMMANDS = ("bsub", "bjobs", "bkill", "bstop", "bresume", "brequeue", "bparams")

#: Fast settings for tests: an LSF "minute" is one second, kills escalate quickly.
TEST_CONFIG: dict[str, Any] = {"minute_seconds": 1, "kill_interval": 0.5, "runlimit_grace": 1.0}


class LsfSimulator:
    """One simulated LSF cluster living in ``home``; ``config`` overrides ``lsfsim.DEFAULTS``."""

    def __init__(self, home: str | os.PathLike[str], **config: Any) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.configure(**{**TEST_CONFIG, **config})

    # -- wiring ------------------------------------------------------------------------------
    @property
    def binaries(self) -> dict[str, str]:
        """Absolute paths of the simulated commands (``LsfOptions.binaries``)."""
        return {name: str(BIN_DIR / name) for name in COMMANDS}

    @property
    def env(self) -> dict[str, str]:
        """Environment every simulated command needs (``LsfOptions.env``)."""
        return {"MOLQ_LSFSIM_HOME": str(self.home)}

    def configure(self, **config: Any) -> None:
        """Change settings (queues, clean_period, slots...) from now on."""
        path = self.home / "config.json"
        current = json.loads(path.read_text()) if path.exists() else {}
        current.update(config)
        path.write_text(json.dumps(current))

    # -- driving it directly (outside molq) --------------------------------------------------
    def run(self, command: str, *args: str, env: dict[str, str] | None = None,
            input: str | None = None, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run one simulated command and return its completed process."""
        full_env = {**os.environ, **self.env, **(env or {})}
        return subprocess.run([str(BIN_DIR / command), *args], capture_output=True, text=True,
                              env=full_env, input=input, cwd=cwd, timeout=60)

    def bsub(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Submit with the simulated bsub; return the job id (raises on refusal)."""
        done = self.run("bsub", *args, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"bsub failed: {done.stderr.strip()}")
        return done.stdout.split("<", 1)[1].split(">", 1)[0]

    def state(self) -> dict[str, Any]:
        """The simulator's raw state (jobs, elements, timestamps)."""
        path = self.home / "state.json"
        return json.loads(path.read_text()) if path.exists() else {"jobs": {}}

    def element(self, job_id: str, index: int = 0) -> dict[str, Any]:
        return self.state()["jobs"][job_id]["elements"][str(index)]

    def wait_stat(self, job_id: str, stats: tuple[str, ...], *, index: int = 0,
                  timeout: float = 20.0) -> dict[str, Any]:
        """Wait until an element reaches one of ``stats`` (advancing the world meanwhile)."""
        deadline = time.monotonic() + timeout
        while True:
            self.run("bjobs", "-a", job_id)  # every command advances the simulated world
            element = self.element(job_id, index)
            if element["stat"] in stats:
                return element
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id}[{index}] still {element['stat']}, wanted {stats}")
            time.sleep(0.1)

    def job_pgid(self, job_id: str, index: int = 0, timeout: float = 10.0) -> int:
        """Process group of a started job element (written just after it starts)."""
        pid_file = self.home / "spool" / f"{job_id}.{index}.pid"
        deadline = time.monotonic() + timeout
        while not pid_file.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id}[{index}] never started")
            time.sleep(0.05)
        return int(pid_file.read_text())

    @staticmethod
    def live_processes(pgid: int) -> list[int]:
        """Pids of the group's processes that still run (zombies do not count: an init that
        reaps slowly must not make a killed job look alive)."""
        alive = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(entry))
        return alive

    def wait_group_gone(self, pgid: int, timeout: float = 10.0) -> bool:
        """Whether every process of ``pgid`` is gone within ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.live_processes(pgid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    # -- faults ------------------------------------------------------------------------------
    def outage(self, message: str = "") -> None:
        """Make every command fail as if mbatchd were down (``message`` replaces the default)."""
        (self.home / "down").write_text(message)

    def restore(self) -> None:
        """End :meth:`outage`."""
        (self.home / "down").unlink(missing_ok=True)

    # -- clean-up ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Kill every job still running and its monitor (call at teardown)."""
        self.restore()
        for job_id, job in self.state()["jobs"].items():
            for index, element in job["elements"].items():
                if element["stat"] not in lsfsim.ON_HOST:
                    continue
                if lsfsim.proc_alive(element.get("monitor")):
                    os.kill(element["monitor"][0], signal.SIGKILL)
                pid_file = self.home / "spool" / f"{job_id}.{index}.pid"
                try:
                    os.killpg(int(pid_file.read_text()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass

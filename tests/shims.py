"""Counting what a real scheduler saw, and processes that wait on jobs, for the live tests.

:class:`CommandShim` puts a script first on ``PATH`` that logs every call of one scheduler
command (start time, pid, exit status) and then runs the real command: the count is what the
controller really saw, whichever process ran it. :func:`spawn_waiters` starts processes that
each wait (``watch_jobs``) on one job of a shared store, as scripts of several users would.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs

__all__ = ["CommandShim", "spawn_waiters"]


@attrs.define
class CommandShim:
    bin_dir: Path
    log: Path

    @classmethod
    def install(cls, tmp_path: Path, command: str) -> CommandShim:
        real = shutil.which(command)
        assert real, f"{command} is not installed"
        shim = cls(tmp_path / f"shim-{command}", tmp_path / f"{command}-calls.log")
        shim.bin_dir.mkdir()
        script = shim.bin_dir / command
        log = shlex.quote(str(shim.log))
        # The start is logged before the real command runs: a call killed at molq's command
        # timeout never writes its end line.
        script.write_text(f"#!/bin/sh\nstart=$(date +%s.%N)\necho \"$start $$ -\" >> {log}\n"
                          f"{shlex.quote(real)} \"$@\"\nrc=$?\necho \"$start $$ $rc\" >> {log}\nexit $rc\n")
        script.chmod(0o755)
        return shim

    def path_env(self) -> dict[str, str]:
        """This process's environment with the shim first on ``PATH``."""
        return dict(os.environ, PATH=f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}")

    def calls(self) -> list[tuple[float, int | None]]:
        """(start time, exit status) of every call, in start order; the status is None for a
        call that never finished (killed at molq's command timeout)."""
        if not self.log.exists():
            return []
        seen: dict[tuple[str, str], int | None] = {}
        for line in self.log.read_text().splitlines():
            start, pid, rc = line.split()
            seen[(start, pid)] = None if rc == "-" else int(rc)
        return sorted((float(start), rc) for (start, _pid), rc in seen.items())


#: Waits on one job of a store for a while with the given scheduler options; prints
#: "still waiting" when the wait ran out.
_WAITER = """
import json, sys
from molq import Cluster, Submitor
from molq.store import JobStore
url, name, scheduler, jobs_dir, job_id, wait, options = sys.argv[1:]
cluster = Cluster(name, scheduler, scheduler_options=json.loads(options))
submitor = Submitor(cluster, store=JobStore(url), jobs_dir=jobs_dir)
try:
    submitor.watch_jobs([job_id], timeout=float(wait))
except TimeoutError:
    print("still waiting", flush=True)
"""


def spawn_waiters(url: str, name: str, scheduler: str, jobs_dir: str, job_ids: list[str], wait: float,
                  options: dict[str, Any], env: dict[str, str]) -> list[subprocess.Popen[str]]:
    """One waiting process per job, all on one store and cluster."""
    return [subprocess.Popen([sys.executable, "-c", _WAITER, url, name, scheduler, jobs_dir, job_id, str(wait),
                              json.dumps(options)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for job_id in job_ids]

"""The local scheduler (``Cluster(name, "local")``): jobs run as detached processes.

Jobs start in their own session (so they outlive the submitting process and cancel can stop the
whole process group, grandchildren included), inside molq's wrapper. The scheduler keeps a small
spool on the target host (``~/.molq/local-spool``)::

    jobs/<sid>.json            what the job needs: job dir, cpus, dependencies
    queued/<ns>-<sid>          waiting for cores or dependencies (FIFO by submission time)
    running/<sid>              "<pid> <process start time>" of the job's wrapper

Identity is pid plus the process start time from ``/proc``, never pid alone. A job that does
not fit in the free cores stays queued; every poll (any process: the submitter, ``molq watch``,
the daemon) starts queued jobs as cores free up and their dependencies are satisfied, and ends
jobs whose dependencies can never be satisfied with a clear reason.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

import attrs

from molq import wrapper
from molq.errors import ConfigError, SchedulerError
from molq.model import (
    CompiledDependency,
    DependencyCondition,
    JobSpec,
    JobState,
    SchedulerCapabilities,
    SchedulerStatus,
)
from molq.scheduler import SchedulerBase, TrackedJob
from molq.transport import LocalTransport, Transport, reap_children

__all__ = ["ShellScheduler", "LocalSchedulerOptions"]

CANCELLED_FILE = "cancelled"
NEVER_RAN_FILE = "never_ran"


@attrs.frozen
class LocalSchedulerOptions:
    """Options of the local scheduler.

    ``max_cpus``: cores jobs may use at once (default: the host's core count). ``spool_dir``:
    where the queue lives (default ``~/.molq/local-spool`` on the target host).
    ``term_grace_seconds``: how long cancel waits after SIGTERM before SIGKILL.
    """

    max_cpus: int | None = None
    spool_dir: str | None = None
    term_grace_seconds: float = 5.0

    def __attrs_post_init__(self) -> None:
        if self.max_cpus is not None and self.max_cpus < 1:
            raise ConfigError(f"max_cpus must be at least 1, got {self.max_cpus}")


_CAPABILITIES = SchedulerCapabilities(
    supported=frozenset({"cpu_count", "dependencies", "job_name", "output_file", "error_file", "env", "cwd"})
)


class _LocalOps:
    """Spool and process operations on this machine (no subprocess per call)."""

    def __init__(self) -> None:
        import fcntl

        self._fcntl = fcntl

    def cpu_count(self) -> int:
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover
            return os.cpu_count() or 1

    def listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(path)
        except FileNotFoundError:
            return []

    def read(self, path: str) -> str | None:
        try:
            with open(path) as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def write(self, path: str, text: str) -> None:
        tmp = f"{path}.tmp.{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)

    def remove(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def mkdirs(self, *paths: str) -> None:
        for p in paths:
            os.makedirs(p, mode=0o700, exist_ok=True)

    def start_time(self, pid: int) -> str | None:
        """Process start time (clock ticks since boot), None if gone or a zombie."""
        try:
            with open(f"/proc/{pid}/stat") as fh:
                data = fh.read()
        except (FileNotFoundError, ProcessLookupError):
            return None
        rest = data.rsplit(")", 1)[-1].split()
        if not rest or rest[0] in ("Z", "X"):
            return None
        return rest[19]

    def group_alive(self, pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def killpg(self, pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass

    class _Lock:
        def __init__(self, fcntl: Any, path: str) -> None:
            self.fcntl, self.path = fcntl, path

        def __enter__(self) -> None:
            self.fh = open(self.path, "a")
            self.fcntl.flock(self.fh, self.fcntl.LOCK_EX)

        def __exit__(self, *exc: object) -> None:
            self.fcntl.flock(self.fh, self.fcntl.LOCK_UN)
            self.fh.close()

    def lock(self, path: str) -> Any:
        return self._Lock(self._fcntl, path)


class _RemoteOps(_LocalOps):
    """The same operations through a (remote) transport, one command each."""

    def __init__(self, transport: Transport) -> None:
        super().__init__()
        self.t = transport

    def cpu_count(self) -> int:
        result = self.t.run(["nproc"])
        try:
            return int(result.stdout.strip())
        except ValueError:
            return 1

    def listdir(self, path: str) -> list[str]:
        result = self.t.run(["ls", "-1A", "--", path])
        return result.stdout.split() if result.returncode == 0 else []

    def read(self, path: str) -> str | None:
        return self.t.read_many([path]).get(path)

    def write(self, path: str, text: str) -> None:
        self.t.write_text(path, text)

    def remove(self, path: str) -> None:
        self.t.run(["rm", "-f", "--", path])

    def exists(self, path: str) -> bool:
        return self.t.exists(path)

    def mkdirs(self, *paths: str) -> None:
        self.t.run(["mkdir", "-p", "-m", "700", "--", *paths])

    def start_time(self, pid: int) -> str | None:
        text = self.read(f"/proc/{pid}/stat")
        if not text:
            return None
        rest = text.rsplit(")", 1)[-1].split()
        if not rest or rest[0] in ("Z", "X"):
            return None
        return rest[19]

    def group_alive(self, pgid: int) -> bool:
        return self.t.run(["kill", "-0", "--", f"-{pgid}"]).returncode == 0

    def killpg(self, pgid: int, sig: int) -> None:
        self.t.run(["kill", f"-{sig}", "--", f"-{pgid}"])

    def lock(self, path: str) -> Any:
        # Coordinate the processes of this machine that drive the same remote spool.
        from molq.config import molq_home

        local = molq_home() / "locks"
        local.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = "".join(c if c.isalnum() else "_" for c in f"{self.t.name}_{path}")[-150:]
        return self._Lock(self._fcntl, str(local / name))


class ShellScheduler(SchedulerBase):
    """The ``local`` scheduler: plain processes on the transport's host, no batch system."""

    name = "local"

    def __init__(self, transport: Transport | None = None, options: LocalSchedulerOptions | None = None) -> None:
        self.transport = transport or LocalTransport()
        self.options = options or LocalSchedulerOptions()
        self._ops: _LocalOps = _LocalOps() if not self.transport.is_remote else _RemoteOps(self.transport)
        self._spool: str | None = None
        self._max_cpus: int | None = self.options.max_cpus

    def __repr__(self) -> str:
        return f"ShellScheduler(transport={self.transport!r})"

    # -- spool -------------------------------------------------------------------------------
    @property
    def spool(self) -> str:
        if self._spool is None:
            base = self.options.spool_dir
            if base is None:
                if self.transport.is_remote:
                    base = wrapper.join_path(self.transport.home(), ".molq/local-spool")
                else:
                    from molq.config import molq_home

                    base = str(molq_home() / "local-spool")
            self._ops.mkdirs(base, f"{base}/jobs", f"{base}/queued", f"{base}/running")
            self._spool = base
        return self._spool

    @property
    def max_cpus(self) -> int:
        if self._max_cpus is None:
            self._max_cpus = self._ops.cpu_count()
        return self._max_cpus

    def _job_info(self, sid: str) -> dict[str, Any] | None:
        text = self._ops.read(f"{self.spool}/jobs/{sid}.json")
        return json.loads(text) if text else None

    # -- protocol ----------------------------------------------------------------------------
    def capabilities(self) -> SchedulerCapabilities:
        return _CAPABILITIES

    def validate(self, spec: JobSpec) -> None:
        """Refuse jobs that can never fit on this host."""
        cpus = spec.resources.cpu_count or 1
        if cpus > self.max_cpus:
            raise ConfigError(
                f"resources.cpu_count={cpus} exceeds the {self.max_cpus} cores the local scheduler "
                f"may use (set the local scheduler option max_cpus to change this)"
            )

    def native_condition(self, condition: DependencyCondition, scheduler_job_id: str) -> str:
        return f"{condition}:{scheduler_job_id}"

    def compile_dependencies(self, deps: Sequence[CompiledDependency]) -> str | None:
        return ",".join(self.native_condition(d.condition, d.scheduler_job_id) for d in deps) or None

    def submit(self, spec: JobSpec, job_dir: str) -> str:
        sid = spec.job_id
        t = self.transport
        if spec.script is not None and spec.script.variant == "inline":
            t.write_text(wrapper.inline_script_path(job_dir), spec.script.text, mode=0o700)
        t.write_text(
            wrapper.join_path(job_dir, wrapper.SCRIPT_FILE), wrapper.render_local_script(spec, job_dir), mode=0o700
        )
        info = {
            "job_dir": job_dir,
            "cpus": spec.resources.cpu_count or 1,
            "deps": [[d.condition, d.scheduler_job_id] for d in spec.dependencies],
            "stdout": wrapper.stdout_path(spec, job_dir),
            "stderr": wrapper.stderr_path(spec, job_dir),
            "submitted": time.time(),
        }
        spool = self.spool
        self._ops.write(f"{spool}/jobs/{sid}.json", json.dumps(info))
        self._ops.write(f"{spool}/queued/{time.time_ns():020d}-{sid}", "")
        with self._ops.lock(f"{spool}/.lock"):
            self._schedule()
        return sid

    def _running(self) -> dict[str, tuple[int, str]]:
        """Running jobs of the spool, with dead ones removed."""
        out = {}
        spool = self.spool
        for sid in self._ops.listdir(f"{spool}/running"):
            text = self._ops.read(f"{spool}/running/{sid}")
            if not text:
                continue
            pid_s, _, start = text.strip().partition(" ")
            pid = int(pid_s)
            if self._ops.start_time(pid) == start:
                out[sid] = (pid, start)
            else:
                self._ops.remove(f"{spool}/running/{sid}")
        return out

    def _schedule(self) -> None:
        """Start queued jobs that fit and whose dependencies are met (caller holds the lock)."""
        if isinstance(self.transport, LocalTransport):
            reap_children()
        spool = self.spool
        queued = sorted(self._ops.listdir(f"{spool}/queued"))
        if not queued:
            return
        running = self._running()
        used = 0
        for sid in running:
            info = self._job_info(sid)
            used += info["cpus"] if info else 1
        free = self.max_cpus - used
        for entry in queued:
            if free <= 0:
                break
            sid = entry.split("-", 1)[1]
            info = self._job_info(sid)
            if info is None:
                self._ops.remove(f"{spool}/queued/{entry}")
                continue
            verdict = self._deps_verdict(info["deps"])
            if verdict is None:
                continue  # still waiting
            if verdict is not True:
                self._ops.write(wrapper.join_path(info["job_dir"], NEVER_RAN_FILE), verdict + "\n")
                self._ops.remove(f"{spool}/queued/{entry}")
                continue
            if info["cpus"] > free:
                continue
            pid = self.transport.spawn_detached(
                ["/bin/sh", wrapper.join_path(info["job_dir"], wrapper.SCRIPT_FILE)],
                cwd=info["job_dir"],
                stdout=info["stdout"],
                stderr=info["stderr"],
            )
            start = self._ops.start_time(pid)
            if start is None:
                # Finished before we could look: record an identity that can never match.
                start = "gone"
            self._ops.write(f"{spool}/running/{sid}", f"{pid} {start}")
            self._ops.remove(f"{spool}/queued/{entry}")
            free -= info["cpus"]

    def _deps_verdict(self, deps: list[list[str]]) -> bool | None | str:
        """True when every dependency is satisfied, None while waiting, or the reason why it
        can never be satisfied."""
        for condition, upstream in deps:
            info = self._job_info(upstream)
            if info is None:
                return f"dependency on unknown local job {upstream}"
            status = self._status_of(upstream, info)
            started = self._ops.exists(wrapper.join_path(info["job_dir"], wrapper.STARTED_FILE))
            if condition == "after_started":
                if started:
                    continue
                if status is not None and status.state.is_terminal:
                    return f"dependency never satisfied: {upstream} ended ({status.state.value}) without starting"
                return None
            if status is None or not status.state.is_terminal:
                return None
            ok = status.state == JobState.SUCCEEDED
            if condition == "after_success" and not ok:
                return f"dependency never satisfied: {upstream} did not succeed ({status.state.value})"
            if condition == "after_failure" and ok:
                return f"dependency never satisfied: {upstream} succeeded"
        return True

    def _status_of(self, sid: str, info: dict[str, Any], running: dict[str, tuple[int, str]] | None = None) -> SchedulerStatus | None:
        job_dir = info["job_dir"]
        files = self.transport.read_many([
            wrapper.join_path(job_dir, wrapper.EXIT_CODE_FILE),
            wrapper.join_path(job_dir, wrapper.STARTED_FILE),
            wrapper.join_path(job_dir, CANCELLED_FILE),
            wrapper.join_path(job_dir, NEVER_RAN_FILE),
        ]) if self.transport.is_remote else None
        read = (lambda name: files[wrapper.join_path(job_dir, name)]) if files is not None else (
            lambda name: self._ops.read(wrapper.join_path(job_dir, name))
        )
        code = wrapper.parse_exit_code(read(wrapper.EXIT_CODE_FILE))
        started = wrapper.parse_started(read(wrapper.STARTED_FILE))
        started_at = started[0] if started else None
        cancelled = read(CANCELLED_FILE)
        if code is not None:
            sig, reason = wrapper.describe_exit(code)
            if cancelled is not None and (sig is not None):
                return SchedulerStatus(JobState.CANCELLED, "cancelled", code, sig, "cancelled", started_at)
            return SchedulerStatus(
                JobState.SUCCEEDED if code == 0 else JobState.FAILED, "exited", code, sig, reason, started_at
            )
        never = read(NEVER_RAN_FILE)
        if never is not None:
            return SchedulerStatus(JobState.FAILED, "dependency_never_satisfied", None, None, never.strip())
        if running is None:
            running = self._running()
        if sid in running:
            return SchedulerStatus(JobState.RUNNING, "running", started_at=started_at)
        if cancelled is not None:
            return SchedulerStatus(JobState.CANCELLED, "cancelled", None, None, "cancelled", started_at)
        queued = [e for e in self._ops.listdir(f"{self.spool}/queued") if e.endswith(f"-{sid}")]
        if queued:
            return SchedulerStatus(JobState.QUEUED, "queued")
        # Neither queued, running nor finished: the wrapper died without writing its exit code
        # (killed with SIGKILL, or the machine rebooted).
        return SchedulerStatus(
            JobState.FAILED, "vanished", None, None,
            "the job's process ended without recording an exit code (killed, or the host rebooted)",
            started_at,
        )

    def poll_many(self, jobs: Sequence[TrackedJob]) -> dict[str, SchedulerStatus]:
        spool = self.spool
        with self._ops.lock(f"{spool}/.lock"):
            self._schedule()
            running = self._running()
        out = {}
        for job in jobs:
            sid = job.scheduler_job_id or job.job_id
            info = self._job_info(sid)
            if info is None:
                continue  # not known here: the engine decides (adoption / lost)
            status = self._status_of(sid, info, running)
            if status is not None:
                out[job.job_id] = status
        return out

    def resolve_terminal_many(self, jobs: Sequence[TrackedJob], *, since: float | None = None) -> dict[str, SchedulerStatus]:
        from molq.batch import read_exit_files

        return read_exit_files(self.transport, jobs)

    def cancel_many(self, jobs: Sequence[TrackedJob]) -> None:
        spool = self.spool
        to_wait: list[int] = []
        with self._ops.lock(f"{spool}/.lock"):
            running = self._running()
            queued = {e.split("-", 1)[1]: e for e in self._ops.listdir(f"{spool}/queued")}
            for job in jobs:
                sid = job.scheduler_job_id or job.job_id
                info = self._job_info(sid)
                if info is None:
                    continue
                if self._ops.exists(wrapper.join_path(info["job_dir"], wrapper.EXIT_CODE_FILE)):
                    continue  # already finished: leave its final state alone
                self._ops.write(wrapper.join_path(info["job_dir"], CANCELLED_FILE), f"{time.time()}\n")
                if sid in queued:
                    self._ops.remove(f"{spool}/queued/{queued[sid]}")
                if sid in running:
                    pid, _start = running[sid]
                    self._ops.killpg(pid, signal.SIGTERM)
                    to_wait.append(pid)
        deadline = time.monotonic() + self.options.term_grace_seconds
        while to_wait and time.monotonic() < deadline:
            if isinstance(self.transport, LocalTransport):
                reap_children()
            to_wait = [p for p in to_wait if self._ops.group_alive(p)]
            if to_wait:
                time.sleep(0.02)
        for pgid in to_wait:
            self._ops.killpg(pgid, signal.SIGKILL)
        if isinstance(self.transport, LocalTransport):
            reap_children()

    def find_adoptable(self, jobs: Sequence[TrackedJob]) -> dict[str, str]:
        # The local scheduler id is the molq job id; a spool entry means submit() got through.
        return {j.job_id: j.job_id for j in jobs if self._job_info(j.job_id) is not None}

    def forget(self, sid: str) -> None:
        """Drop the spool entry of a finished job (cleanup)."""
        self._ops.remove(f"{self.spool}/jobs/{sid}.json")


def make_local_scheduler(transport: Transport, options: LocalSchedulerOptions | None) -> ShellScheduler:
    if options is not None and not isinstance(options, LocalSchedulerOptions):
        raise SchedulerError(f"local scheduler options must be LocalSchedulerOptions, got {type(options).__name__}")
    return ShellScheduler(transport, options)

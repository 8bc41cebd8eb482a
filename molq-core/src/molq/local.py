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
        # Dot names are temporary files of writes in progress.
        try:
            return [n for n in os.listdir(path) if not n.startswith(".")]
        except FileNotFoundError:
            return []

    def read(self, path: str) -> str | None:
        try:
            with open(path) as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def write(self, path: str, text: str) -> None:
        head, _, name = path.rpartition("/")
        tmp = f"{head}/.{name}.tmp.{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)

    def touch(self, path: str) -> None:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))

    def write_new(self, path: str, text: str, mode: int) -> None:
        """Create a file that nobody reads before we are done (a new job's script)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            self.write(path, text)
            os.chmod(path, mode)
            return
        with os.fdopen(fd, "w") as fh:
            fh.write(text)

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


#REMOTE_SPOOL_PLACEHOLDER


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
        self._ops.write_new(
            wrapper.join_path(job_dir, wrapper.SCRIPT_FILE), wrapper.render_local_script(spec, job_dir), 0o700
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
        self._ops.touch(f"{spool}/queued/{time.time_ns():020d}-{sid}")
        with self._ops.lock(f"{spool}/.lock"):
            self._schedule()
        return sid

    def _running(self) -> dict[str, tuple[int, str, int]]:
        """Running jobs of the spool as sid -> (pid, start time, cpus); dead ones removed."""
        out = {}
        spool = self.spool
        for sid in self._ops.listdir(f"{spool}/running"):
            text = self._ops.read(f"{spool}/running/{sid}")
            if not text:
                continue
            parts = text.split()
            pid, start = int(parts[0]), parts[1]
            cpus = int(parts[2]) if len(parts) > 2 else 1
            if self._ops.start_time(pid) == start:
                out[sid] = (pid, start, cpus)
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
        free = self.max_cpus - sum(r[2] for r in running.values())
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
                cwd=None,  # the wrapper enters the job's working directory itself
                stdout=info["stdout"],
                stderr=info["stderr"],
            )
            start = self._ops.start_time(pid)
            if start is None:
                # Finished before we could look: record an identity that can never match.
                start = "gone"
            self._ops.write(f"{spool}/running/{sid}", f"{pid} {start} {info['cpus']}")
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

    def _status_of(
        self,
        sid: str,
        info: dict[str, Any],
        running: dict[str, tuple[int, str, int]] | None = None,
        queued: set[str] | None = None,
    ) -> SchedulerStatus:
        if running is None:
            running = self._running()
        if queued is None:
            queued = self._queued()
        job_dir = info["job_dir"]
        exit_path = wrapper.join_path(job_dir, wrapper.EXIT_CODE_FILE)
        if sid in queued and sid not in running:
            return SchedulerStatus(JobState.QUEUED, "queued")
        code = wrapper.parse_exit_code(self._ops.read(exit_path))
        if code is None and sid in running:
            return SchedulerStatus(JobState.RUNNING, "running", started_at=self._started_at(job_dir))
        cancelled = self._ops.read(wrapper.join_path(job_dir, CANCELLED_FILE))
        started_at = self._started_at(job_dir)
        if code is not None:
            sig, reason = wrapper.describe_exit(code)
            if cancelled is not None and sig is not None:
                return SchedulerStatus(JobState.CANCELLED, "cancelled", code, sig, "cancelled", started_at)
            return SchedulerStatus(
                JobState.SUCCEEDED if code == 0 else JobState.FAILED, "exited", code, sig, reason, started_at
            )
        never = self._ops.read(wrapper.join_path(job_dir, NEVER_RAN_FILE))
        if never is not None:
            return SchedulerStatus(JobState.FAILED, "dependency_never_satisfied", None, None, never.strip())
        if cancelled is not None:
            return SchedulerStatus(JobState.CANCELLED, "cancelled", None, None, "cancelled", started_at)
        # Neither queued, running nor finished: the wrapper died without writing its exit code
        # (killed with SIGKILL, or the machine rebooted).
        return SchedulerStatus(
            JobState.FAILED, "vanished", None, None,
            "the job's process ended without recording an exit code (killed, or the host rebooted)",
            started_at,
        )

    def _started_at(self, job_dir: str) -> float | None:
        if self.transport.is_remote:
            return None  # the engine uses the time it noticed the start
        try:
            return os.stat(wrapper.join_path(job_dir, wrapper.STARTED_FILE)).st_mtime
        except OSError:
            return None

    def _queued(self) -> set[str]:
        return {e.split("-", 1)[1] for e in self._ops.listdir(f"{self.spool}/queued")}

    def poll_many(self, jobs: Sequence[TrackedJob]) -> dict[str, SchedulerStatus]:
        spool = self.spool
        with self._ops.lock(f"{spool}/.lock"):
            self._schedule()
            running = self._running()
            queued = self._queued()
        out = {}
        for job in jobs:
            sid = job.scheduler_job_id or job.job_id
            info = self._job_info(sid)
            if info is None:
                continue  # not known here: the engine decides (adoption / lost)
            out[job.job_id] = self._status_of(sid, info, running, queued)
        return out

    def wait_for_change(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, waking as soon as a running local job ends."""
        if self.transport.is_remote or timeout <= 0 or not hasattr(os, "pidfd_open"):
            time.sleep(max(timeout, 0))
            return
        import select

        fds = []
        try:
            for pid, _start, _cpus in self._running().values():
                try:
                    fds.append(os.pidfd_open(pid))
                except OSError:
                    continue
            if not fds:
                time.sleep(timeout)
                return
            select.select(fds, [], [], timeout)
        finally:
            for fd in fds:
                os.close(fd)

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
                    pid = running[sid][0]
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

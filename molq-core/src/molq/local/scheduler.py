"""``ShellScheduler``: the Scheduler protocol over a spool (host or remote, one interface)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import attrs

from molq import wrapper
from molq.errors import ConfigError, SchedulerError
from molq.local import queue
from molq.local.host import HostSpool
from molq.local.options import CAPABILITIES, LocalSchedulerOptions
from molq.local.remote import ScriptSpool
from molq.model import (
    CompiledDependency,
    DependencyCondition,
    JobSpec,
    QueueEntry,
    SchedulerCapabilities,
    SchedulerStatus,
)
from molq.scheduler import SchedulerBase, TrackedJob
from molq.transport import LocalTransport, Transport

__all__ = ["ShellScheduler", "make_local_scheduler"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ShellScheduler(SchedulerBase):
    """The ``local`` scheduler: plain processes on the transport's host, no batch system.

    On this machine the spool is handled with direct file and process calls
    (:class:`~molq.local.host.HostSpool`); over a remote transport with a few shell scripts
    (:class:`~molq.local.remote.ScriptSpool`): a refresh costs one round trip.
    """

    name = "local"

    def __init__(self, transport: Transport | None = None, options: LocalSchedulerOptions | None = None) -> None:
        self.transport = transport or LocalTransport()
        self.options = options or LocalSchedulerOptions()
        # On this host a status query is a few file reads: waiting loops may poll often.
        self.cheap_status = not self.transport.is_remote
        # The host spool is this machine's: other hosts sharing the store cannot see it.
        self.host_bound = not self.transport.is_remote
        # Files on this machine (not remote): direct calls are cheaper than a shell per step.
        self._spool: ScriptSpool = (ScriptSpool if self.transport.is_remote else HostSpool)(self.transport, self.options)

    def __repr__(self) -> str:
        return f"ShellScheduler(transport={self.transport!r})"

    @property
    def spool(self) -> str:
        """The spool directory on the target host (created on first use)."""
        return self._spool.path

    @property
    def max_cpus(self) -> int:
        if self.options.max_cpus is not None:
            return self.options.max_cpus
        self._spool.path  # noqa: B018 - preparing the spool counts the host's cores
        return self._spool.cpus

    # -- protocol ----------------------------------------------------------------------------
    def capabilities(self) -> SchedulerCapabilities:
        return CAPABILITIES

    def validate(self, spec: JobSpec) -> None:
        """Refuse what this host cannot run as given: more cores than it may use, and text the
        scheduler could not hand over byte for byte (NUL bytes, unencodable characters, an
        environment name that is not a shell name)."""
        cpus = spec.resources.cpu_count or 1
        if cpus > self.max_cpus:
            raise ConfigError(
                f"resources.cpu_count={cpus} exceeds the {self.max_cpus} cores the local scheduler "
                f"may use (set the local scheduler option max_cpus to change this)"
            )
        for what, text in _texts(spec):
            if "\x00" in text:
                raise ConfigError(f"{what} contains a NUL byte, which no process argument, "
                                  f"environment variable or path can carry")
            try:
                text.encode()
            except UnicodeEncodeError as exc:
                raise ConfigError(f"{what} contains {text[exc.start:exc.end]!r}, which cannot be encoded "
                                  f"as UTF-8 for the job") from None
        for key in (spec.execution.env or {}):
            if not _ENV_NAME.match(key):
                raise ConfigError(f"environment variable name {key!r} is not valid "
                                  f"(letters, digits and _, not starting with a digit)")
        if not queue.SID_RE.match(spec.job_id):
            raise ConfigError(f"job id {spec.job_id!r} cannot be used on a local spool")

    def native_condition(self, condition: DependencyCondition, scheduler_job_id: str) -> str:
        return f"{condition}:{scheduler_job_id}"

    def compile_dependencies(self, deps: Sequence[CompiledDependency]) -> str | None:
        return ",".join(self.native_condition(d.condition, d.scheduler_job_id) for d in deps) or None

    def render_script(self, spec: JobSpec, job_dir: str) -> str:
        """The wrapper script :meth:`submit` starts for ``spec``."""
        memory = spec.resources.memory
        local = wrapper.LocalWrapping(umask=self._spool.umask,
                                      handover=self._spool.handover_line(spec.job_id, self.max_cpus),
                                      memory_bytes=None if memory is None else memory.bytes,
                                      memory_method=self.options.memory_limit)
        return wrapper.render_local_script(spec, job_dir, local)

    def submit(self, spec: JobSpec, job_dir: str) -> str:
        self.validate(spec)
        sid = spec.job_id
        if spec.script is not None and spec.script.variant == "inline":
            self.transport.write_text(wrapper.inline_script_path(job_dir), spec.script.text or "", mode=0o700)
        max_cpus = self.max_cpus
        info = _job_info(spec, job_dir)
        self._spool.submit(sid, job_dir, info, self.render_script(spec, job_dir), max_cpus,
                           lambda s, i: self._start(s, i))
        return sid

    def _start(self, sid: str, info: dict[str, Any]) -> None:
        """Start a job that need not queue (between its description and its hand-over)."""
        assert isinstance(self._spool, HostSpool)
        self._spool.start(sid, info)

    def poll_many(self, jobs: Sequence[TrackedJob]) -> dict[str, SchedulerStatus]:
        by_sid = {(j.scheduler_job_id or j.job_id): j for j in jobs}
        found = self._spool.statuses(list(by_sid), self.max_cpus)
        out = {}
        for sid, st in found.items():
            if st is None or sid not in by_sid:
                continue  # None: no evidence (an exit code a full disk kept from being written)
            out[by_sid[sid].job_id] = _not_before(st, by_sid[sid].submitted_at)
        return out

    def wait_for_change(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, waking early when a local job ends (host spool)."""
        self._spool.wait_for_change(timeout)

    def resolve_terminal_many(self, jobs: Sequence[TrackedJob], *, since: float | None = None) -> dict[str, SchedulerStatus]:
        from molq.batch import read_exit_files

        return read_exit_files(self.transport, jobs)

    def cancel_many(self, jobs: Sequence[TrackedJob]) -> None:
        sids = [j.scheduler_job_id or j.job_id for j in jobs]
        if sids:
            self._spool.cancel(sids, self.options.term_grace_seconds, self.max_cpus)

    def find_adoptable(self, jobs: Sequence[TrackedJob]) -> dict[str, str]:
        # The local scheduler id is the molq job id; a job the spool took over (queued, being
        # started, running, or begun) was handed over by submit().
        ids = [j.job_id for j in jobs if queue.SID_RE.match(j.job_id)]
        found = self._spool.handed_over(ids)
        return {i: i for i in ids if i in found}

    def forget(self, sid: str) -> None:
        """Drop the spool entry of a finished job (cleanup)."""
        self._spool.forget([sid])

    def list_queue(self, *, user: str | None = None) -> list[QueueEntry]:
        """The running jobs, then the queued ones in order, each with its cores and what it
        waits for (in ``raw_state``)."""
        return self._spool.queue()


def _not_before(st: SchedulerStatus, submitted_at: float | None) -> SchedulerStatus:
    """The wrapper's times, never before the record's submission: a job can start before the
    engine has stamped its record, and file times tick coarser than the clock."""
    if submitted_at is None or st.started_at is None or st.started_at >= submitted_at:
        return st
    finished = None if st.finished_at is None else max(st.finished_at, submitted_at)
    return attrs.evolve(st, started_at=submitted_at, finished_at=finished)


def _job_info(spec: JobSpec, job_dir: str) -> dict[str, Any]:
    """The spool's ``jobs/<sid>.json`` for a new job."""
    return {
        "job_dir": job_dir,
        "cpus": spec.resources.cpu_count or 1,
        "memory": None if spec.resources.memory is None else spec.resources.memory.bytes,
        "deps": [[d.condition, d.scheduler_job_id] for d in spec.dependencies],
        "stdout": wrapper.stdout_path(spec, job_dir),
        "stderr": wrapper.stderr_path(spec, job_dir),
        "redirected": True,  # job.sh opens stdout/stderr itself
        "submitted": time.time(),
    }


def _texts(spec: JobSpec) -> list[tuple[str, str]]:
    """Every user string that reaches the job's command line, environment or paths."""
    out: list[tuple[str, str]] = [(f"argv[{i}]", a) for i, a in enumerate(spec.argv or ())]
    if spec.command is not None:
        out.append(("command", spec.command))
    if spec.script is not None:
        if spec.script.variant == "inline":
            out.append(("script", spec.script.text or ""))
        else:
            out.append(("script path", spec.script.file_path or ""))
    if spec.cwd:
        out.append(("cwd", spec.cwd))
    for key, value in sorted((spec.execution.env or {}).items()):
        out += [(f"env name {key!r}", key), (f"env[{key!r}]", value)]
    for name, maybe in (("output_file", spec.execution.output_file), ("error_file", spec.execution.error_file)):
        if maybe:
            out.append((name, maybe))
    if spec.name:
        out.append(("job name", spec.name))
    return out


def make_local_scheduler(transport: Transport, options: LocalSchedulerOptions | None) -> ShellScheduler:
    if options is not None and not isinstance(options, LocalSchedulerOptions):
        raise SchedulerError(f"local scheduler options must be LocalSchedulerOptions, got {type(options).__name__}")
    return ShellScheduler(transport, options)

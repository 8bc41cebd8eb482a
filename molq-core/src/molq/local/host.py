"""The spool on this machine: the :class:`~molq.local.remote.ScriptSpool` interface with
direct file and process calls where they are cheaper than a shell (submitting, reading
statuses, cancelling). Queue passes run the same ``advance`` script a job's wrapper runs, so
the decision of what starts lives in one place.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from molq import wrapper
from molq.errors import SchedulerError
from molq.local import queue, scripts
from molq.local.options import LocalSchedulerOptions
from molq.local.remote import ScriptSpool
from molq.model import SchedulerStatus
from molq.transport import Transport, reap_children, write_new_file

__all__ = ["HostSpool"]


def _fault(point: str) -> None:
    # Test-only fault injection: die at a named point.
    if os.environ.get("MOLQ_TEST_KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


class HostSpool(ScriptSpool):
    """The spool of this machine (``~/.molq/local-spool`` by default)."""

    def __init__(self, transport: Transport, options: LocalSchedulerOptions) -> None:
        super().__init__(transport, options)
        # What the spool looked like at the last pass a refresh ran, and when.
        self._last_pass: tuple[object, float] = (None, 0.0)

    # -- files and processes -----------------------------------------------------------------
    @staticmethod
    def _read(path: str) -> str | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks).decode(errors="replace")

    @staticmethod
    def _put(path: str, text: str) -> None:
        """Replace ``path`` atomically (temporary file, then rename); raises OSError."""
        head, _, name = path.rpartition("/")
        tmp = f"{head}/.{name}.{os.getpid()}"
        try:
            write_new_file(tmp, text, exclusive=False)
            os.replace(tmp, path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    @staticmethod
    def _listdir(path: str) -> list[str]:
        try:
            return [n for n in os.listdir(path) if not n.startswith(".")]  # dot names: writes in progress
        except FileNotFoundError:
            return []

    @staticmethod
    def _mtime(path: str) -> float | None:
        try:
            return os.stat(path).st_mtime
        except OSError:
            return None

    @staticmethod
    def start_time(pid: int) -> str | None:
        """Process start time (clock ticks since boot), None if gone or a zombie."""
        try:
            fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError):
            return None
        try:
            data = os.read(fd, 4096)
        except ProcessLookupError:
            return None
        finally:
            os.close(fd)
        rest = data.rsplit(b")", 1)[-1].decode().split()
        if len(rest) < 20 or rest[0] in ("Z", "X"):
            return None
        return rest[19]

    def _alive(self, text: str | None) -> int | None:
        """The pid of a "<pid> <start> ..." identity whose process still runs."""
        parts = (text or "").split()
        if len(parts) >= 2 and parts[0].isdigit() and self.start_time(int(parts[0])) == parts[1]:
            return int(parts[0])
        return None

    @contextmanager
    def _lock(self) -> Iterator[None]:
        fd = os.open(f"{self.path}/.lock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _prepare(self) -> str:
        base = self.options.spool_dir
        if base is None:
            from molq.config import molq_home

            base = str(molq_home() / "local-spool")
        base = os.path.abspath(base)
        for sub in ("jobs", "queued", "claimed", "running", "bin"):
            self.t.mkdir(f"{base}/{sub}", parents=True, mode=0o700)
        advance = f"{base}/bin/{scripts.advance_name()}"
        if not os.path.exists(advance):
            self._put(advance, scripts.script("advance"))
        try:
            self.cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover
            self.cpus = os.cpu_count() or 1
        self.umask = os.umask(0o077)  # read it: os.umask has no getter
        os.umask(self.umask)
        self._path = base
        self._upgrade_queue()
        return base

    def _upgrade_queue(self) -> None:
        """Rewrite queue entries left by an earlier molq-core (empty, no job-directory link)
        in the current form, from the jobs' descriptions, so the pass can start them."""
        spool = self.path
        entries = self._listdir(f"{spool}/queued")
        if not entries:
            return
        with self._lock():
            for entry in self._listdir(f"{spool}/queued"):
                path = f"{spool}/queued/{entry}"
                text = self._read(path)
                if text is None or text.split()[:1] and text.split()[0].isdigit():
                    continue
                sid = queue.entry_sid(entry)
                info = self._info(sid)
                if info is None:
                    continue
                self._link(sid, info["job_dir"])
                deps = [(c, u) for c, u in info.get("deps", ())]
                for _c, up in deps:
                    up_info = self._info(up)
                    if up_info is not None:
                        self._link(up, up_info["job_dir"])
                ns = entry.split("-", 1)[0].rstrip("d")
                self._put(f"{spool}/queued/{queue.entry_name(int(ns), sid, bool(deps))}",
                          queue.queue_line(int(info.get("cpus") or 1), deps) + "\n")
                if not deps:
                    continue  # same name: replaced in place
                os.unlink(path)

    def _running(self) -> dict[str, tuple[int, int]]:
        """Live running entries as sid -> (pid, cpus); entries of ended processes are dropped
        (caller holds the lock). See ``molq_entry`` in ``sh/lib.sh`` for the two forms."""
        out = {}
        path = f"{self.path}/running"
        for name in self._listdir(path):
            sid, _, encoded = name.partition("@")
            text = encoded.replace("@", " ") if encoded else self._read(f"{path}/{name}")
            pid = self._alive(text)
            if pid is None:
                if text is not None:
                    try:
                        os.unlink(f"{path}/{name}")
                    except FileNotFoundError:
                        pass
                continue
            parts = (text or "").split()
            out[sid] = (pid, int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 1)
        return out

    def _advance(self, max_cpus: int) -> None:
        """One scheduling pass (the ``advance`` script; takes the lock itself), in a session
        of its own: a Ctrl-C meant for this process does not cut a pass short."""
        reap_children()
        try:
            result = subprocess.run(["/bin/sh", f"{self.path}/bin/{scripts.advance_name()}", self.path, str(max_cpus)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    start_new_session=True, text=True)
        except OSError as exc:
            raise SchedulerError(f"local scheduler: cannot run a queue pass: {exc}") from exc
        if result.returncode != 0:
            raise SchedulerError(f"local scheduler: a queue pass failed: {result.stderr.strip() or result.returncode}",
                                 stderr=result.stderr)

    def _info(self, sid: str) -> dict[str, Any] | None:
        text = self._read(f"{self.path}/jobs/{sid}.json")
        try:
            info = json.loads(text) if text else None
        except ValueError:
            return None  # written before the job was handed over: a submitter died mid-write
        return info if isinstance(info, dict) else None

    # -- the interface -----------------------------------------------------------------------
    def submit(self, sid: str, job_dir: str, info: dict[str, Any], script: str, max_cpus: int,
               start: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        """Hand a job over. ``start(sid, info)`` starts it at once when it need not queue (the
        default: :meth:`start`); the scheduler passes its own step so it can be observed."""
        deps = [(c, u) for c, u in info["deps"]]
        self.check_ids([sid, *(u for _c, u in deps)])
        spool = self.path
        write_new_file(wrapper.join_path(job_dir, wrapper.SCRIPT_FILE), script, mode=0o700, exclusive=False)
        # Written in place: nothing looks a job up before its queue or running entry exists.
        write_new_file(f"{spool}/jobs/{sid}.json", json.dumps(info), exclusive=False)
        with self._lock():
            reap_children()
            used = sum(c for _pid, c in self._running().values())
            # Nothing waits ahead of it, no dependency and the cores are free: start it here
            # (it never enters the queue, so no pass can start it again).
            if (not deps and used + info["cpus"] <= max_cpus and not self._listdir(f"{spool}/queued")
                    and not self._listdir(f"{spool}/claimed")):
                (start or self.start)(sid, info)
                return
            # The scheduling pass finds a job's files through jobs/<sid>.dir: made for the jobs
            # it looks at (queued ones and their upstreams); a job started here needs none.
            self._link(sid, job_dir)
            for _c, up in deps:
                up_info = self._info(up)
                if up_info is not None:
                    self._link(up, up_info["job_dir"])
            self._put(f"{spool}/queued/{queue.entry_name(time.time_ns(), sid, bool(deps))}",
                      queue.queue_line(info["cpus"], deps) + "\n")
            # Looked at again after the entry exists: a job that ended meanwhile may have found
            # the queue empty and left its cores to us (see ScriptSpool.handover_line).
            used = sum(c for _pid, c in self._running().values())
        if used < max_cpus:
            self._advance(max_cpus)
        # Else every core is busy: the wrapper of the next job to end runs the pass.

    def _link(self, sid: str, job_dir: str) -> None:
        link = f"{self.path}/jobs/{sid}.dir"
        if os.path.islink(link):
            return
        try:
            os.symlink(job_dir, link)
        except FileExistsError:
            pass

    def start(self, sid: str, info: dict[str, Any]) -> None:
        """Start a job's wrapper and record its identity (caller holds the lock)."""
        cpus = info["cpus"]
        pid = self.t.spawn_detached(["/bin/sh", wrapper.join_path(info["job_dir"], wrapper.SCRIPT_FILE)], cwd=None,
                                    stdout=os.devnull, stderr=os.devnull)
        _fault("submit-spawned")
        start = self.start_time(pid) or "gone"  # gone: it ended already; an identity that never matches
        try:
            self._put(f"{self.path}/running/{sid}", f"{pid} {start} {cpus}\n")
        except OSError:
            # A full disk: the identity in a name (an empty file needs no data block).
            try:
                os.close(os.open(f"{self.path}/running/{sid}@{pid}@{start}@{cpus}",
                                 os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            except OSError:
                pass  # the wrapper's started file is the last witness

    def statuses(self, sids: Sequence[str], max_cpus: int) -> dict[str, SchedulerStatus | None]:
        spool = self.path
        with self._lock():
            running = self._running()
            used = sum(c for _pid, c in running.values())
            queued = self._listdir(f"{spool}/queued")
            claimed = {queue.entry_sid(e) for e in self._listdir(f"{spool}/claimed")}
        # A pass only when it can change something: free cores, a claim whose claimer died,
        # or jobs whose dependencies may have ended while no wrapper handed over (SIGKILL).
        # Wrappers hand over as jobs end, so a watcher polling fast repeats a pass only when
        # the spool changed, or after a second.
        wanted = claimed or (queued and (used < max_cpus or any("d-" in e for e in queued)))
        seen = (frozenset(running), frozenset(queued), frozenset(claimed))
        if wanted and (seen != self._last_pass[0] or time.monotonic() - self._last_pass[1] >= 1.0):
            self._last_pass = (seen, time.monotonic())
            self._advance(max_cpus)
            with self._lock():
                running = self._running()
                queued = self._listdir(f"{spool}/queued")
                claimed = {queue.entry_sid(e) for e in self._listdir(f"{spool}/claimed")}
        queued_sids = {queue.entry_sid(e) for e in queued}
        out: dict[str, SchedulerStatus | None] = {}
        for sid in sids:
            info = self._info(sid)
            if info is None:
                continue  # not known here: the engine decides (adoption / lost)
            out[sid] = queue.status_from(self._facts(sid, info, sid in queued_sids, sid in claimed,
                                                     sid in running))
        return out

    def _facts(self, sid: str, info: dict[str, Any], queued: bool, claimed: bool, running: bool) -> queue.JobFacts:
        d = info["job_dir"]
        # Liveness first, files second: a job that ends in between has its exit code written.
        started_path = wrapper.join_path(d, wrapper.STARTED_FILE)
        alive = not running and self._alive(self._read(started_path)) is not None
        code_path = wrapper.join_path(d, wrapper.EXIT_CODE_FILE)
        code = self._read(code_path)
        started_at = self._mtime(started_path)
        # Lines of the wrapper's `times` (the second is the children's CPU time), then the peak.
        usage = (self._read(wrapper.join_path(d, wrapper.USAGE_FILE)) or "").split("\n") if code is not None else []
        if started_at is not None:
            # File times tick coarser than the clock: never before the submission.
            started_at = max(started_at, float(info.get("submitted") or 0))
        finished_at = self._mtime(code_path) if code is not None else None
        if code is not None or not (running or alive):
            self._remove_cgroup(d)
        if finished_at is not None and started_at is not None:
            finished_at = max(finished_at, started_at)
        return queue.JobFacts(
            queued=queued, claimed=claimed, running=running, alive=alive, exit_code=code,
            never_ran=self._read(wrapper.join_path(d, queue.NEVER_RAN_FILE)),
            cancelled=os.path.exists(wrapper.join_path(d, queue.CANCELLED_FILE)),
            exit_unknown=os.path.exists(wrapper.join_path(d, wrapper.EXIT_UNKNOWN_FILE)),
            started_at=started_at, finished_at=finished_at,
            usage=usage[1] if len(usage) > 1 else None,
            peak=usage[2] if len(usage) > 2 else None,
            oom_killed=code is not None and os.path.exists(wrapper.join_path(d, wrapper.OOM_KILLED_FILE)),
            cpus=info.get("cpus"), memory=info.get("memory"),
        )

    def _remove_cgroup(self, job_dir: str) -> None:
        """Remove the private memory cgroup of an ended job whose wrapper could not (it was
        killed, or a process the job left behind was still in it)."""
        path = (self._read(wrapper.join_path(job_dir, wrapper.CGROUP_FILE)) or "").strip()
        if path.startswith("/sys/fs/cgroup/"):
            try:
                os.rmdir(path)
            except OSError:
                pass  # gone already, or still holding a process: tried again next time

    def cancel(self, sids: Sequence[str], grace: float, max_cpus: int) -> None:
        spool = self.path
        to_wait: list[int] = []
        with self._lock():
            running = self._running()
            queued = {queue.entry_sid(e): e for e in self._listdir(f"{spool}/queued")}
            for sid in sids:
                info = self._info(sid)
                if info is None:
                    continue
                d = info["job_dir"]
                if os.path.exists(wrapper.join_path(d, wrapper.EXIT_CODE_FILE)):
                    continue  # already finished: leave its final state alone
                self._put(wrapper.join_path(d, queue.CANCELLED_FILE), f"{time.time()}\n")
                if sid in queued:
                    try:
                        os.unlink(f"{spool}/queued/{queued[sid]}")
                    except FileNotFoundError:
                        pass
                try:  # a job that has not begun never will
                    os.close(os.open(wrapper.join_path(d, wrapper.BEGUN_FILE),
                                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
                except OSError:
                    pass
                pid = running[sid][0] if sid in running else self._alive(
                    self._read(wrapper.join_path(d, wrapper.STARTED_FILE)))
                if pid is not None:
                    _killpg(pid, signal.SIGTERM)
                    to_wait.append(pid)
        deadline = time.monotonic() + grace
        while to_wait and time.monotonic() < deadline:
            reap_children()
            to_wait = [p for p in to_wait if _group_alive(p)]
            if to_wait:
                time.sleep(0.02)
        for pgid in to_wait:
            _killpg(pgid, signal.SIGKILL)
        self._advance(max_cpus)  # the cores of the cancelled jobs

    def handed_over(self, sids: Sequence[str]) -> set[str]:
        spool = self.path
        taken = ({queue.entry_sid(e) for e in self._listdir(f"{spool}/queued")}
                 | {queue.entry_sid(e) for e in self._listdir(f"{spool}/claimed")}
                 | {n.partition("@")[0] for n in self._listdir(f"{spool}/running")})
        out = set()
        for sid in sids:
            info = self._info(sid)
            if info is None:
                continue
            if sid in taken or os.path.exists(wrapper.join_path(info["job_dir"], wrapper.BEGUN_FILE)):
                out.add(sid)
        return out

    def forget(self, sids: Sequence[str]) -> None:
        for sid in sids:
            for path in (f"{self.path}/jobs/{sid}.json", f"{self.path}/jobs/{sid}.dir"):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def wait_for_change(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, waking as soon as a running local job ends."""
        if timeout <= 0 or not hasattr(os, "pidfd_open"):
            time.sleep(max(timeout, 0))
            return
        fds = []
        try:
            with self._lock():
                pids = [pid for pid, _c in self._running().values()]
            for pid in pids:
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


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""The spool on a remote host, driven over a :class:`~molq.transport.Transport` by the
package's shell scripts (``sh/``): a submit, a refresh and a cancel are one command each.

:class:`ScriptSpool` is also the interface every spool offers; the host spool
(:mod:`molq.local.host`) does the same with direct file and process calls where that is
cheaper. Nothing is created on the client.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from molq.errors import SchedulerError
from molq.local import queue, scripts
from molq.local.options import LocalSchedulerOptions
from molq.model import QueueEntry, SchedulerStatus
from molq.transport import Transport

__all__ = ["ScriptSpool"]


class ScriptSpool:
    """A spool (see ``sh/lib.sh`` for its layout) reached through ``transport``."""

    def __init__(self, transport: Transport, options: LocalSchedulerOptions) -> None:
        self.t = transport
        self.options = options
        self._path: str | None = None
        self.cpus = 1  # the host's cores, known once prepared
        self.umask = 0o022  # the umask jobs run with, known once prepared

    # -- plumbing ----------------------------------------------------------------------------
    def _sh(self, name: str, *args: str, input: str | None = None, what: str) -> str:
        result = self.t.run(["sh", "-c", scripts.script(name), "molq", *args], input=input)
        if result.returncode != 0:
            raise SchedulerError(
                f"local scheduler on {getattr(self.t, 'host', self.t.name)}: {what} failed: "
                f"{result.stderr.strip() or f'exit status {result.returncode}'}",
                stderr=result.stderr,
            )
        return result.stdout

    def _prepare(self) -> str:
        out = self._sh("init", self.options.spool_dir or "", scripts.advance_name(),
                       input=scripts.script("advance"), what="preparing the spool")
        fields = dict(line.split(" ", 1) for line in out.split("\n") if " " in line and not line.startswith("O "))
        legacy = [line[2:].split(" ", 1) for line in out.split("\n") if line.startswith("O ")]
        try:
            self.cpus = max(int(fields.get("C", "1")), 1)
        except ValueError:
            self.cpus = 1
        try:
            self.umask = int(fields.get("M", "022"), 8) & 0o777
        except ValueError:
            self.umask = 0o022
        path = fields["P"]
        if legacy:
            self._requeue(path, legacy)
        return path

    def _requeue(self, path: str, legacy: list[list[str]]) -> None:
        """Rewrite queue entries of an earlier molq-core from their jobs' descriptions."""
        args: list[str] = []
        for entry, *rest in legacy:
            try:
                info = json.loads(rest[0] if rest else "")
                deps = [(str(c), str(u)) for c, u in info.get("deps", ())]
                cpus = int(info.get("cpus") or 1)
            except (ValueError, TypeError, AttributeError):
                continue  # no readable description: it waits (and shows in the queue)
            ns = entry.split("-", 1)[0].rstrip("d")
            if not ns.isdigit():
                continue
            args += [entry, queue.entry_name(int(ns), queue.entry_sid(entry), bool(deps)),
                     queue.queue_line(cpus, deps)]
        if args:
            self._sh("requeue", path, *args, what="upgrading queue entries")

    @property
    def path(self) -> str:
        """The spool directory on the target host (created on first use)."""
        if self._path is None:
            self._path = self._prepare()
        return self._path

    def handover_line(self, sid: str, max_cpus: int) -> str:
        """The wrapper's last step, builtins only unless there is work: mark its running entry
        ended (its cores are free from now on), then, if anything waits, run a scheduling
        pass. A submitter that queued a job while the cores were busy looks at the running
        entries again after writing its entry: one of the two always sees the other."""
        path = self.path
        q = shlex.quote
        entry = q(f"{path}/running/{sid}")
        return "\n".join([
            f"    [ ! -f {entry} ] || printf 'ended\\n' 2>/dev/null > {entry}",
            f"    for molq_f in {q(path)}/queued/* {q(path)}/claimed/*; do",
            '        [ -e "$molq_f" ] || continue',
            # In a session of its own: a signal to the job's process group cannot cut it short.
            f"        setsid /bin/sh {q(f'{path}/bin/{scripts.advance_name()}')} {q(path)} {max_cpus} {q(sid)} "
            '"$$" </dev/null >/dev/null 2>&1',
            "        break",
            "    done",
        ])

    @staticmethod
    def check_ids(sids: Sequence[str]) -> None:
        for sid in sids:
            if not queue.SID_RE.match(sid):
                raise SchedulerError(f"local scheduler: job id {sid!r} cannot be used on a local spool")

    # -- the interface -----------------------------------------------------------------------
    def submit(self, sid: str, job_dir: str, info: dict[str, Any], script: str, max_cpus: int,
               start: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        """Hand a job over: queued, then started by the pass when it fits (``start`` is for
        spools that can start a job directly; here the pass does)."""
        deps = [(c, u) for c, u in info["deps"]]
        self.check_ids([sid, *(u for _c, u in deps)])
        entry = queue.entry_name(time.time_ns(), sid, bool(deps))
        self._sh("submit", self.path, str(max_cpus), job_dir, sid, entry, json.dumps(info),
                 queue.queue_line(info["cpus"], deps), info["stdout"], info["stderr"], input=script,
                 what="submitting")

    def statuses(self, sids: Sequence[str], max_cpus: int) -> dict[str, SchedulerStatus | None]:
        """Status by spool id after a scheduling pass; ids the spool does not know are left out."""
        self.check_ids(sids)
        out = self._sh("poll", self.path, str(max_cpus), input="".join(f"{s}\n" for s in sids),
                       what="reading the spool")
        facts: dict[str, dict[str, Any]] = {}
        for line in out.split("\n"):
            tag, _, rest = line.partition(" ")
            if tag == "J":
                sid, _, flags = rest.partition(" ")
                facts[sid] = {"queued": "q" in flags, "claimed": "c" in flags, "running": "r" in flags,
                              "alive": "a" in flags, "cancelled": "x" in flags, "exit_unknown": "u" in flags,
                              "oom_killed": "o" in flags}
            elif tag == "F":
                sid, name, value = (rest.split(" ", 2) + ["", ""])[:3]
                if sid in facts and name in ("exit_code", "never_ran"):
                    facts[sid][name] = value + "\n"  # reported only once the line was complete
                elif sid in facts and name in ("usage", "peak"):
                    facts[sid][name] = value
            elif tag == "T":
                mtime, _, path = rest.partition(" ")
                head, _, name = path.rpartition("/")
                sid = head.rpartition("/")[2].removesuffix(".dir")
                key = {"started": "started_at", "exit_code": "finished_at"}.get(name)
                if sid in facts and key is not None:
                    try:
                        facts[sid][key] = float(mtime)
                    except ValueError:
                        pass
        for f in facts.values():
            if f.get("exit_code") is None:
                f.pop("finished_at", None)  # an exit code still being written
        return {sid: queue.status_from(queue.JobFacts(**f)) for sid, f in facts.items()}

    def cancel(self, sids: Sequence[str], grace: float, max_cpus: int) -> None:
        self.check_ids(sids)
        if not sids:
            return
        ticks = str(max(int(grace / 0.05), 0))
        secs = str(max(int(grace + 0.999), 0))
        self._sh("cancel", self.path, f"{time.time()}", ticks, secs, str(max_cpus),
                 input="".join(f"{s}\n" for s in sids), what="cancelling")

    def handed_over(self, sids: Sequence[str]) -> set[str]:
        """The ids the spool took over: queued, being started, running or begun."""
        self.check_ids(sids)
        found: set[str] = set()
        for chunk in _chunks(sids):
            found.update(self._sh("known", self.path, *chunk, what="looking up jobs").split())
        return found

    def forget(self, sids: Sequence[str]) -> None:
        self.check_ids(sids)
        for chunk in _chunks(sids):
            self._sh("forget", self.path, *chunk, what="removing spool entries")

    def queue(self) -> list[QueueEntry]:
        return queue.parse_queue(self._sh("queue", self.path, what="listing the queue"))

    def wait_for_change(self, timeout: float) -> None:
        time.sleep(max(timeout, 0))


def _chunks(sids: Sequence[str], size: int = 1000) -> Iterator[Sequence[str]]:
    """Ids in groups that keep one command line well under the 128 KiB that Linux allows a
    single argument (sshd hands the whole command to the login shell as one)."""
    for i in range(0, len(sids), size):
        yield sids[i:i + size]

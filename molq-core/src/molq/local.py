"""The local scheduler (``Cluster(name, "local")``): jobs run as detached processes.

Jobs start in their own session (so they outlive the submitting process and cancel can stop the
whole process group, grandchildren included), inside molq's wrapper. The scheduler keeps a small
spool on the target host (``~/.molq/local-spool``)::

    jobs/<sid>.json            what the job needs: job dir, cpus, dependencies
    jobs/<sid>.dir             symlink to the job directory (written by remote submissions)
    queued/<ns>-<sid>          waiting for cores or dependencies (FIFO by submission time);
                               remote submissions list the upstream job ids inside
    running/<sid>              "<pid> <process start time> <cpus>" of the job's wrapper

Identity is pid plus the process start time from ``/proc``, never pid alone. A job that does
not fit in the free cores stays queued; every poll (any process: the submitter, ``molq watch``,
the daemon) starts queued jobs as cores free up and their dependencies are satisfied, and ends
jobs whose dependencies can never be satisfied with a clear reason.

Over a remote transport (``Cluster(name, "local", host=...)``) the same spool lives on the remote
host, in the remote user's home, and is driven by a few POSIX shell scripts (see
``_RemoteSpool``): a refresh is one command on the host, two when queued jobs start. Nothing is
created on the client. Both paths lock the spool with ``flock`` on ``<spool>/.lock``, so a spool
may be shared by processes on the host itself and clients over SSH.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator, Sequence
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
from molq.transport import LocalTransport, Transport, reap_children, write_new_file

__all__ = ["ShellScheduler", "LocalSchedulerOptions"]

CANCELLED_FILE = "cancelled"
NEVER_RAN_FILE = wrapper.NEVER_RAN_FILE


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

    # Spool and job-directory files are small: plain os-level calls (no buffered text-file
    # objects) keep each read or write to a few system calls on the submission path.
    def read(self, path: str) -> str | None:
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
        return b"".join(chunks).decode()

    def write(self, path: str, text: str) -> None:
        """Replace ``path`` atomically (temporary file + rename)."""
        head, _, name = path.rpartition("/")
        tmp = f"{head}/.{name}.tmp.{os.getpid()}"
        write_new_file(tmp, text, exclusive=False)
        os.replace(tmp, path)

    def touch(self, path: str) -> None:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))

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
            fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError):
            return None
        try:
            data = os.read(fd, 4096)
        except ProcessLookupError:  # the process went away between open and read
            return None
        finally:
            os.close(fd)
        rest = data.rsplit(b")", 1)[-1].decode().split()
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


# -- decisions shared by the local and the remote spool --------------------------------------


def _status_from(
    in_queued: bool,
    in_running: bool,
    read: Callable[[str], str | None],
    started_at: Callable[[], float | None],
) -> SchedulerStatus:
    """A job's status from its spool membership and the files of its job directory.

    ``read(name)`` returns the content of a job-directory file (None when absent); it is only
    called for the files the answer depends on.
    """
    if in_queued and not in_running:
        return SchedulerStatus(JobState.QUEUED, "queued")
    code = wrapper.parse_exit_code(read(wrapper.EXIT_CODE_FILE))
    if code is None and in_running:
        return SchedulerStatus(JobState.RUNNING, "running", started_at=started_at())
    start = started_at()
    if code is not None:
        sig, reason = wrapper.describe_exit(code)
        # Only a signal death can be a cancel: look for the marker just then.
        if sig is not None and read(CANCELLED_FILE) is not None:
            return SchedulerStatus(JobState.CANCELLED, "cancelled", code, sig, "cancelled", start)
        return SchedulerStatus(
            JobState.SUCCEEDED if code == 0 else JobState.FAILED, "exited", code, sig, reason, start
        )
    never = read(NEVER_RAN_FILE)
    if never is not None:
        return SchedulerStatus(JobState.FAILED, "never_ran", None, None, never.strip())
    if read(CANCELLED_FILE) is not None:
        return SchedulerStatus(JobState.CANCELLED, "cancelled", None, None, "cancelled", start)
    # Neither queued, running nor finished: the wrapper died without writing its exit code
    # (killed with SIGKILL, or the machine rebooted).
    return SchedulerStatus(
        JobState.FAILED, "vanished", None, None,
        "the job's process ended without recording an exit code (killed, or the host rebooted)",
        start,
    )


#: ``upstream(sid)`` answers None for a job the spool does not know, else (status, started).
_UpstreamLookup = Callable[[str], "tuple[SchedulerStatus, bool] | None"]


def _deps_verdict(deps: Sequence[Sequence[str]], upstream: _UpstreamLookup) -> bool | None | str:
    """True when every dependency is satisfied, None while waiting, or the reason why it can
    never be satisfied."""
    for condition, up in deps:
        found = upstream(up)
        if found is None:
            return f"dependency on unknown local job {up}"
        status, started = found
        if condition == "after_started":
            if started:
                continue
            if status.state.is_terminal:
                return f"dependency never satisfied: {up} ended ({status.state.value}) without starting"
            return None
        if not status.state.is_terminal:
            return None
        ok = status.state == JobState.SUCCEEDED
        if condition == "after_success" and not ok:
            return f"dependency never satisfied: {up} did not succeed ({status.state.value})"
        if condition == "after_failure" and ok:
            return f"dependency never satisfied: {up} succeeded"
    return True


def _plan_launches(
    queued: Sequence[str],
    running: dict[str, tuple[int, str, int]],
    max_cpus: int,
    info_of: Callable[[str], dict[str, Any] | None],
    upstream: _UpstreamLookup,
) -> list[tuple[Any, ...]]:
    """What a scheduling pass does, in FIFO order: ``("launch", entry, sid, info)``,
    ``("never", entry, sid, info, reason)`` or ``("drop", entry, sid, None)``."""
    actions: list[tuple[Any, ...]] = []
    free = max_cpus - sum(r[2] for r in running.values())
    for entry in queued:
        if free <= 0:
            break
        sid = entry.split("-", 1)[1]
        info = info_of(sid)
        if info is None:
            actions.append(("drop", entry, sid, None))
            continue
        verdict = _deps_verdict(info["deps"], upstream)
        if verdict is None:
            continue  # still waiting
        if verdict is not True:
            actions.append(("never", entry, sid, info, verdict))
            continue
        if info["cpus"] > free:
            continue
        actions.append(("launch", entry, sid, info))
        free -= info["cpus"]
    return actions


def _job_info(spec: JobSpec, job_dir: str) -> dict[str, Any]:
    """The spool's ``jobs/<sid>.json`` for a new job."""
    return {
        "job_dir": job_dir,
        "cpus": spec.resources.cpu_count or 1,
        "deps": [[d.condition, d.scheduler_job_id] for d in spec.dependencies],
        "stdout": wrapper.stdout_path(spec, job_dir),
        "stderr": wrapper.stderr_path(spec, job_dir),
        "redirected": True,  # job.sh opens stdout/stderr itself
        "submitted": time.time(),
    }


# -- the spool on a remote host ------------------------------------------------------------------
#
# Over a remote transport every operation costs a round trip, so the spool is driven by a few
# fixed POSIX sh scripts instead of one command per file: a refresh is one ``look`` (the queue,
# the live running entries and the state files of the requested jobs), plus one ``launch`` only
# when queued jobs can start. Per job, the scripts use shell builtins only (plus one awk process
# for all running entries), so their cost does not grow with a process per file. Decisions
# (dependencies, cores, states) stay in the Python code shared with the local path; the scripts
# only report and act. A look reads the descriptions of queued jobs only when a core is free.
#
# Remote submissions also write ``jobs/<sid>.dir``, a symlink to the job directory, and list the
# job's upstream ids inside its ``queued/`` entry, so a script finds every file it needs from a
# job id alone. Entries written by a local-transport process on the same spool lack both; they
# are repaired on first sight (the link is made from ``jobs/<sid>.json``).
#
# Scripts run with ``sh -c SCRIPT molq SPOOL ARGS...``; user data only ever arrives as arguments
# or on stdin, never inside the script text.

_SID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

_SH_PRELUDE = r"""
spool=$1; shift
umask 077
molq_ident() {
    st=; s=
    case $1 in ''|*[!0-9]*) return 1 ;; esac
    { IFS= read -r s; } 2>/dev/null < "/proc/$1/stat" || [ -n "$s" ] || return 1
    s=${s##*)}
    set -f; set -- $s; set +f
    case ${1:-X} in Z|X) return 1 ;; esac
    [ $# -ge 20 ] || return 1
    shift 19
    st=$1
}
molq_entry() {
    pid=; cpus=1
    [ -f "$1" ] || return 1
    line=
    { IFS= read -r line; } 2>/dev/null < "$1"
    set -f; set -- $line; set +f
    [ $# -ge 2 ] || return 2
    case ${3:-1} in *[!0-9]*) ;; *) cpus=${3:-1} ;; esac
    molq_ident "$1" && [ "$st" = "$2" ] || return 3
    pid=$1; start=$2
}
molq_scan() {
    used=0
    for f in "$spool"/running/*; do
        molq_entry "$f"
        case $? in
            0) used=$((used + cpus)); printf 'R %s %s %s %s\n' "${f##*/}" "$pid" "$start" "$cpus" ;;
            3) rm -f -- "$f" ;;
        esac
    done
}
molq_block() {
    case $1 in ''|*[!A-Za-z0-9_.-]*) return 0 ;; esac
    if [ ! -f "$spool/jobs/$1.json" ]; then printf 'U %s\n' "$1"; return 0; fi
    d="$spool/jobs/$1.dir"
    if [ ! -L "$d" ]; then printf 'N %s\n' "$1"; return 0; fi
    printf 'J %s\n' "$1"
    for n in exit_code cancelled never_ran; do
        # A file counts once its line is complete (the exit code is one write ending in \n).
        if [ -f "$d/$n" ]; then
            v=
            if { IFS= read -r v; } 2>/dev/null < "$d/$n"; then printf 'F %s %s %s\n' "$1" "$n" "$v"; fi
        fi
    done
    [ ! -e "$d/started" ] || printf 'S %s\n' "$1"
}
# The running entries checked by one awk process (block reads; a shell's `read` takes a byte per
# system call). Exit status: 10 cores free, 12 all in use, +1 when entries of ended processes
# were seen.
molq_awk_scan='
BEGIN {
    used = 0; dead = 0
    for (i = 1; i < ARGC; i++) {
        f = ARGV[i]; n = split(f, parts, "/"); name = parts[n]
        if ((getline line < f) <= 0) continue
        close(f)
        split(line, e, " ")
        if (e[2] == "") continue
        cpus = (e[3] ~ /^[0-9]+$/) ? e[3] : 1
        stat = "/proc/" e[1] "/stat"
        alive = 0
        if (e[1] ~ /^[0-9]+$/ && (getline s < stat) > 0) {
            close(stat)
            sub(/.*\) /, "", s)
            split(s, b, " ")
            alive = (b[1] != "Z" && b[1] != "X" && b[20] == e[2])
        }
        if (alive) { print "R", name, e[1], e[2], cpus; used += cpus } else dead = 1
    }
    exit (used >= max ? 12 : 10) + dead
}'
molq_scan_fast() {
    set --
    for f in "$spool"/running/*; do [ ! -f "$f" ] || set -- "$@" "$f"; done
    if [ $# = 0 ]; then full=; return 0; fi
    rc=0
    if command -v awk >/dev/null 2>&1; then
        LC_ALL=C awk -v max="$max" "$molq_awk_scan" "$@"
        rc=$?
    fi
    case $rc in
        10|11) full= ;;
        12|13) full=1 ;;
        *) molq_scan; [ "$used" -lt "$max" ] && full= || full=1; return 0 ;;
    esac
    [ "$rc" = 11 ] || [ "$rc" = 13 ] || return 0
    # Entries of processes that ended: dropped after a check of their own.
    for f do molq_entry "$f"; [ $? != 3 ] || rm -f -- "$f"; done
}
molq_look() {
    # Order matters against a concurrent launch (running entry first, queued entry removed
    # after): the queue is listed before the running entries are read.
    qs=
    for f in "$spool"/queued/*; do
        [ -f "$f" ] || continue
        printf 'Q %s\n' "${f##*/}"
        qs="$qs ${f##*/}"
    done
    full=
    molq_scan_fast
    # Job descriptions and upstream lists matter only when a queued job could start.
    ups=
    [ -z "$qs" ] || [ -z "$full" ] || printf 'W\n'
    if [ -n "$qs" ] && [ -z "$full" ]; then
        set -f
        for e in $qs; do
            sid=${e#*-}
            if [ -f "$spool/jobs/$sid.json" ]; then
                v=
                { IFS= read -r v; } 2>/dev/null < "$spool/jobs/$sid.json"
                printf 'I %s %s\n' "$sid" "$v"
            fi
            v=
            { IFS= read -r v; } 2>/dev/null < "$spool/queued/$e"
            ups="$ups $v"
        done
        set +f
    fi
    while IFS= read -r sid; do molq_block "$sid"; done
    set -f; for sid in $ups; do molq_block "$sid"; done; set +f
}
molq_lock() {
    if command -v flock >/dev/null 2>&1; then
        exec 9>>"$spool/.lock" && flock 9 && return 0
        return 1
    fi
    # No flock(1): a lock directory, taken over when it is older than about a minute.
    n=0
    until mkdir "$spool/.lock.d" 2>/dev/null; do
        n=$((n + 1))
        if [ "$n" -ge 600 ]; then rmdir "$spool/.lock.d" 2>/dev/null; n=0; fi
        sleep 0.1 2>/dev/null || sleep 1
    done
    trap 'rmdir "$spool/.lock.d" 2>/dev/null' EXIT
}
molq_unlock() {
    if command -v flock >/dev/null 2>&1; then exec 9>&-; else rmdir "$spool/.lock.d" 2>/dev/null; trap - EXIT; fi
}
molq_launch() {
    [ -e "$spool/queued/$1" ] || return 0
    if [ -e "$spool/running/$2" ]; then rm -f -- "$spool/queued/$1"; return 0; fi
    [ $((used + $3)) -le "$max" ] || return 0
    # `true`, not `:`: a failed redirection of a special builtin would end the script.
    if ! { true >> "$5" && true >> "$6"; } 2>/dev/null; then
        molq_never "$1" "$2" "$4" "cannot open the job's output files ($5, $6)"
        return 0
    fi
    setsid /bin/sh "$4/job.sh" >> "$5" 2>> "$6" < /dev/null 9>&- &
    pid=$!
    molq_ident "$pid" || st=gone
    printf '%s %s %s\n' "$pid" "$st" "$3" > "$spool/running/.$2.tmp" &&
        mv -f -- "$spool/running/.$2.tmp" "$spool/running/$2" || return 1
    rm -f -- "$spool/queued/$1"
    used=$((used + $3))
    launched=1
    printf 'L %s %s %s\n' "$2" "$pid" "$3"
}
molq_never() {
    [ -e "$spool/queued/$1" ] || return 0
    { printf '%s\n' "$4" > "$3/.never_ran.tmp" && mv -f -- "$3/.never_ran.tmp" "$3/never_ran"; } 2>/dev/null
    rm -f -- "$spool/queued/$1"
    printf 'V %s %s\n' "$2" "$4"
}
molq_need_setsid() {
    command -v setsid >/dev/null 2>&1 && return 0
    echo "molq: the local scheduler needs setsid(1) on this host" >&2
    exit 3
}
"""

# ``init``: create the spool (default ~/.molq/local-spool of the remote user) and count cores.
_SH_INIT = r"""
umask 077
base=$1
[ -n "$base" ] || base="$HOME/.molq/local-spool"
mkdir -p -- "$base/jobs" "$base/queued" "$base/running" || exit 1
cd -- "$base" || exit 1
n=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
printf 'C %s\nP %s' "$n" "$PWD"
"""

# ``look``: MAX, job ids on stdin (one per line).
_SH_LOOK = _SH_PRELUDE + "max=$1; shift\nmolq_look\n"

# ``launch``: MAX then actions: L entry sid cpus job_dir stdout stderr | N entry sid job_dir
# reason | D entry.
_SH_LAUNCH = _SH_PRELUDE + r"""
max=$1; shift
molq_need_setsid
molq_lock || exit 4
molq_scan > /dev/null
while [ $# -gt 0 ]; do
    case $1 in
        L) molq_launch "$2" "$3" "$4" "$5" "$6" "$7"; shift 7 ;;
        N) molq_never "$2" "$3" "$4" "$5"; shift 5 ;;
        D) rm -f -- "$spool/queued/$2"; printf 'D %s\n' "$2"; shift 2 ;;
        *) echo "molq: unknown spool action $1" >&2; exit 5 ;;
    esac
done
"""

# ``submit``: MAX JOB_DIR SID ENTRY JSON UPSTREAMS CPUS STDOUT STDERR, job.sh on stdin. Starts
# the job at once when nothing else waits and it fits; otherwise reports the spool (a look).
_SH_SUBMIT = _SH_PRELUDE + r"""
max=$1 d=$2 sid=$3 e=$4 json=$5 deps=$6 c=$7 out=$8 err=$9
molq_need_setsid
t="$d/.job.sh.tmp"
cat > "$t" && chmod 700 "$t" && mv -f -- "$t" "$d/job.sh" || exit 1
printf '%s' "$json" > "$spool/jobs/$sid.json" || exit 1
rm -f -- "$spool/jobs/$sid.dir"
ln -s -- "$d" "$spool/jobs/$sid.dir" || exit 1
printf '%s\n' "$deps" > "$spool/queued/.$e.tmp" && mv -f -- "$spool/queued/.$e.tmp" "$spool/queued/$e" || exit 1
launched=
if [ -z "$deps" ]; then
    molq_lock || exit 4
    n=0
    for f in "$spool"/queued/*; do [ ! -f "$f" ] || n=$((n + 1)); done
    if [ "$n" = 1 ]; then
        molq_scan > /dev/null
        molq_launch "$e" "$sid" "$c" "$d" "$out" "$err"
    fi
    molq_unlock
fi
[ -n "$launched" ] || molq_look < /dev/null
"""

# ``cancel``: NOW GRACE_TICKS GRACE_SECONDS, job ids on stdin. SIGTERM to each running job's
# process group, SIGKILL to what is left after the grace time. (``kill -SIG -PGID``: dash's kill
# takes no ``--``.)
_SH_CANCEL = _SH_PRELUDE + r"""
now=$1 ticks=$2 secs=$3
molq_group_alive() {
    kill -0 "-$1" 2>/dev/null || return 1
    molq_ident "$1" && return 0
    # The leader has ended. Zombies waiting for init to reap them do not count, other members
    # (grandchildren of the job) do.
    [ -r /proc/self/stat ] || return 0
    pg=$1
    for s in /proc/[0-9]*/stat; do
        v=
        { IFS= read -r v; } 2>/dev/null < "$s" || [ -n "$v" ] || continue
        v=${v##*)}
        set -f; set -- $v; set +f
        [ "${3:-}" = "$pg" ] || continue
        case $1 in Z|X) ;; *) return 0 ;; esac
    done
    return 1
}
molq_lock || exit 4
pids=
while IFS= read -r sid; do
    case $sid in ''|*[!A-Za-z0-9_.-]*) continue ;; esac
    [ -f "$spool/jobs/$sid.json" ] || continue
    d="$spool/jobs/$sid.dir"
    if [ ! -L "$d" ]; then printf 'N %s\n' "$sid"; continue; fi
    [ ! -e "$d/exit_code" ] || continue
    { printf '%s\n' "$now" > "$d/.cancelled.tmp" && mv -f -- "$d/.cancelled.tmp" "$d/cancelled"; } 2>/dev/null
    for q in "$spool"/queued/*-"$sid"; do [ ! -e "$q" ] || rm -f -- "$q"; done
    if molq_entry "$spool/running/$sid"; then
        kill -TERM "-$pid" 2>/dev/null
        pids="$pids $pid"
    fi
    printf 'C %s\n' "$sid"
done
molq_unlock
if sleep 0.01 2>/dev/null; then step=0.05; else step=1; ticks=$secs; fi
i=0
while [ -n "$pids" ]; do
    left=
    for p in $pids; do ! molq_group_alive "$p" || left="$left $p"; done
    pids=$left
    [ -n "$pids" ] && [ "$i" -lt "$ticks" ] || break
    i=$((i + 1))
    sleep "$step"
done
for p in $pids; do kill -KILL "-$p" 2>/dev/null; done
exit 0
"""

# ``link``: SID JOB_DIR pairs; (re)creates jobs/<sid>.dir.
_SH_LINK = r"""
spool=$1; shift
while [ $# -ge 2 ]; do
    rm -f -- "$spool/jobs/$1.dir"
    ln -s -- "$2" "$spool/jobs/$1.dir" || exit 1
    shift 2
done
"""

# ``known``: job ids as arguments; prints those the spool has.
_SH_KNOWN = r"""
spool=$1; shift
for sid do [ ! -f "$spool/jobs/$sid.json" ] || printf '%s\n' "$sid"; done
"""

# ``forget``: job ids as arguments; drops their spool entries.
_SH_FORGET = r"""
spool=$1; shift
for sid do rm -f -- "$spool/jobs/$sid.json" "$spool/jobs/$sid.dir"; done
"""


@attrs.define
class _Snapshot:
    """What one ``look`` saw on a remote spool."""

    queued: list[str] = attrs.Factory(list)  # entry names
    infos: dict[str, dict[str, Any]] = attrs.Factory(dict)  # queued jobs' jobs/<sid>.json
    running: dict[str, tuple[int, str, int]] = attrs.Factory(dict)
    known: set[str] = attrs.Factory(set)  # J: in the spool, files reported
    unknown: set[str] = attrs.Factory(set)  # U: not in the spool
    unlinked: set[str] = attrs.Factory(set)  # N: in the spool, no jobs/<sid>.dir link
    files: dict[str, dict[str, str]] = attrs.Factory(dict)
    started: set[str] = attrs.Factory(set)
    launched: dict[str, int] = attrs.Factory(dict)
    dropped: set[str] = attrs.Factory(set)
    full: bool = False  # W: every core busy, queued jobs' descriptions not read
    garbled: set[str] = attrs.Factory(set)
    _queued_sids: set[str] | None = None

    @classmethod
    def parse(cls, text: str) -> _Snapshot:
        snap = cls()
        for line in text.split("\n"):
            tag, _, rest = line.partition(" ")
            if tag == "Q":
                snap.queued.append(rest)
            elif tag == "I":
                sid, _, data = rest.partition(" ")
                try:
                    snap.infos[sid] = json.loads(data)
                except ValueError:
                    snap.garbled.add(sid)  # unreadable: left alone, never dropped
            elif tag == "R":
                parts = rest.split(" ")
                if len(parts) == 4 and parts[1].isdigit() and parts[3].isdigit():
                    snap.running[parts[0]] = (int(parts[1]), parts[2], int(parts[3]))
            elif tag == "J":
                snap.known.add(rest)
            elif tag == "U":
                snap.unknown.add(rest)
            elif tag == "N":
                snap.unlinked.add(rest)
            elif tag == "F":
                sid, name, value = (rest.split(" ", 2) + ["", ""])[:3]
                snap.files.setdefault(sid, {})[name] = value + "\n"  # a complete line
            elif tag == "S":
                snap.started.add(rest)
            elif tag == "W":
                snap.full = True
            elif tag == "L":
                parts = rest.split(" ")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    snap.launched[parts[0]] = int(parts[1])
                    snap.running[parts[0]] = (int(parts[1]), "", int(parts[2]))
                    snap.queued = [e for e in snap.queued if _entry_sid(e) != parts[0]]
            elif tag == "V":
                sid, _, reason = rest.partition(" ")
                snap.files.setdefault(sid, {})[NEVER_RAN_FILE] = reason
                snap.queued = [e for e in snap.queued if _entry_sid(e) != sid]
            elif tag == "D":
                snap.dropped.add(rest)
                snap.queued = [e for e in snap.queued if e != rest]
        return snap

    def merge(self, other: _Snapshot) -> None:
        """Take in the outcome of a ``launch``."""
        self.launched.update(other.launched)
        self.running.update({sid: other.running[sid] for sid in other.launched})
        for sid, files in other.files.items():
            self.files.setdefault(sid, {}).update(files)
        done = set(other.launched) | {sid for sid, f in other.files.items() if NEVER_RAN_FILE in f}
        self.queued = [e for e in self.queued if _entry_sid(e) not in done and e not in other.dropped]
        self._queued_sids = None

    def status(self, sid: str) -> SchedulerStatus:
        if self._queued_sids is None:
            self._queued_sids = {_entry_sid(e) for e in self.queued}
        files = self.files.get(sid, {})
        # No start time: reading mtimes costs a process per file on the host; the engine uses
        # the time it first saw the job running.
        return _status_from(sid in self._queued_sids, sid in self.running, files.get, lambda: None)

    def upstream(self, sid: str) -> tuple[SchedulerStatus, bool] | None:
        if sid in self.known:
            return self.status(sid), sid in self.started
        if sid in self.unknown:
            return None
        # No answer about it (a link that could not be repaired): keep waiting.
        return SchedulerStatus(JobState.QUEUED, "queued"), False


def _chunks(groups: Sequence[Sequence[str]], max_chars: int = 60_000) -> Iterator[list[str]]:
    """Argument groups joined into lists that keep one command line under ``max_chars``.

    sshd hands the whole command to the login shell as a single argument, which Linux limits
    to 128 KiB.
    """
    chunk: list[str] = []
    size = 0
    for group in groups:
        length = sum(len(a) + 3 for a in group)
        if chunk and size + length > max_chars:
            yield chunk
            chunk, size = [], 0
        chunk.extend(group)
        size += length
    if chunk:
        yield chunk


def _entry_sid(entry: str) -> str:
    return entry.split("-", 1)[1] if "-" in entry else entry


class _RemoteSpool:
    """The spool of a remote host, driven through the transport with a few shell scripts."""

    def __init__(self, transport: Transport, options: LocalSchedulerOptions) -> None:
        self.t = transport
        self.options = options
        self._spool: str | None = None
        self.cpus: int | None = None

    # -- plumbing ----------------------------------------------------------------------------
    def _sh(self, script: str, *args: str, input: str | None = None, what: str) -> str:
        result = self.t.run(["sh", "-c", script, "molq", *args], input=input)
        if result.returncode != 0:
            raise SchedulerError(
                f"local scheduler on {getattr(self.t, 'host', self.t.name)}: {what} failed: "
                f"{result.stderr.strip() or f'exit status {result.returncode}'}",
                stderr=result.stderr,
            )
        return result.stdout

    @property
    def spool(self) -> str:
        if self._spool is None:
            out = self._sh(_SH_INIT, self.options.spool_dir or "", what="preparing the spool")
            head, _, path = out.partition("\nP ")
            try:
                self.cpus = max(int(head.removeprefix("C ").strip()), 1)
            except ValueError:
                self.cpus = 1
            self._spool = path
        return self._spool

    @staticmethod
    def _check_ids(sids: Sequence[str]) -> None:
        for sid in sids:
            if not _SID_RE.match(sid):
                raise SchedulerError(f"local scheduler: job id {sid!r} cannot be used on a remote spool")

    def _look(self, sids: Sequence[str], max_cpus: int) -> _Snapshot:
        self._check_ids(sids)
        text = "".join(f"{s}\n" for s in sids)
        return _Snapshot.parse(
            self._sh(_SH_LOOK, self.spool, str(max_cpus), input=text, what="reading the spool")
        )

    def _repair_links(self, sids: Sequence[str]) -> None:
        """Make the ``jobs/<sid>.dir`` links of entries a local-transport process wrote."""
        spool = self.spool
        paths = {sid: f"{spool}/jobs/{sid}.json" for sid in sids}
        texts = self.t.read_many(list(paths.values()))
        pairs: list[str] = []
        for sid, path in paths.items():
            try:
                job_dir = json.loads(texts.get(path) or "")["job_dir"]
            except (ValueError, KeyError, TypeError):
                continue
            pairs += [sid, job_dir]
        if pairs:
            self._sh(_SH_LINK, spool, *pairs, what="linking job directories")

    def _complete(self, snap: _Snapshot, sids: Sequence[str], max_cpus: int) -> _Snapshot:
        """Make sure the snapshot covers the requested jobs and every upstream of a queued job.

        Only entries written without a link or an upstream list (by a local-transport process
        on the same spool) need more than the first look; their links are made once.
        """
        for _ in range(3):
            needed: set[str] = set()
            for entry in snap.queued:
                info = snap.infos.get(_entry_sid(entry))
                if info:
                    needed.update(up for _cond, up in info.get("deps", ()))
            missing = needed - snap.known - snap.unknown - snap.unlinked
            unlinked = snap.unlinked & (set(sids) | needed)
            if not missing and not unlinked:
                break
            if unlinked:
                self._repair_links(sorted(unlinked))
            snap = self._look(list(dict.fromkeys([*sids, *sorted(needed)])), max_cpus)
        return snap

    def _act(self, snap: _Snapshot, max_cpus: int) -> None:
        """Start what can start (and end what never can), in one call; update ``snap``."""
        if snap.full or not snap.queued:
            return
        queued = sorted(e for e in snap.queued if _entry_sid(e) not in snap.garbled)
        actions = _plan_launches(queued, snap.running, max_cpus, snap.infos.get, snap.upstream)
        groups: list[list[str]] = []
        for action in actions:
            kind, entry, sid, info = action[0], action[1], action[2], action[3]
            if kind == "launch":
                groups.append(["L", entry, sid, str(info["cpus"]), info["job_dir"], info["stdout"], info["stderr"]])
            elif kind == "never":
                groups.append(["N", entry, sid, info["job_dir"], action[4]])
            else:
                groups.append(["D", entry])
        for chunk in _chunks(groups):
            out = self._sh(_SH_LAUNCH, self.spool, str(max_cpus), *chunk, what="starting jobs")
            snap.merge(_Snapshot.parse(out))

    # -- operations --------------------------------------------------------------------------
    def submit(self, spec: JobSpec, job_dir: str, info: dict[str, Any], script: str, max_cpus: int) -> None:
        sid = spec.job_id
        upstreams = [d.scheduler_job_id for d in spec.dependencies]
        self._check_ids([sid, *upstreams])
        entry = f"{time.time_ns():020d}-{sid}"
        out = self._sh(
            _SH_SUBMIT, self.spool, str(max_cpus), job_dir, sid, entry, json.dumps(info), " ".join(upstreams),
            str(info["cpus"]), info["stdout"], info["stderr"], input=script, what="submitting",
        )
        snap = _Snapshot.parse(out)
        if sid in snap.launched:
            return
        self._act(self._complete(snap, [], max_cpus), max_cpus)

    def poll(self, jobs: Sequence[TrackedJob], max_cpus: int) -> dict[str, SchedulerStatus]:
        by_sid = {(j.scheduler_job_id or j.job_id): j for j in jobs}
        sids = list(by_sid)
        snap = self._complete(self._look(sids, max_cpus), sids, max_cpus)
        self._act(snap, max_cpus)
        return {by_sid[sid].job_id: snap.status(sid) for sid in sids if sid in snap.known}

    def cancel(self, jobs: Sequence[TrackedJob], grace: float) -> None:
        sids = [j.scheduler_job_id or j.job_id for j in jobs]
        self._check_ids(sids)
        ticks = str(max(int(grace / 0.05), 0))
        secs = str(max(int(grace + 0.999), 0))
        for attempt in (1, 2):
            out = self._sh(_SH_CANCEL, self.spool, f"{time.time()}", ticks, secs,
                           input="".join(f"{s}\n" for s in sids), what="cancelling")
            unlinked = [line[2:] for line in out.split("\n") if line.startswith("N ")]
            if not unlinked or attempt == 2:
                return
            self._repair_links(unlinked)
            sids = unlinked

    def known(self, sids: Sequence[str]) -> set[str]:
        self._check_ids(sids)
        found: set[str] = set()
        for chunk in _chunks([[sid] for sid in sids]):
            found.update(self._sh(_SH_KNOWN, self.spool, *chunk, what="looking up jobs").split())
        return found

    def forget(self, sids: Sequence[str]) -> None:
        self._check_ids(sids)
        self._sh(_SH_FORGET, self.spool, *sids, what="removing spool entries")


class ShellScheduler(SchedulerBase):
    """The ``local`` scheduler: plain processes on the transport's host, no batch system.

    On this machine the spool is handled with direct file and process calls. Over a remote
    transport it is handled with a few shell scripts (see ``_RemoteSpool``): a refresh costs
    one round trip, or two when queued jobs start.
    """

    name = "local"
    cheap_status = True

    def __init__(self, transport: Transport | None = None, options: LocalSchedulerOptions | None = None) -> None:
        self.transport = transport or LocalTransport()
        self.options = options or LocalSchedulerOptions()
        self._ops = _LocalOps()
        self._remote = _RemoteSpool(self.transport, self.options) if self.transport.is_remote else None
        self._spool: str | None = None
        self._max_cpus: int | None = self.options.max_cpus

    def __repr__(self) -> str:
        return f"ShellScheduler(transport={self.transport!r})"

    # -- spool -------------------------------------------------------------------------------
    @property
    def spool(self) -> str:
        """The spool directory on the target host (created on first use)."""
        if self._spool is None:
            if self._remote is not None:
                self._spool = self._remote.spool
                return self._spool
            base = self.options.spool_dir
            if base is None:
                from molq.config import molq_home

                base = str(molq_home() / "local-spool")
            self._ops.mkdirs(base, f"{base}/jobs", f"{base}/queued", f"{base}/running")
            self._spool = base
        return self._spool

    @property
    def max_cpus(self) -> int:
        if self._max_cpus is None:
            if self._remote is not None:
                self.spool  # noqa: B018 - preparing the remote spool also counts its cores
                self._max_cpus = self._remote.cpus or 1
            else:
                self._max_cpus = self._ops.cpu_count()
        return self._max_cpus

    def _job_info(self, sid: str) -> dict[str, Any] | None:
        text = self._ops.read(f"{self.spool}/jobs/{sid}.json")
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            # Written in place before the job is queued or started: a submitter that died
            # mid-write left it incomplete, and that job was never handed over.
            return None

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

    def render_script(self, spec: JobSpec, job_dir: str) -> str:
        return wrapper.render_local_script(spec, job_dir)

    def submit(self, spec: JobSpec, job_dir: str) -> str:
        sid = spec.job_id
        t = self.transport
        if spec.script is not None and spec.script.variant == "inline":
            t.write_text(wrapper.inline_script_path(job_dir), spec.script.text, mode=0o700)
        info = _job_info(spec, job_dir)
        script = wrapper.render_local_script(spec, job_dir)
        if self._remote is not None:
            self._remote.submit(spec, job_dir, info, script, self.max_cpus)
            return sid
        self.transport.create_text(wrapper.join_path(job_dir, wrapper.SCRIPT_FILE), script, mode=0o700)
        spool = self.spool
        # Written in place, not through a temporary file: nothing looks a job up before its
        # queue or running entry exists (replacing by rename costs more than the whole write).
        write_new_file(f"{spool}/jobs/{sid}.json", json.dumps(info), exclusive=False)
        with self._ops.lock(f"{spool}/.lock"):
            # Nothing waiting ahead of it, no dependency and a free core: start it right away
            # (FIFO order is kept: with anything queued, it queues behind).
            if not info["deps"] and not self._ops.listdir(f"{spool}/queued"):
                if isinstance(self.transport, LocalTransport):
                    reap_children()
                used = sum(r[2] for r in self._running().values())
                if used + info["cpus"] <= self.max_cpus:
                    self._start(sid, info)
                    return sid
            self._ops.touch(f"{spool}/queued/{time.time_ns():020d}-{sid}")
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
        queued_sids = {e.split("-", 1)[1] for e in queued}
        for action in _plan_launches(queued, running, self.max_cpus, self._job_info,
                                     self._upstream_lookup(running, queued_sids)):
            kind, entry, sid, info = action[:4]
            if kind == "drop":
                self._ops.remove(f"{spool}/queued/{entry}")
            elif kind == "never":
                self._ops.write(wrapper.join_path(info["job_dir"], NEVER_RAN_FILE), action[4] + "\n")
                self._ops.remove(f"{spool}/queued/{entry}")
            else:
                self._start(sid, info)
                self._ops.remove(f"{spool}/queued/{entry}")

    def _start(self, sid: str, info: dict[str, Any]) -> None:
        """Start one job's wrapper and record its identity (caller holds the lock)."""
        # A job queued by an earlier molq-core lacks "redirected": its job.sh does not redirect.
        redirected = info.get("redirected")
        pid = self.transport.spawn_detached(
            ["/bin/sh", wrapper.join_path(info["job_dir"], wrapper.SCRIPT_FILE)],
            cwd=None,  # the wrapper enters the job's working directory itself
            stdout=os.devnull if redirected else info["stdout"],
            stderr=os.devnull if redirected else info["stderr"],
        )
        start = self._ops.start_time(pid)
        if start is None:
            # Finished before we could look: record an identity that can never match.
            start = "gone"
        self._ops.write(f"{self.spool}/running/{sid}", f"{pid} {start} {info['cpus']}")

    def _upstream_lookup(
        self, running: dict[str, tuple[int, str, int]], queued: set[str]
    ) -> _UpstreamLookup:
        def lookup(up: str) -> tuple[SchedulerStatus, bool] | None:
            info = self._job_info(up)
            if info is None:
                return None
            status = self._status_of(up, info, running, queued)
            return status, self._ops.exists(wrapper.join_path(info["job_dir"], wrapper.STARTED_FILE))

        return lookup

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
        return _status_from(
            sid in queued,
            sid in running,
            lambda name: self._ops.read(wrapper.join_path(job_dir, name)),
            lambda: self._started_at(job_dir),
        )

    def _started_at(self, job_dir: str) -> float | None:
        try:
            return os.stat(wrapper.join_path(job_dir, wrapper.STARTED_FILE)).st_mtime
        except OSError:
            return None

    def _queued(self) -> set[str]:
        return {e.split("-", 1)[1] for e in self._ops.listdir(f"{self.spool}/queued")}

    def poll_many(self, jobs: Sequence[TrackedJob]) -> dict[str, SchedulerStatus]:
        if self._remote is not None:
            return self._remote.poll(jobs, self.max_cpus)
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
        if self._remote is not None:
            if jobs:
                self._remote.cancel(jobs, self.options.term_grace_seconds)
            return
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
        if self._remote is not None:
            ids = [j.job_id for j in jobs if _SID_RE.match(j.job_id)]
            found = self._remote.known(ids)
            return {i: i for i in ids if i in found}
        # The description is written first: the job was handed over only if it also reached the
        # queue, the running list, or started (a job that ended has left both lists).
        spool = self.spool
        with self._ops.lock(f"{spool}/.lock"):
            handed = self._queued() | set(self._ops.listdir(f"{spool}/running"))
        out = {}
        for job in jobs:
            info = self._job_info(job.job_id)
            if info is None:
                continue
            if job.job_id in handed or any(
                self._ops.exists(wrapper.join_path(info["job_dir"], name))
                for name in (wrapper.STARTED_FILE, NEVER_RAN_FILE, CANCELLED_FILE)
            ):
                out[job.job_id] = job.job_id
        return out

    def forget(self, sid: str) -> None:
        """Drop the spool entry of a finished job (cleanup)."""
        if self._remote is not None:
            self._remote.forget([sid])
            return
        self._ops.remove(f"{self.spool}/jobs/{sid}.json")


def make_local_scheduler(transport: Transport, options: LocalSchedulerOptions | None) -> ShellScheduler:
    if options is not None and not isinstance(options, LocalSchedulerOptions):
        raise SchedulerError(f"local scheduler options must be LocalSchedulerOptions, got {type(options).__name__}")
    return ShellScheduler(transport, options)

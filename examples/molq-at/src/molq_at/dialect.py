"""The ``at`` dialect: command lines for ``at``/``atq``/``atrm`` and parsers of their output.

Pure: no I/O. molq's shared batch runner (:class:`molq.batch.BatchScheduler`) runs the command
lines through the cluster's transport; the two things at does differently from the usual batch
system are dialect hooks too: cancelling needs the job directories (:meth:`AtDialect.cancel_argv_for`)
and atq cannot filter by user (``queue_filters_user_itself = False``).

How a job runs. ``at -f job.sh`` copies the script's *text* into at's spool; atd later feeds
that text to ``/bin/sh`` on standard input, inside atd's own process group. Two things follow:

* the user's command would inherit the spool file as its standard input, and
* there is no process group of the job's own to signal: killing the group would kill atd.

So the first lines of ``job.sh`` start the script again from the job directory under
``setsid``: standard input becomes ``/dev/null``, and the wrapper (molq's job wrapper, the rest
of the script) runs as the leader of a new session. Its pid, which the wrapper writes to the
``started`` file, is then also the id of a process group holding the whole job, which is what
cancel signals. The first shell waits for the second and exits with its status, so atq lists
the job as running (queue ``=``) for exactly as long as it runs.

The ``# --8<--`` comments mark the parts that the documentation page "Write a plugin" quotes.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from molq import wrapper
from molq.batch import BatchDialect
from molq.errors import ConfigError, SchedulerError, SubmitError
from molq.evidence import CancelOutcome
from molq.model import (
    CompiledDependency,
    DependencyCondition,
    JobSpec,
    QueueEntry,
    SchedulerCapabilities,
    SchedulerStatus,
)
from molq.scheduler import TrackedJob
from molq.transport import CommandResult

from molq_at.options import AtOptions
from molq_at.states import RUNNING_QUEUE, map_state

__all__ = ["AtDialect", "AtqRow", "parse_atq", "atrm_outcome", "CAPABILITIES", "CANCEL_SCRIPT", "CANCEL_FINDINGS",
           "ADOPT_SCRIPT"]

#: What at can honour. It has no resources, partitions, accounts, limits or dependencies; the
#: environment, the working directory and the output files are molq's wrapper's business.
# --8<-- [start:capabilities]
CAPABILITIES = SchedulerCapabilities(
    supported=frozenset({"env", "cwd", "output_file", "error_file"}),
    dependency_conditions=frozenset(),
)
# --8<-- [end:capabilities]

# `at` reports the new job on stderr: "job 12 at Sat Nov 21 06:09:00 2026".
_SUBMITTED_RE = re.compile(r"^job (\d+) at ", re.MULTILINE)
# atq: "<id>\t<date> <queue> <user>"; with `-o %s` the date is epoch seconds.
_ATQ_RE = re.compile(r"^(\d+)\t(\S+) (\S) (\S+)$")
# atrm's answers (at 3.2.5): an id it has no spool file for, and a job it removes while it runs.
_ATRM_UNKNOWN_RE = re.compile(r"Cannot find jobid \S+")
_ATRM_RUNNING = "Warning: deleting running job"
# Failures worth another try: at takes a lock on its spool and may time out waiting for it.
_TRANSIENT_MARKERS = ("resource temporarily unavailable",)

#: Cancel, as one shell program (``sh -c``); arguments: atrm, grace seconds, then pairs of
#: (at job id, job directory). Ids and directories arrive as positional parameters: nothing
#: the user chose is ever part of the program text. For each pair it prints one line,
#: ``<id> TAB <atrm's exit status> TAB <what was found> TAB <atrm's message>``, which
#: :meth:`AtDialect.parse_cancel` reads; "what was found" is one of :data:`CANCEL_FINDINGS`.
# --8<-- [start:cancel]
CANCEL_SCRIPT = r"""
atrm=$1 grace=$2; shift 2
leaders=
report() { printf '%s\t%s\t%s\t%s\n' "$sid" "$rc" "$1" "$(printf '%s' "$out" | tr '\t\n' '  ')"; }
while [ "$#" -ge 2 ]; do
    sid=$1 dir=${2%/}; shift 2
    # A waiting job: atrm removes it and it never runs. A running job: atrm only drops it
    # from the spool ("Warning: deleting running job"); its processes have to be signalled.
    out=$("$atrm" "$sid" 2>&1); rc=$?
    if [ -z "$dir" ]; then report no-directory; continue; fi
    if [ -e "$dir/exit_code" ]; then report ended; continue; fi
    if [ ! -e "$dir/started" ]; then
        case $out in *running*) ;; *) report waiting; continue ;; esac
        # atd has just started it: give the wrapper a moment to record its pid.
        n=0
        while [ ! -e "$dir/started" ] && [ "$n" -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
        if [ ! -e "$dir/started" ]; then report not-started; continue; fi
    fi
    pid=$(cat "$dir/started" 2>/dev/null)
    case $pid in ''|*[!0-9]*) report no-leader; continue ;; esac
    # Only the job's own session leader: the pid must still run this job's job.sh.
    script=$(tr '\000' '\n' < "/proc/$pid/cmdline" 2>/dev/null | sed -n 2p)
    if [ "$script" != "$dir/job.sh" ]; then report no-leader; continue; fi
    # "-N" right after the signal names process group N (dash's kill accepts no "--").
    if kill -TERM "-$pid" 2>/dev/null; then
        leaders="$leaders $pid"; report signalled
    else
        report kill-failed
    fi
done
[ -n "$leaders" ] || exit 0
end=$(( $(date +%s) + grace ))
while [ "$(date +%s)" -lt "$end" ]; do
    alive=
    for pid in $leaders; do kill -0 "-$pid" 2>/dev/null && alive="$alive $pid"; done
    [ -n "$alive" ] || exit 0
    leaders=$alive
    sleep 0.1
done
for pid in $leaders; do kill -KILL "-$pid" 2>/dev/null; done
exit 0
"""
# --8<-- [end:cancel]

#: What the cancel program found for one job, and what that says about it. For ``waiting`` (the
#: job never started) and ``no-directory`` it is atrm's own answer (:func:`atrm_outcome`).
CANCEL_FINDINGS: dict[str, CancelOutcome | None] = {
    "signalled": CancelOutcome.REQUESTED,      # SIGTERM (later SIGKILL) went to the job's session
    "ended": CancelOutcome.ALREADY_ENDED,      # the wrapper had written its exit code
    "no-leader": CancelOutcome.ALREADY_ENDED,  # its session leader is gone: it is ending on its own
    "not-started": CancelOutcome.REFUSED,      # atd started it, but it never recorded a pid to signal
    "kill-failed": CancelOutcome.REFUSED,      # the signal was refused: nothing was stopped
    "waiting": None,
    "no-directory": None,
}

#: Adoption, as one shell program; arguments: atq, at. Prints "<at id>\t<molq job id>" for
#: every job in the spool that carries molq's "# molq job <id>" line.
ADOPT_SCRIPT = r"""
list=$("$1") || exit $?
printf '%s\n' "$list" | while read -r sid rest; do
    [ -n "$sid" ] || continue
    tag=$("$2" -c "$sid" 2>/dev/null | sed -n 's/^# molq job \([A-Za-z0-9_.-]*\)$/\1/p' | head -n 1)
    [ -n "$tag" ] && printf '%s\t%s\n' "$sid" "$tag"
done
exit 0
"""


def atrm_outcome(returncode: int, message: str) -> CancelOutcome:
    """What atrm's answer for one job says. Exit 0 (also for "Warning: deleting running
    job"): it was removed from the spool. "Cannot find jobid N": at no longer has it, because
    it ended (at keeps no finished jobs). Anything else ("N: Not owner", "You do not have
    permission to use atrm.", "Cannot unlink ..."): refused.

    >>> atrm_outcome(1, "Cannot find jobid 999")
    <CancelOutcome.ALREADY_ENDED: 'already_ended'>
    >>> atrm_outcome(1, "12: Not owner")
    <CancelOutcome.REFUSED: 'refused'>
    """
    if returncode == 0:
        return CancelOutcome.REQUESTED
    unknown = _ATRM_UNKNOWN_RE.findall(message)
    rest = _ATRM_UNKNOWN_RE.sub("", message).replace(_ATRM_RUNNING, "").strip()
    return CancelOutcome.ALREADY_ENDED if unknown and not rest else CancelOutcome.REFUSED


class AtqRow:
    """One line of ``atq -o %s``."""

    __slots__ = ("job_id", "time", "queue", "user")

    def __init__(self, job_id: str, time: float | None, queue: str, user: str) -> None:
        self.job_id = job_id
        self.time = time
        self.queue = queue
        self.user = user

    def __repr__(self) -> str:
        return f"AtqRow({self.job_id!r}, {self.time!r}, {self.queue!r}, {self.user!r})"


def parse_atq(result: CommandResult) -> list[AtqRow]:
    """Rows of ``atq -o %s``; a failed atq raises (never an empty answer).

    >>> from molq.transport import CommandResult
    >>> parse_atq(CommandResult(("atq",), 0, "7\\t1795241280 = root\\n", ""))
    [AtqRow('7', 1795241280.0, '=', 'root')]
    """
    if result.returncode != 0:
        raise SchedulerError(
            f"at: atq failed (exit {result.returncode}): {result.stderr.strip() or '(no output)'}",
            stderr=result.stderr,
        )
    rows = []
    for line in result.stdout.splitlines():
        if not line.strip():
            continue
        match = _ATQ_RE.match(line.rstrip())
        if match is None:
            raise SchedulerError(f"at: cannot read atq line {line!r} (an atq without -o %s?)")
        sid, when, queue, user = match.groups()
        time = float(when) if when.lstrip("-").isdigit() else None
        rows.append(AtqRow(sid, time, queue, user))
    return rows


class AtDialect(BatchDialect):
    """Debian's ``at`` (3.1 and later): ``at -f``, ``atq -o %s``, ``atrm``.

    >>> AtDialect().submit_argv("/jobs/x/job.sh", None)
    ['at', '-M', '-q', 'b', '-f', '/jobs/x/job.sh', 'now']
    """

    name = "at"
    capabilities = CAPABILITIES
    shebang = "#!/bin/sh"

    def __init__(self, options: AtOptions | None = None) -> None:
        self.options = options or AtOptions()

    def __repr__(self) -> str:
        return f"AtDialect({self.options!r})"

    # -- script and submission ---------------------------------------------------------------
    # --8<-- [start:script]
    def render_directives(self, spec: JobSpec, job_dir: str) -> list[str]:
        """The lines before molq's wrapper: start again under setsid (see the module
        docstring), then send output where the job asked."""
        q = shlex.quote
        script = wrapper.join_path(job_dir, wrapper.SCRIPT_FILE)
        started = wrapper.join_path(job_dir, wrapper.STARTED_FILE)
        exit_file = wrapper.join_path(job_dir, wrapper.EXIT_CODE_FILE)
        out = wrapper.stdout_path(spec, job_dir)
        err = wrapper.stderr_path(spec, job_dir)
        setsid = self.options.program("setsid")
        # If the relaunch never got to the wrapper (setsid missing...), record a failure so
        # that the job ends as FAILED with the reason in its stderr, not as LOST.
        not_started = (
            f"if [ ! -e {q(started)} ]; then "
            f"printf 'molq-at: could not start the job with %s (exit %s)\\n' {q(setsid)} \"$molq_at_rc\" >> {q(err)}; "
            f'printf "%s\\n" "$molq_at_rc" > {q(exit_file + ".at")} && mv -f {q(exit_file + ".at")} {q(exit_file)}; fi'
        )
        redirect = f"exec > {q(out)} 2>&1" if out == err else f"exec > {q(out)} 2> {q(err)}"
        return [
            "# molq-at: atd runs this text from its spool; it starts itself again from the job directory",
            'if [ "${MOLQ_AT_LEADER:-}" != 1 ]; then',
            f"    MOLQ_AT_LEADER=1 {q(setsid)} -w /bin/sh {q(script)} < /dev/null",
            "    molq_at_rc=$?",
            f"    {not_started}",
            '    exit "$molq_at_rc"',
            "fi",
            # at copies the submitter's environment into the job: an array index from a
            # batch job that submitted this one must not reach molq's wrapper.
            "unset MOLQ_AT_LEADER SLURM_ARRAY_TASK_ID PBS_ARRAY_INDEX PBS_ARRAYID LSB_JOBINDEX",
            redirect,
        ]
    # --8<-- [end:script]

    # --8<-- [start:submit]
    def submit_argv(self, script_path: str, spec: JobSpec | None) -> list[str]:
        # -M: never mail (output goes to files); "now" in a batch queue means "when the
        # load average allows".
        return ["at", "-M", "-q", self.options.queue, "-f", script_path, "now"]

    def parse_submit(self, result: CommandResult) -> str:
        text = result.stderr + "\n" + result.stdout
        match = _SUBMITTED_RE.search(text)
        if result.returncode != 0 or match is None:
            raise SubmitError(
                f"at refused the job (exit {result.returncode}): {result.stderr.strip() or result.stdout.strip()}",
                stderr=result.stderr,
            )
        return match.group(1)
    # --8<-- [end:submit]

    # -- status ------------------------------------------------------------------------------
    # --8<-- [start:status]
    def status_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        # atq prints the listed jobs that it knows and silently skips the others.
        return ["atq", "-o", "%s", *scheduler_ids]

    def parse_status(self, result: CommandResult, scheduler_ids: Sequence[str]) -> dict[str, SchedulerStatus]:
        wanted = set(scheduler_ids)
        out: dict[str, SchedulerStatus] = {}
        for row in parse_atq(result):
            if row.job_id in wanted:
                state = map_state(row.queue)
                reason = None if row.queue == RUNNING_QUEUE else f"waiting in at queue {row.queue}"
                out[row.job_id] = SchedulerStatus(state, row.queue, reason=reason)
        return out
    # --8<-- [end:status]

    # No accounting: terminal_argv stays None and the runner reads the exit-code files.

    # -- cancel, queue, adoption -------------------------------------------------------------
    def cancel_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        """``atrm`` alone: removes waiting jobs only. :meth:`cancel_argv_for` also stops
        running ones and is what the runner uses."""
        return ["atrm", *scheduler_ids]

    def check_cancel(self, result: CommandResult, scheduler_ids: Sequence[str]) -> None:
        """Raise when plain ``atrm`` (:meth:`cancel_argv`) refused: anything but "removed",
        "deleting running job" or "Cannot find jobid"."""
        if atrm_outcome(result.returncode, result.stderr + result.stdout) == CancelOutcome.REFUSED:
            raise SchedulerError(f"at: atrm failed: {(result.stderr or result.stdout).strip()}",
                                 stderr=result.stderr)

    # --8<-- [start:cancel-hooks]
    def cancel_cost(self, job: TrackedJob) -> int:
        # The cancel command carries each job's id and its directory.
        return len(job.scheduler_job_id or "") + len(job.job_dir) + 2

    def cancel_argv_for(self, jobs: Sequence[TrackedJob]) -> list[str]:
        """One command that cancels the jobs, running or not: atrm, then for a running job
        SIGTERM to its session (its leader's pid is in the job directory) and SIGKILL after
        ``term_grace_seconds``."""
        argv = ["sh", "-c", CANCEL_SCRIPT, "molq-at-cancel", self.options.program("atrm"),
                str(max(1, round(self.options.term_grace_seconds)))]
        for job in jobs:
            if job.scheduler_job_id:
                argv += [job.scheduler_job_id, job.job_dir or ""]
        return argv

    def parse_cancel(self, result: CommandResult, scheduler_ids: Sequence[str]) -> dict[str, CancelOutcome]:
        """What the cancel program reported for each job. A job it printed no line for (the
        program was cut short) gets no outcome: no evidence either way."""
        wanted = set(scheduler_ids)
        out: dict[str, CancelOutcome] = {}
        for line in result.stdout.splitlines():
            fields = line.split("\t", 3)
            if len(fields) != 4 or fields[0] not in wanted or fields[2] not in CANCEL_FINDINGS:
                continue
            sid, rc, finding, message = fields
            outcome = CANCEL_FINDINGS[finding]
            if outcome is None:
                outcome = atrm_outcome(int(rc) if rc.isdigit() else 1, message)
                if finding == "waiting" and outcome == CancelOutcome.ALREADY_ENDED:
                    # Never started (no pid recorded, no exit code) and gone from at's spool:
                    # it was removed before it ran (by an earlier attempt of this very cancel,
                    # or by hand) and can never run now. Calling it ended would leave a job
                    # with no end to find.
                    outcome = CancelOutcome.REQUESTED
            out[sid] = outcome
        if not out and result.returncode != 0:
            raise SchedulerError(
                f"at: cancel failed (exit {result.returncode}): {result.stderr.strip() or '(no output)'}",
                stderr=result.stderr, command=list(result.argv),
            )
        return out

    #: atq has no user filter (root sees every user's jobs): the runner keeps the user's own.
    queue_filters_user_itself = False
    # --8<-- [end:cancel-hooks]

    def queue_argv(self, user: str | None) -> list[str]:
        # atq has no user filter: root sees every user's jobs, others their own.
        return ["atq", "-o", "%s"]

    def parse_queue(self, result: CommandResult) -> list[QueueEntry]:
        return [
            QueueEntry(
                scheduler_job_id=row.job_id,
                user=row.user,
                state=map_state(row.queue),
                raw_state=row.queue,
                partition=None if row.queue == RUNNING_QUEUE else row.queue,
                submit_time=row.time if row.queue != RUNNING_QUEUE else None,
            )
            for row in sorted(parse_atq(result), key=lambda r: int(r.job_id))
        ]

    def adopt_argv(self, tags: Sequence[str]) -> list[str] | None:
        return ["sh", "-c", ADOPT_SCRIPT, "molq-at-adopt", self.options.program("atq"), self.options.program("at")]

    def parse_adopt(self, result: CommandResult, tags: Sequence[str]) -> dict[str, str]:
        if result.returncode != 0:
            raise SchedulerError(f"at: listing jobs failed: {result.stderr.strip()}", stderr=result.stderr)
        wanted = set(tags)
        found: dict[str, str] = {}
        for line in result.stdout.splitlines():
            sid, _, job_id = line.partition("\t")
            tag = f"molq-{job_id.strip()}"
            if sid.isdigit() and tag in wanted:
                if tag not in found or int(sid) > int(found[tag]):
                    found[tag] = sid
        return found

    # -- dependencies ------------------------------------------------------------------------
    def native_condition(self, condition: DependencyCondition, scheduler_job_id: str) -> str:
        raise ConfigError("the 'at' scheduler has no job dependencies")

    def compile_dependencies(self, deps: Sequence[CompiledDependency]) -> str | None:
        if deps:
            raise ConfigError("the 'at' scheduler has no job dependencies")
        return None

    # -- environment and errors --------------------------------------------------------------
    def command_env(self) -> dict[str, str]:
        return dict(self.options.env)

    def is_transient(self, result: CommandResult) -> bool:
        text = (result.stderr + "\n" + result.stdout).lower()
        return any(marker in text for marker in _TRANSIENT_MARKERS)

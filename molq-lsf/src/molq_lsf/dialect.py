"""The LSF dialect: ``bsub`` / ``bjobs -o ... -json`` / ``bkill`` command lines and parsers.

Pure: no I/O. :class:`~molq.batch.BatchScheduler` runs the command lines through the cluster's
transport.

Submission puts every option on the ``bsub`` command line and names ``job.sh`` as the job's
command. LSF only reads ``#BSUB`` lines from a script fed on standard input (or, with
``LSB_BSUB_PARSE_SCRIPT=Y``, from a script named as the command), and the runner executes argv
lists without a shell, so command-line options are the one form that works on every cluster.
LSF hands the command to a Bourne shell, so the script path is shell-quoted.
"""

from __future__ import annotations

import logging
import posixpath
import re
import shlex
import time
from collections.abc import Callable, Sequence

import attrs
from molq import wrapper
from molq.arrays import PART_SEPARATOR
from molq.batch import BatchDialect
from molq.errors import ConfigError, SchedulerError
from molq.evidence import CancelOutcome, SourceAnswer
from molq.model import (
    CompiledDependency,
    DependencyCondition,
    JobSpec,
    QueueEntry,
    SchedulerCapabilities,
    check_extra_directives,
)
from molq.transport import CommandResult

from molq_lsf.options import LsfOptions
from molq_lsf.parse import (
    TRANSIENT_MARKERS,
    parse_bjobs_json,
    parse_lsf_time,
    parse_submit_output,
    record_status,
    statuses_by_job,
)

log = logging.getLogger("molq.lsf")

__all__ = ["LsfDialect", "STATUS_FIELDS", "QUEUE_FIELDS", "DEPENDENCY_FUNCTIONS"]

#: ``bjobs -o`` fields read for status and final state (documented LSF 10.1 field names),
#: usage included: a finished job's usage comes with its state, in the same call.
#: No free text chosen by the user (job name, description) is asked for: nothing the user
#: typed can reach this answer.
STATUS_FIELDS = (
    "jobid jobindex stat exit_code exit_reason pend_reason "
    "submit_time start_time finish_time "
    "cpu_used run_time max_mem memlimit exec_host slots"
)
#: ``bjobs -o`` fields read for :meth:`Cluster.get_queue`.
QUEUE_FIELDS = "jobid jobindex job_name user stat queue pend_reason submit_time start_time"
#: ``bjobs -o`` fields read to find jobs by their molq tag (the job description).
ADOPT_FIELDS = "jobid job_description stat"

#: molq dependency condition -> LSF ``-w`` function.
DEPENDENCY_FUNCTIONS: dict[str, str] = {
    "after_success": "done",
    "after_failure": "exit",
    "after_started": "started",
    "after": "ended",
}

#: LSF's MAX_JOB_ARRAY_SIZE when lsb.params does not set it (IBM: "By default, the maximum
#: number of jobs in a job array is 1000").
DEFAULT_MAX_JOB_ARRAY_SIZE = 1000
_MAX_ARRAY_RE = re.compile(r"^\s*MAX_JOB_ARRAY_SIZE\s*=\s*(\d+)\b", re.MULTILINE)
_PARAM_LINE_RE = re.compile(r"^\s*[A-Z][A-Z0-9_]*\s*=", re.MULTILINE)

_GPU_MODEL_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")

#: bsub options molq passes itself (tracking, files, dependencies): an extra directive must
#: not override them.
_RESERVED_OPTIONS: dict[str, str] = {
    "-J": "execution.job_name",
    "-Jd": "nothing (molq's tag for this job lives there)",
    **dict.fromkeys(("-o", "-oo"), "execution.output_file"),
    **dict.fromkeys(("-e", "-eo"), "execution.error_file"),
    "-cwd": "execution.cwd",
    "-w": "scheduling.dependency or dependencies",
    **dict.fromkeys(("-r", "-rn"), "scheduling.rerunnable"),
    "-K": "nothing (molq does not block on bsub)",
    "-I": "nothing (molq submits batch jobs)",
}
# Messages that only appear when the client never reached mbatchd: safe to resubmit.
_UNREACHED_MARKERS = ("lsf is down", "cannot connect to lsf", "lim is down", "master lim")
# bkill's answer, one line per job: "Job <12> is being terminated", "Job <12>: Job has
# already finished", "Job <12>: No matching job found", "Job <12>: User permission denied".
_CANCEL_LINE_RE = re.compile(r"^Job <(\d+(?:\[\d+\])?)>:?\s*(.*)$")
_CANCEL_REQUESTED_RE = re.compile(
    r"is being (?:terminated|signaled|signalled)|Operation is in progress", re.IGNORECASE
)
# The job ended by itself (or so long ago that LSF forgot it).
_CANCEL_ENDED_RE = re.compile(r"Job has already finished|No matching job found", re.IGNORECASE)


def _job_name(spec: JobSpec) -> str:
    # Square brackets would turn the name into a job-array specification.
    return spec.name.replace("[", "(").replace("]", ")")


class LsfDialect(BatchDialect):
    """IBM Spectrum LSF (10.1 and later: ``bjobs -json`` is required).

    >>> LsfDialect().compile_dependencies([CompiledDependency("after", "a", "12")])
    'ended(12)'
    """

    name = "lsf"
    capabilities = SchedulerCapabilities.all_except("qos")
    shebang = "#!/bin/bash"

    def __init__(self, options: LsfOptions | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.options = options or LsfOptions()
        # Only used to give LSF's year-less time stamps a year.
        self._clock = clock

    def __repr__(self) -> str:
        return f"LsfDialect({self.options!r})"

    # -- script and submission ---------------------------------------------------------------
    def bsub_options(self, spec: JobSpec, job_dir: str) -> list[str]:
        """The ``bsub`` options (without the command) that express ``spec``."""
        res, sched, ex = spec.resources, spec.scheduling, spec.execution
        opts: list[str] = []
        name = _job_name(spec)
        if sched.array_spec:
            indices, _, limit = sched.array_spec.replace(" ", "").partition("%")
            name = f"{name}[{indices}]" + (f"%{limit}" if limit else "")
        opts += ["-J", name, "-Jd", spec.tag]
        queue = sched.partition or self.options.default_queue
        if queue:
            opts += ["-q", queue]
        project = sched.account or self.options.default_project
        if project:
            opts += ["-P", project]

        requirements: list[str] = []
        cpus, nodes = res.cpu_count, sched.node_count
        if nodes and nodes > 1:
            # cpu_count CPUs on each of node_count hosts.
            per_host = cpus or 1
            opts += ["-n", str(nodes * per_host)]
            requirements.append(f"span[ptile={per_host}]")
        elif cpus:
            opts += ["-n", str(cpus)]
            if cpus > 1 or nodes == 1:
                # cpu_count is per task: the CPUs must share one host.
                requirements.append("span[hosts=1]")
        elif nodes == 1:
            requirements.append("span[hosts=1]")
        if res.memory is not None:
            amount = res.memory.to_unit(self.options.unit_for_limits)
            requirements.insert(0, f"rusage[mem={amount}]")
            opts += ["-M", str(amount)]
        if requirements:
            opts += ["-R", " ".join(requirements)]
        if res.time_limit is not None:
            opts += ["-W", str(res.time_limit.to_lsf_minutes())]
        if res.gpu_count:
            gpu = f"num={res.gpu_count}"
            if res.gpu_type:
                if not _GPU_MODEL_RE.match(res.gpu_type):
                    raise ConfigError(f"gpu_type {res.gpu_type!r} is not a valid LSF GPU model name")
                gpu += f":gmodel={res.gpu_type}"
            opts += ["-gpu", gpu]
        if sched.exclusive_node:
            opts.append("-x")
        if sched.email:
            # -u names the recipient; -N sends the job report when the job ends.
            opts += ["-u", sched.email, "-N"]
        if sched.priority is not None:
            if not sched.priority.strip().isdigit():
                raise ConfigError(
                    f"scheduling.priority for lsf is a user priority (bsub -sp), a whole "
                    f"number; got {sched.priority!r}"
                )
            opts += ["-sp", sched.priority.strip()]
        if sched.reservation:
            opts += ["-U", sched.reservation]
        dependency = self.compile_dependencies(spec.dependencies) if spec.dependencies else sched.dependency
        if dependency:
            opts += ["-w", dependency]
        if spec.cwd:
            opts += ["-cwd", spec.cwd]
        if sched.rerunnable is not None:
            opts.append("-r" if sched.rerunnable else "-rn")
        for text in check_extra_directives(sched.extra_directives, _RESERVED_OPTIONS, "LSF"):
            # bsub gets its options on the command line (see render_directives): a directive
            # is split as a #BSUB line would be, into argv words that are quoted on the way.
            try:
                opts += shlex.split(text)
            except ValueError as exc:
                raise ConfigError(f"extra directive {text!r} cannot be read as bsub options: {exc}") from exc
        out, err = wrapper.stdout_path(spec, job_dir), wrapper.stderr_path(spec, job_dir)
        if sched.array_spec:
            # Elements of an array would overwrite each other's files; %I is the index.
            if not ex.output_file:
                out += ".%I"
            if not ex.error_file:
                err += ".%I"
        opts += ["-o", out, "-e", err]
        return opts

    def render_directives(self, spec: JobSpec, job_dir: str) -> list[str]:
        # Deliberately not "#BSUB" lines: the options travel on the command line, and a
        # cluster with LSB_BSUB_PARSE_SCRIPT=Y would otherwise parse them a second time.
        return [
            "# Submitted by molq with: bsub "
            + shlex.join(self.bsub_options(spec, job_dir)).replace("\n", " ")
        ]

    def submit_argv(self, script_path: str, spec: JobSpec) -> list[str]:
        job_dir = posixpath.dirname(script_path) or "."
        # LSF runs the command through /bin/sh: quote the path (a no-op for plain paths).
        return ["bsub", *self.bsub_options(spec, job_dir), shlex.quote(script_path)]

    def parse_submit(self, result: CommandResult) -> str:
        return parse_submit_output(result.returncode, result.stdout, result.stderr)

    # -- arrays beyond MAX_JOB_ARRAY_SIZE (molq.array_runner) --------------------------------
    #: LSF refuses index 0: a split part's indices start at 1.
    lowest_array_index = 1

    def limits_argv(self) -> list[str]:
        return ["bparams", "-a"]

    def parse_max_array_size(self, result: CommandResult) -> int | None:
        """``MAX_JOB_ARRAY_SIZE = 1000`` from ``bparams -a``, as molq's "largest index + 1".

        LSF's value is the largest index itself (indices start at 1), hence the + 1. An answer
        that lists parameters but not this one means LSF's default, 1000; an answer that lists
        none is not read as a limit at all (it raises)."""
        if result.returncode != 0:
            raise SchedulerError(
                f"bparams failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()}",
                stderr=result.stderr, command=list(result.argv))
        match = _MAX_ARRAY_RE.search(result.stdout)
        if match is not None:
            return int(match.group(1)) + 1
        if not _PARAM_LINE_RE.search(result.stdout):
            raise SchedulerError("bparams -a printed no parameters",
                                 stderr=result.stderr, command=list(result.argv))
        return DEFAULT_MAX_JOB_ARRAY_SIZE + 1

    def array_offset_line(self, offset: int) -> str:
        # Before the wrapper reads the index: the job and molq's per-task files see the index
        # the user asked for, not the part's shifted one. LSB_JOBINDEX is 0 outside arrays.
        return (f'[ "${{LSB_JOBINDEX:-0}}" = 0 ] || '
                f'export LSB_JOBINDEX=$((LSB_JOBINDEX + {int(offset)}))')

    def split_part(self, spec: JobSpec, job_dir: str, k: int, offset: int) -> tuple[JobSpec, list[str]]:
        """LSF names each task's default files by its own index (``stdout.%I``), which in a
        part is the shifted one: tasks of different parts would append to one file. So a
        part's task writes its output itself, to ``stdout.<the index asked for>`` like an
        unsplit array's, and LSF's own files for the part (its job report) go to
        ``lsf.part<k>.<LSF index>.out``/``.err``. Files the user named are left as they are."""
        spec, lines = super().split_part(spec, job_dir, k, offset)
        ex = spec.execution
        out, err = wrapper.stdout_path(spec, job_dir), wrapper.stderr_path(spec, job_dir)
        redirect: list[str] = []
        changes: dict[str, str] = {}
        if not ex.output_file:
            redirect.append(f'>>{shlex.quote(out + ".")}"$LSB_JOBINDEX"')
            changes["output_file"] = wrapper.join_path(job_dir, f"lsf.part{int(k)}.%I.out")
        if not ex.error_file:
            redirect.append(f'2>>{shlex.quote(err + ".")}"$LSB_JOBINDEX"')
            changes["error_file"] = wrapper.join_path(job_dir, f"lsf.part{int(k)}.%I.err")
        if redirect:
            lines = [*lines, "exec " + " ".join(redirect)]
            spec = attrs.evolve(spec, execution=attrs.evolve(ex, **changes))
        return spec, lines

    # -- status ------------------------------------------------------------------------------
    def status_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        # -a: finished jobs are listed too (for CLEAN_PERIOD), so one call gives final states.
        return ["bjobs", "-a", "-o", STATUS_FIELDS, "-json", *scheduler_ids]

    def parse_status(self, result: CommandResult, scheduler_ids: Sequence[str]) -> SourceAnswer:  # type: ignore[override]
        answer = parse_bjobs_json(result.returncode, result.stdout, result.stderr)
        return statuses_by_job(answer, scheduler_ids, now=self._clock(), memory_unit=self.options.unit_for_limits)

    # No terminal_argv: ``bjobs -a`` above already lists finished jobs (for CLEAN_PERIOD), so
    # a job it does not know is unknown to LSF; the wrapper's exit-code file decides then.

    # -- cancel, queue, adoption -------------------------------------------------------------
    def cancel_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        return ["bkill", *scheduler_ids]

    def cancel_line_is_benign(self, line: str) -> bool:
        return bool(_CANCEL_ENDED_RE.search(line))

    def parse_cancel(self, result: CommandResult, scheduler_ids: Sequence[str]) -> dict[str, CancelOutcome]:
        """bkill names the job on every line: each id gets the outcome of its own line.

        "is being terminated" (or signaled, or "Operation is in progress") is REQUESTED;
        "Job has already finished" and "No matching job found" are ALREADY_ENDED; any other
        line about a job ("User permission denied"...) or an unexplained failure raises.
        """
        out: dict[str, CancelOutcome] = {}
        refusals: list[str] = []
        other: list[str] = []
        by_base: dict[str, list[str]] = {}
        for sid in scheduler_ids:
            by_base.setdefault(sid.split("[", 1)[0], []).append(sid)
        for line in (result.stdout + "\n" + result.stderr).splitlines():
            line = line.strip()
            if not line:
                continue
            match = _CANCEL_LINE_RE.match(line)
            if match is None:
                if not any(m in line.lower() for m in TRANSIENT_MARKERS):
                    other.append(line)
                continue
            named, text = match.groups()
            targets = [named] if named in scheduler_ids else by_base.get(named.split("[", 1)[0], [])
            if _CANCEL_REQUESTED_RE.search(text):
                outcome = CancelOutcome.REQUESTED
            elif _CANCEL_ENDED_RE.search(text):
                outcome = CancelOutcome.ALREADY_ENDED
            else:
                refusals.append(line)
                continue
            for sid in targets:
                # An array's elements may answer differently: any element stopped counts.
                if out.get(sid) != CancelOutcome.REQUESTED:
                    out[sid] = outcome
        unanswered = [sid for sid in scheduler_ids if sid not in out]
        if refusals or (result.returncode != 0 and (other or unanswered)):
            problems = refusals + other or [f"no answer for job(s) {', '.join(unanswered)}"]
            raise SchedulerError(
                f"bkill refused (exit {result.returncode}): {'; '.join(problems)}",
                stderr=result.stderr,
                command=list(result.argv),
            )
        for sid in unanswered:
            out[sid] = CancelOutcome.REQUESTED
        return out

    def queue_argv(self, user: str | None) -> list[str]:
        argv = ["bjobs", "-o", QUEUE_FIELDS, "-json"]
        if user:
            argv += ["-u", user]
        return argv

    def parse_queue(self, result: CommandResult) -> list[QueueEntry]:
        answer = parse_bjobs_json(result.returncode, result.stdout, result.stderr)
        records = answer.records
        if not answer.complete or answer.unreadable:
            if not records:
                raise SchedulerError("bjobs printed no readable job record", stderr=result.stderr)
            # The listing shows what could be read; say that something could not.
            log.warning("bjobs: some job records could not be read (%s)",
                        ", ".join(sorted(answer.unreadable)) or "records without a job id")
        now = self._clock()
        entries = []
        for rec in sorted(records, key=lambda r: (int(r.job_id) if r.job_id.isdigit() else 0, r.index)):
            status = record_status(rec, now=now)
            entries.append(
                QueueEntry(
                    scheduler_job_id=rec.element_id,
                    name=rec.name or None,
                    user=rec.user or None,
                    state=status.state,
                    raw_state=rec.stat,
                    partition=rec.queue or None,
                    submit_time=parse_lsf_time(rec.submit_time, now=now),
                    start_time=status.started_at,
                    sub_state=status.sub_state,
                    sub_state_reason=status.sub_state_reason,
                )
            )
        return entries

    def adopt_argv(self, tags: Sequence[str]) -> list[str] | None:
        # One listing of the user's recent jobs; the molq tag is the job description (-Jd).
        return ["bjobs", "-a", "-o", ADOPT_FIELDS, "-json"]

    def parse_adopt(self, result: CommandResult, tags: Sequence[str]) -> dict[str, str]:
        records = parse_bjobs_json(result.returncode, result.stdout, result.stderr).records
        wanted = set(tags)
        by_tag: dict[str, set[str]] = {}
        for rec in records:
            if rec.description in wanted and rec.job_id.isdigit():
                by_tag.setdefault(rec.description, set()).add(rec.job_id)
        # Several jobs under one tag: the parts of a split array (the runner checks them
        # against the job's plan, and keeps the first of a duplicated submission), in order.
        return {tag: PART_SEPARATOR.join(sorted(ids, key=int)) for tag, ids in by_tag.items()}

    # -- dependencies ------------------------------------------------------------------------
    def native_condition(self, condition: DependencyCondition, scheduler_job_id: str) -> str:
        try:
            function = DEPENDENCY_FUNCTIONS[condition]
        except KeyError:
            raise ConfigError(f"unknown dependency condition {condition!r}") from None
        return f"{function}({scheduler_job_id})"

    def compile_dependencies(self, deps: Sequence[CompiledDependency]) -> str | None:
        if not deps:
            return None
        return " && ".join(self.native_condition(d.condition, d.scheduler_job_id) for d in deps)

    # -- errors ------------------------------------------------------------------------------
    def is_transient(self, result: CommandResult) -> bool:
        text = (result.stderr + "\n" + result.stdout).lower()
        program = posixpath.basename(result.argv[0]) if result.argv else ""
        # A bsub that reached mbatchd and then timed out may have created the job: only
        # failures that never reached it are retried (adoption by tag covers the rest).
        markers = _UNREACHED_MARKERS if program == "bsub" else TRANSIENT_MARKERS
        return any(marker in text for marker in markers)

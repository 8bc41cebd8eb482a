"""The PBS dialects: PBS Pro / OpenPBS (:class:`PbsProDialect`) and Torque (:class:`TorqueDialect`).

Pure functions only (no I/O): they render ``#PBS`` directives, build ``qsub``/``qstat``/``qdel``
command lines and parse their answers. :class:`molq.batch.BatchScheduler` runs them.

Where the job's settings go:

* ``#PBS`` directives in the job script: name, queue, account, resources, array, dependencies,
  mail, priority and the molq tag (``-v MOLQ_TAG=molq-<job id>``, used for adoption).
* the ``qsub`` command line: the output and error paths (paths are not word-split there, and
  command-line options win over directives on every PBS).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from molq import wrapper
from molq.arrays import PART_SEPARATOR
from molq.batch import BatchDialect
from molq.errors import ConfigError, SchedulerError, SubmitError
from molq.evidence import SourceAnswer, aggregate_parts
from molq.model import (
    CompiledDependency,
    DependencyCondition,
    JobSpec,
    QueueEntry,
    SchedulerCapabilities,
    SchedulerStatus,
    check_extra_directives,
)
from molq.transport import CommandResult

from molq_pbs import parse
from molq_pbs.parse import JobRecords
from molq_pbs.states import (
    FinishedJob,
    classify_pbspro_finished,
    classify_torque_completed,
    end_cause,
    is_finished_state,
    map_state,
    sub_state_of,
)

__all__ = ["PbsDialectBase", "PbsProDialect", "TorqueDialect", "sanitize_job_name", "TAG_VARIABLE"]

#: Environment variable that carries the molq tag on every PBS job.
TAG_VARIABLE = "MOLQ_TAG"

#: molq dependency condition -> PBS ``depend`` type (same on PBS Pro and Torque).
NATIVE_CONDITIONS: dict[str, str] = {
    "after_success": "afterok",
    "after_failure": "afternotok",
    "after_started": "after",
    "after": "afterany",
}

# Messages of failures worth retrying: the server could not be reached, or refused to talk.
_TRANSIENT_ANY = [
    "connection refused",
    "cannot connect to server",
    "cannot connect to host",  # pbs_iff: cannot connect to host
    "cannot connect to default server",
    "communication failure",
    "no route to host",
    "network is unreachable",
    "no free connections",
    "server shutting down",
    "unable to contact slurm controller",  # SLURM's Torque wrappers
    "problem loading jobs",
]
# Only for queries: for qsub a timeout may hide a job the server has accepted.
_TRANSIENT_QUERY = ["timed out", "time out", "premature end of", "end of file", "socket timed out"]

# How qstat implementations reject an option they do not have: Torque's getopt ("invalid
# option -- 'F'"), the Perl front-ends of slurm-wlm-torque ("Unknown option: f").
_REJECTED_OPTION_RE = re.compile(
    r"(invalid|illegal|unknown|unrecognized) option\b[^\n]*?(--\s*'?[Fx]'?|:\s*[Fx]\b)", re.IGNORECASE
)

_SAFE_VALUE_RE = re.compile(r"^[^\s\"'\\#]+$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_.:+-]+$")
_JOB_ID_RE = re.compile(r"^\d+(\[\d*\])?(\.[^\s]+)?$")


def _id_key(sid: str) -> tuple[int, str]:
    head = re.match(r"\d+", sid)
    return (int(head.group()) if head else 1 << 62, sid)


def _as_range(array_spec: str) -> str:
    """A list of indices in one step (``0,1`` or ``4,6,8``, as a split array's last part may
    be) as the one range PBS Pro takes (``0-1``, ``4-8:2``); anything else unchanged."""
    text, pct, limit = array_spec.partition("%")
    items = text.split(",")
    if len(items) < 2 or not all(i.isdigit() for i in items):
        return array_spec
    nums = [int(i) for i in items]
    step = nums[1] - nums[0]
    if step < 1 or any(b - a != step for a, b in zip(nums, nums[1:])):
        return array_spec
    body = f"{nums[0]}-{nums[-1]}" + (f":{step}" if step > 1 else "")
    return body + pct + limit


def sanitize_job_name(name: str, *, max_length: int, numeric_first: bool) -> str:
    """A job name PBS accepts: printable non-blank ASCII, starting with a letter (or a digit
    where allowed), at most ``max_length`` characters. Anything else becomes ``_``.

    >>> sanitize_job_name("my job é", max_length=236, numeric_first=True)
    'my_job__'
    >>> sanitize_job_name("-x", max_length=15, numeric_first=False)
    'j-x'
    """
    cleaned = "".join(c if 0x21 <= ord(c) <= 0x7E and c not in "\"'\\#" else "_" for c in name)
    first_ok = cleaned[:1].isalpha() or (numeric_first and cleaned[:1].isdigit())
    if not cleaned or not first_ok:
        cleaned = "j" + cleaned
    return cleaned[:max_length]


#: qsub options molq writes itself (tracking, files, dependencies): an extra directive must
#: not override them.
_RESERVED_OPTIONS: dict[str, str] = {
    "-N": "execution.job_name",
    "-o": "execution.output_file",
    "-e": "execution.error_file",
    "-j": "execution.output_file and error_file",
    "-v": "execution.env (molq's tag for this job travels in -v)",
    "-V": "execution.env",
    "-W": "scheduling.dependency or dependencies (-W depend=...)",
    "-r": "scheduling.rerunnable",
}


def _directive_value(field: str, value: str) -> str:
    """A value for a ``#PBS`` line: PBS word-splits directives, so refuse blanks and quotes."""
    if not _SAFE_VALUE_RE.match(value):
        raise ConfigError(
            f"{field} {value!r} cannot be passed to PBS: it must not contain spaces, quotes, '\\' or '#'"
        )
    return value


class PbsDialectBase(BatchDialect):
    """What PBS Pro and Torque share: directives, dependencies, cancel, errors."""

    name = "pbs"
    flavor = "pbspro"
    shebang = "#!/bin/bash"
    max_name_length = 236
    numeric_name_first = True

    def __init__(
        self,
        *,
        default_queue: str | None = None,
        default_account: str | None = None,
        use_history: bool = True,
    ) -> None:
        self.default_queue = default_queue
        self.default_account = default_account
        self.use_history = use_history

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- script ------------------------------------------------------------------------------
    def job_name(self, spec: JobSpec) -> str:
        """The ``-N`` value for ``spec`` (sanitized, see :func:`sanitize_job_name`)."""
        return sanitize_job_name(
            spec.name, max_length=self.max_name_length, numeric_first=self.numeric_name_first
        )

    def resource_options(self, spec: JobSpec) -> list[str]:
        """Directive bodies for resources (``-l ...``), per flavour."""
        raise NotImplementedError

    def array_option(self, array_spec: str) -> str:
        """The directive body for an array job, per flavour."""
        raise NotImplementedError

    def render_directives(self, spec: JobSpec, job_dir: str) -> list[str]:
        sched = spec.scheduling
        opts = [f"-N {self.job_name(spec)}"]
        queue = sched.partition or self.default_queue
        if queue:
            opts.append(f"-q {_directive_value('scheduling.partition', queue)}")
        account = sched.account or self.default_account
        if account:
            opts.append(f"-A {_directive_value('scheduling.account', account)}")
        opts += self.resource_options(spec)
        if sched.array_spec:
            opts.append(self.array_option(sched.array_spec.replace(" ", "")))
        depend = [d for d in (self.compile_dependencies(spec.dependencies), sched.dependency) if d]
        if depend:
            opts.append(f"-W depend={_directive_value('scheduling.dependency', ','.join(depend))}")
        if sched.email:
            opts.append(f"-M {_directive_value('scheduling.email', sched.email)}")
            opts.append("-m ae")
        if sched.priority:
            opts.append(f"-p {self._priority(sched.priority)}")
        if _TAG_RE.match(spec.tag):
            opts.append(f"-v {TAG_VARIABLE}={spec.tag}")
        if sched.rerunnable is not None:
            opts.append("-r y" if sched.rerunnable else "-r n")
        # Already checked to be one line starting with '-': a comment line to bash.
        opts += check_extra_directives(sched.extra_directives, _RESERVED_OPTIONS, "PBS")
        return [f"#PBS {o}" for o in opts]

    @staticmethod
    def _priority(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            number = None
        if number is None or not -1024 <= number <= 1023:
            raise ConfigError(f"PBS priority must be a whole number from -1024 to 1023, got {value!r}")
        return number

    # -- submission --------------------------------------------------------------------------
    def submit_argv(self, script_path: str, spec: JobSpec) -> list[str]:
        job_dir = script_path.rsplit("/", 1)[0] if "/" in script_path else "."
        out = wrapper.stdout_path(spec, job_dir)
        err = wrapper.stderr_path(spec, job_dir)
        for field, path in (("execution.output_file", out), ("execution.error_file", err)):
            if ":" in path:
                # PBS reads "a:b" as "file b on host a".
                raise ConfigError(f"{field} {path!r} cannot contain ':' on PBS")
            if "\n" in path or "\r" in path:
                # qstat -f prints paths as they are: a line break would forge attribute lines.
                raise ConfigError(f"{field} {path!r} cannot contain a line break on PBS")
        if out == err:
            return ["qsub", "-j", "oe", "-o", out, script_path]
        return ["qsub", "-o", out, "-e", err, script_path]

    def parse_submit(self, result: CommandResult) -> str:
        if result.returncode != 0:
            # Torque front-ends (SLURM's qsub wrapper) print their errors on stdout.
            message = "\n".join(t.strip() for t in (result.stderr, result.stdout) if t.strip())
            raise SubmitError(
                f"{self.name}: qsub refused the job: {message or f'exit status {result.returncode}'}",
                stderr=message,
                command=list(result.argv),
            )
        lines = [ln.strip() for ln in result.stdout.splitlines() if ln.strip()]
        if not lines or not _JOB_ID_RE.match(lines[-1]):
            raise SchedulerError(
                f"{self.name}: cannot read a job id from qsub's answer: {result.stdout.strip()!r}",
                stderr=result.stderr,
                command=list(result.argv),
            )
        return lines[-1]

    # -- status ------------------------------------------------------------------------------
    def read_records(self, result: CommandResult) -> tuple[JobRecords, bool]:
        """(job records, complete) of a qstat answer, per flavour. Raises ValueError when the
        answer is unusable as a whole."""
        raise NotImplementedError

    def status_from_record(self, record: dict[str, str]) -> SchedulerStatus | None:
        """A job's status from its qstat record; None when qstat holds no usable verdict."""
        raise NotImplementedError

    def flavor_hint(self, result: CommandResult) -> str | None:
        """What to change when qstat rejected this flavour's options (another PBS answered)."""
        return None

    def _fail(self, result: CommandResult, what: str) -> SchedulerError:
        hint = self.flavor_hint(result)
        return SchedulerError(
            f"{self.name}: {what}" + (f"; {hint}" if hint else ""),
            stderr=result.stderr,
            command=list(result.argv),
        )

    def _check_query(self, result: CommandResult, scheduler_ids: Sequence[str] | None) -> list[str]:
        """Raise unless ``result`` is an answer; returns its benign stderr lines (per-job
        "unknown"/"finished" messages are answers, not failures)."""
        lines = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
        program = result.argv[0].rsplit("/", 1)[-1] if result.argv else "qstat"
        if "job_history_enable" in result.stderr:
            raise SchedulerError(
                f"{self.name}: the server keeps no job history; set use_history=False "
                f"in PbsOptions ({result.stderr.strip()})",
                stderr=result.stderr,
                command=list(result.argv),
            )
        bad = [ln for ln in lines if not parse.benign_error(ln)]
        if result.returncode != 0 and (bad or (not lines and result.returncode != 153)):
            detail = " ".join(bad).strip() or result.stdout.strip()[:200]
            raise self._fail(result, f"{program} failed (exit {result.returncode}): {detail}")
        if result.returncode == 0 and scheduler_ids and not result.stdout.strip() and (bad or not lines):
            # Asked about jobs, got neither jobs nor "unknown job" messages: not an answer.
            raise self._fail(result, f"{program} printed nothing about {len(scheduler_ids)} job(s)")
        return [ln for ln in lines if ln not in bad]

    def _all_records(self, result: CommandResult) -> tuple[JobRecords, bool]:
        self._check_query(result, None)
        try:
            return self.read_records(result)
        except ValueError as exc:
            raise self._fail(result, f"cannot parse qstat output: {exc}") from exc

    def _answer(self, result: CommandResult, scheduler_ids: Sequence[str], *, terminal: bool) -> SourceAnswer:
        """The qstat answer about ``scheduler_ids``.

        A record that cannot be read, or that cannot be told apart from another one (two
        records with the same sequence number), makes its id unreadable: no evidence, never
        "unknown". For the final-state query, a job qstat says has finished without saying
        how (Torque's ``C`` without ``exit_status``, "Job has finished" without ``-x``) is
        unreadable too, so that the wrapper's exit-code file decides and nobody counts a miss.
        """
        benign = self._check_query(result, scheduler_ids)
        try:
            records, complete = self.read_records(result)
        except ValueError as exc:
            raise self._fail(result, f"cannot parse qstat output: {exc}") from exc
        pairs = parse.match_ids(scheduler_ids, records)
        statuses: dict[str, SchedulerStatus] = {}
        unreadable: set[str] = set(parse.ambiguous_ids(scheduler_ids, records))
        ended: set[str] = set()  # finished, and qstat does not say how
        for sid, found in pairs.items():
            parts = parse.array_parts(found, records)
            if parts:
                # An array job is its subjobs (qstat -t): one policy for all backends.
                read = [(pid, self._status(records[pid])) for pid in parts]
                if all(st is not None for _pid, st in read):
                    statuses[sid] = aggregate_parts([(p, st) for p, st in read if st is not None])
                else:
                    unreadable.add(sid)  # one unreadable subjob: no verdict for the array
                continue
            record = records[found]
            status = self._status(record)
            if status is None and record is not None and record.get("job_state", "").strip() and not terminal:
                continue  # finished, verdict unknown: the final-state query decides
            if status is None and record is not None and record.get("job_state", "").strip():
                ended.add(sid)  # finished without saying how: the exit-code file may tell
            elif status is None:
                unreadable.add(sid)
            else:
                statuses[sid] = status
        if terminal:
            for line in benign:
                if re.search(r"has finished", line, re.IGNORECASE):
                    ended.update(
                        sid for sid in scheduler_ids if sid not in statuses and parse.line_names(line, sid)
                    )
        return SourceAnswer(statuses, frozenset(unreadable - set(statuses)), complete,
                            frozenset(ended - set(statuses)))

    def _status(self, record: dict[str, str] | None) -> SchedulerStatus | None:
        if record is None or not record.get("job_state", "").strip():
            return None
        try:
            return self.status_from_record(record)
        except (ValueError, TypeError, OverflowError):
            return None

    def status_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def parse_status(self, result: CommandResult, scheduler_ids: Sequence[str]) -> SourceAnswer:  # type: ignore[override]
        return self._answer(result, scheduler_ids, terminal=False)

    def terminal_argv(self, scheduler_ids: Sequence[str], since: float | None) -> list[str] | None:
        return self.status_argv(scheduler_ids)

    def parse_terminal(self, result: CommandResult, scheduler_ids: Sequence[str]) -> SourceAnswer:  # type: ignore[override]
        # The same qstat a second time: a job it now shows alive (R, Q, H...) is alive, and
        # is reported as such -- leaving it out would count a living job as missing.
        return self._answer(result, scheduler_ids, terminal=True)

    # -- cancel, queue, adoption -------------------------------------------------------------
    def cancel_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        return ["qdel", *scheduler_ids]

    # slurm-wlm-torque's qdel exits non-zero without a word for a job that already ended.
    silent_cancel_failure_is_error = False
    # The queue is read for every user (see parse_queue); the runner filters by Job_Owner.
    queue_filters_user_itself = False

    def cancel_line_is_benign(self, line: str) -> bool:
        return parse.benign_error(line)

    def cancel_line_is_refusal(self, line: str) -> bool:
        return parse.refusal(line)

    def queue_argv(self, user: str | None) -> list[str]:
        raise NotImplementedError

    def parse_queue(self, result: CommandResult) -> list[QueueEntry]:
        """Every active job qstat shows, of any user (``qstat -u`` would switch to a truncated
        table): the runner keeps the user's own. Finished jobs are left out."""
        entries = []
        for sid, rec in self._all_records(result)[0].items():
            if rec is None:
                continue
            raw = rec.get("job_state", "").strip().upper()
            if is_finished_state(raw, self.flavor):
                continue
            start = parse.parse_pbs_time(rec.get("stime") or rec.get("start_time"))
            sub, why = sub_state_of(rec)
            entries.append(
                QueueEntry(
                    scheduler_job_id=sid,
                    name=rec.get("Job_Name"),
                    user=(rec.get("Job_Owner") or "").split("@", 1)[0] or None,
                    state=map_state(raw, flavor=self.flavor, started=start is not None),
                    raw_state=raw,
                    partition=rec.get("queue"),
                    submit_time=parse.parse_pbs_time(rec.get("qtime") or rec.get("ctime")),
                    start_time=start,
                    sub_state=sub,
                    sub_state_reason=why,
                )
            )
        return entries

    def adopt_argv(self, tags: Sequence[str]) -> list[str] | None:
        return self.queue_argv(None)

    def parse_adopt(self, result: CommandResult, tags: Sequence[str]) -> dict[str, str]:
        wanted = set(tags)
        by_tag: dict[str, list[str]] = {}
        for sid, rec in self._all_records(result)[0].items():
            if rec is None:
                continue
            tag = parse.variable_list(rec).get(TAG_VARIABLE)
            if tag in wanted:
                by_tag.setdefault(tag, []).append(sid)
        # Several jobs under one tag: the parts of a split array (the runner checks them
        # against the job's plan, and keeps the first of a duplicated submission), in order.
        return {tag: PART_SEPARATOR.join(sorted(sids, key=_id_key)) for tag, sids in by_tag.items()}

    # -- dependencies ------------------------------------------------------------------------
    def native_condition(self, condition: DependencyCondition, scheduler_job_id: str) -> str:
        return f"{NATIVE_CONDITIONS[condition]}:{scheduler_job_id}"

    def compile_dependencies(self, deps: Sequence[CompiledDependency]) -> str | None:
        """``afterok:1.srv:2.srv,afternotok:3.srv`` (one group per condition, in order)."""
        groups: dict[str, list[str]] = {}
        for dep in deps:
            groups.setdefault(NATIVE_CONDITIONS[dep.condition], []).append(dep.scheduler_job_id)
        return ",".join(f"{kind}:{':'.join(ids)}" for kind, ids in groups.items()) or None

    # -- errors ------------------------------------------------------------------------------
    def is_transient(self, result: CommandResult) -> bool:
        text = (result.stderr + "\n" + result.stdout).lower()
        if any(p in text for p in _TRANSIENT_ANY):
            return True
        command = result.argv[0].rsplit("/", 1)[-1] if result.argv else ""
        return command != "qsub" and any(p in text for p in _TRANSIENT_QUERY)


class PbsProDialect(PbsDialectBase):
    """PBS Professional and OpenPBS: ``select`` chunks, ``-J`` arrays, ``qstat -f -F json -x``.

    >>> d = PbsProDialect()
    >>> d.native_condition("after", "12.srv")
    'afterany:12.srv'
    """

    def __init__(
        self,
        *,
        default_queue: str | None = None,
        default_account: str | None = None,
        use_history: bool = True,
        gpu_type_resource: str | None = None,
    ) -> None:
        super().__init__(
            default_queue=default_queue, default_account=default_account, use_history=use_history
        )
        self.gpu_type_resource = gpu_type_resource
        unsupported = ["qos", "reservation"] + ([] if gpu_type_resource else ["gpu_type"])
        self.capabilities = SchedulerCapabilities.all_except(*unsupported)

    def resource_options(self, spec: JobSpec) -> list[str]:
        res, sched = spec.resources, spec.scheduling
        chunk = []
        if res.cpu_count:
            chunk.append(f"ncpus={res.cpu_count}")
        if res.memory:
            chunk.append(f"mem={res.memory.to_pbs()}")
        if res.gpu_count:
            chunk.append(f"ngpus={res.gpu_count}")
        if res.gpu_type:
            value = _directive_value("resources.gpu_type", res.gpu_type)
            chunk.append(f"{self.gpu_type_resource}={value}")
        opts = []
        if chunk or sched.node_count:
            opts.append(f"-l select={sched.node_count or 1}:{':'.join(chunk or ['ncpus=1'])}")
        place = (["scatter"] if (sched.node_count or 1) > 1 else []) + (
            ["excl"] if sched.exclusive_node else []
        )
        if place:
            opts.append(f"-l place={':'.join(place)}")
        if res.time_limit:
            opts.append(f"-l walltime={res.time_limit.to_pbs()}")
        return opts

    def array_option(self, array_spec: str) -> str:
        # PBS Pro takes one range X-Y[:Z]; "%N" (max running subjobs) needs OpenPBS 20 or later.
        array_spec = _as_range(array_spec)
        if not re.fullmatch(r"\d+-\d+(:\d+)?(%\d+)?", array_spec):
            raise ConfigError(
                f"PBS Pro arrays are one range 'X-Y[:step][%max]', got array_spec {array_spec!r}"
            )
        return f"-J {array_spec}"

    # -- arrays beyond the server's max_array_size (molq.array_runner) ------------------------
    def limits_argv(self) -> list[str]:
        return ["qstat", "-B", "-f"]

    def parse_max_array_size(self, result: CommandResult) -> int | None:
        """``max_array_size`` from the server's attributes (``qstat -Bf``; ``qmgr -c 'print
        server'`` lines ``set server max_array_size = N`` are read too). PBS counts subjobs; an
        array split so that every shifted index stays below the limit has no more than that.
        A server that does not show the attribute: None (arrays go whole, the server judges)."""
        if result.returncode != 0:
            raise SchedulerError(f"{self.name}: qstat -Bf failed: {result.stderr.strip() or result.returncode}",
                                 stderr=result.stderr, command=list(result.argv))
        match = re.search(r"^\s*(?:set server\s+)?max_array_size\s*=\s*(\d+)\s*$", result.stdout, re.MULTILINE)
        return int(match.group(1)) if match else None

    def array_offset_line(self, offset: int) -> str:
        # Before the wrapper reads the index: the job sees the index the user asked for.
        return (f'[ -z "${{PBS_ARRAY_INDEX:-}}" ] || '
                f'export PBS_ARRAY_INDEX=$((PBS_ARRAY_INDEX + {int(offset)}))')

    def status_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        # -t lists an array job's subjobs with it: their own exit statuses decide the array.
        history = ["-x"] if self.use_history else []
        return ["qstat", "-f", "-F", "json", *history, "-t", *scheduler_ids]

    def read_records(self, result: CommandResult) -> tuple[JobRecords, bool]:
        text = result.stdout.strip()
        return parse.parse_qstat_json_answer(text) if text else ({}, True)

    def flavor_hint(self, result: CommandResult) -> str | None:
        text = result.stderr + "\n" + result.stdout
        if _REJECTED_OPTION_RE.search(text) or ("usage" in text.lower() and "-F" not in text):
            return ("this qstat does not take PBS Pro's '-F json' (it looks like Torque's): "
                    "set PbsOptions(flavor='torque') (or flavor='auto') for this cluster")
        return None

    def status_from_record(self, record: dict[str, str]) -> SchedulerStatus | None:
        raw = record.get("job_state", "").strip().upper()
        started = parse.parse_pbs_time(record.get("stime"))
        comment = record.get("comment") or None
        if not is_finished_state(raw, "pbspro"):
            state = map_state(raw, flavor="pbspro", started=started is not None)
            sub, why = sub_state_of(record)
            return SchedulerStatus(state=state, raw_state=raw, reason=comment, started_at=started,
                                   sub_state=sub, sub_state_reason=why)
        job = FinishedJob(
            exit_status=parse.parse_int(record.get("Exit_status")),
            substate=parse.parse_int(record.get("substate")),
            comment=comment,
            walltime_used=parse.parse_hms(record.get("resources_used.walltime")),
            walltime_limit=parse.parse_hms(record.get("Resource_List.walltime")),
            is_array=record.get("array", "").lower() == "true",
            owner=record.get("Job_Owner") or None,
        )
        state, code, sig, reason = classify_pbspro_finished(job)
        finished = parse.parse_pbs_time(record.get("obittime") or record.get("mtime"))
        return SchedulerStatus(
            state=state,
            raw_state=raw,
            exit_code=code,
            exit_signal=sig,
            reason=reason,
            started_at=started,
            finished_at=finished,
            end_cause=end_cause(job, state, sig, flavor="pbspro"),
            usage=parse.usage_from_record(record),
        )

    def queue_argv(self, user: str | None) -> list[str]:
        # "-u" would switch qstat to its fixed-width table; JSON is filtered by Job_Owner instead.
        return ["qstat", "-f", "-F", "json"]


class TorqueDialect(PbsDialectBase):
    """Torque (and PBS-compatible wrappers such as SLURM's ``slurm-wlm-torque``): ``nodes=N:ppn=C``,
    ``-t`` arrays, ``qstat -f`` text. Torque keeps no history: a finished job stays visible as
    ``C`` for ``keep_completed`` seconds, after which the wrapper's exit-code file decides.
    """

    flavor = "torque"
    max_name_length = 15  # the POSIX/Torque limit; longer names are cut
    numeric_name_first = False

    def __init__(
        self,
        *,
        default_queue: str | None = None,
        default_account: str | None = None,
        use_history: bool = True,
    ) -> None:
        super().__init__(
            default_queue=default_queue, default_account=default_account, use_history=use_history
        )
        self.capabilities = SchedulerCapabilities.all_except("qos", "reservation", "gpu_type")

    def resource_options(self, spec: JobSpec) -> list[str]:
        res, sched = spec.resources, spec.scheduling
        nodes = sched.node_count or 1
        opts = []
        if res.cpu_count or sched.node_count or res.gpu_count:
            parts = [str(nodes)]
            if res.cpu_count:
                parts.append(f"ppn={res.cpu_count}")
            if res.gpu_count:
                parts.append(f"gpus={res.gpu_count}")
            opts.append(f"-l nodes={':'.join(parts)}")
        if res.memory:
            # molq memory is per node (like SLURM --mem); Torque's mem is for the whole job.
            total = type(res.memory)(res.memory.bytes * nodes)
            opts.append(f"-l mem={total.to_pbs()}")
        if res.time_limit:
            opts.append(f"-l walltime={res.time_limit.to_pbs()}")
        if sched.exclusive_node:
            opts.append("-n")
        return opts

    def array_option(self, array_spec: str) -> str:
        if ":" in array_spec:
            raise ConfigError(f"Torque arrays take no step (':'), got array_spec {array_spec!r}")
        return f"-t {array_spec}"

    def status_argv(self, scheduler_ids: Sequence[str]) -> list[str]:
        return ["qstat", "-f", "-1", *scheduler_ids]

    def read_records(self, result: CommandResult) -> tuple[JobRecords, bool]:
        return parse.parse_qstat_full(result.stdout), True

    def flavor_hint(self, result: CommandResult) -> str | None:
        text = result.stderr + "\n" + result.stdout
        if "-F format" in text or "pbs_version" in text or "conflicting options" in text:
            return ("this qstat is PBS Pro's / OpenPBS's: set PbsOptions(flavor='pbspro') "
                    "(or flavor='auto') for this cluster")
        return None

    def status_from_record(self, record: dict[str, str]) -> SchedulerStatus | None:
        raw = record.get("job_state", "").strip().upper()
        started = parse.parse_pbs_time(record.get("start_time"))
        comment = record.get("comment") or None
        if not is_finished_state(raw, "torque"):
            state = map_state(raw, flavor="torque", started=started is not None)
            sub, why = sub_state_of(record)
            return SchedulerStatus(state=state, raw_state=raw, reason=comment, started_at=started,
                                   sub_state=sub, sub_state_reason=why)
        job = FinishedJob(
            exit_status=parse.parse_int(record.get("exit_status") or record.get("Exit_status")),
            comment=comment,
            walltime_used=parse.parse_hms(record.get("resources_used.walltime")),
            walltime_limit=parse.parse_hms(record.get("Resource_List.walltime")),
        )
        verdict = classify_torque_completed(job)
        if verdict is None:
            return None  # completed, but qstat does not say how: the exit-code file will
        state, code, sig, reason = verdict
        return SchedulerStatus(
            state=state,
            raw_state=raw,
            exit_code=code,
            exit_signal=sig,
            reason=reason,
            started_at=started,
            finished_at=parse.parse_pbs_time(record.get("comp_time")),
            end_cause=end_cause(job, state, sig, flavor="torque"),
            usage=parse.usage_from_record(record),
        )

    def queue_argv(self, user: str | None) -> list[str]:
        return ["qstat", "-f", "-1"]


def make_dialect(flavor: str, **kwargs: object) -> PbsDialectBase:
    """The dialect for ``flavor`` (``"pbspro"`` or ``"torque"``)."""
    if flavor == "torque":
        kwargs.pop("gpu_type_resource", None)
        return TorqueDialect(**kwargs)  # type: ignore[arg-type]
    return PbsProDialect(**kwargs)  # type: ignore[arg-type]

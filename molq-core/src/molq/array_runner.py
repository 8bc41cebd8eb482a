"""The batch runner's side of split arrays (:mod:`molq.arrays`): the site's array limit, read
once per scheduler object, the submission of the parts, and one job's evidence and cancel
outcome from its parts'.

A dialect takes part by answering :meth:`~molq.batch.BatchDialect.limits_argv` /
``parse_max_array_size`` (where the site's limit is read), ``lowest_array_index`` (where a
part's indices start) and ``array_offset_line`` (the shell line that shifts a part's task index
back); one that does not (the default) never splits.
``BatchScheduler.array_limit`` (from the profile) replaces the site's value when set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from molq.arrays import PART_SEPARATOR, ArrayPart, combine_parts, part_ids, part_key, split_array
from molq.batch.site_limits import site_value
from molq.errors import SchedulerError, SubmitError, SubmitLimitReached, TransportError
from molq.evidence import CancelOutcome, Observation
from molq.model import JobSpec
from molq.scheduler import TrackedJob
from molq.wrapper import SCRIPT_FILE, join_path

if TYPE_CHECKING:
    from molq.batch import BatchScheduler

log = logging.getLogger("molq.batch")

__all__ = ["max_array_size", "plan", "submit_parts", "expand", "combine_cancel"]


def max_array_size(sched: BatchScheduler) -> int | None:
    """The largest array index + 1 the cluster accepts: the profile's override, else the
    site's value, asked once per scheduler object (``scontrol show config`` on SLURM). When it
    cannot be read, the array is submitted whole and the scheduler says whether it fits."""
    override = sched.array_limit
    if override is not None:
        return int(override)
    return site_value(sched, "array limit", sched.dialect.limits_argv(), sched.dialect.parse_max_array_size)


def plan(sched: BatchScheduler, spec: JobSpec) -> list[ArrayPart] | None:
    """The parts ``spec``'s array must be submitted as, or None to submit it whole."""
    array = spec.scheduling.array_spec
    if not array or sched.dialect.array_offset_line(0) is None:
        return None
    limit = max_array_size(sched)
    return split_array(array, limit, sched.dialect.lowest_array_index) if limit else None


def _part(sched: BatchScheduler, spec: JobSpec, job_dir: str, k: int, part: ArrayPart) -> tuple[JobSpec, str]:
    """Part ``k``'s spec and job script: the dialect's script for the shifted array, with the
    lines that add the part's offset back placed before the wrapper reads the task index."""
    shifted = attrs.evolve(spec, scheduling=attrs.evolve(spec.scheduling, array_spec=part.spec))
    part_spec, lines = sched.dialect.split_part(shifted, job_dir, k, part.offset)
    script = sched.dialect.render_script(part_spec, job_dir)
    marker = f"# molq job {spec.job_id}\n"
    if marker not in script or not lines:
        raise SubmitError(f"{sched.name}: cannot place the array offset in the job script")
    return part_spec, script.replace(marker, "".join(f"{line}\n" for line in lines) + marker, 1)


#: The file in a split job's directory that says how many parts it was planned as, written
#: before the first part is submitted, and the parts' scheduler ids on a second line once
#: every part was accepted: adoption after a crash tells a whole submission from a partial
#: one with it, even when the scheduler no longer lists the parts.
PLAN_FILE = "array_parts"


def _read_plan(raw: str | None) -> tuple[int | None, str | None]:
    """(planned part count, the parts' joined ids once all were accepted) from a plan file."""
    lines = (raw or "").split("\n")
    count = int(lines[0]) if lines[0].strip().isdigit() else None
    ids = lines[1].strip() if len(lines) > 1 and lines[1].strip() else None
    if count is None or ids is None or len(part_ids(ids)) != count:
        ids = None
    return count, ids


def part_script_name(k: int) -> str:
    """The file of part ``k``'s job script in the shared job directory: its own file for
    every part, because a scheduler that reads the script when the job starts (LSF runs the
    command named on the bsub line) must find that part's offset, not the last part's."""
    return SCRIPT_FILE if k == 0 else f"job.part{k}.sh"


def submit_parts(sched: BatchScheduler, spec: JobSpec, job_dir: str, parts: Sequence[ArrayPart]) -> str:
    """Submit every part; the joined scheduler ids. If one part is refused, the parts already
    accepted are cancelled and the error raised: a job runs whole or not at all."""
    if job_dir:
        sched.transport.write_text(join_path(job_dir, PLAN_FILE), f"{len(parts)}\n", mode=0o600)
    ids: list[str] = []
    for k, part in enumerate(parts):
        try:
            part_spec, script = _part(sched, spec, job_dir, k, part)
            ids.append(sched.submit(part_spec, job_dir, script=script, script_name=part_script_name(k)))
        except Exception as exc:
            if ids:
                try:
                    sched.run(sched.dialect.cancel_argv(ids))
                except (SchedulerError, TransportError) as cancel_exc:
                    log.error("%s: could not cancel the parts %s of job %s already submitted: %s",
                              sched.name, ", ".join(ids), spec.job_id, cancel_exc)
            # A part refused for the submit limit: the whole job waits in molq for room.
            error = SubmitLimitReached if isinstance(exc, SubmitLimitReached) else SubmitError
            raise error(f"part {len(ids) + 1} of {len(parts)} of the split array was refused "
                        f"({exc}); {'the parts already submitted were cancelled' if ids else 'nothing ran'}"
                        ) from exc
    log.info("%s: array %s of job %s submitted as %d arrays (%s)", sched.name, spec.scheduling.array_spec,
             spec.job_id, len(ids), PART_SEPARATOR.join(ids))
    joined = PART_SEPARATOR.join(ids)
    if job_dir:
        try:
            sched.transport.write_text(join_path(job_dir, PLAN_FILE), f"{len(parts)}\n{joined}\n", mode=0o600)
        except (TransportError, OSError) as exc:  # submitted all the same: only recovery reads it
            log.warning("%s: could not record the parts of job %s in its directory: %s", sched.name, spec.job_id, exc)
    return joined


def check_adopted(sched: BatchScheduler, jobs: Sequence[TrackedJob], found: Mapping[str, str]) -> dict[str, str]:
    """``found`` (molq job id -> scheduler id from the tag query) checked against each job's
    plan file. A split array whose plan lists every part's id is adopted with those ids (some
    parts may have left the scheduler's list already). One whose parts were not all accepted
    is not: the parts the scheduler has are cancelled (a job runs whole or not at all) and the
    job is left to the rest of adoption. Several jobs under the tag of a job that was not
    split are a duplicated submission: the first is molq's, as for any job."""
    first = {job_id: (part_ids(sid) or [sid])[0] for job_id, sid in found.items()}
    if sched.dialect.array_offset_line(0) is None:
        return first  # this scheduler's jobs are never split
    dirs = {j.job_id: j.job_dir for j in jobs if j.job_dir}
    if not dirs:
        return first
    plans = sched.transport.read_many([join_path(d, PLAN_FILE) for d in dirs.values()])
    out: dict[str, str] = {}
    for job in jobs:
        raw = plans.get(join_path(dirs[job.job_id], PLAN_FILE)) if job.job_id in dirs else None
        planned, recorded = _read_plan(raw)
        sid = found.get(job.job_id)
        if recorded is not None and (planned or 0) > 1:
            out[job.job_id] = recorded
        elif sid is None:
            continue
        elif planned is None or planned < 2:
            sids = part_ids(sid)
            out[job.job_id] = sids[0] if sids else sid
        elif len(part_ids(sid)) == planned:
            out[job.job_id] = sid  # every part accepted; the submitter stopped before noting it
        else:
            sids = part_ids(sid)
            log.error("%s: job %s was submitted as %d of its %d array parts before its submitter "
                      "stopped; cancelling %s", sched.name, job.job_id, len(sids), planned, ", ".join(sids))
            sched.run(sched.dialect.cancel_argv(sids))
    return out


def expand(jobs: Sequence[TrackedJob]) -> tuple[list[TrackedJob], dict[str, tuple[str, list[str]]]] | None:
    """Jobs with split ids replaced by one tracked job per part (keys from
    :func:`molq.arrays.part_key`), and which parts make which job; None when no job is split."""
    if not any(j.scheduler_job_id and PART_SEPARATOR in j.scheduler_job_id for j in jobs):
        return None
    out: list[TrackedJob] = []
    owners: dict[str, tuple[str, list[str]]] = {}
    for job in jobs:
        sids = part_ids(job.scheduler_job_id)
        if len(sids) < 2:
            out.append(job)
            continue
        keys = [part_key(job.job_id, k) for k in range(len(sids))]
        owners[job.job_id] = (job.job_id, keys)
        out.extend(attrs.evolve(job, job_id=key, scheduler_job_id=sid) for key, sid in zip(keys, sids, strict=True))
    return out, owners


def combine_observation(observation: Observation, owners: Mapping[str, tuple[str, list[str]]]) -> Observation:
    return combine_parts(observation, owners)


def combine_cancel(outcomes: Mapping[str, CancelOutcome],
                   owners: Mapping[str, tuple[str, list[str]]]) -> dict[str, CancelOutcome]:
    """One cancel outcome per job: refused if any part was, requested if any part was asked to
    stop, else already ended."""
    out = {k: v for k, v in outcomes.items() if "#part" not in k}
    for job_id, (_same, keys) in owners.items():
        got = [outcomes[k] for k in keys if k in outcomes]
        if not got:
            continue
        if CancelOutcome.REFUSED in got:
            out[job_id] = CancelOutcome.REFUSED
        elif CancelOutcome.REQUESTED in got:
            out[job_id] = CancelOutcome.REQUESTED
        else:
            out[job_id] = CancelOutcome.ALREADY_ENDED
    return out

"""Packing a bulk submission's like jobs into one scheduler array (the ``pack_bulk`` option).

Every submit command costs the scheduler's client time of its own; jobs whose directives are
the same apart from the per-job ones (name, output files, working directory, tag) can go as one
array instead, one task per job. Each task runs exactly its own job's ``job.sh`` in its own job
directory, with its own output files: a small dispatcher script (rendered by the dialect)
picks the job by the task index.

Pure here: which jobs pack (:func:`groups`), the per-job pack file and the pack's tag. The
runner (:meth:`molq.batch.BatchScheduler.submit_many`) writes the files and runs the one submit
command; the dialect renders the dispatcher and names each job's task.

Recovery: before the array is submitted, every member's job directory holds :data:`PACK_FILE`
(the pack's tag and the member's task index). Adoption after a crash finds the array by the
tag and gives each job its own task (:func:`read_pack_file`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from molq.model import JobSpec

__all__ = ["PACK_FILE", "PACK_TAG_PREFIX", "DISPATCHER_FILE", "groups", "pack_tag", "pack_file_text",
           "read_pack_file", "DEFAULT_MAX_TASKS"]

#: The file in each packed job's directory: the pack's tag, then the job's task index.
PACK_FILE = "pack"
#: The dispatcher script, in the first member's job directory.
DISPATCHER_FILE = "pack.sh"
#: Every pack's scheduler-side tag starts with this (a job's own tag is ``molq-<job id>``).
PACK_TAG_PREFIX = "molq-pack-"
#: Tasks per array when the site's array limit cannot be read (SLURM's default MaxArraySize 1001).
DEFAULT_MAX_TASKS = 1000


def pack_tag(first_job_id: str) -> str:
    """The tag of the pack whose first member is ``first_job_id``: unique like that job's id."""
    return f"{PACK_TAG_PREFIX}{first_job_id}"


def pack_file_text(tag: str, index: int) -> str:
    return f"{tag}\n{int(index)}\n"


def read_pack_file(raw: str | None) -> tuple[str, int] | None:
    """(pack tag, task index) from a pack file; None when absent or not whole."""
    lines = (raw or "").split("\n")
    if len(lines) < 3 or not lines[0].startswith(PACK_TAG_PREFIX) or not lines[1].strip().isdigit():
        return None
    return lines[0], int(lines[1])


def packable(spec: JobSpec) -> bool:
    """What core already knows does not pack: an array (its tasks are not one job's), and a
    job with dependencies (each job's own condition would have to hold for the whole array)."""
    sch = spec.scheduling
    return not sch.array_spec and not sch.dependency and not spec.dependencies


def groups(items: Sequence[tuple[JobSpec, str]], key: Callable[[JobSpec, str], Hashable | None],
           max_tasks: int) -> list[list[int]]:
    """The packs among ``items`` (indices, in the given order): jobs that :func:`packable`
    allows and whose ``key`` (the dialect's shared directives; None: does not pack) is equal,
    two or more, cut into arrays of at most ``max_tasks``. Jobs in no pack go the normal way."""
    if max_tasks < 2:
        return []
    by_key: dict[Hashable, list[int]] = {}
    for i, (spec, job_dir) in enumerate(items):
        if not packable(spec):
            continue
        k = key(spec, job_dir)
        if k is not None:
            by_key.setdefault(k, []).append(i)
    out: list[list[int]] = []
    for members in by_key.values():
        for start in range(0, len(members), max_tasks):
            chunk = members[start:start + max_tasks]
            if len(chunk) >= 2:
                out.append(chunk)
    return out

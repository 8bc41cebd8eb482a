"""Job arrays larger than a cluster allows: split into several scheduler arrays, one molq job.

Pure functions, no I/O. A site's limit (SLURM ``MaxArraySize``; LSF ``MAX_JOB_ARRAY_SIZE`` + 1)
bounds the task *index*: every index must be below it, and at or above the scheduler's lowest
index (SLURM 0, LSF 1). An array whose indices reach the limit is cut into parts whose
indices, shifted down by the part's offset, all stay below it; each part's job script adds the
offset back before anything reads the task index, so the job sees the indices the user asked
for. A ``%N`` throttle is passed to every part.

The molq job records the parts' scheduler ids joined by :data:`PART_SEPARATOR` as its one
scheduler id; :func:`part_ids` splits it again, and :func:`combine_parts` makes one piece of
evidence of the parts' answers with core's one policy (:func:`molq.evidence.aggregate_parts`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import attrs

from molq.errors import ConfigError
from molq.evidence import Observation, aggregate_parts
from molq.model import SchedulerStatus

__all__ = [
    "ArrayPart", "PART_SEPARATOR", "array_indices", "combine_parts", "compress_indices", "owner_of", "part_ids",
    "part_key",
    "split_array", "task_count", "MAX_EXPANDED",
]

#: Between the scheduler ids of the parts of one molq job ("123,124"): squeue and sacct take
#: the same list.
PART_SEPARATOR = ","
#: The most task indices molq expands when it has to split an array (memory guard).
MAX_EXPANDED = 10_000_000

_RANGE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")


@attrs.frozen
class ArrayPart:
    """One scheduler array of a split job: its ``spec`` (shifted indices, with the throttle)
    and the ``offset`` its script adds to the scheduler's task index."""

    spec: str
    offset: int
    count: int


def array_indices(spec: str) -> tuple[list[int], int | None]:
    """The sorted task indices of an array spec (``1-10:2,15%4``) and its throttle.

    >>> array_indices("1-7:3,20%2")
    ([1, 4, 7, 20], 2)
    """
    text = spec.replace(" ", "")
    throttle = None
    if "%" in text:
        text, _, limit = text.partition("%")
        throttle = int(limit)
    out: set[int] = set()
    for item in text.split(","):
        m = _RANGE.match(item)
        if not m:
            raise ConfigError(f"cannot parse array_spec {spec!r} (at {item!r})")
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) is not None else start
        step = int(m.group(3)) if m.group(3) is not None else 1
        if end < start or step < 1:
            raise ConfigError(f"array_spec {spec!r}: {item!r} is an empty range")
        if len(out) + (end - start) // step + 1 > MAX_EXPANDED:
            raise ConfigError(f"array_spec {spec!r} has more than {MAX_EXPANDED} tasks")
        out.update(range(start, end + 1, step))
    return sorted(out), throttle


def task_count(spec: str | None) -> int:
    """How many tasks a job of array ``spec`` runs (1 for a job that is not an array): what it
    counts as against a submit limit, and how many tasks its usage must cover.

    >>> task_count("1-7:3,20%2"), task_count(None)
    (4, 1)
    """
    return len(array_indices(spec)[0]) if spec else 1


def compress_indices(indices: Sequence[int]) -> str:
    """The shortest-ish spec for sorted ``indices``: runs of one step become ``a-b[:s]``.

    >>> compress_indices([0, 1, 2, 3, 10, 12, 14, 30])
    '0-3,10-14:2,30'
    """
    parts: list[str] = []
    i = 0
    n = len(indices)
    while i < n:
        start = indices[i]
        if i + 2 < n and indices[i + 1] - start == indices[i + 2] - indices[i + 1]:
            step = indices[i + 1] - start
            j = i + 1
            while j + 1 < n and indices[j + 1] - indices[j] == step:
                j += 1
            end = indices[j]
            parts.append(f"{start}-{end}" if step == 1 else f"{start}-{end}:{step}")
            i = j + 1
        else:
            parts.append(str(start))
            i += 1
    return ",".join(parts)


def split_array(spec: str, max_array_size: int, lowest: int = 0) -> list[ArrayPart] | None:
    """The parts ``spec`` must be cut into so that every index stays below ``max_array_size``
    (SLURM's rule), or None when it fits as it is. ``lowest`` is the smallest index the
    scheduler accepts (SLURM 0, LSF 1): each part's shifted indices start there.

    >>> [(p.spec, p.offset) for p in split_array("0-11%2", 5)]
    [('0-4%2', 0), ('0-4%2', 5), ('0,1%2', 10)]
    >>> [(p.spec, p.offset) for p in split_array("1-25", 11, lowest=1)]
    [('1-10', 0), ('1-10', 10), ('1-5', 20)]
    >>> [(p.spec, p.offset) for p in split_array("5,30-32", 11, lowest=1)]
    [('1', 4), ('1-3', 29)]
    >>> split_array("1-10", 11, lowest=1) is None
    True
    """
    if max_array_size < 1:
        raise ConfigError(f"max_array_size must be at least 1, got {max_array_size}")
    if not 0 <= lowest < max_array_size:
        raise ConfigError(f"the lowest array index {lowest} must be in 0..{max_array_size - 1}")
    indices, throttle = array_indices(spec)
    if indices[0] < lowest:
        raise ConfigError(f"array_spec {spec!r}: index {indices[0]} is below {lowest}, "
                          f"the lowest index this scheduler accepts")
    if indices[-1] < max_array_size:
        return None
    tail = f"%{throttle}" if throttle is not None else ""
    parts: list[ArrayPart] = []
    i = 0
    while i < len(indices):
        # The part's first index becomes ``lowest`` on the scheduler's side.
        offset = indices[i] - lowest
        j = i
        while j < len(indices) and indices[j] - offset < max_array_size:
            j += 1
        shifted = [k - offset for k in indices[i:j]]
        parts.append(ArrayPart(compress_indices(shifted) + tail, offset, len(shifted)))
        i = j
    return parts


def part_ids(scheduler_job_id: str | None) -> list[str]:
    """The scheduler ids of a (possibly split) molq job."""
    if not scheduler_job_id:
        return []
    return [p for p in scheduler_job_id.split(PART_SEPARATOR) if p]


def part_key(job_id: str, index: int) -> str:
    """The id a part is tracked under while its evidence is gathered."""
    return f"{job_id}#part{index}"


def owner_of(job_id: str) -> str:
    """The molq job id behind a part key (the id itself for a job that is not split)."""
    return job_id.split("#part", 1)[0]


def combine_parts(observation: Observation, owners: Mapping[str, tuple[str, Sequence[str]]]) -> Observation:
    """Evidence per molq job from evidence per part. ``owners`` maps each split job's id to
    (nothing but its id, the part keys). A job is described only when every part is: all parts
    with a status -> :func:`aggregate_parts`; all absent -> absent; all ended (or final) ->
    ended. Anything else (a part without an answer) is no evidence for the job this time."""
    statuses: dict[str, SchedulerStatus] = dict(observation.statuses)
    absent = set(observation.absent)
    ended = set(observation.ended)
    for job_id, (_same, keys) in owners.items():
        got = [(k, observation.statuses[k]) for k in keys if k in observation.statuses]
        for k in keys:
            statuses.pop(k, None)
            absent.discard(k)
        gone = [k for k in keys if k in observation.absent]
        over = [k for k in keys if k in observation.ended]
        ended.difference_update(keys)
        if len(got) == len(keys):
            statuses[job_id] = aggregate_parts([(k.rsplit("#part", 1)[1], s) for k, s in got], kind="array part")
        elif len(gone) == len(keys):
            absent.add(job_id)
        elif over and len(over) + len(got) == len(keys) and all(s.state.is_terminal for _k, s in got):
            ended.add(job_id)
    pending = {k for k in observation.usage_pending if "#part" not in k}
    pending.update(job_id for job_id, (_same, keys) in owners.items()
                   if any(k in observation.usage_pending for k in keys))
    return Observation(statuses, frozenset(absent), observation.problems, frozenset(ended), frozenset(pending))

"""Splitting arrays above a site's limit (molq.arrays): the parts, their specs and offsets, and
one job's evidence from its parts'."""

from __future__ import annotations

import random

import pytest
from molq.arrays import array_indices, combine_parts, compress_indices, part_key, split_array
from molq.errors import ConfigError
from molq.evidence import Observation
from molq.model import JobState, SchedulerStatus


def _covered(parts) -> list[int]:
    out = []
    for part in parts:
        shifted, _ = array_indices(part.spec)
        out.extend(part.offset + k for k in shifted)
    return out


def test_an_array_within_the_limit_is_not_split() -> None:
    assert split_array("0-10000%50", 10001) is None
    assert split_array("1,5,9", 10) is None


def test_parts_keep_every_index_once_below_the_limit_and_the_throttle() -> None:
    parts = split_array("0-25000%50", 10001)
    assert parts is not None and len(parts) == 3
    assert [p.offset for p in parts] == [0, 10001, 20002]
    assert all(p.spec.endswith("%50") for p in parts)
    for part in parts:
        shifted, throttle = array_indices(part.spec)
        assert max(shifted) < 10001 and throttle == 50
    assert _covered(parts) == list(range(25001))


@pytest.mark.parametrize("spec,limit", [("0-100:10", 30), ("3-7,1000-1002,5000", 4), ("7", 5), ("1-99999:7%3", 1001)])
def test_stepped_and_sparse_arrays(spec: str, limit: int) -> None:
    parts = split_array(spec, limit)
    indices, _ = array_indices(spec)
    assert parts is not None
    assert _covered(parts) == indices
    for part in parts:
        assert max(array_indices(part.spec)[0]) < limit


@pytest.mark.parametrize("spec,limit", [("1-25", 11), ("1-100:10", 30), ("3-7,1000-1002,5000", 4), ("7", 5),
                                        ("1-99999:7%3", 1001), ("2-3", 2)])
def test_parts_start_at_the_lowest_index_when_the_scheduler_has_one(spec: str, limit: int) -> None:
    # LSF: indices 1..MAX_JOB_ARRAY_SIZE, i.e. limit = MAX_JOB_ARRAY_SIZE + 1 and lowest 1.
    parts = split_array(spec, limit, lowest=1)
    indices, _ = array_indices(spec)
    assert parts is not None
    assert _covered(parts) == indices
    for part in parts:
        shifted = array_indices(part.spec)[0]
        assert shifted[0] == 1 and shifted[-1] < limit


def test_the_lowest_index_is_checked() -> None:
    assert split_array("1-10", 11, lowest=1) is None  # index 10 = MAX_JOB_ARRAY_SIZE fits
    with pytest.raises(ConfigError, match="index 0 is below 1"):
        split_array("0-30", 11, lowest=1)
    with pytest.raises(ConfigError):
        split_array("1-30", 1, lowest=1)  # no index would be allowed at all


def test_compress_is_the_inverse_of_expanding() -> None:
    rng = random.Random(19)
    for _ in range(200):
        indices = sorted(rng.sample(range(500), rng.randint(1, 60)))
        assert array_indices(compress_indices(indices))[0] == indices


def test_bad_specs_are_refused() -> None:
    for bad in ("5-3", "1-10:0", "a-b", ""):
        with pytest.raises(ConfigError):
            array_indices(bad)


def _st(state: JobState, code: int | None = None) -> SchedulerStatus:
    return SchedulerStatus(state, state.value.upper(), exit_code=code)


def test_one_job_from_its_parts() -> None:
    keys = [part_key("j", k) for k in range(3)]
    owners = {"j": ("j", keys)}
    ok, bad = _st(JobState.SUCCEEDED, 0), _st(JobState.FAILED, 3)
    done = combine_parts(Observation({keys[0]: ok, keys[1]: bad, keys[2]: ok}), owners)
    assert done.statuses["j"].state == JobState.FAILED and done.statuses["j"].exit_code == 3
    running = combine_parts(Observation({keys[0]: ok, keys[1]: _st(JobState.RUNNING), keys[2]: _st(JobState.QUEUED)}), owners)
    assert running.statuses["j"].state == JobState.RUNNING
    # A part without an answer: no evidence for the job, never "missing".
    partial = combine_parts(Observation({keys[0]: ok, keys[1]: ok}, absent=frozenset({keys[2]})), owners)
    assert "j" not in partial.statuses and "j" not in partial.absent
    gone = combine_parts(Observation(absent=frozenset(keys)), owners)
    assert gone.absent == frozenset({"j"}) and not gone.statuses
    other = combine_parts(Observation({"k": ok, keys[0]: ok}), owners)
    assert set(other.statuses) == {"k"}

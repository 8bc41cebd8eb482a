"""The SLURM state table: every code and long name SLURM prints maps to the intended molq state."""

from __future__ import annotations

import pytest
from molq.model import JobState
from molq_slurm.states import SHORT_TO_LONG, STATE_MAP, is_known_state, map_state, normalize_state

# What squeue's man page lists, with the molq state each must become (see states.py for why).
EXPECTED = {
    "BF": ("BOOT_FAIL", JobState.FAILED),
    "CA": ("CANCELLED", JobState.CANCELLED),
    "CD": ("COMPLETED", JobState.SUCCEEDED),
    "CF": ("CONFIGURING", JobState.QUEUED),
    "CG": ("COMPLETING", JobState.RUNNING),
    "DL": ("DEADLINE", JobState.TIMED_OUT),
    "F": ("FAILED", JobState.FAILED),
    "NF": ("NODE_FAIL", JobState.FAILED),
    "OOM": ("OUT_OF_MEMORY", JobState.FAILED),
    "PD": ("PENDING", JobState.QUEUED),
    "PR": ("PREEMPTED", JobState.FAILED),
    "R": ("RUNNING", JobState.RUNNING),
    "RD": ("RESV_DEL_HOLD", JobState.QUEUED),
    "RF": ("REQUEUE_FED", JobState.QUEUED),
    "RH": ("REQUEUE_HOLD", JobState.QUEUED),
    "RQ": ("REQUEUED", JobState.QUEUED),
    "RS": ("RESIZING", JobState.RUNNING),
    "RV": ("REVOKED", JobState.CANCELLED),
    "SE": ("SPECIAL_EXIT", JobState.FAILED),
    "SI": ("SIGNALING", JobState.RUNNING),
    "SO": ("STAGE_OUT", JobState.RUNNING),
    "ST": ("STOPPED", JobState.RUNNING),
    "S": ("SUSPENDED", JobState.RUNNING),
    "TO": ("TIMEOUT", JobState.TIMED_OUT),
}


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_every_compact_code_and_long_name_maps(code: str) -> None:
    long_name, state = EXPECTED[code]
    assert SHORT_TO_LONG[code] == long_name
    assert map_state(code) == state
    assert map_state(long_name) == state
    assert map_state(long_name.lower()) == state


def test_table_has_no_state_outside_the_documented_list() -> None:
    assert set(STATE_MAP) == {name for name, _ in EXPECTED.values()}


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("CANCELLED by 0", JobState.CANCELLED),
        ("CANCELLED by 1000", JobState.CANCELLED),
        ("TIMEOUT+", JobState.TIMED_OUT),
        ("  RUNNING  ", JobState.RUNNING),
        ("OUT_OF_MEMORY", JobState.FAILED),
        ("NODE_FAIL", JobState.FAILED),
    ],
)
def test_decorated_names_as_sacct_prints_them(raw: str, expected: JobState) -> None:
    assert map_state(raw) == expected


def test_unknown_state_is_never_terminal() -> None:
    assert not is_known_state("WARPING")
    assert normalize_state("WARPING") == "WARPING"
    assert map_state("WARPING") == JobState.QUEUED
    assert map_state("WARPING", started=True) == JobState.RUNNING
    assert not map_state("", started=True).is_terminal

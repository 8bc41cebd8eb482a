"""``molq submit`` and ``molq profile add`` take the same retry flags (--retry-on, --grow-memory,
--grow-max-memory, --grow-time, --grow-max-time): a bad value is a one-line error and nothing
is stored; a good one is the stored policy."""

from __future__ import annotations

import pytest
from clihelpers import cli_env, molq_runner
from molq import Cluster, Submitor
from molq.causes import EndCause
from molq.config import load_config
from molq.retry_rules import Grow


@pytest.fixture
def molq(molq_home, tmp_path):  # type: ignore[no-untyped-def]
    return molq_runner(cli_env(molq_home), tmp_path, timeout=120)


def _one_line(proc, needle: str) -> None:  # type: ignore[no-untyped-def]
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and needle in lines[0], proc.stderr


def _stored_policy(job_id: str):  # type: ignore[no-untyped-def]
    with Submitor(Cluster("local")) as sub:  # the CLI's store; the job may be another cluster's
        cluster, full = sub.store.resolve_job_id(None, job_id)
        return sub.store.internals(cluster, full).retry


BAD = [
    (["--grow-time", "0.5"], "--grow-time: Grow(time=...) must be a factor of at least 1"),
    (["--grow-max-time", "soon"], "--grow-max-time: Grow(time=...): max 'soon' is not a duration"),
    (["--grow-time", "2", "--grow-max-time", "-3h"], "--grow-max-time:"),
    (["--grow-max-memory", "lots"], "--grow-max-memory: Grow(memory=...): max 'lots' is not a memory size"),
    (["--grow-memory", "0"], "--grow-memory: Grow(memory=...) must be a factor of at least 1"),
]


def test_bad_growth_values_are_one_line_errors_and_store_nothing(molq) -> None:
    for args, needle in BAD:
        _one_line(molq("submit", *args, "--", "true", check=None), needle)
        _one_line(molq("profile", "add", "hpc", *args, check=None), needle)
    proc = molq("submit", "--grow-time", "twice", "--", "true", check=2)  # not a number: click says so
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: Invalid value for '--grow-time'")
    assert molq("list", "--all", "--json").stdout.strip() == "[]"
    assert "hpc" not in load_config().profiles


def test_submit_stores_the_rules_the_flags_give(molq) -> None:
    job = molq("submit", "--grow-time", "3", "--grow-max-time", "12h", "--grow-max-memory", "32G",
               "--", "true").stdout.split()[0]
    policy = _stored_policy(job)
    assert policy.max_attempts == 2  # a growth flag alone allows one retry
    assert policy.on_time_limit == Grow(time=3.0, max="12h")
    assert policy.on_out_of_memory == Grow(memory=1.5, max="32G")  # a cap alone keeps the default factor
    # 'none': no cap of molq's; the partition's limit still bounds a grown time.
    job = molq("submit", "--retries", "3", "--grow-time", "2", "--grow-max-time", "none", "--", "true").stdout.split()[0]
    policy = _stored_policy(job)
    assert policy.max_attempts == 4 and policy.on_time_limit == Grow(time=2.0, max=None)


def test_profiles_take_the_same_flags(molq) -> None:
    molq("profile", "add", "hpc", "--retry-on", "timeout", "--grow-time", "2.5", "--grow-max-time", "3d")
    policy = load_config().profiles["hpc"].retry
    assert policy is not None and policy.retry_on_causes == (EndCause.TIME_LIMIT,)
    assert policy.on_time_limit == Grow(time=2.5, max="3d") and policy.max_attempts == 2
    # The profile's rules reach its jobs.
    job = molq("submit", "-p", "hpc", "--", "true").stdout.split()[0]
    assert _stored_policy(job).on_time_limit == Grow(time=2.5, max="3d")

"""Jobs past the site's submit limit wait in molq on the real SLURM (molqacct, QOS molqtest).

These tests lower the shared QOS's MaxSubmitJobsPerUser, so they hold the SLURM lock
exclusively (as the fault tests do; run them under ``flock -x /tmp/molq-slurm.lock`` or with no
lock) and always put the QOS back (``=-1``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from molq import Cluster, JobScheduling, JobState, Submitor, SubState
from shims import CommandShim
from test_live_faults import exclusive_clusters  # noqa: F401 - the exclusive SLURM lock, as a fixture

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLEEP = "2"


def _set_limit(acct_cluster, value: int) -> None:
    proc = acct_cluster.run("sacctmgr", "-i", "modify", "qos", acct_cluster.qos, "set", f"MaxSubmitJobsPerUser={value}")
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def qos_limit(acct_cluster, exclusive_clusters) -> Iterator[Callable[[int], None]]:  # noqa: F811
    if not acct_cluster.qos:
        pytest.skip("the accounting cluster has no test QOS")
    try:
        yield lambda value: _set_limit(acct_cluster, value)
    finally:
        _set_limit(acct_cluster, -1)


def _submitor(acct_cluster, shim: CommandShim, tmp_path: Path, name: str) -> Submitor:
    env = dict(acct_cluster.env, PATH=shim.path_env()["PATH"])
    return Submitor(Cluster(name, "slurm", scheduler_options={"env": env}), jobs_dir=str(tmp_path / "jobs"))


def _enforces_limits(acct_cluster) -> bool:
    config = acct_cluster.run("scontrol", "show", "config").stdout
    match = re.search(r"^AccountingStorageEnforce\s*=\s*(\S+)", config, re.MULTILINE)
    return bool(match) and any(word in match.group(1) for word in ("limits", "qos", "safe"))


def test_jobs_past_the_qos_submit_limit_wait_in_molq_and_each_runs_once(acct_cluster, qos_limit, tmp_path):
    qos_limit(5)
    shim = CommandShim.install(tmp_path, "sbatch")
    sub = _submitor(acct_cluster, shim, tmp_path, "room-acct")
    jobs = [{"argv": ["sleep", SLEEP], "scheduling": JobScheduling(qos=acct_cluster.qos)} for _ in range(12)]
    handles = sub.submit_jobs(jobs)
    assert [h.error for h in handles] == [None] * 12
    assert [bool(h.scheduler_job_id) for h in handles] == [True] * 5 + [False] * 7
    assert len(shim.calls()) == 5  # no sbatch sure to be refused
    why = f"waiting for room: the site allows 5 submitted jobs (QOS {acct_cluster.qos})"
    for handle in handles[5:]:
        record = sub.get_job(handle.job_id)
        assert (record.state, record.sub_state, record.sub_state_reason) == (JobState.CREATED, SubState.HELD, why)
    # An array larger than the limit could ever allow is refused before anything is stored.
    before = len(sub.store.list_jobs("room-acct", include_terminal=True))
    with pytest.raises(Exception, match="the site allows 5 submitted jobs"):
        sub.submit_job(argv=["true"], scheduling=JobScheduling(qos=acct_cluster.qos, array_spec="1-6"))
    assert len(sub.store.list_jobs("room-acct", include_terminal=True)) == before
    final = sub.watch_jobs([h.job_id for h in handles], timeout=300, poll_interval=1)
    assert [r.state for r in final] == [JobState.SUCCEEDED] * 12
    calls = shim.calls()
    assert len(calls) == 12 and all(rc == 0 for _start, rc in calls)  # each job submitted exactly once
    assert len({r.scheduler_job_id for r in final}) == 12
    assert all(r.sub_state is None for r in final)


def test_a_refusal_for_a_limit_molq_did_not_know_holds_the_job(acct_cluster, qos_limit, tmp_path):
    # The test cluster enforces limits (tests/services/slurm.sh); without that sbatch would
    # never refuse, and this test would prove nothing.
    assert _enforces_limits(acct_cluster), "the accounting test cluster must set AccountingStorageEnforce=limits"
    shim = CommandShim.install(tmp_path, "sbatch")
    sub = _submitor(acct_cluster, shim, tmp_path, "room-acct-late")
    first = sub.submit_job(argv=["sleep", SLEEP], scheduling=JobScheduling(qos=acct_cluster.qos))  # reads: no limit
    qos_limit(2)
    handles = sub.submit_jobs([{"argv": ["sleep", SLEEP], "scheduling": JobScheduling(qos=acct_cluster.qos)}
                               for _ in range(4)], concurrency=1)
    assert [h.error for h in handles] == [None] * 4
    waiting = [h for h in handles if not h.scheduler_job_id]
    assert waiting
    for handle in waiting:
        record = sub.get_job(handle.job_id)
        assert record.state == JobState.CREATED and "submit limit" in (record.sub_state_reason or "")
    final = sub.watch_jobs([first.job_id] + [h.job_id for h in handles], timeout=300, poll_interval=1)
    assert [r.state for r in final] == [JobState.SUCCEEDED] * 5

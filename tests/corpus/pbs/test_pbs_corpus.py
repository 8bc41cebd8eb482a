"""The PBS corpus: real PBS Pro / OpenPBS and Torque answers (samples/*.toml), each run through
molq's public path with fake ``qsub``/``qstat``/``qdel`` first on PATH.

Every sample says where it came from and what it proves. Two levels are checked:

* the evidence the PBS backend draws from the answer (``scheduler_impl.observe`` /
  ``cancel_many`` / ``get_queue``): that part is the dialect's and must hold;
* the stored records after ``Submitor.refresh_jobs()`` / ``cancel_job()``. Where only the
  lifecycle engine is wrong (it is being rewritten), the check is an expected failure named
  ``engine: ...``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tomllib
from molq import Cluster, Submitor
from molq.errors import MolqError, SchedulerError
from molq.evidence import CancelOutcome
from molq.model import JobState, SubState
from molq.scheduler import TrackedJob
from molq.store import JobStore

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from fakecmd import FakeCommands, answer_of  # noqa: E402

SAMPLES = sorted((HERE / "samples").glob("*.toml"))


def load(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def by_kind(kind: str, *, records: bool = False) -> list[Any]:
    """Parameters for the samples of ``kind`` (``records``: for a test of the stored records)."""
    out = []
    for path in SAMPLES:
        sample = load(path)
        if sample["kind"] == kind:
            out.append(pytest.param(path, id=path.stem))
    return out


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(fake commands, make_submitor(flavor)) on a private MOLQ_HOME."""
    fake = FakeCommands(tmp_path / "fake" / "bin", commands=("qsub", "qstat", "qdel"))
    monkeypatch.setenv("PATH", fake.path_env())
    monkeypatch.setenv("MOLQ_HOME", str(tmp_path / "home"))
    # A cancel the fake never confirms waits this long, not the interactive default.
    monkeypatch.setattr("molq.engine.cancel.CONFIRM_SECONDS", 1.0)
    made: list[Submitor] = []

    def make(flavor: str = "pbspro") -> tuple[Cluster, Submitor]:
        from molq_pbs import PbsOptions

        cluster = Cluster("corpus", "pbs", scheduler_options=PbsOptions(flavor=flavor, command_timeout=20))
        sub = Submitor(cluster, store=JobStore(tmp_path / "home" / "jobs.db"), jobs_dir=str(tmp_path / "jobs"))
        made.append(sub)
        return cluster, sub

    yield fake, make
    for sub in made:
        sub.close()


def submit_as(fake: FakeCommands, sub: Submitor, ids: list[str]) -> list[str]:
    """Submit one job per scheduler id (qsub answers with those ids); their molq ids."""
    fake.set("qsub", *[{"stdout": f"{sid}\n"} for sid in ids])
    return [sub.submit_job(argv=["true"]).job_id for _ in ids]


def tracked(sub: Submitor, job_ids: list[str]) -> list[TrackedJob]:
    out = []
    for jid in job_ids:
        rec = sub.get_job(jid)
        out.append(TrackedJob(jid, rec.scheduler_job_id, rec.job_dir or "", rec.submitted_at or time.time()))
    return out


def test_the_corpus_is_large_enough():
    kinds: dict[str, int] = {}
    for path in SAMPLES:
        sample = load(path)
        assert sample.get("source"), f"{path.name}: every sample says where it came from"
        kinds[sample["kind"]] = kinds.get(sample["kind"], 0) + 1
    assert len(SAMPLES) >= 40, kinds


# -- status answers ------------------------------------------------------------------------


def check_status(expect: dict[str, Any], status: Any, where: str, reason: str | None = None) -> None:
    """``status``: a SchedulerStatus or a stored JobRecord (whose reason is given apart)."""
    assert status.state.value == expect["state"], (where, status)
    if "exit_code" in expect:
        assert status.exit_code == expect["exit_code"], (where, status)
    if "exit_signal" in expect:
        assert status.exit_signal == expect["exit_signal"], (where, status)
    if "end_cause" in expect:
        assert status.end_cause is not None and status.end_cause.value == expect["end_cause"], (where, status)
    for key, value in expect.get("usage", {}).items():
        assert status.usage is not None and getattr(status.usage, key) == value, (where, key, status.usage)
    if "sub_state" in expect:
        want = None if expect["sub_state"] == "none" else SubState(expect["sub_state"])
        assert status.sub_state == want, (where, status)
    if "sub_state_reason" in expect:
        assert status.sub_state_reason == (None if expect["sub_state_reason"] == "none" else expect["sub_state_reason"]), (
            where, status)
    if "reason_contains" in expect:
        said = reason if reason is not None else getattr(status, "reason", None)
        assert expect["reason_contains"].lower() in (said or "").lower(), (where, status, said)


@pytest.mark.parametrize("path", by_kind("status"))
def test_status_sample_evidence(path: Path, world) -> None:
    """What the backend concludes from the answer: the dialect's part, always right."""
    fake, make = world
    sample = load(path)
    cluster, sub = make(sample.get("flavor", "pbspro"))
    expects = sample.get("expect", [])
    job_ids = submit_as(fake, sub, [e["id"] for e in expects] or ["1.srv"])
    fake.set("qstat", answer_of(sample))
    obs = cluster.scheduler_impl.observe(tracked(sub, job_ids))
    if "problem_contains" in sample:
        assert obs.statuses == {} and obs.absent == frozenset()
        assert any(sample["problem_contains"].lower() in p.lower() for p in obs.problems), obs.problems
    for expect, jid in zip(expects, job_ids):
        evidence = expect.get("evidence", "status")
        if evidence == "status":
            check_status(expect, obs.statuses[jid], expect["id"])
            assert jid not in obs.absent
        elif evidence == "none":  # unreadable or not attributable: no evidence, never missing
            assert jid not in obs.statuses and jid not in obs.absent, obs
        else:
            assert evidence == "absent"
            assert jid in obs.absent and jid not in obs.statuses, obs


@pytest.mark.parametrize("path", by_kind("status", records=True))
def test_status_sample_records(path: Path, world) -> None:
    """What the stored records say after one refresh with that answer."""
    fake, make = world
    sample = load(path)
    cluster, sub = make(sample.get("flavor", "pbspro"))
    expects = sample.get("expect", [])
    job_ids = submit_as(fake, sub, [e["id"] for e in expects] or ["1.srv"])
    fake.set("qstat", answer_of(sample))
    sub.refresh_jobs()
    for expect, jid in zip(expects, job_ids):
        record = sub.get_job(jid)
        evidence = expect.get("evidence", "status")
        internal = sub.store.get_internal("corpus", jid)
        if evidence == "status":
            last = sub.get_transitions(jid)[-1]
            check_status(expect, record, expect["id"], reason=f"{record.failure_reason} {last.reason}")
            assert internal["missing_count"] == 0
        else:
            assert record.state is JobState.SUBMITTED, record
            if evidence == "none":
                assert internal["missing_count"] == 0, "no evidence must never count as missing"
    if "problem_contains" in sample:
        assert all(sub.get_job(j).state is JobState.SUBMITTED for j in job_ids)


# -- cancel answers ------------------------------------------------------------------------


@pytest.mark.parametrize("path", by_kind("cancel"))
def test_cancel_sample_outcome(path: Path, world) -> None:
    fake, make = world
    sample = load(path)
    cluster, sub = make(sample.get("flavor", "pbspro"))
    expects = sample["expect"]
    job_ids = submit_as(fake, sub, [e["id"] for e in expects])
    fake.set("qdel", answer_of(sample))
    jobs = tracked(sub, job_ids)
    if any(e["outcome"] == "refused" for e in expects):
        with pytest.raises(SchedulerError):
            cluster.scheduler_impl.cancel_many(jobs)
        return
    outcomes = cluster.scheduler_impl.cancel_many(jobs)
    assert {e["id"]: outcomes[j].value for e, j in zip(expects, job_ids)} == {
        e["id"]: CancelOutcome(e["outcome"]).value for e in expects
    }


@pytest.mark.parametrize("path", by_kind("cancel", records=True))
def test_cancel_sample_records(path: Path, world) -> None:
    """``cancel_job``: a refused cancel stops nothing and changes nothing; a job that had
    already ended keeps its real end (here qstat no longer knows it: it stays open)."""
    fake, make = world
    sample = load(path)
    cluster, sub = make(sample.get("flavor", "pbspro"))
    expects = sample["expect"]
    job_ids = submit_as(fake, sub, [e["id"] for e in expects])
    fake.set("qdel", answer_of(sample))
    fake.set("qstat", {"stdout": sample.get("qstat_stdout", ""), "stderr": sample.get("qstat_stderr", ""),
                          "returncode": int(sample.get("qstat_returncode", 0))})
    refused = any(e["outcome"] == "refused" for e in expects)
    if refused:
        with pytest.raises(MolqError):
            sub.cancel_jobs(job_ids)
    else:
        sub.cancel_jobs(job_ids)
    for expect, jid in zip(expects, job_ids):
        record = sub.get_job(jid)
        if expect["outcome"] in ("refused", "already_ended"):
            assert record.state is not JobState.CANCELLED, record
        if "final_state" in expect:
            assert record.state.value == expect["final_state"], record


# -- submit answers ------------------------------------------------------------------------


@pytest.mark.parametrize("path", by_kind("submit"))
def test_submit_sample(path: Path, world) -> None:
    fake, make = world
    sample = load(path)
    cluster, sub = make(sample.get("flavor", "pbspro"))
    fake.set("qsub", answer_of(sample))
    if "expect_id" in sample:
        handle = sub.submit_job(argv=["true"])
        record = sub.get_job(handle.job_id)
        assert (record.state, record.scheduler_job_id) == (JobState.SUBMITTED, sample["expect_id"])
        return
    with pytest.raises(MolqError) as info:
        sub.submit_job(argv=["true"])
    assert sample["error_contains"].lower() in str(info.value).lower()
    (record,) = sub.list_jobs(include_terminal=True)
    assert record.scheduler_job_id is None and record.state is not JobState.SUBMITTED


# -- queue answers -------------------------------------------------------------------------


@pytest.mark.parametrize("path", by_kind("queue"))
def test_queue_sample(path: Path, world) -> None:
    fake, make = world
    sample = load(path)
    cluster, _sub = make(sample.get("flavor", "pbspro"))
    fake.set("qstat", answer_of(sample))
    entries = cluster.get_queue(user=sample["user"])
    got = [[e.scheduler_job_id, e.state.value, e.user] for e in entries]
    assert got == sample["expect_entries"]
    subs = {e.scheduler_job_id: e.sub_state.value if e.sub_state else "none" for e in entries}
    for sid, want in sample.get("expect_sub_states", {}).items():
        assert subs[sid] == want, (sid, subs)


# -- flavour -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", by_kind("version"))
def test_version_sample_picks_the_flavour(path: Path, world) -> None:
    fake, make = world
    sample = load(path)
    fake.set("qstat", answer_of(sample))
    cluster, _sub = make("auto")
    if "expect_flavor" in sample:
        assert cluster.scheduler_impl.dialect.flavor == sample["expect_flavor"]
        assert fake.argvs("qstat") == [["--version"]]
        cluster.scheduler_impl  # noqa: B018 -- built once: no second probe
        assert len(fake.argvs("qstat")) == 1
    else:
        with pytest.raises(MolqError, match="flavor="):
            cluster.scheduler_impl  # noqa: B018


# -- a follow-up qstat -------------------------------------------------------------------------


def test_a_follow_up_qstat_that_says_running_keeps_the_job_alive(world) -> None:
    """The first qstat of a refresh does not show the job (a reply from a server that had not
    yet registered it); the follow-up qstat for that one id says R. The job is alive: running,
    never counted missing."""
    fake, make = world
    _cluster, sub = make("pbspro")
    (jid,) = submit_as(fake, sub, ["4501.pbs01"])
    running = load(HERE / "samples" / "pro_one_unknown_one_running.toml")
    fake.set(
        "qstat",
        {"stdout": "", "stderr": "qstat: Unknown Job Id 4501.pbs01\n", "returncode": 153},
        answer_of(running),
    )
    sub.refresh_jobs()
    record = sub.get_job(jid)
    assert record.state is JobState.RUNNING
    assert sub.store.get_internal("corpus", jid)["missing_count"] == 0
    calls = fake.argvs("qstat")
    assert len(calls) == 2 and all(c[-1] == "4501.pbs01" for c in calls)

"""Every LSF sample of the corpus through molq's public path.

Fake ``bsub``/``bjobs``/``bkill`` on PATH print each sample's recorded text; a
``Cluster("c", scheduler="lsf")`` and a ``Submitor`` on a private store then submit, refresh,
list and cancel, and the stored records must say what the sample's ``[expect]`` table says.
Each sample names its public source; samples transcribed into the ``bjobs -o ... -json`` form
molq requests say so (``transcribed = true``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib
from molq import Cluster, JobState, JobStore, Submitor, SubState
from molq.batch import RetrySettings
from molq.errors import SchedulerError, SubmitError
from molq.evidence import CancelOutcome
from molq.scheduler import TrackedJob

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from fakecmd import FakeCommands, answer_of  # noqa: E402

SAMPLES = {p.stem: p for p in sorted((HERE / "samples").glob("*.toml"))}



def load(name: str) -> dict[str, Any]:
    data = tomllib.loads(SAMPLES[name].read_text(encoding="utf-8"))
    assert data.get("source"), f"{name}: every sample names its source"
    return data


def of_kind(kind: str) -> list[str]:
    return [name for name in SAMPLES if load(name)["kind"] == kind]


def use_timeout(sub: Submitor, sample: dict[str, Any]) -> None:
    """A sample of a hanging command sets how long molq waits for it."""
    if "command_timeout" in sample:
        sub.scheduler.retry = RetrySettings(initial_delay=0.0, command_timeout=sample["command_timeout"])


@pytest.fixture
def fake(tmp_path, monkeypatch) -> FakeCommands:
    fake = FakeCommands(tmp_path / "bin", commands=("bsub", "bjobs", "bkill", "bparams"))
    monkeypatch.setenv("PATH", f"{fake.bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MOLQ_HOME", str(tmp_path / "home"))
    # A cancel the fake never confirms waits this long, not the interactive default.
    monkeypatch.setattr("molq.engine.cancel.CONFIRM_SECONDS", 1.0)
    return fake


@pytest.fixture
def submitor(fake, tmp_path):
    cluster = Cluster("c", scheduler="lsf")
    cluster.scheduler_impl.retry = RetrySettings(initial_delay=0.0)
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    sub = Submitor(cluster, store=store, jobs_dir=tmp_path / "jobs")
    yield sub
    store.close()


def submit(sub: Submitor, fake: FakeCommands, sids: list[str]) -> dict[str, str]:
    """Submit one job per scheduler id; molq job id by scheduler id."""
    fake.set("bsub", *[{"stdout": f"Job <{sid}> is submitted to queue <normal>.\n"} for sid in sids])
    return {sid: sub.submit_job(argv=["true"]).job_id for sid in sids}


def tracked(sub: Submitor, job_ids: dict[str, str]) -> list[TrackedJob]:
    out = []
    for sid, jid in job_ids.items():
        rec = sub.get_job(jid)
        out.append(TrackedJob(jid, sid, rec.job_dir or "", rec.submitted_at))
    return out


def running_json(sids: list[str]) -> str:
    return json.dumps({"COMMAND": "bjobs", "JOBS": len(sids), "RECORDS": [
        {"JOBID": sid, "JOBINDEX": "0", "STAT": "RUN", "EXIT_CODE": "", "EXIT_REASON": "",
         "PEND_REASON": "", "SUBMIT_TIME": "", "START_TIME": "", "FINISH_TIME": ""} for sid in sids]})


def status_ids(expect: dict[str, Any]) -> list[str]:
    return [*expect.get("jobs", {}), *expect.get("no_evidence", []), *expect.get("absent", [])]


def test_corpus_is_big_enough_and_every_sample_names_its_source():
    assert len(SAMPLES) >= 40
    kinds = {load(n)["kind"] for n in SAMPLES}
    assert kinds == {"status", "submit", "cancel", "queue", "limits"}


# -- status: the dialect's evidence --------------------------------------------------------------


@pytest.mark.parametrize("name", of_kind("status"))
def test_status_evidence(name, fake, submitor):
    sample = load(name)
    expect = sample["expect"]
    job_ids = submit(submitor, fake, status_ids(expect))
    fake.set("bjobs", answer_of(sample))
    use_timeout(submitor, sample)
    seen = submitor.scheduler.observe(tracked(submitor, job_ids))
    for sid, want in expect.get("jobs", {}).items():
        got = seen.statuses.get(job_ids[sid])
        assert got is not None, f"{name}: no status for {sid} ({seen.problems})"
        assert got.state.value == want["state"], f"{name}: {sid}"
        if "exit_code" in want:
            assert got.exit_code == want["exit_code"], f"{name}: {sid}"
        if "exit_signal" in want:
            assert got.exit_signal == want["exit_signal"], f"{name}: {sid}"
        if "reason" in want:
            assert want["reason"] in (got.reason or ""), f"{name}: {sid}: {got.reason!r}"
        if "raw_state" in want:
            assert got.raw_state == want["raw_state"], f"{name}: {sid}"
        if "end_cause" in want:
            assert got.end_cause is not None and got.end_cause.value == want["end_cause"], f"{name}: {sid}"
        _check_usage(got.usage, want, f"{name}: {sid}")
        _check_sub_state(got, want, f"{name}: {sid}")
        assert job_ids[sid] not in seen.absent
    for sid in expect.get("no_evidence", []):
        assert job_ids[sid] not in seen.statuses and job_ids[sid] not in seen.absent, f"{name}: {sid}"
    for sid in expect.get("absent", []):
        assert job_ids[sid] in seen.absent, f"{name}: {sid}"
    if expect.get("problem"):
        assert any(expect["problem"] in p for p in seen.problems), seen.problems


def _check_usage(usage: Any, want: dict[str, Any], where: str) -> None:
    """``usage``: each field the sample names (``usage = "none"``: no usage at all)."""
    if want.get("usage") == "none":
        assert usage is None, f"{where}: usage {usage}"
        return
    for key, value in want.get("usage", {}).items():
        assert usage is not None and getattr(usage, key) == value, f"{where}: usage.{key} of {usage}"


def _check_sub_state(got: Any, want: dict[str, Any], where: str) -> None:
    """``sub_state`` / ``sub_state_reason`` of a status, record or queue entry ("none": None)."""
    if "sub_state" in want:
        expected = None if want["sub_state"] == "none" else SubState(want["sub_state"])
        assert got.sub_state == expected, f"{where}: sub_state {got.sub_state}"
    if "sub_state_reason" in want:
        assert got.sub_state_reason == (None if want["sub_state_reason"] == "none" else want["sub_state_reason"]), where


# -- status: the stored records after Submitor.refresh_jobs() ------------------------------------


def _refresh_params() -> list[Any]:
    out = []
    for name in of_kind("status"):
        out.append(pytest.param(name))
    return out


@pytest.mark.parametrize("name", _refresh_params())
def test_refresh_records(name, fake, submitor):
    sample = load(name)
    expect = sample["expect"]
    job_ids = submit(submitor, fake, status_ids(expect))
    fake.set("bjobs", answer_of(sample))
    use_timeout(submitor, sample)
    submitor.refresh_jobs()
    for sid, want in expect.get("jobs", {}).items():
        rec = submitor.get_job(job_ids[sid])
        assert rec.state.value == want["state"], f"{name}: {sid}: {rec.state}"
        if rec.state.is_terminal and "exit_code" in want:
            assert rec.exit_code == want["exit_code"], f"{name}: {sid}"
        if rec.state.is_terminal and "end_cause" in want:
            assert rec.end_cause is not None and rec.end_cause.value == want["end_cause"], f"{name}: {sid}"
        if rec.state.is_terminal:
            _check_usage(rec.usage, want, f"{name}: {sid} (stored)")
        _check_sub_state(rec, want, f"{name}: {sid}")
    for sid in [*expect.get("no_evidence", [])]:
        rec = submitor.get_job(job_ids[sid])
        internal = submitor.store.get_internal("c", job_ids[sid])
        # No evidence: nothing changes, and it is not a miss either.
        assert rec.state == JobState.SUBMITTED and internal["missing_count"] == 0, f"{name}: {sid}"
    for sid in expect.get("absent", []):
        assert submitor.store.get_internal("c", job_ids[sid])["missing_count"] == 1, f"{name}: {sid}"


# -- submit -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", of_kind("submit"))
def test_submit(name, fake, submitor):
    sample = load(name)
    expect = sample["expect"]
    fake.set("bsub", answer_of(sample))
    if "error" in expect:
        with pytest.raises(SubmitError) as info:
            submitor.submit_job(argv=["true"])
        assert expect["error"] in str(info.value) + info.value.stderr
        [rec] = submitor.list_jobs(include_terminal=True)
        assert rec.state == JobState.FAILED and rec.scheduler_job_id is None
        assert len(fake.argvs("bsub")) == expect.get("attempts", 1)
    else:
        handle = submitor.submit_job(argv=["true"])
        assert handle.scheduler_job_id == expect["scheduler_id"]
        assert submitor.get_job(handle.job_id).state == JobState.SUBMITTED


# -- the site's array limit (bparams -a) ---------------------------------------------------------


@pytest.mark.parametrize("name", of_kind("limits"))
def test_array_limit(name, fake, submitor):
    from molq.array_runner import max_array_size

    sample = load(name)
    want = sample["expect"]["max_array_size"]
    fake.set("bparams", answer_of(sample))
    sched = submitor.scheduler
    assert max_array_size(sched) == (None if want == "none" else want)
    first = len(fake.argvs("bparams"))
    assert max_array_size(sched) == (None if want == "none" else want)
    # A value is read once per scheduler; a failed read is asked again next time.
    assert len(fake.argvs("bparams")) == (2 * first if want == "none" else 1)
    assert fake.argvs("bparams")[0] == ["-a"]


# -- queue --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", of_kind("queue"))
def test_get_queue(name, fake, submitor):
    sample = load(name)
    expect = sample["expect"]
    fake.set("bjobs", answer_of(sample))
    if "error" in expect:
        with pytest.raises(SchedulerError) as info:
            submitor.target.get_queue()
        assert expect["error"] in str(info.value)
        return
    entries = submitor.target.get_queue()
    got = [{"id": e.scheduler_job_id, "name": e.name, "state": e.state.value, "user": e.user}
           for e in entries]
    want = [{"id": w["id"], "name": w.get("name"), "state": w["state"], "user": w.get("user")}
            for w in expect["entries"]]
    assert got == want
    for entry, w in zip(entries, expect["entries"]):
        _check_sub_state(entry, w, f"{name}: {entry.scheduler_job_id}")


# -- cancel -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", of_kind("cancel"))
def test_cancel_outcome(name, fake, submitor):
    sample = load(name)
    expect = sample["expect"]
    sids = list(expect.get("outcomes", {})) or expect["ids"]
    job_ids = submit(submitor, fake, sids)
    fake.set("bkill", answer_of(sample))
    jobs = tracked(submitor, job_ids)
    if "error" in expect:
        with pytest.raises(SchedulerError) as info:
            submitor.scheduler.cancel_many(jobs)
        assert expect["error"] in str(info.value)
        return
    outcomes = submitor.scheduler.cancel_many(jobs)
    assert {sid: outcomes[job_ids[sid]] for sid in sids} == {
        sid: CancelOutcome(v) for sid, v in expect["outcomes"].items()
    }


def _cancel_params() -> list[Any]:
    out = []
    for name in of_kind("cancel"):
        out.append(pytest.param(name))
    return out


@pytest.mark.parametrize("name", _cancel_params())
def test_cancel_records(name, fake, submitor):
    """A cancel is recorded only as what LSF then reports: killed jobs end CANCELLED
    (TERM_OWNER), jobs that had already finished keep their real end."""
    sample = load(name)
    expect = sample["expect"]
    sids = list(expect.get("outcomes", {})) or expect["ids"]
    job_ids = submit(submitor, fake, sids)
    fake.set("bjobs", {"stdout": running_json(sids)})
    submitor.refresh_jobs()
    after = []
    for sid in sids:
        if expect.get("outcomes", {}).get(sid) == "requested":
            after.append({"JOBID": sid, "STAT": "EXIT", "EXIT_CODE": "130",
                          "EXIT_REASON": "TERM_OWNER: job killed by owner"})
        else:
            after.append({"JOBID": sid, "STAT": "DONE" if "outcomes" in expect else "RUN", "EXIT_CODE": ""})
    # The refresh inside cancel sees them running; later refreshes see what LSF did.
    fake.set("bjobs", {"stdout": running_json(sids)},
                {"stdout": json.dumps({"COMMAND": "bjobs", "JOBS": len(after), "RECORDS": after})})
    fake.set("bkill", answer_of(sample))
    if "error" in expect:
        with pytest.raises(SchedulerError):
            submitor.cancel_jobs(list(job_ids.values()))
    else:
        submitor.cancel_jobs(list(job_ids.values()))
    submitor.refresh_jobs()
    for sid in sids:
        rec = submitor.get_job(job_ids[sid])
        outcome = expect.get("outcomes", {}).get(sid)
        want = {"requested": JobState.CANCELLED, "already_ended": JobState.SUCCEEDED}.get(
            outcome, JobState.RUNNING)
        assert rec.state == want, f"{name}: {sid}: {rec.state}"

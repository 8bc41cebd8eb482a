"""Real SLURM text through molq's public path: the corpus in ``tests/corpus/slurm``.

Each sample is scheduler output gathered from a public source (or captured on the real SLURM
22.05 of the test services), with where it came from and what molq must conclude. Fake
``sbatch``/``squeue``/``sacct``/``scontrol``/``scancel`` on PATH print it; molq is driven only
through ``Cluster`` and ``Submitor``. Two checks per sample:

* the evidence (``Cluster.scheduler_impl.observe`` / ``cancel_many`` / ``get_queue`` /
  ``submit_job``): what the SLURM dialect read from the text -- must always hold;
* the stored record after ``Submitor.refresh_jobs()`` / ``cancel_job()``: what the lifecycle
  engine made of it. Where only the engine is wrong today, the sample says so in
  ``engine_xfail`` and the check is a strict xfail.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "corpus"))

from fakecmd import FakeCommands, load_samples, on_path, sample_answers  # noqa: E402
from molq import Cluster, Submitor  # noqa: E402
from molq.causes import EndCause, cause_from_exit  # noqa: E402
from molq.errors import SchedulerError, SubmitError  # noqa: E402
from molq.evidence import CancelOutcome  # noqa: E402
from molq.model import JobState, SubState  # noqa: E402
from molq.scheduler import TrackedJob  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "slurm"
SAMPLES = load_samples(CORPUS)
BY_KIND: dict[str, list[tuple[str, dict[str, Any]]]] = {}
for _name, _sample in SAMPLES:
    BY_KIND.setdefault(_sample["kind"], []).append((_name, _sample))

#: What the fake commands answer when a sample does not say: nothing is queued, accounting
#: knows nothing, the controller remembers nothing, a cancel is accepted.
DEFAULTS = {
    "squeue": {"stdout": ""},
    "sacct": {"stdout": ""},
    "scontrol": {"stdout": "No jobs in the system\n"},
    "scancel": {"stdout": ""},
    # No accounting storage: no submit limits to read.
    "sacctmgr": {"returncode": 1, "stderr": "You are not running a supported accounting_storage plugin\n"},
}


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCommands:
    # A cancel the fake never confirms waits this long, not the interactive default.
    monkeypatch.setattr("molq.engine.cancel.CONFIRM_SECONDS", 1.0)
    return on_path(tmp_path, monkeypatch)


def _ids(sample: dict[str, Any]) -> list[str]:
    return list(sample.get("expect", {}).get("jobs", {}))


def _install(fakes: FakeCommands, sample: dict[str, Any], tags: dict[str, str] | None = None) -> None:
    """The sample's answers on PATH. ``{now}``/``{later}`` in an answer become the current time
    (and a minute later) and ``{tag}`` (or ``{tag:<scheduler id>}`` where a sample has several
    jobs) the molq tag of the job: records that must look like the job molq submitted."""
    now = int(time.time())
    given: dict[str, list[dict[str, Any]]] = {}
    for command, answer in sample_answers(sample):
        for key in ("stdout", "stderr"):
            text = answer[key].replace("{now}", str(now)).replace("{later}", str(now + 60))
            for sid, tag in (tags or {}).items():
                text = text.replace("{tag:" + sid + "}", tag).replace("{tag}", tag)
            answer[key] = text
        given.setdefault(command, []).append(answer)
    for command, default in DEFAULTS.items():
        if command not in given:
            fakes.set(command, default)
    for command, answers in given.items():
        fakes.set(command, *answers)


def _submitor(fakes: FakeCommands, tmp_path: Path, sample: dict[str, Any]) -> tuple[Submitor, dict[str, str]]:
    """A Submitor on a private store with one submitted job per expected scheduler id."""
    ids = _ids(sample)
    fakes.set("sbatch", *[f"{sid}\n" for sid in ids] or ["1\n"])
    cluster = Cluster("corpus", "slurm", scheduler_options={"retry_attempts": 1, "retry_initial_delay": 0.0})
    submitor = Submitor(cluster, jobs_dir=str(tmp_path / "jobs"))
    jobs = {}
    for sid in ids:
        handle = submitor.submit_job(command="true")
        assert submitor.get_job(handle.job_id).scheduler_job_id == sid
        jobs[sid] = handle.job_id
        # The samples were recorded on real clusters in the past: molq must have submitted
        # these jobs before that, or the id-reuse check (submit time) rightly calls the
        # records another job's.
        submitor.store.update_job("corpus", handle.job_id, submitted_at=1.0)
    _install(fakes, sample, {sid: f"molq-{job_id}" for sid, job_id in jobs.items()})
    return submitor, jobs


def _none(value: Any) -> Any:
    return None if value == "none" else value


def _check(actual: Any, want: dict[str, Any], what: str) -> None:
    if "state" in want:
        assert actual.state == JobState(want["state"]), what
    for key in ("exit_code", "exit_signal", "sub_state_reason"):
        if key in want:
            assert getattr(actual, key) == _none(want[key]), f"{what}: {key}"
    if "end_cause" in want:
        # Evidence may leave the cause to what its state and exit status imply.
        cause = actual.end_cause or cause_from_exit(actual.state, actual.exit_code, actual.exit_signal)
        assert cause == EndCause(want["end_cause"]), f"{what}: end_cause {cause}"
    for key, value in want.get("usage", {}).items():
        assert actual.usage is not None, f"{what}: no usage"
        got = getattr(actual.usage, key)
        if isinstance(value, float):
            assert got == pytest.approx(value, rel=1e-3), f"{what}: usage.{key}"
        else:
            assert got == value, f"{what}: usage.{key}"
    if "sub_state" in want:
        expected = None if want["sub_state"] == "none" else SubState(want["sub_state"])
        assert actual.sub_state == expected, f"{what}: sub_state {actual.sub_state}"


def _params(kind: str, engine_key: str | None = None) -> list[Any]:
    out = []
    for name, sample in BY_KIND.get(kind, []):
        marks = []
        if engine_key and sample.get(engine_key):
            marks.append(pytest.mark.xfail(reason=sample[engine_key], strict=True))
        out.append(pytest.param(sample, id=name, marks=marks))
    return out


def test_the_corpus_is_big_enough_and_says_where_each_sample_came_from() -> None:
    assert len(SAMPLES) >= 40
    for name, sample in SAMPLES:
        assert sample.get("source", "").strip(), name
        assert sample["kind"] in {"refresh", "cancel", "submit", "queue", "limits"}, name
        if sample.get("transcribed"):
            assert sample.get("note", "").strip(), f"{name}: say what was transcribed"


# -- refresh: squeue / sacct / scontrol answers ----------------------------------------------------


@pytest.mark.parametrize("sample", _params("refresh", "evidence_xfail"))
def test_evidence_read_from_the_sample(sample: dict[str, Any], fakes: FakeCommands, tmp_path: Path) -> None:
    submitor, jobs = _submitor(fakes, tmp_path, sample)
    sched = submitor.scheduler
    tracked = [TrackedJob(job_id, sid, str(tmp_path / "nowhere"), submitor.get_job(job_id).submitted_at)
               for sid, job_id in jobs.items()]
    observation = sched.observe(tracked)
    for sid, want in sample["expect"]["jobs"].items():
        job_id = jobs[sid]
        evidence = want.get("evidence", "status")
        if evidence == "none":
            # A failed or partial answer: no evidence, and above all not "absent".
            assert job_id not in observation.statuses, sid
            assert job_id not in observation.absent, sid
        elif evidence == "absent":
            assert job_id in observation.absent, sid
        else:
            assert job_id in observation.statuses, (sid, observation)
            _check(observation.statuses[job_id], want, sid)
    for text in sample["expect"].get("problems_mention", []):
        assert any(text in p for p in observation.problems), observation.problems


@pytest.mark.parametrize("sample", _params("refresh", "engine_xfail"))
def test_records_after_a_refresh(sample: dict[str, Any], fakes: FakeCommands, tmp_path: Path) -> None:
    submitor, jobs = _submitor(fakes, tmp_path, sample)
    submitor.refresh_jobs()
    for sid, want in sample["expect"]["jobs"].items():
        record = submitor.get_job(jobs[sid])
        if want.get("evidence") == "none":
            assert record.state == JobState.SUBMITTED, sid
            assert submitor.store.get_internal("corpus", jobs[sid])["missing_count"] == 0, sid
            continue
        if want.get("evidence") == "absent":
            assert not record.is_terminal, sid
            continue
        _check(record, want, sid)
        if "reason_contains" in want:
            assert want["reason_contains"] in (record.failure_reason or ""), (sid, record.failure_reason)


# -- cancel ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", _params("cancel"))
def test_cancel_answer_read_from_the_sample(sample: dict[str, Any], fakes: FakeCommands, tmp_path: Path) -> None:
    submitor, jobs = _submitor(fakes, tmp_path, sample)
    tracked = [TrackedJob(job_id, sid, str(tmp_path)) for sid, job_id in jobs.items()]
    outcomes = sample["expect"]["outcomes"]
    if "refused" in outcomes.values():
        with pytest.raises(SchedulerError):
            submitor.scheduler.cancel_many(tracked)
        return
    got = submitor.scheduler.cancel_many(tracked)
    assert {sid: got[job_id] for sid, job_id in jobs.items()} == {
        sid: CancelOutcome(outcome) for sid, outcome in outcomes.items()
    }


@pytest.mark.parametrize("sample", _params("cancel", "engine_xfail"))
def test_records_after_a_cancel(sample: dict[str, Any], fakes: FakeCommands, tmp_path: Path) -> None:
    submitor, jobs = _submitor(fakes, tmp_path, sample)
    refused = "refused" in sample["expect"]["outcomes"].values()
    if refused:
        with pytest.raises(SchedulerError):
            submitor.cancel_jobs(list(jobs.values()))
    else:
        submitor.cancel_jobs(list(jobs.values()))
    submitor.refresh_jobs()
    for sid, want in sample["expect"]["jobs"].items():
        _check(submitor.get_job(jobs[sid]), want, sid)


# -- submit and queue -----------------------------------------------------------------------------


@pytest.mark.parametrize("sample", _params("submit"))
def test_submit_answer(sample: dict[str, Any], fakes: FakeCommands, tmp_path: Path) -> None:
    _install(fakes, {k: v for k, v in sample.items() if k != "command"})
    fakes.set("sbatch", *[answer for command, answer in sample_answers(sample) if command == "sbatch"])
    submitor = Submitor(Cluster("corpus", "slurm", scheduler_options={"retry_attempts": 1}),
                        jobs_dir=str(tmp_path / "jobs"))
    want = sample["expect"]
    if "held" in want:
        # Refused for the site's submit limit: not a failure, the job waits in molq for room.
        handle = submitor.submit_job(command="true")
        record = submitor.get_job(handle.job_id)
        assert (record.state, record.scheduler_job_id, handle.error) == (JobState.CREATED, None, None)
        assert record.sub_state == SubState.HELD and record.sub_state_reason == want["held"]
        assert submitor.store.get_internal("corpus", handle.job_id)["held"] == want["held"]
        return
    if "error" in want:
        with pytest.raises(SubmitError, match=want["error"]):
            submitor.submit_job(command="true")
        assert [r.state for r in submitor.list_jobs()] in ([], [JobState.FAILED])
        return
    handle = submitor.submit_job(command="true")
    assert submitor.get_job(handle.job_id).scheduler_job_id == want["scheduler_job_id"]
    assert submitor.get_job(handle.job_id).state == JobState.SUBMITTED


@pytest.mark.parametrize("sample", _params("limits"))
def test_submit_limits_read_from_the_sample(sample: dict[str, Any], fakes: FakeCommands) -> None:
    fakes.set("sacctmgr", *[answer for _command, answer in sample_answers(sample)])
    sched = Cluster("corpus", "slurm", scheduler_options={"retry_attempts": 1}).scheduler_impl
    for want in sample["expect"]["limits"]:
        limit = sched.submit_limit(want.get("account"), want.get("qos"))
        if want["jobs"] == "none":
            assert limit is None, want
        else:
            assert limit is not None and (limit.jobs, limit.where) == (want["jobs"], want["where"]), (want, limit)
    calls = len(fakes.calls("sacctmgr"))
    sched.submit_limit(None, None)
    if sample["expect"].get("cached", True):
        assert len(fakes.calls("sacctmgr")) == calls, "read once per scheduler object"
    else:
        assert len(fakes.calls("sacctmgr")) > calls, "a failed read is asked again"


@pytest.mark.parametrize("sample", _params("queue"))
def test_queue_answer(sample: dict[str, Any], fakes: FakeCommands) -> None:
    _install(fakes, sample)
    entries = {e.scheduler_job_id: e for e in Cluster("corpus", "slurm").get_queue()}
    for sid, want in sample["expect"]["entries"].items():
        entry = entries[sid]
        _check(entry, want, sid)
        if "name" in want:
            assert entry.name == want["name"], sid
    assert len(entries) == sample["expect"].get("count", len(entries))

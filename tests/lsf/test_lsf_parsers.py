"""Golden-file tests of every LSF parser: bsub answers, bjobs -json, bkill answers, errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from molq.errors import SchedulerError, SubmitError, TransientSchedulerError
from molq.evidence import CancelOutcome
from molq.model import JobState
from molq.transport import CommandResult
from molq_lsf.dialect import LsfDialect
from molq_lsf.parse import (
    BjobsRecord,
    parse_bjobs_json,
    parse_lsf_duration,
    parse_lsf_memory,
    parse_lsf_time,
    parse_submit_output,
    record_status,
)
from molq_lsf.states import LSF_STATES, classify_exit, map_state

DATA = Path(__file__).parent / "data"
# A fixed "now" (local time) so that year-less LSF time stamps resolve deterministically.
NOW = time.mktime((2024, 6, 12, 12, 0, 0, 0, 0, -1))


def golden(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def result(argv0: str, rc: int, stdout: str = "", stderr: str = "") -> CommandResult:
    return CommandResult((argv0,), rc, stdout, stderr)


def local(y: int, mo: int, d: int, h: int, mi: int) -> float:
    return time.mktime((y, mo, d, h, mi, 0, 0, 0, -1))


@pytest.fixture
def dialect() -> LsfDialect:
    return LsfDialect(clock=lambda: NOW)


# -- bsub ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"), [("bsub_default_queue.txt", "8123"), ("bsub_named_queue.txt", "8124")]
)
def test_bsub_answer_gives_job_id(dialect, name, expected):
    assert dialect.parse_submit(result("bsub", 0, golden(name))) == expected


def test_bsub_answer_after_wait_messages_still_gives_job_id(dialect):
    # bsub retries by itself while mbatchd is busy and then succeeds.
    answer = result("bsub", 0, golden("bsub_named_queue.txt"), golden("lsf_down.stderr"))
    assert dialect.parse_submit(answer) == "8124"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("bsub_no_such_queue.stderr", "bogus: No such queue"),
        ("bsub_queue_denied.stderr", "User cannot use the queue"),
        ("bsub_too_many.stderr", "Too many processors requested"),
    ],
)
def test_bsub_refusal_is_submit_error_with_lsf_message(dialect, name, fragment):
    with pytest.raises(SubmitError) as info:
        dialect.parse_submit(result("bsub", 255, "", golden(name)))
    assert fragment in str(info.value)
    assert info.value.stderr == golden(name)


@pytest.mark.parametrize("stdout", ["", "Job <fuzz> is submitted to queue <normal>.", "Job <-1> is submitted"])
def test_bsub_unreadable_answer_is_an_error(stdout):
    with pytest.raises(SchedulerError) as info:
        parse_submit_output(0, stdout, "")
    assert not isinstance(info.value, SubmitError)


# -- bjobs: states ------------------------------------------------------------------------------

EXPECTED_STATES = {
    "4101": (JobState.QUEUED, None, "New job is waiting for scheduling"),
    "4102": (JobState.QUEUED, None, LSF_STATES["PROV"][1]),
    "4103": (JobState.QUEUED, None, "The job was suspended by the user while pending"),
    "4104": (JobState.RUNNING, None, None),
    "4105": (JobState.RUNNING, None, LSF_STATES["USUSP"][1]),
    "4106": (JobState.RUNNING, None, LSF_STATES["SSUSP"][1]),
    "4107": (JobState.SUCCEEDED, 0, None),
    "4108": (JobState.FAILED, 7, "exited with code 7"),
    "4109": (JobState.TIMED_OUT, 140, "TERM_RUNLIMIT: job killed after reaching LSF run time limit"),
    "4110": (JobState.CANCELLED, 130, "TERM_OWNER: job killed by owner"),
    "4111": (JobState.CANCELLED, None, "TERM_OWNER: job killed by owner"),
    "4112": (JobState.FAILED, 137, "TERM_MEMLIMIT: job killed after reaching LSF memory usage limit"),
    "4113": (JobState.RUNNING, None, LSF_STATES["UNKWN"][1]),
    "4114": (JobState.QUEUED, None, LSF_STATES["WAIT"][1]),
    "4115": (JobState.RUNNING, None, LSF_STATES["ZOMBI"][1]),
    "4116": (JobState.QUEUED, None, "unknown LSF state 'XFER'"),
}


def test_bjobs_json_every_state(dialect):
    ids = sorted(EXPECTED_STATES)
    found = dialect.parse_status(result("bjobs", 0, golden("bjobs_states.json")), ids).statuses
    assert set(found) == set(ids)
    for sid, (state, code, reason) in EXPECTED_STATES.items():
        st = found[sid]
        assert (st.state, st.exit_code, st.reason) == (state, code, reason), sid
    assert found["4116"].raw_state == "XFER"  # unknown states are kept raw
    assert found["4109"].exit_signal == 12  # 140 = 128 + SIGUSR2
    assert found["4110"].exit_signal == 2
    assert found["4108"].exit_signal is None
    assert found["4104"].started_at == local(2024, 3, 3, 9, 17)
    assert found["4104"].finished_at is None
    assert found["4107"].finished_at == local(2024, 3, 3, 9, 20)


def test_every_documented_state_has_a_mapping():
    for raw in ("PEND", "PROV", "PSUSP", "RUN", "USUSP", "SSUSP", "DONE", "EXIT", "UNKWN", "WAIT", "ZOMBI"):
        assert raw in LSF_STATES
    terminal = {raw for raw, (state, _) in LSF_STATES.items() if state.is_terminal}
    assert terminal == {"DONE", "EXIT"}


def test_unknown_state_is_non_terminal():
    assert map_state("NEWTHING") == JobState.QUEUED
    assert map_state("NEWTHING", started=True) == JobState.RUNNING


@pytest.mark.parametrize(
    ("reason", "state"),
    [
        ("TERM_RUNLIMIT: job killed after reaching LSF run time limit", JobState.TIMED_OUT),
        ("TERM_DEADLINE: job killed after deadline expires", JobState.TIMED_OUT),
        ("TERM_OWNER: job killed by owner", JobState.CANCELLED),
        ("TERM_FORCE_OWNER: job killed by owner without time for cleanup", JobState.CANCELLED),
        ("TERM_ADMIN: job killed by root or LSF administrator", JobState.CANCELLED),
        ("TERM_MEMLIMIT: job killed after reaching LSF memory usage limit", JobState.FAILED),
        ("TERM_CWD_NOTEXIST: current working directory is not accessible", JobState.FAILED),
        ("", JobState.FAILED),
        (None, JobState.FAILED),
    ],
)
def test_exit_reasons(reason, state):
    assert classify_exit(reason) == state


def test_status_lists_finished_jobs_so_no_accounting_query_is_needed(dialect):
    ids = sorted(EXPECTED_STATES)
    found = dialect.parse_status(result("bjobs", 0, golden("bjobs_states.json")), ids).statuses
    finished = {sid for sid, st in found.items() if st.state.is_terminal}
    assert finished == {"4107", "4108", "4109", "4110", "4111", "4112"}
    assert dialect.terminal_argv(ids, None) is None


def test_status_ignores_jobs_not_asked_for(dialect):
    found = dialect.parse_status(result("bjobs", 0, golden("bjobs_states.json")), ["4104"])
    assert list(found.statuses) == ["4104"]


@pytest.mark.parametrize(
    ("reason", "state"),
    [
        ("TERM_REQUEUE_OWNER: job killed and requeued by owner", JobState.QUEUED),
        ("TERM_REQUEUE_ADMIN: job killed and requeued by root or LSF administrator", JobState.QUEUED),
        ("TERM_PREEMPT: job killed after preemption", JobState.FAILED),
    ],
)
def test_requeue_is_not_final_and_preemption_is_a_failure(dialect, reason, state):
    text = json.dumps({"RECORDS": [{"JOBID": "9", "STAT": "EXIT", "EXIT_CODE": "130", "EXIT_REASON": reason}]})
    st = dialect.parse_status(result("bjobs", 0, text), ["9"]).statuses["9"]
    assert st.state == state
    assert (st.exit_code is None) == (state == JobState.QUEUED)
    assert st.finished_at is None


# -- bjobs: arrays ------------------------------------------------------------------------------


def test_array_elements_aggregate_into_one_status(dialect):
    found = dialect.parse_status(
        result("bjobs", 0, golden("bjobs_array.json")), ["5200", "5201", "5202", "5203"]
    ).statuses
    running = found["5200"]
    assert running.state == JobState.RUNNING
    assert running.raw_state == "array element: 1 DONE, 1 PEND, 1 RUN"  # core's part summary
    assert running.started_at == local(2024, 6, 11, 14, 2)
    failed = found["5201"]
    assert failed.state == JobState.FAILED
    assert failed.exit_code == 3  # the first failed element (index 2)
    assert "2 of 3 array elements failed" in failed.reason and "5201[2]" in failed.reason
    assert failed.finished_at == local(2024, 6, 11, 14, 7)
    waiting = found["5202"]
    assert waiting.state == JobState.QUEUED
    assert "Job dependency condition not satisfied" in waiting.reason
    # Old LSF versions print an element as JOBID "5203[2]".
    assert found["5203"].state == JobState.SUCCEEDED


def test_array_outcome_follows_the_core_policy(dialect):
    # One policy on every backend: FAILED > TIMED_OUT > CANCELLED.
    elements = [
        {"JOBID": "1", "JOBINDEX": "1", "STAT": "EXIT", "EXIT_CODE": "1", "EXIT_REASON": ""},
        {"JOBID": "1", "JOBINDEX": "2", "STAT": "EXIT", "EXIT_CODE": "140",
         "EXIT_REASON": "TERM_RUNLIMIT: job killed after reaching LSF run time limit"},
        {"JOBID": "1", "JOBINDEX": "3", "STAT": "DONE"},
        {"JOBID": "1", "JOBINDEX": "4", "STAT": "EXIT", "EXIT_REASON": "TERM_OWNER: job killed by owner"},
    ]

    def state_of(records):
        text = json.dumps({"RECORDS": records})
        return dialect.parse_status(result("bjobs", 0, text), ["1"]).statuses["1"]

    assert state_of(elements).state == JobState.FAILED
    assert state_of(elements).exit_code == 1
    assert state_of(elements[1:]).state == JobState.TIMED_OUT
    assert state_of(elements[2:]).state == JobState.CANCELLED
    assert state_of(elements[2:3]).state == JobState.SUCCEEDED
    held = {"JOBID": "1", "JOBINDEX": "5", "STAT": "PSUSP", "PEND_REASON": ""}
    assert state_of([*elements, held]).state == JobState.QUEUED  # a held element keeps it open


def test_never_satisfiable_dependency_is_flagged(dialect):
    found = dialect.parse_status(
        result("bjobs", 0, golden("bjobs_dependency.json")), ["801", "802", "803", "804"]
    ).statuses
    assert found["801"].state == JobState.QUEUED
    assert found["801"].reason == "Dependency condition invalid or never satisfied"
    assert found["801"].dependency_never_satisfied
    assert not found["802"].dependency_never_satisfied  # merely waiting
    assert found["803"].dependency_never_satisfied  # every active element is stuck
    assert not found["804"].dependency_never_satisfied  # one element still runs


# -- bjobs: names, queue, adoption ---------------------------------------------------------------


def test_queue_listing_with_awkward_names(dialect):
    entries = dialect.parse_queue(result("bjobs", 0, golden("bjobs_names.json")))
    by_id = {e.scheduler_job_id: e for e in entries}
    assert list(by_id) == ["611", "612", "613", "614[3]"]
    assert by_id["611"].name == "my analysis run"
    assert by_id["612"].name == "Größe-Berechnung ✓ 计算"
    assert by_id["613"].name == "echo \"quoted\" 'x' && rm -rf $HOME; `id` {a,b} \\ ^ % | <tag>"
    assert by_id["614[3]"].name == "ens(1)[3]"
    assert [e.user for e in entries] == ["alice", "bob", "carol", "alice"]
    assert [e.state for e in entries] == [JobState.RUNNING, JobState.QUEUED, JobState.QUEUED, JobState.RUNNING]
    assert by_id["612"].partition == "long"
    assert by_id["612"].raw_state == "PEND"
    assert by_id["611"].submit_time == local(2024, 1, 7, 9, 59)
    assert by_id["611"].start_time == local(2024, 1, 7, 10, 1)


def test_adoption_finds_tags_in_job_descriptions(dialect):
    tags = ["molq-0f1e2d3c4b5a69788796a5b4c3d2e1f0", "molq-aaaabbbbccccddddeeeeffff00001111", "molq-absent"]
    found = dialect.parse_adopt(result("bjobs", 0, golden("bjobs_adopt.json")), tags)
    assert found == {
        "molq-0f1e2d3c4b5a69788796a5b4c3d2e1f0": "900",
        # Both, oldest first: the parts of a split array, or a duplicated submission whose
        # first job the runner keeps (molq.array_runner.check_adopted).
        "molq-aaaabbbbccccddddeeeeffff00001111": "902,905",
    }


# -- bjobs: not found and failures ---------------------------------------------------------------


def test_not_found_as_json_error_records(dialect):
    answer = result("bjobs", 255, golden("bjobs_not_found_records.json"))
    parsed = parse_bjobs_json(answer.returncode, answer.stdout, answer.stderr)
    assert [r.job_id for r in parsed.records] == ["700"]
    assert parsed.missing == ("701", "702")
    status = dialect.parse_status(answer, ["700", "701", "702"])
    assert set(status.statuses) == {"700"}
    assert status.proves_absent("701") and status.proves_absent("702")


def test_not_found_on_stderr_is_an_answer_not_a_failure(dialect):
    answer = result("bjobs", 255, "", golden("bjobs_not_found.stderr"))
    status = dialect.parse_status(answer, ["9001", "9002"])
    assert dict(status.statuses) == {} and status.complete
    parsed = parse_bjobs_json(answer.returncode, answer.stdout, answer.stderr)
    assert (parsed.records, parsed.missing) == ((), ("9001", "9002"))


@pytest.mark.parametrize("text", ["No unfinished job found\n", "No job found\n"])
def test_empty_queue_is_an_empty_answer(dialect, text):
    assert dialect.parse_queue(result("bjobs", 0, "", text)) == []
    assert dialect.parse_queue(result("bjobs", 0, text, "")) == []


@pytest.mark.parametrize(
    ("rc", "stdout", "stderr"),
    [
        (255, "", "LSF is down. Please wait ...\n"),
        (255, "", "batch system daemon not responding ... still trying\n"),
        (1, "", ""),
        (0, "JOBID STAT\n12 RUN\n", ""),
        (0, '{"COMMAND":"bjobs","RECORDS":"oops"}', ""),
        (255, '{"COMMAND":"bjobs","JOBS":0,"RECORDS":[]}', "Job <5>: User permission denied\n"),
    ],
)
def test_failed_query_raises_instead_of_looking_empty(dialect, rc, stdout, stderr):
    with pytest.raises(SchedulerError):
        dialect.parse_status(result("bjobs", rc, stdout, stderr), ["5"])
    with pytest.raises(SchedulerError):
        dialect.parse_queue(result("bjobs", rc, stdout, stderr))


@pytest.mark.parametrize(
    "stdout",
    [
        '{"COMMAND":"bjobs","JOBS":1,"RECORDS":[{"JOBID"',
        '{"COMMAND":"bjobs","RECORDS":[{"STAT":"RUN"}]}',
        '{"COMMAND":"bjobs","RECORDS":[{"ERROR":"User permission denied"}]}',
        '{"COMMAND":"bjobs","RECORDS":["oops"]}',
    ],
)
def test_records_without_an_id_make_the_answer_incomplete(dialect, stdout):
    # Nothing is known about job 5, and nothing proves it absent either.
    status = dialect.parse_status(result("bjobs", 0, stdout), ["5"])
    assert not status.statuses and not status.complete and not status.proves_absent("5")


def test_one_broken_record_costs_only_itself(dialect):
    # A record that is not valid JSON (an unescaped quote) among good ones.
    text = (
        '{"COMMAND":"bjobs","JOBS":3,"RECORDS":[\n'
        '{"JOBID":"1","STAT":"RUN","EXIT_CODE":"","EXIT_REASON":""},\n'
        '{"JOBID":"2","STAT":"RUN","EXIT_REASON":"bad "quote" here"},\n'
        '{"JOBID":"3","STAT":"DONE","EXIT_CODE":"0"},\n'
        '{"JOBID":"4","JOBINDEX":"x","STAT":"RUN"},\n'
        '{"JOBID":"5","STAT":"r u n"}\n]}'
    )
    status = dialect.parse_status(result("bjobs", 0, text), ["1", "2", "3", "4", "5", "6"])
    assert set(status.statuses) == {"1", "3"}
    assert status.statuses["3"].state == JobState.SUCCEEDED
    assert status.unreadable == {"2", "4", "5"}
    assert status.complete and status.proves_absent("6") and not status.proves_absent("2")


def test_no_array_end_is_drawn_from_an_incomplete_answer(dialect):
    text = json.dumps({"RECORDS": [
        {"JOBID": "8", "JOBINDEX": "1", "STAT": "DONE"},
        {"JOBINDEX": "2", "STAT": "EXIT", "EXIT_CODE": "1"},  # whose element is this?
        {"JOBID": "9", "JOBINDEX": "1", "STAT": "RUN"},
        {"JOBID": "10", "JOBINDEX": "0", "STAT": "DONE"},
    ]})
    status = dialect.parse_status(result("bjobs", 0, text), ["8", "9", "10"])
    assert set(status.statuses) == {"9", "10"}  # active arrays and plain jobs still count
    assert status.unreadable == {"8"} and not status.complete


def test_client_that_gave_up_with_exit_zero_is_transient(dialect):
    with pytest.raises(TransientSchedulerError):
        dialect.parse_status(result("bjobs", 0, "", golden("lsf_down.stderr")), ["5"])


# -- transient errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lsf_down.stderr", "mbatchd_busy.stderr", "lib_call.stderr"])
def test_outage_messages_are_transient_for_queries(dialect, name):
    for command in ("bjobs", "/opt/lsf/bin/bkill"):
        assert dialect.is_transient(result(command, 255, "", golden(name)))


def test_bsub_retries_only_when_mbatchd_was_never_reached(dialect):
    assert dialect.is_transient(result("/opt/lsf/bin/bsub", 255, "", golden("lsf_down.stderr")))
    # mbatchd may have accepted the job before timing out: no blind resubmission.
    assert not dialect.is_transient(result("bsub", 255, "", golden("mbatchd_busy.stderr")))


@pytest.mark.parametrize(
    "name", ["bsub_no_such_queue.stderr", "bsub_queue_denied.stderr", "bsub_too_many.stderr",
             "bkill_denied.stderr"]
)
def test_permanent_errors_are_not_transient(dialect, name):
    assert not dialect.is_transient(result("bsub", 255, "", golden(name)))
    assert not dialect.is_transient(result("bjobs", 255, "", golden(name)))


# -- bkill --------------------------------------------------------------------------------------


def test_bkill_outcome_per_job(dialect):
    answer = result("bkill", 255, golden("bkill_ok.stdout"), golden("bkill_finished.stderr"))
    assert dialect.parse_cancel(answer, ["3001", "3002", "3003", "3004"]) == {
        "3001": CancelOutcome.REQUESTED,
        "3002": CancelOutcome.REQUESTED,
        "3003": CancelOutcome.ALREADY_ENDED,  # never "cancelled": its real end decides
        "3004": CancelOutcome.ALREADY_ENDED,
    }


def test_bkill_refusal_raises_with_lsf_message(dialect):
    with pytest.raises(SchedulerError) as info:
        dialect.parse_cancel(
            result("bkill", 255, "", golden("bkill_finished.stderr") + golden("bkill_denied.stderr")),
            ["3003", "3004", "3005"],
        )
    assert "User permission denied" in str(info.value)
    with pytest.raises(SchedulerError):
        dialect.parse_cancel(result("bkill", 255, "", ""), ["3005"])
    # A refusal printed with exit status 0 is still a refusal.
    with pytest.raises(SchedulerError):
        dialect.parse_cancel(result("bkill", 0, "", golden("bkill_denied.stderr")), ["3005"])


# -- time stamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Jun 11 14:02", local(2024, 6, 11, 14, 2)),
        ("Jun  1 04:05", local(2024, 6, 1, 4, 5)),
        ("Jun 11 14:02:33", local(2024, 6, 11, 14, 2) + 33),
        ("Jun 11 14:02 E", local(2024, 6, 11, 14, 2)),
        ("Dec 28 19:56 L", local(2023, 12, 28, 19, 56)),  # in the future this year: last year's
        ("Feb  3 10:00 2022", local(2022, 2, 3, 10, 0)),
        ("", None),
        ("-", None),
        ("yesterday", None),
        ("Foo 11 14:02", None),
    ],
)
def test_lsf_time_stamps(text, expected):
    assert parse_lsf_time(text, now=NOW) == expected


def test_record_status_of_empty_exit_code_has_no_code():
    records = parse_bjobs_json(0, '{"RECORDS":[{"JOBID":"3","STAT":"EXIT"}]}', "").records
    status = record_status(records[0])
    assert status.state == JobState.FAILED
    assert status.exit_code is None
    assert status.reason


@pytest.mark.parametrize(("text", "seconds"), [
    ("0.3 second(s)", 0.3), ("12 second(s)", 12.0), ("00:00:01", 1.0), ("1:02:03", 3723.0),
    ("", None), ("-", None), ("soon", None),
])
def test_lsf_durations(text, seconds):
    assert parse_lsf_duration(text) == seconds


@pytest.mark.parametrize(("text", "unit", "size"), [
    ("12 Mbytes", "KB", 12 << 20), ("522 MBytes", "KB", 522 << 20), ("1.2 Gbytes", "KB", round(1.2 * (1 << 30))),
    ("5 Kbytes", "KB", 5 << 10), ("4 G", "KB", 4 << 30), ("2048", "KB", 2 << 20), ("2048", "MB", 2 << 30),
    ("", "KB", None), ("lots", "KB", None),
])
def test_lsf_memory_amounts(text, unit, size):
    assert parse_lsf_memory(text, unit) == size


def test_usage_only_once_finished_and_only_what_is_reported():
    done = BjobsRecord(job_id="1", stat="DONE", cpu_used="0.3 second(s)", run_time="", max_mem="",
                       exec_host="4*h1:h2", slots="5")
    usage = record_status(done).usage
    assert usage is not None and (usage.cpu_seconds, usage.cpus, usage.nodes) == (0.3, 5, "h1,h2")
    assert usage.elapsed_seconds is None and usage.max_rss_bytes is None
    assert record_status(BjobsRecord(job_id="1", stat="DONE")).usage is None
    assert record_status(BjobsRecord(job_id="1", stat="RUN", cpu_used="1.0 second(s)")).usage is None

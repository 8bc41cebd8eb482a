"""Golden-file tests of every PBS parser: qstat JSON (PBS Pro), qstat -f text (Torque and
SLURM's Torque wrappers), qsub answers and qdel messages."""

from __future__ import annotations

import time

import pytest
from molq.errors import SchedulerError, SubmitError
from molq.evidence import SourceAnswer
from molq.model import JobState
from molq.transport import CommandResult
from molq_pbs import PbsProDialect, TorqueDialect, parse
from molq_pbs.parse import (
    benign_error,
    match_ids,
    parse_hms,
    parse_pbs_time,
    parse_qstat_full,
    parse_qstat_json,
    variable_list,
)


def result(argv, rc=0, stdout="", stderr="") -> CommandResult:
    return CommandResult(tuple(argv), rc, stdout, stderr)


def known(answer: SourceAnswer) -> dict:
    """The statuses of a parser's answer (every PBS parser answers with a SourceAnswer)."""
    assert isinstance(answer, SourceAnswer)
    return dict(answer.statuses)


def local(text: str) -> float:
    return time.mktime(time.strptime(text, "%a %b %d %H:%M:%S %Y"))


# -- PBS Pro JSON ----------------------------------------------------------------------------


def test_json_records_are_flat_strings(data_file):
    jobs = parse_qstat_json(data_file("pbspro_qstat_active.json"))
    assert list(jobs) == ["1001.pbs01", "1002.pbs01", "1003[].pbs01", "1004.pbs01", "1005.pbs01"]
    run = jobs["1001.pbs01"]
    assert run["Resource_List.walltime"] == "01:00:00"
    assert run["Resource_List.ncpus"] == "4"
    assert run["resources_used.walltime"] == "00:01:00"
    assert run["Variable_List.MOLQ_TAG"] == "molq-3f2a9c"
    assert jobs["1003[].pbs01"]["array"] == "True"
    assert jobs["1004.pbs01"]["Job_Name"] == "résumé_run"


def test_json_tolerates_raw_control_characters(data_file):
    text = data_file("pbspro_qstat_finished.json")
    assert "\x01" in text  # the sample really holds an unescaped control character
    jobs = parse_qstat_json(text)
    assert jobs["2010.pbs01"]["comment"].endswith("\x01")


def test_json_one_bad_entry_costs_only_that_job():
    records = parse.parse_qstat_json('{"Jobs": {"1.s": 3, "2.s": {"job_state": "R"}}}')
    assert records == {"1.s": None, "2.s": {"job_state": "R"}}


@pytest.mark.parametrize("bad", ["[1, 2]", '{"Jobs": [1]}', "qstat: oops"])
def test_json_rejects_garbage(bad):
    with pytest.raises(ValueError):
        parse_qstat_json(bad)


def test_json_without_jobs_is_empty():
    assert parse_qstat_json('{"timestamp": 1, "pbs_version": "2022", "pbs_server": "s"}') == {}


def test_pbspro_status_of_active_jobs(data_file):
    dialect = PbsProDialect()
    ids = ["1001.pbs01", "1002.pbs01", "1003[].pbs01", "1004.pbs01", "1005.pbs01"]
    out = known(dialect.parse_status(
        result(dialect.status_argv(ids), stdout=data_file("pbspro_qstat_active.json")), ids
    ))
    assert {sid: (st.state, st.raw_state) for sid, st in out.items()} == {
        "1001.pbs01": (JobState.RUNNING, "R"),
        "1002.pbs01": (JobState.QUEUED, "H"),
        "1003[].pbs01": (JobState.RUNNING, "B"),
        "1004.pbs01": (JobState.QUEUED, "Q"),
        "1005.pbs01": (JobState.RUNNING, "S"),
    }
    assert out["1001.pbs01"].started_at == local("Thu Nov 21 05:30:05 2024")
    assert out["1004.pbs01"].reason.startswith("Not Running: Insufficient amount of resource")
    assert out["1004.pbs01"].started_at is None


FINISHED_EXPECTED = {
    # id: (state, exit_code, exit_signal)
    "2001.pbs01": (JobState.SUCCEEDED, 0, None),
    "2002.pbs01": (JobState.FAILED, 7, None),
    "2003.pbs01": (JobState.TIMED_OUT, None, None),
    "2004.pbs01": (JobState.TIMED_OUT, None, 15),  # 256 + SIGTERM at the walltime limit
    "2005.pbs01": (JobState.CANCELLED, None, 15),
    "2006.pbs01": (JobState.CANCELLED, None, None),
    "2007.pbs01": (JobState.FAILED, None, 11),  # 256 + SIGSEGV, far from the limit
    "2008[].pbs01": (JobState.FAILED, None, None),
    "2009.pbs01": (JobState.FAILED, None, None),  # deleted: its dependency failed
    "2010.pbs01": (JobState.FAILED, None, None),
    "2011[3].pbs01": (JobState.SUCCEEDED, 0, None),
}


def test_pbspro_final_states(data_file):
    dialect = PbsProDialect()
    ids = list(FINISHED_EXPECTED)
    text = data_file("pbspro_qstat_finished.json")
    out = known(dialect.parse_terminal(result(dialect.terminal_argv(ids, None), stdout=text), ids))
    got = {sid: (st.state, st.exit_code, st.exit_signal) for sid, st in out.items()}
    assert got == FINISHED_EXPECTED
    assert out["2001.pbs01"].finished_at == local("Thu Nov 21 05:31:05 2024")
    assert out["2001.pbs01"].started_at == local("Thu Nov 21 05:30:05 2024")
    assert "JOB_EXEC_KILL_WALLTIME" in out["2003.pbs01"].reason
    assert "JOB_EXEC_FAILUID" in out["2010.pbs01"].reason
    assert out["2009.pbs01"].reason.startswith("dependency never satisfied: Job deleted as result")
    assert all(st.raw_state in ("F", "X") for st in out.values())


def test_status_matches_ids_without_server_suffix(data_file):
    dialect = PbsProDialect()
    out = known(dialect.parse_status(
        result(["qstat"], stdout=data_file("pbspro_qstat_active.json")), ["1001", "1003[]"]
    ))
    assert set(out) == {"1001", "1003[]"}
    assert out["1003[]"].raw_state == "B"


def test_match_ids_prefers_exact_and_refuses_ambiguity():
    found = ["5.a", "5.b", "6.srv.example.org"]
    assert match_ids(["5.a", "5", "6.srv"], found) == {"5.a": "5.a", "6.srv": "6.srv.example.org"}


def test_unknown_and_finished_messages_are_answers(data_file):
    dialect = PbsProDialect()
    ids = ["1001.pbs01", "3001.pbs01", "3002.pbs01"]
    res = result(
        ["qstat"],
        rc=153,
        stdout=data_file("pbspro_qstat_active.json"),
        stderr=data_file("pbspro_qstat_partial.stderr"),
    )
    out = known(dialect.parse_status(res, ids))
    assert set(out) == {"1001.pbs01"}


def test_all_unknown_is_an_empty_answer(data_file):
    dialect = PbsProDialect()
    res = result(["qstat"], rc=153, stderr="qstat: Unknown Job Id 3001.pbs01\n")
    answer = dialect.parse_status(res, ["3001.pbs01"])
    assert answer.statuses == {} and answer.proves_absent("3001.pbs01")


@pytest.mark.parametrize(
    "rc,stdout,stderr",
    [
        (1, "", "Connection refused\nqstat: cannot connect to server pbs01 (errno=15010)\n"),
        (2, "", "usage: \nqstat [-f] ...\n"),
        (1, "", ""),
        (0, "{not json", ""),
        (0, "", ""),
        (0, "  \n", "qstat: warning: something odd\n"),
        (153, '{"Jobs": {}}', "qstat: Unknown Job Id 1.s\nqstat: Server could not connect to MOM\n"),
    ],
)
def test_failed_queries_raise_never_return_empty(rc, stdout, stderr):
    dialect = PbsProDialect()
    with pytest.raises(SchedulerError):
        dialect.parse_status(result(["qstat"], rc=rc, stdout=stdout, stderr=stderr), ["1.s"])


def test_history_disabled_is_reported():
    dialect = PbsProDialect()
    res = result(["qstat"], rc=0, stderr="qstat: job_history_enable is set to false\n")
    with pytest.raises(SchedulerError, match="use_history=False"):
        dialect.parse_status(res, ["1.s"])


def test_unknown_state_letter_is_kept_raw_and_not_terminal():
    dialect = PbsProDialect()
    doc = '{"Jobs": {"7.s": {"job_state": "Z", "stime": "Thu Nov 21 05:30:05 2024"}, "8.s": {"job_state": "?"}}}'
    out = known(dialect.parse_status(result(["qstat"], stdout=doc), ["7.s", "8.s"]))
    assert (out["7.s"].state, out["7.s"].raw_state) == (JobState.RUNNING, "Z")
    assert (out["8.s"].state, out["8.s"].raw_state) == (JobState.QUEUED, "?")


def test_queue_and_adoption_from_json(data_file):
    dialect = PbsProDialect()
    res = result(dialect.queue_argv(None), stdout=data_file("pbspro_qstat_active.json"))
    entries = {e.scheduler_job_id: e for e in dialect.parse_queue(res)}
    assert set(entries) == {"1001.pbs01", "1002.pbs01", "1003[].pbs01", "1004.pbs01", "1005.pbs01"}
    bob = entries["1004.pbs01"]
    assert (bob.user, bob.name, bob.partition, bob.state, bob.raw_state) == (
        "bob",
        "résumé_run",
        "workq",
        JobState.QUEUED,
        "Q",
    )
    assert bob.submit_time == local("Thu Nov 21 05:30:00 2024")
    assert entries["1001.pbs01"].start_time == local("Thu Nov 21 05:30:05 2024")
    found = dialect.parse_adopt(res, ["molq-3f2a9c", "molq-77aa01", "molq-absent"])
    assert found == {"molq-3f2a9c": "1001.pbs01", "molq-77aa01": "1002.pbs01"}


def test_queue_leaves_out_finished_jobs(data_file):
    dialect = PbsProDialect()
    assert dialect.parse_queue(result(["qstat"], stdout=data_file("pbspro_qstat_finished.json"))) == []


# -- qstat -f text (Torque and SLURM's Torque wrappers) ----------------------------------------


def test_torque_text_blocks_and_continuations(data_file):
    jobs = parse_qstat_full(data_file("torque_qstat_f.txt"))
    assert list(jobs)[:2] == ["179.torque01.example.org", "180.torque01.example.org"]
    run = jobs["179.torque01.example.org"]
    assert run["Job_Name"] == "run one"
    assert run["Resource_List.nodes"] == "1:ppn=4"
    assert run["comment"].endswith("nodes that wraps mid-word")
    env = variable_list(run)
    assert env["PBS_O_WORKDIR"] == "/home/carol/proj"
    assert env["PBS_O_PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert env["MOLQ_TAG"] == "molq-c0ffee"


def test_torque_statuses(data_file):
    dialect = TorqueDialect()
    text = data_file("torque_qstat_f.txt")
    ids = [
        "179.torque01.example.org",
        "180.torque01.example.org",
        "181.torque01.example.org",
        "182.torque01.example.org",
        "183.torque01.example.org",
        "184.torque01.example.org",
        "185[2].torque01.example.org",
    ]
    out = known(dialect.parse_status(result(dialect.status_argv(ids), stdout=text), ids))
    got = {sid.split(".")[0]: (st.state, st.exit_code, st.exit_signal) for sid, st in out.items()}
    assert got == {
        "179": (JobState.RUNNING, None, None),
        "180": (JobState.SUCCEEDED, 0, None),
        "181": (JobState.TIMED_OUT, None, 15),
        "182": (JobState.TIMED_OUT, None, None),
        "183": (JobState.FAILED, None, None),
        "184": (JobState.QUEUED, None, None),
        "185[2]": (JobState.QUEUED, None, None),
    }
    assert out["179.torque01.example.org"].started_at == 1220021760.0
    assert out["180.torque01.example.org"].finished_at == 1220021763.0
    assert "JOB_EXEC_CMDFAIL" in out["183.torque01.example.org"].reason
    # The final-state query reports the living jobs too: a job alive there is never missing.
    terminal = known(dialect.parse_terminal(result(["qstat"], stdout=text), ids))
    assert {sid.split(".")[0]: st.state.is_terminal for sid, st in terminal.items()} == {
        "179": False, "180": True, "181": True, "182": True, "183": True, "184": False, "185[2]": False}


def test_slurm_torque_wrapper_output(data_file):
    """Captured from Debian's slurm-wlm-torque: tab-indented, no exit_status, bare ids."""
    dialect = TorqueDialect()
    text = data_file("slurm_torque_qstat_f.txt")
    jobs = parse_qstat_full(text)
    assert jobs["30"]["Job_Name"] == "héllo_wörld"
    assert jobs["30"]["Resource_List.ncpus"] == "2"
    out = known(dialect.parse_status(result(["qstat"], stdout=text), ["30", "31", "32"]))
    # 32 is complete but the wrapper gives no exit status: left to the exit-code file.
    assert {sid: st.state for sid, st in out.items()} == {"30": JobState.RUNNING, "31": JobState.QUEUED}
    # To the final-state query, that complete job is known to have ended without saying how:
    # the exit-code file decides, a cancel is confirmed, and nobody may count it missing.
    final = dialect.parse_terminal(result(["qstat"], stdout=text), ["32"])
    assert final.statuses == {} and final.ended == {"32"} and not final.proves_absent("32")
    entries = dialect.parse_queue(result(["qstat"], stdout=text))
    assert [(e.scheduler_job_id, e.name, e.user, e.partition) for e in entries] == [
        ("30", "héllo_wörld", "root", "debug"),
        ("31", "held-job", "root", "long"),
    ]


def test_slurm_torque_silent_unknown_is_empty():
    # The wrapper exits 153 without a word when none of the ids is known...
    assert TorqueDialect().parse_status(result(["qstat"], rc=153), ["99999"]).proves_absent("99999")
    # ...but a silent success is no answer at all.
    with pytest.raises(SchedulerError, match="printed nothing"):
        TorqueDialect().parse_status(result(["qstat"], rc=0), ["99999"])
    assert TorqueDialect().parse_queue(result(["qstat"], rc=0)) == []


def test_slurm_torque_transient_failure():
    dialect = TorqueDialect()
    res = result(["/usr/bin/qstat", "-f", "-1", "1"], rc=8, stderr="Problem loading jobs.\n")
    assert dialect.is_transient(res)
    with pytest.raises(SchedulerError):
        dialect.parse_status(res, ["1"])


# -- qsub ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stdout,expected",
    [
        ("1234.pbs01\n", "1234.pbs01"),
        ("1235[].pbs01.example.org\n", "1235[].pbs01.example.org"),
        ("30\n", "30"),
        ("qsub: warning: something\n77.srv\n", "77.srv"),
    ],
)
def test_qsub_job_id(stdout, expected):
    assert PbsProDialect().parse_submit(result(["qsub"], stdout=stdout)) == expected


def test_qsub_garbage_is_not_an_id():
    with pytest.raises(SchedulerError) as info:
        PbsProDialect().parse_submit(result(["qsub"], stdout="job submitted, probably\n"))
    assert not isinstance(info.value, SubmitError)


@pytest.mark.parametrize(
    "name,needle",
    [
        ("pbspro_qsub_unknown_queue.stderr", "qsub: Unknown queue"),
        ("pbspro_qsub_unauthorized.stderr", "qsub: Unauthorized Request"),
        ("pbspro_qsub_illegal_l.stderr", "qsub: illegal -l value"),
    ],
)
def test_qsub_refusals_are_permanent_and_keep_the_message(data_file, name, needle):
    dialect = PbsProDialect()
    res = result(["qsub", "job.sh"], rc=1, stderr=data_file(name))
    assert not dialect.is_transient(res)
    with pytest.raises(SubmitError) as info:
        dialect.parse_submit(res)
    assert needle in str(info.value)
    assert needle in info.value.stderr


def test_slurm_torque_qsub_error_is_read_from_stdout(data_file):
    dialect = TorqueDialect()
    res = result(["qsub", "job.sh"], rc=1, stdout=data_file("slurm_torque_qsub_badqueue.stdout"))
    assert not dialect.is_transient(res)
    with pytest.raises(SubmitError, match="Invalid partition name specified"):
        dialect.parse_submit(res)


@pytest.mark.parametrize("command", ["qsub", "qstat", "qdel", "/opt/pbs/bin/qsub"])
def test_connection_failures_are_transient(data_file, command):
    dialect = PbsProDialect()
    assert dialect.is_transient(result([command], rc=1, stderr=data_file("pbspro_qsub_iff.stderr")))
    assert dialect.is_transient(result([command], rc=1, stderr=data_file("pbspro_qstat_outage.stderr")))
    assert dialect.is_transient(result([command], rc=1, stderr="qstat: Communication failure.\n"))


def test_timeouts_are_transient_for_queries_only():
    dialect = PbsProDialect()
    stderr = "pbs_connect: Connection timed out\n"
    assert dialect.is_transient(result(["/opt/pbs/bin/qstat"], rc=1, stderr=stderr)) is True
    # qsub: the server may have accepted the job before the answer was lost.
    assert dialect.is_transient(result(["/opt/pbs/bin/qsub"], rc=1, stderr=stderr)) is False


# -- qdel ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pbspro_qdel_mixed.stderr", "torque_qdel_complete.stderr"])
def test_qdel_of_finished_or_unknown_jobs_is_fine(data_file, name):
    PbsProDialect().check_cancel(result(["qdel"], rc=35, stderr=data_file(name)), ["4001.pbs01"])


def test_qdel_silent_failure_of_slurm_wrapper_is_fine():
    TorqueDialect().check_cancel(result(["qdel", "32"], rc=1), ["32"])


def test_qdel_refusal_raises(data_file):
    with pytest.raises(SchedulerError, match="Unauthorized Request"):
        PbsProDialect().check_cancel(
            result(["qdel"], rc=15, stderr=data_file("pbspro_qdel_denied.stderr")), ["4003.pbs01"]
        )


# -- small parsers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("01:00:00", 3600),
        ("100:00:00", 360000),
        ("05:30", 330),
        ("42", 42),
        ("", None),
        ("1h", None),
        (None, None),
    ],
)
def test_parse_hms(text, expected):
    assert parse_hms(text) == expected


def test_parse_pbs_time_forms():
    assert parse_pbs_time("1220021760") == 1220021760.0
    assert parse_pbs_time("Mon Jan  6 07:08:09 2025") == local("Mon Jan 06 07:08:09 2025")
    assert parse_pbs_time("not a date") is None
    assert parse_pbs_time(None) is None


@pytest.mark.parametrize(
    "line,benign",
    [
        ("qstat: Unknown Job Id 12.pbs01", True),
        ("qstat: Unknown Job Id Error 12.torque01", True),
        ("qdel: Job has finished 12.pbs01", True),
        ("qdel: Request invalid for state of job MSG=invalid state for job - COMPLETE 12.x", True),
        ("qdel: Unauthorized Request  12.pbs01", False),
        ("qstat: cannot connect to server pbs01 (errno=111)", False),
    ],
)
def test_benign_error_lines(line, benign):
    assert benign_error(line) is benign


# -- answers as evidence ---------------------------------------------------------------------


def test_a_record_that_matches_two_ids_is_unreadable_not_absent():
    doc = '{"Jobs": {"5.a": {"job_state": "R"}, "5.b": {"job_state": "Q"}, "6.a": {"job_state": "R"}}}'
    answer = PbsProDialect().parse_status(result(["qstat"], stdout=doc), ["5", "6.a"])
    assert set(answer.statuses) == {"6.a"} and answer.unreadable == {"5"}
    assert not answer.proves_absent("5")


def test_finished_without_history_is_known_to_the_final_state_query():
    dialect = PbsProDialect(use_history=False)
    res = result(["qstat"], rc=35, stderr="qstat: 12.s Job has finished, use -x or -H to obtain historical job information\n")
    assert dialect.parse_status(res, ["12.s"]).statuses == {}
    final = dialect.parse_terminal(res, ["12.s"])
    assert final.ended == {"12.s"} and not final.proves_absent("12.s")


def test_broken_json_is_read_job_by_job():
    doc = (
        '{\n    "pbs_version":"2022.1.0",\n    "Jobs":{\n        "1.s":{\n            "job_state":"R",\n'
        '            "comment":"a "quoted" word"\n        },\n        "2.s":{\n            "job_state":"Q"\n'
        "        }\n    }\n}\n"
    )
    answer = PbsProDialect().parse_status(result(["qstat"], stdout=doc), ["1.s", "2.s", "3.s"])
    assert set(answer.statuses) == {"2.s"} and answer.unreadable == {"1.s"}
    assert not answer.complete and not answer.proves_absent("3.s")


@pytest.mark.parametrize(
    "dialect,stderr,setting",
    [
        (PbsProDialect(), "qstat: invalid option -- 'F'\nusage: \n  qstat [-f [-1]] [-W site_specific] [-x]\n", "torque"),
        (PbsProDialect(), "Unknown option: F\nUnknown option: x\nUsage:\n    qstat [-f] [-a|-i|-r]\n", "torque"),
        (TorqueDialect(), "qstat: conflicting options.\nusage: \nqstat [-f] [-F format] [-D delim]\n", "pbspro"),
    ],
)
def test_the_other_flavour_is_named_in_the_error(dialect, stderr, setting):
    with pytest.raises(SchedulerError, match=f"flavor='{setting}'"):
        dialect.parse_status(result(["qstat"], rc=2, stderr=stderr), ["1"])


def test_qdel_refusal_even_with_status_zero_is_refused():
    with pytest.raises(SchedulerError, match="refused"):
        PbsProDialect().parse_cancel(result(["qdel", "1.s"], rc=0, stderr="qdel: Unauthorized Request  1.s\n"), ["1.s"])


@pytest.mark.parametrize(("exec_host", "nodes"), [
    ("node1/0*2+node2/0*2", "node1,node2"), ("n1/0+n1/1+n1/2", "n1"), ("", None),
])
def test_usage_names_each_execution_host_once(exec_host, nodes):
    from molq_pbs.parse import usage_from_record

    usage = usage_from_record({"exec_host": exec_host, "resources_used.walltime": "00:00:05"})
    assert usage is not None and usage.nodes == nodes

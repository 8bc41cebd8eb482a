"""Golden-file tests: SlurmDialect's parsers on output captured from real SLURM 22.05 clusters
(``golden/real``, see capture_golden.py) and on hand-written rows for states a test cluster
cannot produce (``golden/hand``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from molq.batch import AccountingUnavailable
from molq.errors import SchedulerError, SubmitError, TransientSchedulerError
from molq.model import JobState, QueueEntry, SubState
from molq.transport import CommandResult
from molq_slurm import SlurmDialect

GOLDEN = Path(__file__).resolve().parent / "golden"
REAL_CLUSTERS = ("molqacct", "molqnoacct")
WEIRD_NAME = 'weird name | with "quotes" and ünïcödé 名前 = x'


def golden(relative: str, argv: list[str] | None = None) -> CommandResult:
    """A CommandResult from ``<relative>.stdout/.stderr/.rc`` under golden/."""
    base = GOLDEN / relative
    stdout = base.with_name(base.name + ".stdout")
    stderr = base.with_name(base.name + ".stderr")
    rc = base.with_name(base.name + ".rc")
    return CommandResult(
        tuple(argv or ["slurm-command"]),
        int(rc.read_text().strip()) if rc.exists() else 0,
        stdout.read_text() if stdout.exists() else "",
        stderr.read_text() if stderr.exists() else "",
    )


def scenarios(cluster: str) -> dict[str, str]:
    return json.loads((GOLDEN / "real" / cluster / "scenarios.json").read_text())


@pytest.fixture(params=REAL_CLUSTERS)
def real(request: pytest.FixtureRequest) -> str:
    return request.param


# -- squeue status: active snapshot -------------------------------------------------------------


def test_status_while_jobs_run(real: str) -> None:
    ids = scenarios(real)
    # squeue's own reading: with accounting a SIGKILL end is left to it (see below)
    answer = SlurmDialect(use_accounting=False).parse_status(
        golden(f"real/{real}/squeue_status_active"), list(ids.values())).statuses
    st = {name: answer[sid] for name, sid in ids.items()}
    assert set(answer) == set(ids.values())
    assert st["running"].state == JobState.RUNNING and st["running"].started_at
    assert st["running"].finished_at is None  # the projected end is not a fact
    assert st["weird_name"].state == JobState.RUNNING
    assert st["held"].state == JobState.QUEUED and st["held"].started_at is None
    assert "JobHeldUser" in (st["held"].reason or "")
    # one running task + pending tasks: the array is running
    assert st["array_throttled"].state == JobState.RUNNING
    assert st["array_throttled"].raw_state.startswith("array task: ")
    never = st["dep_never"]
    assert never.state == JobState.QUEUED and never.dependency_never_satisfied
    assert "DependencyNeverSatisfied" in (never.reason or "")
    assert not st["held"].dependency_never_satisfied
    # ended less than MinJobAge ago: squeue --states=all still reports them, with exit status
    assert (st["ok"].state, st["ok"].exit_code) == (JobState.SUCCEEDED, 0)
    assert (st["exit7"].state, st["exit7"].exit_code, st["exit7"].exit_signal) == (JobState.FAILED, 7, None)
    assert (st["cancel_running"].state, st["cancel_running"].exit_signal) == (JobState.CANCELLED, 15)
    assert st["cancel_running"].started_at is not None
    pending_cancel = st["cancel_pending"]
    assert pending_cancel.state == JobState.CANCELLED
    assert pending_cancel.exit_code is None and pending_cancel.started_at is None


def test_status_after_jobs_ended(real: str) -> None:
    ids = scenarios(real)
    # squeue's own reading: with accounting a SIGKILL end is left to it (see below)
    answer = SlurmDialect(use_accounting=False).parse_status(
        golden(f"real/{real}/squeue_status_final"), list(ids.values())).statuses
    st = {name: answer[sid] for name, sid in ids.items()}
    assert (st["exit137"].state, st["exit137"].exit_code, st["exit137"].exit_signal) == (JobState.FAILED, 137, 9)
    killed = st["script_killed"]
    assert (killed.state, killed.exit_code, killed.exit_signal) == (JobState.FAILED, 137, 9)
    assert "JobLaunchFailure" in (killed.reason or "") and "SIGKILL" in (killed.reason or "")
    timeout = st["timeout"]
    assert timeout.state == JobState.TIMED_OUT and timeout.raw_state == "TIMEOUT"
    assert timeout.exit_signal == 15 and timeout.finished_at > timeout.started_at
    array = st["array"]  # tasks 1 and 3 exit 1, tasks 2 and 4 exit 0
    assert (array.state, array.exit_code) == (JobState.FAILED, 1)
    assert array.reason is not None and "(first: 1: " in array.reason
    assert "2 COMPLETED" in array.raw_state and "2 FAILED" in array.raw_state
    assert st["array_throttled"].state == JobState.SUCCEEDED
    assert st["weird_name"].state == JobState.CANCELLED
    for name in ("ok", "exit7", "timeout", "array"):
        assert st[name].state.is_terminal and st[name].finished_at is not None


def test_sigkill_ends_are_left_to_accounting(real: str) -> None:
    # squeue cannot tell an OverMemoryKill from another SIGKILL: with accounting the job is
    # "ended" (no status) and the same refresh asks sacct, whose steps tell.
    ids = scenarios(real)
    answer = SlurmDialect().parse_status(golden(f"real/{real}/squeue_status_final"), list(ids.values()))
    for name in ("exit137", "script_killed"):
        assert ids[name] in answer.ended and ids[name] not in answer.statuses, name
    assert answer.statuses[ids["exit7"]].state == JobState.FAILED  # any other end stands


def test_iso_times_are_read_when_slurm_time_format_is_not_set(real: str) -> None:
    ids = scenarios(real)
    dialect = SlurmDialect()
    epoch = dialect.parse_status(golden(f"real/{real}/squeue_status_active"), list(ids.values())).statuses
    iso = dialect.parse_status(golden(f"real/{real}/squeue_status_active_iso"), list(ids.values())).statuses
    sid = ids["running"]
    # Both captures come from the same moment: the ISO form (cluster local time, read in
    # this process's time zone) names the same second -- this machine ran both.
    assert iso[sid].started_at == epoch[sid].started_at


def test_status_ignores_rows_of_jobs_not_asked_for(real: str) -> None:
    ids = scenarios(real)
    answer = SlurmDialect().parse_status(golden(f"real/{real}/squeue_status_final"), [ids["exit7"]]).statuses
    assert list(answer) == [ids["exit7"]]


def test_unknown_single_id_means_not_in_queue_not_an_error(real: str) -> None:
    result = golden(f"real/{real}/squeue_status_unknown_single")
    assert result.returncode != 0 and "Invalid job id specified" in result.stderr
    assert SlurmDialect().parse_status(result, ["999999"]).statuses == {}


def test_unknown_ids_among_many_are_simply_absent(real: str) -> None:
    result = golden(f"real/{real}/squeue_status_unknown_many")
    assert result.returncode == 0
    assert SlurmDialect().parse_status(result, ["999998", "999999"]).statuses == {}


def test_invalid_job_id_with_several_ids_is_not_an_empty_answer() -> None:
    # Never seen for several ids, but if it happens it must not hide active jobs.
    result = CommandResult(("squeue",), 1, "", "slurm_load_jobs error: Invalid job id specified\n")
    with pytest.raises(SchedulerError):
        SlurmDialect().parse_status(result, ["1", "2"])


# -- rare states (hand-written rows) -----------------------------------------------------------

RARE_STATUS = {
    "101": (JobState.FAILED, None, None, "out of memory"),
    "102": (JobState.FAILED, None, None, "node failure"),
    "103": (JobState.FAILED, 143, 15, "preempted"),
    "104": (JobState.FAILED, None, None, "node failed to boot"),
    "105": (JobState.TIMED_OUT, None, None, "deadline"),
    "106": (JobState.QUEUED, None, None, "BeginTime"),
    "107": (JobState.RUNNING, None, None, None),
    "108": (JobState.CANCELLED, None, None, "revoked"),
    "109": (JobState.RUNNING, None, None, None),
    "110": (JobState.FAILED, 1, None, "special exit"),
    "111": (JobState.RUNNING, None, None, None),
    "112": (JobState.RUNNING, None, None, None),
    "113": (JobState.RUNNING, None, None, None),
    "114": (JobState.RUNNING, None, None, None),
    "115": (JobState.QUEUED, None, None, None),
    "116": (JobState.QUEUED, None, None, "JobHeldAdmin"),
    "117": (JobState.QUEUED, None, None, None),
    "118": (JobState.QUEUED, None, None, "ReservationDeleted"),
    "119": (JobState.RUNNING, None, None, "TELEPORTING"),
    "120": (JobState.QUEUED, None, None, "WARPING"),
}


def test_every_rare_state_in_squeue() -> None:
    answer = SlurmDialect().parse_status(golden("hand/squeue_status_rare"), list(RARE_STATUS)).statuses
    assert set(answer) == set(RARE_STATUS)
    for sid, (state, code, sig, reason) in RARE_STATUS.items():
        got = answer[sid]
        assert (got.state, got.exit_code, got.exit_signal) == (state, code, sig), sid
        if reason is None:
            assert got.reason is None, sid
        else:
            assert reason in (got.reason or ""), sid
    assert answer["119"].raw_state == "TELEPORTING"  # unknown states are kept raw
    assert answer["115"].started_at is None  # CONFIGURING: user code not started


# -- sacct ---------------------------------------------------------------------------------------


def test_sacct_final_states_from_the_accounting_cluster() -> None:
    ids = scenarios("molqacct")
    answer = SlurmDialect().parse_terminal(golden("real/molqacct/sacct"), list(ids.values())).statuses
    st = {name: answer.get(sid) for name, sid in ids.items()}
    assert (st["ok"].state, st["ok"].exit_code) == (JobState.SUCCEEDED, 0)
    assert (st["exit7"].state, st["exit7"].exit_code) == (JobState.FAILED, 7)
    # sacct subtracts 128 from codes >= 128: exit 137 shows as 9:0 (SlurmScheduler fixes it
    # up from the exit-code file); a script killed by a signal shows as 0:9.
    assert (st["exit137"].state, st["exit137"].exit_code) == (JobState.FAILED, 9)
    assert (st["script_killed"].exit_code, st["script_killed"].exit_signal) == (137, 9)
    assert st["timeout"].state == JobState.TIMED_OUT and st["timeout"].exit_code is None
    assert st["cancel_running"].state == JobState.CANCELLED
    assert st["cancel_running"].raw_state == "CANCELLED by 0"
    assert st["cancel_running"].reason == "cancelled by uid 0"
    assert st["held"].state == JobState.CANCELLED and st["held"].started_at is None
    assert st["dep_never"].state == JobState.QUEUED  # still pending: alive, not unknown
    assert (st["array"].state, st["array"].exit_code) == (JobState.FAILED, 1)
    assert st["array_throttled"].state == JobState.SUCCEEDED
    assert st["array_throttled"].started_at < st["array_throttled"].finished_at
    # --duplicates lists the requeued job's first attempt (REQUEUED) and its rerun: the rerun
    # counts, it is no array task.
    requeued = golden("real/molqacct/sacct").stdout.count(f"\n{ids['requeued']}|")
    assert requeued == 2
    assert (st["requeued"].state, st["requeued"].exit_code) == (JobState.FAILED, 3)
    # the heterogeneous job's two components (67+0, 67+1) are one job
    assert st["het"].state == JobState.CANCELLED and "het job component: 2 CANCELLED" in st["het"].raw_state


def test_status_of_requeued_and_heterogeneous_jobs(real: str) -> None:
    ids = scenarios(real)
    dialect = SlurmDialect()
    active = dialect.parse_status(golden(f"real/{real}/squeue_status_active"), list(ids.values())).statuses
    final = dialect.parse_status(golden(f"real/{real}/squeue_status_final"), list(ids.values())).statuses
    assert active[ids["requeued"]].state == JobState.QUEUED  # requeued: waits for its begin time
    assert (final[ids["requeued"]].state, final[ids["requeued"]].exit_code) == (JobState.FAILED, 3)
    # squeue -O JobID prints each component's own id; HetJobID ties them to the job.
    assert active[ids["het"]].state == JobState.QUEUED and "2 PENDING" in active[ids["het"]].raw_state
    assert final[ids["het"]].state == JobState.CANCELLED


def test_sacct_reports_disabled_accounting() -> None:
    with pytest.raises(AccountingUnavailable):
        SlurmDialect().parse_terminal(golden("real/errors/sacct_disabled"), ["1"])


def test_sacct_database_down_is_transient_not_disabled() -> None:
    result = golden("real/errors/sacct_dbd_down", ["sacct", "--parsable2"])
    dialect = SlurmDialect()
    assert dialect.is_transient(result)
    with pytest.raises(TransientSchedulerError) as info:
        dialect.parse_terminal(result, ["1"])
    assert not isinstance(info.value, AccountingUnavailable)


RARE_SACCT = {
    "201": (JobState.FAILED, None, None),
    "202": (JobState.FAILED, None, None),
    "203": (JobState.FAILED, 143, 15),
    "204": (JobState.FAILED, None, None),
    "205": (JobState.TIMED_OUT, None, None),
    "206": (JobState.CANCELLED, None, None),
    "207": (JobState.CANCELLED, None, None),
    "208": (JobState.FAILED, 3, None),
    "220": (JobState.TIMED_OUT, None, None),
    "230": (JobState.FAILED, 4, None),
    "240": (JobState.SUCCEEDED, 0, None),
}


def test_sacct_rare_states_arrays_and_steps() -> None:
    asked = [*RARE_SACCT, "209", "210"]
    answer = SlurmDialect().parse_terminal(golden("hand/sacct_rare"), asked).statuses
    assert set(answer) == set(RARE_SACCT) | {"209", "210"}  # 999 was not asked about
    assert not answer["209"].state.is_terminal and not answer["210"].state.is_terminal  # alive
    for sid, (state, code, sig) in RARE_SACCT.items():
        got = answer[sid]
        assert (got.state, got.exit_code, got.exit_signal) == (state, code, sig), sid
    assert answer["206"].reason == "cancelled by uid 1000"
    assert answer["220"].reason == "1 of 3 array tasks timed_out (first: 2: time limit reached)"
    assert answer["240"].started_at == pytest.approx(answer["240"].finished_at - 100)


def test_sacct_rows_are_matched_by_raw_id_too() -> None:
    # An array task asked for by its own job id (JobIDRaw) is found.
    answer = SlurmDialect().parse_terminal(golden("hand/sacct_rare"), ["212"]).statuses
    assert answer["212"].state == JobState.FAILED and answer["212"].exit_code == 2


# -- scontrol (no accounting) --------------------------------------------------------------------


def test_scontrol_final_states(real: str) -> None:
    ids = scenarios(real)
    dialect = SlurmDialect()
    answer = dialect.parse_fallback_terminal(golden(f"real/{real}/scontrol_all"), list(ids.values())).statuses
    st = {name: answer.get(sid) for name, sid in ids.items()}
    assert (st["ok"].state, st["ok"].exit_code) == (JobState.SUCCEEDED, 0)
    assert (st["exit7"].state, st["exit7"].exit_code) == (JobState.FAILED, 7)
    assert (st["exit137"].exit_code, st["exit137"].exit_signal) == (137, 9)  # scontrol is exact
    assert (st["script_killed"].exit_code, st["script_killed"].exit_signal) == (137, 9)
    assert st["timeout"].state == JobState.TIMED_OUT and st["timeout"].exit_signal == 15
    assert st["weird_name"].state == JobState.CANCELLED
    assert (st["array"].state, st["array"].exit_code) == (JobState.FAILED, 1)
    assert st["array_throttled"].state == JobState.SUCCEEDED
    assert st["dep_never"].state == JobState.QUEUED  # alive, not unknown
    assert st["cancel_pending"].started_at is None
    assert st["het"].state == JobState.CANCELLED and st["het"].raw_state.startswith("het job component: ")


def test_scontrol_single_job(real: str) -> None:
    sid = scenarios(real)["exit7"]
    answer = SlurmDialect().parse_fallback_terminal(golden(f"real/{real}/scontrol_single"), [sid]).statuses
    assert (answer[sid].state, answer[sid].exit_code) == (JobState.FAILED, 7)


def test_scontrol_forgotten_job_is_no_answer(real: str) -> None:
    result = golden(f"real/{real}/scontrol_unknown")
    assert result.returncode != 0
    assert SlurmDialect().parse_fallback_terminal(result, ["999999"]).statuses == {}


def test_scontrol_names_and_paths_cannot_fake_fields() -> None:
    answer = SlurmDialect().parse_fallback_terminal(golden("hand/scontrol_rare"), ["301", "302", "303", "304"]).statuses
    # 301's name contains "JobState=RUNNING ... ExitCode=5:0"; its real state is CANCELLED 0:15.
    assert (answer["301"].state, answer["301"].exit_signal) == (JobState.CANCELLED, 15)
    assert answer["302"].state == JobState.FAILED and answer["302"].reason == "out of memory"
    assert answer["302"].exit_signal is None
    assert answer["303"].state == JobState.FAILED and answer["303"].exit_code is None
    assert answer["304"].state == JobState.RUNNING  # still running: alive, not final


def test_scontrol_parses_real_weird_name() -> None:
    from molq_slurm._parse import parse_scontrol_record

    line = next(
        ln for ln in (GOLDEN / "real/molqacct/scontrol_all.stdout").read_text().splitlines()
        if WEIRD_NAME in ln
    )
    rec = parse_scontrol_record(line)
    assert rec["JobName"] == WEIRD_NAME
    # SIGTERM reached the batch shell (0:15) or its child, and the shell exited 143
    assert rec["JobState"] == "CANCELLED" and rec["ExitCode"] in ("0:15", "143:0")


def test_use_accounting_false_reads_final_states_from_scontrol(real: str) -> None:
    ids = scenarios(real)
    dialect = SlurmDialect(use_accounting=False)
    argv = dialect.terminal_argv(list(ids.values()), None)
    assert argv is not None and argv[0] == "scontrol"
    assert dialect.fallback_terminal_argv(list(ids.values())) is None
    answer = dialect.parse_terminal(golden(f"real/{real}/scontrol_all"), list(ids.values())).statuses
    assert answer[ids["exit7"]].exit_code == 7


# -- queue and adoption --------------------------------------------------------------------------


def test_queue_lists_every_job_with_names_intact(real: str) -> None:
    # squeue_queue was captured on its own (with Reason, 2026-12-02: held, suspended,
    # requeued-held, dependency jobs), so its rows are found by job name, not scenarios.json.
    entries = SlurmDialect().parse_queue(golden(f"real/{real}/squeue_queue"))
    by_name: dict[str | None, list[QueueEntry]] = {}
    for entry in entries:
        by_name.setdefault(entry.name, []).append(entry)
    (weird,) = by_name[WEIRD_NAME]
    assert weird.user == "root" and weird.partition == "debug"
    assert weird.state == JobState.RUNNING and weird.raw_state == "RUNNING" and weird.sub_state is None
    assert weird.submit_time is not None and weird.start_time is not None
    (held,) = by_name["held"]
    assert held.state == JobState.QUEUED and held.start_time is None
    assert (held.sub_state, held.sub_state_reason) == (SubState.HELD, "JobHeldUser")
    (suspended,) = by_name["suspended"]
    assert (suspended.state, suspended.sub_state) == (JobState.RUNNING, SubState.SUSPENDED)
    (requeue_hold,) = by_name["requeue-hold"]
    assert (requeue_hold.state, requeue_hold.sub_state) == (JobState.QUEUED, SubState.HELD)
    assert requeue_hold.sub_state_reason == "job requeued in held state"
    (dependent,) = by_name["dependency"]
    assert (dependent.sub_state, dependent.sub_state_reason) == (SubState.WAITING_DEPENDENCY, "Dependency")
    (too_big,) = by_name["too-big"]
    assert (too_big.sub_state, too_big.sub_state_reason) == (SubState.WAITING_RESOURCES, "Resources")
    array = {e.scheduler_job_id.partition("_")[2]: e for e in by_name["array-throttled"]}
    assert array["1"].state == JobState.RUNNING
    assert array["[2-3%1]"].state == JobState.QUEUED and array["[2-3%1]"].sub_state is None  # its turn


def test_adopt_finds_the_tagged_job(real: str) -> None:
    ids = scenarios(real)
    tag = "molq-0123456789abcdef"
    found = SlurmDialect().parse_adopt(golden(f"real/{real}/squeue_adopt"), [tag, "molq-unknown"])
    assert found == {tag: ids["weird_name"]}


def test_adopt_takes_the_array_id_and_the_first_duplicate() -> None:
    stdout = (
        "31|30|2|RUNNING|molq-aa\n"
        "30|30|1|RUNNING|molq-aa\n"
        "45|45|N/A|PENDING|molq-bb | with pipe\n"
        "44|44|N/A|PENDING|molq-bb | with pipe\n"
        "46|46|N/A|PENDING|molq-bb\n"
    )
    found = SlurmDialect().parse_adopt(CommandResult(("squeue",), 0, stdout, ""), ["molq-aa", "molq-bb"])
    assert found == {"molq-aa": "30", "molq-bb": "46"}


def test_adopt_names_every_array_under_one_tag_in_order() -> None:
    # The parts of a split array: one tag, several arrays (the runner checks the count).
    stdout = (
        "52|52|[0-3]|PENDING|molq-cc\n"
        "41|40|1|RUNNING|molq-cc\n"
        "40|40|0|RUNNING|molq-cc\n"
        "47|47|[0-1]|PENDING|molq-cc\n"
    )
    found = SlurmDialect().parse_adopt(CommandResult(("squeue",), 0, stdout, ""), ["molq-cc"])
    assert found == {"molq-cc": "40,47,52"}


# -- sbatch --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sbatch_parsable", "sbatch_plain", "sbatch_parsable_clusters"])
def test_sbatch_job_id(name: str) -> None:
    result = golden(f"real/submit/{name}")
    expected = result.stdout.strip().replace("Submitted batch job ", "").split(";")[0]
    assert expected.isdigit()
    assert SlurmDialect().parse_submit(result) == expected


@pytest.mark.parametrize(
    "relative, message",
    [
        ("real/errors/sbatch_invalid_partition", "Invalid partition name specified"),
        ("real/errors/sbatch_invalid_reservation", "Requested reservation is invalid"),
        ("real/errors/sbatch_invalid_gres", "Invalid generic resource"),
        ("hand/errors/sbatch_invalid_account", "Invalid account or account/partition combination specified"),
        ("hand/errors/sbatch_invalid_qos", "Invalid qos specification"),
    ],
)
def test_refused_submission_fails_fast_with_slurm_message(relative: str, message: str) -> None:
    result = golden(relative, ["sbatch", "--parsable", "job.sh"])
    dialect = SlurmDialect()
    assert not dialect.is_transient(result)
    with pytest.raises(SubmitError) as info:
        dialect.parse_submit(result)
    assert message in str(info.value) and message in info.value.stderr


@pytest.mark.parametrize(
    "relative, retry",
    [
        ("real/errors/sbatch_controller_down", True),  # never connected: safe to resend
        ("hand/errors/sbatch_busy", True),  # controller said "not now"
        ("hand/errors/sbatch_socket_timeout", False),  # the job may have been queued
        ("hand/errors/sbatch_zero_bytes", False),
    ],
)
def test_submission_is_retried_only_when_it_cannot_duplicate_a_job(relative: str, retry: bool) -> None:
    result = golden(relative, ["sbatch", "--parsable", "job.sh"])
    dialect = SlurmDialect()
    assert dialect.is_transient(result) is retry
    if not retry:
        with pytest.raises(TransientSchedulerError, match="may or may not be queued"):
            dialect.parse_submit(result)


def test_sbatch_without_an_id_is_an_error() -> None:
    with pytest.raises(SchedulerError, match="no job id"):
        SlurmDialect().parse_submit(CommandResult(("sbatch",), 0, "\n", ""))


# -- transient errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relative, argv0",
    [
        ("real/errors/squeue_controller_down", "squeue"),
        ("real/errors/scancel_controller_down", "scancel"),
        ("real/errors/sacct_dbd_down", "sacct"),
        ("hand/errors/squeue_socket_timeout", "squeue"),
        ("hand/errors/squeue_not_responding", "squeue"),
        ("hand/errors/squeue_zero_bytes", "squeue"),
        ("hand/errors/scontrol_socket_timeout", "scontrol"),
    ],
)
def test_transient_failures(relative: str, argv0: str) -> None:
    assert SlurmDialect().is_transient(golden(relative, [argv0]))


@pytest.mark.parametrize(
    "relative, argv0",
    [
        ("real/errors/sacct_disabled", "sacct"),
        ("hand/errors/squeue_invalid_user", "squeue"),
        ("hand/errors/scancel_denied", "scancel"),
    ],
)
def test_permanent_failures(relative: str, argv0: str) -> None:
    assert not SlurmDialect().is_transient(golden(relative, [argv0]))


def test_failed_status_query_raises_instead_of_answering_empty() -> None:
    dialect = SlurmDialect()
    transient = golden("real/errors/squeue_controller_down", ["squeue"])
    with pytest.raises(TransientSchedulerError):
        dialect.parse_status(transient, ["1", "2"])
    with pytest.raises(SchedulerError):
        dialect.parse_queue(golden("hand/errors/squeue_invalid_user", ["squeue"]))
    with pytest.raises(SchedulerError):
        dialect.parse_fallback_terminal(golden("hand/errors/scontrol_socket_timeout", ["scontrol"]), ["1", "2"])
    with pytest.raises(SchedulerError, match="cannot read"):
        dialect.parse_status(CommandResult(("squeue",), 0, "garbage\n", ""), ["1"])


# -- scancel -------------------------------------------------------------------------------------


def test_cancel_command_line() -> None:
    assert SlurmDialect().cancel_argv(["1", "2", "3"]) == ["scancel", "1", "2", "3"]


@pytest.mark.parametrize(
    "relative",
    ["real/molqacct/scancel_finished", "hand/errors/scancel_completed", "hand/errors/scancel_invalid_id"],
)
def test_cancelling_a_finished_job_is_fine(relative: str) -> None:
    SlurmDialect().check_cancel(golden(relative, ["scancel"]), ["12", "99999"])


@pytest.mark.parametrize("relative", ["hand/errors/scancel_mixed", "hand/errors/scancel_denied", "real/errors/scancel_controller_down"])
def test_other_cancel_failures_raise(relative: str) -> None:
    with pytest.raises(SchedulerError, match="scancel failed"):
        SlurmDialect().check_cancel(golden(relative, ["scancel"]), ["12", "13"])


# -- command lines -------------------------------------------------------------------------------


def test_status_and_accounting_command_lines() -> None:
    dialect = SlurmDialect()
    status = dialect.status_argv(["1", "2"])
    assert status[:4] == ["squeue", "--noheader", "--states=all", "--jobs=1,2"]
    assert status[4].startswith("--Format=JobID:|,")
    sacct = dialect.terminal_argv(["1", "2"], 1_700_000_000.0)
    assert sacct is not None and sacct[0] == "sacct"
    assert "--parsable2" in sacct and "--jobs=1,2" in sacct
    # two days before the hint, to survive any time-zone difference with the cluster
    assert "--starttime=2023-11-12T22:13:20" in sacct
    assert "--starttime=2000-01-01T00:00:00" in dialect.terminal_argv(["1"], None)  # type: ignore[operator]
    assert dialect.fallback_argv(["7"]) == ["scontrol", "show", "job", "-o", "7"]
    assert dialect.fallback_argv(["7", "8"]) == ["scontrol", "show", "job", "-o"]
    assert dialect.queue_argv(None)[2] == "--me"
    assert dialect.queue_argv("alice")[2] == "--user=alice"


def test_a_partly_unsatisfiable_array_stays_alive() -> None:
    def row(task: str, reason: str) -> str:
        return f"{task}|50|{task[-1]}|N/A|N/A|PENDING|{reason}|0|N/A|N/A|1700000000|molq-x\n"

    both = CommandResult(("squeue",), 0, row("51", "DependencyNeverSatisfied") + row("52", "DependencyNeverSatisfied"), "")
    one = CommandResult(("squeue",), 0, row("51", "DependencyNeverSatisfied") + row("52", "Priority"), "")
    assert SlurmDialect().parse_status(both, ["50"]).statuses["50"].dependency_never_satisfied
    assert not SlurmDialect().parse_status(one, ["50"]).statuses["50"].dependency_never_satisfied


# -- properties ----------------------------------------------------------------------------------

# Any text SLURM can hold in a name: everything but NUL and the newline that ends a line.
NAMES = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\x00"), min_size=1, max_size=60)


@given(name=NAMES)
@settings(max_examples=300)
def test_any_job_name_survives_the_queue_parser(name: str) -> None:
    line = f"17|17|N/A|root|debug|RUNNING|None|1700000000|1700000001|{name}\n"
    other = "18|18|N/A|root|debug|PENDING|Priority|1700000002|N/A|x\n"
    (entry, second) = SlurmDialect().parse_queue(CommandResult(("squeue",), 0, line + other, ""))
    assert entry.name == name and entry.scheduler_job_id == "17" and entry.state == JobState.RUNNING
    assert second.scheduler_job_id == "18"


def _sbatch_reads(directive: str) -> str:
    """How sbatch reads the value of one ``#SBATCH --opt=value`` line: double quotes group,
    a backslash takes the next character literally, unquoted whitespace ends the value."""
    text = directive.split("=", 1)[1]
    out, quoted, escaped = [], False, False
    for ch in text:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch.isspace() and not quoted:
            break
        else:
            out.append(ch)
    return "".join(out)


@given(name=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60).filter(str.strip))
@settings(max_examples=300)
def test_any_job_name_survives_directive_quoting(name: str) -> None:
    assert _sbatch_reads(SlurmDialect.directive("--job-name", name)) == name


# -- identity: a scheduler id reused by another job ----------------------------------------------


def _sacct(*rows: str) -> CommandResult:
    """sacct's answer for rows given as ``JobID|...|Submit|Comment``: the usage fields molq also
    asks for (DerivedExitCode ... NodeList, before Comment) are empty."""
    def full(row: str) -> str:
        head = row.split("|", 8)
        return "|".join([*head[:8], *[""] * 9, head[8]])
    return CommandResult(("sacct",), 0, "".join(full(r) + "\n" for r in rows), "")


def test_for_jobs_drops_records_of_another_job_under_the_same_id() -> None:
    from molq.scheduler import TrackedJob

    ours = TrackedJob("abc", "2001", "/d", submitted_at=1_800_000_000.0)
    dialect = SlurmDialect()
    bound = dialect.for_jobs([ours])
    assert bound is not dialect and dialect._expected == {}  # pure: the original is unchanged
    answer = _sacct(
        "2001|2001|FAILED|5:0|1800000001|1800000009|None|1800000001|molq-abc",
        "2001|2001|RUNNING|0:0|1800000100|Unknown|None|1800000100|molq-someone-else",
    )
    assert dialect.parse_terminal(answer, ["2001"]).statuses["2001"].state == JobState.RUNNING
    got = bound.parse_terminal(answer, ["2001"]).statuses["2001"]
    assert (got.state, got.exit_code) == (JobState.FAILED, 5)
    # Without comments (sacct keeps none unless AccountingStoreFlags=job_comment), a record
    # submitted long before molq's submission is another job.
    old = _sacct("2001|2001|COMPLETED|0:0|1600000000|1600000010|None|1600000000|",
                 "2001|2001|RUNNING|0:0|1800000002|Unknown|None|1800000001|")
    assert bound.parse_terminal(old, ["2001"]).statuses["2001"].state == JobState.RUNNING
    only_old = _sacct("2001|2001|COMPLETED|0:0|1600000000|1600000010|None|1600000000|")
    assert bound.parse_terminal(only_old, ["2001"]).statuses == {}
    squeue = CommandResult(("squeue",), 0, "2001|2001|N/A|N/A|N/A|RUNNING|None|0|1800000100|N/A|1800000100|molq-zzz\n", "")
    assert bound.parse_status(squeue, ["2001"]).statuses == {}


def test_timeout_marker_is_not_sighup_anywhere() -> None:
    dialect = SlurmDialect()
    sacct = dialect.parse_terminal(_sacct("9|9|TIMEOUT|0:1|1700000000|1700000060|TimeLimit|1700000000|"), ["9"]).statuses["9"]
    squeue = dialect.parse_status(CommandResult(("squeue",), 0, "9|9|N/A|N/A|N/A|TIMEOUT|TimeLimit|1|1700000000|1700000060|1700000000|\n", ""), ["9"]).statuses["9"]
    scontrol = dialect.parse_fallback_terminal(CommandResult(("scontrol",), 0, "JobId=9 JobName=x UserId=u(1) GroupId=g(1) JobState=TIMEOUT ExitCode=0:1 StartTime=1700000000 EndTime=1700000060\n", ""), ["9"]).statuses["9"]
    for status in (sacct, squeue, scontrol):
        assert status.state == JobState.TIMED_OUT
        assert (status.exit_code, status.exit_signal) == (None, None)
        assert "SIGHUP" not in (status.reason or "") and "time limit" in (status.reason or "")
    # A real SIGHUP of a job that did not time out is still a signal.
    hup = dialect.parse_terminal(_sacct("8|8|FAILED|0:1|1700000000|1700000060|None|1700000000|"), ["8"]).statuses["8"]
    assert (hup.exit_code, hup.exit_signal) == (129, 1)


def test_database_errors_are_failures_never_disabled_accounting() -> None:
    dialect = SlurmDialect()
    for rc in (0, 1):
        result = CommandResult(("sacct",), rc, "", "sacct: error: Problem talking to the database: Connection refused\n")
        with pytest.raises(SchedulerError) as info:
            dialect.parse_terminal(result, ["1"])
        assert not isinstance(info.value, AccountingUnavailable)


def test_a_record_cut_short_costs_only_that_record() -> None:
    out = ("1|1|N/A|N/A|N/A|RUNNING|None|0|1700000000|N/A|1700000000|molq-a\n"
           "2|2|N/A|N/A|N/A|RUNN\n"
           "3|3|N/A|N/A|N/A|PENDING|Priority|0|N/A|N/A|1700000000|x\n")
    answer = SlurmDialect().parse_status(CommandResult(("squeue",), 0, out, ""), ["1", "2", "3"])
    assert set(answer.statuses) == {"1", "3"} and answer.unreadable == {"2"} and answer.complete


def test_a_stray_line_makes_the_answer_incomplete_not_wrong() -> None:
    out = "garbage before any record\n1|1|N/A|N/A|N/A|RUNNING|None|0|1700000000|N/A|1700000000|\n"
    answer = SlurmDialect().parse_status(CommandResult(("squeue",), 0, out, ""), ["1", "2"])
    assert answer.statuses["1"].state == JobState.RUNNING
    assert not answer.complete and not answer.proves_absent("2")


@given(comment=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60))
@settings(max_examples=300)
def test_any_comment_survives_the_status_parser(comment: str) -> None:
    rows = (f"17|17|N/A|N/A|N/A|RUNNING|None|0|1700000000|N/A|1700000000|{comment}\n"
            "18|18|N/A|N/A|N/A|COMPLETED|None|0|1700000000|1700000005|1700000000|molq-b\n")
    answer = SlurmDialect().parse_status(CommandResult(("squeue",), 0, rows, ""), ["17", "18"])
    assert answer.statuses["18"].state == JobState.SUCCEEDED
    assert answer.statuses["17"].state == JobState.RUNNING


def test_a_comment_mimicking_a_record_makes_that_job_unreadable_never_wrong() -> None:
    fake = "x\n18|18|N/A|N/A|N/A|FAILED|None|256|1700000000|1700000005|1700000000|y\n17|17|N/A|N/A|N/A|FAILED|None|256|1|2|3|"
    rows = (f"17|17|N/A|N/A|N/A|RUNNING|None|0|1700000000|N/A|1700000000|{fake}\n"
            "18|18|N/A|N/A|N/A|RUNNING|None|0|1700000000|N/A|1700000000|molq-b\n")
    answer = SlurmDialect().parse_status(CommandResult(("squeue",), 0, rows, ""), ["17", "18"])
    assert answer.statuses == {} and answer.unreadable == {"17", "18"}


@pytest.mark.parametrize(
    "rc, stderr, expected",
    [
        (1, "scancel: Terminating job 8\nscancel: error: Kill job error on job id 8: Job/step already completing or completed\n",
         {"8": "already_ended", "9": "requested"}),
        (1, "scancel: error: Kill job error on job id 9: Invalid job id specified\n", {"8": "requested", "9": "already_ended"}),
        (0, "", {"8": "requested", "9": "requested"}),
    ],
)
def test_scancel_outcomes_per_id(rc: int, stderr: str, expected: dict[str, str]) -> None:
    from molq.evidence import CancelOutcome

    got = SlurmDialect().parse_cancel(CommandResult(("scancel", "8", "9"), rc, "", stderr), ["8", "9"])
    assert got == {k: CancelOutcome(v) for k, v in expected.items()}


@pytest.mark.parametrize("rc", [0, 1])
def test_scancel_refusal_raises_even_with_status_0(rc: int) -> None:
    result = CommandResult(("scancel", "13"), rc, "", "scancel: error: Kill job error on job id 13: Access/permission denied\n")
    with pytest.raises(SchedulerError, match="refused"):
        SlurmDialect().parse_cancel(result, ["13"])


@pytest.mark.parametrize(("req_mem", "cpus", "tres", "expected"), [
    ("128M", 1, "billing=1,cpu=1,mem=128M,node=1", 128 << 20),
    # ReqMem wins when readable: per CPU times the CPUs, per node times the nodes.
    ("100Mc", 4, "cpu=4,mem=999M,node=1", 400 << 20),
    ("1Gn", 2, "cpu=2,mem=4G,node=2", 2 << 30),
    # SLURM 22.05 right after the job ended (live, see the corpus): the allocation says it.
    ("16?", 1, "billing=1,cpu=1,mem=128M,node=1", 128 << 20),
    ("", 2, "cpu=2,mem=1.5G,node=1", int(1.5 * (1 << 30))),
    # Nothing readable anywhere: unknown, never a guess.
    ("16?", 1, "billing=1,cpu=1,node=1", None),
    ("16?", 1, "", None),
])
def test_requested_memory_falls_back_to_the_allocation(req_mem, cpus, tres, expected) -> None:
    from molq_slurm._parse import requested_memory

    assert requested_memory(req_mem, cpus, tres) == expected


def test_rows_that_differ_only_in_projections_give_the_same_status() -> None:
    # A pending job's start time is a forecast and a live job's end time a projection: two
    # such rows describe the same status; a running job's start and a finished job's exit do not.
    rows = "\n".join([
        "11|11|N/A|N/A|N/A|PENDING|BeginTime|0|1796192372|NONE|1796188772|",
        "12|12|N/A|N/A|N/A|PENDING|BeginTime|0|1796192999|1796199999|1796188772|",
        "13|13|N/A|N/A|N/A|RUNNING|None|0|1796180000|1796190000|1796170000|",
        "14|14|N/A|N/A|N/A|RUNNING|None|0|1796180500|1796190000|1796170000|",
        "15|15|N/A|N/A|N/A|FAILED|NonZeroExitCode|256|1796180000|1796180100|1796170000|",
        "16|16|N/A|N/A|N/A|FAILED|NonZeroExitCode|768|1796180000|1796180100|1796170000|",
    ]) + "\n"
    got = SlurmDialect().parse_status(CommandResult(("squeue",), 0, rows, ""), [str(i) for i in range(11, 17)]).statuses
    assert got["11"] == got["12"] and got["11"].state == JobState.QUEUED
    assert got["11"].started_at is None and got["11"].finished_at is None and got["11"].sub_state is None
    assert (got["13"].started_at, got["14"].started_at) == (1796180000.0, 1796180500.0)
    assert got["13"].finished_at is None and got["13"].state == JobState.RUNNING
    assert (got["15"].exit_code, got["16"].exit_code) == (1, 3)
    assert got["15"].finished_at == 1796180100.0

"""The example third-party plugin ``molq-at`` (examples/molq-at).

Pure tests read output captured from Debian's at 3.2.5 (``golden/``); live tests drive the real
atd started by ``tests/services/at.sh``, through molq's Submitor, and include molq's scheduler
conformance kit.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from molq import Cluster, JobExecution, JobResources, JobScheduling, JobState, Submitor
from molq.batch import BatchScheduler
from molq.errors import ConfigError, SchedulerError, SubmitError
from molq.evidence import CancelOutcome
from molq.model import JobSpec
from molq.plugins import get_plugin_manager
from molq.scheduler import TrackedJob
from molq.testing import SchedulerConformance
from molq.transport import CommandResult, LocalTransport
from molq_at import AtOptions
from molq_at.dialect import CANCEL_SCRIPT, AtDialect, atrm_outcome, parse_atq
from molq_at.scheduler import AtScheduler, build_scheduler

GOLDEN = Path(__file__).resolve().parent / "golden"


def golden(name: str) -> str:
    return (GOLDEN / name).read_text()


def result(stdout: str = "", stderr: str = "", rc: int = 0, argv: tuple[str, ...] = ("at",)) -> CommandResult:
    return CommandResult(argv, rc, stdout, stderr)


def spec(**kw: Any) -> JobSpec:
    base: dict[str, Any] = dict(
        job_id=uuid.uuid4().hex, command_type="argv", argv=("true",), resources=JobResources(),
        scheduling=JobScheduling(), execution=JobExecution(), cwd="/tmp", dependencies=(),
    )
    base.update(kw)
    return JobSpec(**base)


# -- registration --------------------------------------------------------------------------


def test_registered_through_the_molq_entry_point_group() -> None:
    pm = get_plugin_manager()
    plugin = pm.get_scheduler("at")
    assert plugin.options_type is AtOptions
    info = {i.name: i for i in pm.plugin_infos()}["at"]
    assert info.distribution == "molq-at" and info.error is None
    assert "scheduler:at" in info.provides
    sched = Cluster("box", "at", scheduler_options={"queue": "B"}).scheduler_impl
    # The shared runner itself: everything at-specific is in the dialect.
    assert type(sched) is BatchScheduler
    assert isinstance(sched.dialect, AtDialect) and sched.dialect.options.queue == "B"
    assert type(AtScheduler(LocalTransport())) is BatchScheduler


def test_blocked_plugin_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from molq.errors import PluginNotFoundError
    from molq.plugins import reset_plugin_manager

    monkeypatch.setenv("MOLQ_BLOCK_PLUGINS", "molq-at")
    reset_plugin_manager()
    with pytest.raises(PluginNotFoundError, match="pip install molq-at"):
        Cluster("box", "at")


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="one letter"):
        AtOptions(queue="=")
    with pytest.raises(ConfigError, match="unknown program"):
        AtOptions(binaries={"sbatch": "/bin/true"})
    with pytest.raises(ConfigError, match="positive"):
        AtOptions(term_grace_seconds=0)
    with pytest.raises(ConfigError, match="AtOptions"):
        build_scheduler(LocalTransport(), {"queue": "b"})  # type: ignore[arg-type]


# -- pure dialect ---------------------------------------------------------------------------


def test_parse_submit_reads_the_job_number_from_stderr() -> None:
    assert AtDialect().parse_submit(result(stderr=golden("at_submit_stderr.txt"))) == "11"


def test_parse_submit_refusal_carries_at_message() -> None:
    with pytest.raises(SubmitError, match="Cannot open input file"):
        AtDialect().parse_submit(result(stderr=golden("at_submit_missing_file.txt"), rc=1))


def test_parse_status_maps_queue_letters() -> None:
    out = AtDialect().parse_status(result(golden("atq_o_epoch.txt")), ["11", "12", "13", "99"])
    assert {k: (v.state, v.raw_state) for k, v in out.items()} == {
        "11": (JobState.RUNNING, "="),
        "12": (JobState.QUEUED, "c"),
        "13": (JobState.QUEUED, "Z"),
    }
    assert out["12"].reason == "waiting in at queue c"


def test_parse_status_only_reports_requested_ids() -> None:
    out = AtDialect().parse_status(result(golden("atq_o_epoch.txt")), ["12"])
    assert list(out) == ["12"]


def test_failed_atq_raises_instead_of_reporting_nothing() -> None:
    with pytest.raises(SchedulerError, match="invalid job number"):
        parse_atq(result(stderr="atq: invalid job number\n", rc=1))
    with pytest.raises(SchedulerError, match="cannot read atq line"):
        parse_atq(result("11\tSat Nov 21 06:12:00 2026 = root\n"))


def test_parse_queue_rows_sorted_with_submit_times() -> None:
    entries = AtDialect().parse_queue(result(golden("atq_o_epoch.txt")))
    assert [e.scheduler_job_id for e in entries] == ["11", "12", "13"]
    assert entries[0].state == JobState.RUNNING and entries[0].partition is None
    assert entries[1].partition == "c" and entries[1].submit_time == 1795248720.0
    assert all(e.user == "root" for e in entries)


def test_check_cancel_accepts_finished_and_running_answers() -> None:
    d = AtDialect()
    d.check_cancel(result(stderr=golden("atrm_unknown.txt"), rc=1), ["999"])
    d.check_cancel(result(stderr=golden("atrm_running.txt")), ["5"])
    with pytest.raises(SchedulerError, match="Not owner"):
        d.check_cancel(result(stderr=golden("atrm_not_owner.txt"), rc=1), ["12"])


def test_atrm_answers_as_cancel_outcomes() -> None:
    # atrm_no_permission.txt was captured on Debian's at 3.2.5 as a user listed in /etc/at.deny;
    # atrm_not_owner.txt is at 3.2.5's "<id>: Not owner" (atrm on another user's job).
    assert atrm_outcome(0, golden("atrm_running.txt")) == CancelOutcome.REQUESTED
    assert atrm_outcome(1, golden("atrm_unknown.txt")) == CancelOutcome.ALREADY_ENDED
    assert atrm_outcome(1, golden("atrm_not_owner.txt")) == CancelOutcome.REFUSED
    assert atrm_outcome(1, golden("atrm_no_permission.txt")) == CancelOutcome.REFUSED
    assert atrm_outcome(1, "") == CancelOutcome.REFUSED


def _cancel_report(*lines: tuple[str, int, str, str]) -> CommandResult:
    """The cancel program's answer: one line per job (see CANCEL_SCRIPT)."""
    text = "".join(f"{sid}\t{rc}\t{finding}\t{message.strip()}\n" for sid, rc, finding, message in lines)
    return result(text, argv=("sh",))


def test_parse_cancel_reports_each_job() -> None:
    answer = _cancel_report(
        ("1", 0, "waiting", ""),                                  # removed before it ran
        ("2", 0, "signalled", golden("atrm_running.txt")),        # running: its session got SIGTERM
        ("3", 1, "ended", golden("atrm_unknown.txt")),            # the wrapper wrote its exit code
        ("4", 1, "waiting", golden("atrm_not_owner.txt")),        # someone else's job
        ("5", 0, "no-leader", golden("atrm_running.txt")),        # its session is already gone
        ("6", 0, "not-started", golden("atrm_running.txt")),      # started, but no pid to signal
        ("7", 1, "no-directory", golden("atrm_unknown.txt")),
        ("8", 1, "waiting", golden("atrm_unknown.txt")),          # never ran and no longer queued
        ("9", 0, "kill-failed", golden("atrm_running.txt")),
    )
    ids = [str(i) for i in range(1, 11)]
    out = AtDialect().parse_cancel(answer, ids)
    R, E, F = CancelOutcome.REQUESTED, CancelOutcome.ALREADY_ENDED, CancelOutcome.REFUSED
    assert out == {"1": R, "2": R, "3": E, "4": F, "5": E, "6": F, "7": E, "8": R, "9": F}
    # Job 10 got no line (the program was cut short): no outcome, no guess.
    assert "10" not in out


def test_parse_cancel_without_any_report_is_an_error_not_an_outcome() -> None:
    with pytest.raises(SchedulerError, match="cancel failed"):
        AtDialect().parse_cancel(result(stderr="sh: 1: cannot fork\n", rc=2, argv=("sh",)), ["1"])
    # Lines about ids nobody asked for, or unreadable lines, count for nothing.
    noise = result("77\t0\tsignalled\t\ngarbage\n", argv=("sh",))
    assert AtDialect().parse_cancel(noise, ["1"]) == {}


def test_the_cancel_program_itself_reports_unknown_and_finished_jobs(atd: None, tmp_path: Path) -> None:
    # The real program with the real atrm, on ids at does not have: one job left an exit code.
    done, gone = tmp_path / "done", tmp_path / "gone"
    done.mkdir()
    gone.mkdir()
    (done / "exit_code").write_text("0\n")
    argv = AtDialect().cancel_argv_for([TrackedJob("a", "999991", str(done)), TrackedJob("b", "999992", str(gone))])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    answer = CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    assert AtDialect().parse_cancel(answer, ["999991", "999992"]) == {
        "999991": CancelOutcome.ALREADY_ENDED,
        # never started, not in at's spool: it can never run
        "999992": CancelOutcome.REQUESTED,
    }
    assert "Cannot find jobid 999992" in proc.stdout


def test_capabilities_refuse_what_at_cannot_do() -> None:
    caps = AtDialect.capabilities
    for field in ("cpu_count", "memory", "partition", "account", "time_limit", "dependencies", "job_name"):
        assert field not in caps.supported
    assert {"env", "cwd", "output_file", "error_file"} <= caps.supported
    with pytest.raises(ConfigError, match="dependencies"):
        AtDialect().compile_dependencies([object()])  # type: ignore[list-item]


def test_script_quotes_every_path(tmp_path: Path) -> None:
    job_dir = str(tmp_path / "it's a $dir `x`")
    text = AtDialect(AtOptions(binaries={"setsid": "/opt/my tools/setsid"})).render_script(
        spec(execution=JobExecution(output_file="out put.txt")), job_dir
    )
    # The script must be valid sh, and the unquoted forms must not appear.
    check = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "'/opt/my tools/setsid' -w /bin/sh" in text
    assert "exec > '/tmp/out put.txt' 2> " in text


def test_parse_adopt_keeps_newest_and_wanted_tags() -> None:
    out = AtDialect().parse_adopt(result("4\tabc\n9\tabc\n5\tother\n"), ["molq-abc"])
    assert out == {"molq-abc": "9"}


class RecordingTransport:
    """Answers every command with success and remembers it (no process is run)."""

    is_remote = False

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run(self, argv: list[str], **_kw: Any) -> CommandResult:
        self.calls.append(list(argv))
        return CommandResult(tuple(argv), 0, "", "")


def test_cancel_command_carries_each_job_and_its_directory_once() -> None:
    transport = RecordingTransport()
    sched = build_scheduler(transport)  # type: ignore[arg-type]
    jobs = [TrackedJob(f"job{i}", str(1000 + i), f"/scratch/it's {i}") for i in range(5)]
    jobs.append(TrackedJob("never-submitted", None, "/scratch/none"))
    sched.cancel_many(jobs)
    (argv,) = transport.calls
    assert argv[:3] == ["sh", "-c", CANCEL_SCRIPT] and argv[4:6] == ["atrm", "5"]
    pairs = argv[6:]
    assert list(zip(pairs[::2], pairs[1::2], strict=True)) == [(j.scheduler_job_id, j.job_dir) for j in jobs[:5]]


def test_cancel_of_many_jobs_is_split_to_fit_the_command_line() -> None:
    transport = RecordingTransport()
    sched = build_scheduler(transport)  # type: ignore[arg-type]
    sched.dialect.max_command_chars = 2000
    jobs = [TrackedJob(f"job{i}", str(1000 + i), "/scratch/" + "d" * 150 + f"/{i}") for i in range(40)]
    sched.cancel_many(jobs)
    assert len(transport.calls) > 1
    sent = []
    for argv in transport.calls:
        pairs = argv[6:]
        assert sum(len(a) + 1 for a in pairs) <= 2000
        sent += list(zip(pairs[::2], pairs[1::2], strict=True))
    assert sent == [(j.scheduler_job_id, j.job_dir) for j in jobs]


# -- live: molq's conformance kit against the real atd -------------------------------------


# --8<-- [start:conformance]
class TestAtConformance(SchedulerConformance):
    @pytest.fixture
    def cluster(self, atd: None) -> Cluster:
        return Cluster("conformance-at", "at")

    @pytest.fixture
    def job_timeout(self) -> float:
        return 60.0

    @pytest.fixture
    def unsupported_field(self) -> dict[str, Any]:
        return {"resources": JobResources(cpu_count=2)}
# --8<-- [end:conformance]


# -- live: at-specific behaviour -------------------------------------------------------------


@pytest.fixture
def later_at(tmp_path: Path) -> str:
    """An ``at`` that schedules jobs an hour from now (a site wrapper named in ``binaries``):
    they stay waiting in the queue, so cancel and adoption of waiting jobs can be tested."""
    path = tmp_path / "at-later"
    path.write_text(
        '#!/bin/sh\n# submissions (at ... -f FILE now) run an hour later; anything else (at -c) as is\n'
        'case " $* " in *" -f "*) exec at "$@" + 1 hour ;; esac\nexec at "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _atq_ids() -> set[str]:
    out = subprocess.run(["atq"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _wait_state(submitor: Submitor, job_id: str, state: JobState, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while submitor.get_job(job_id).state != state:
        assert time.monotonic() < deadline, f"job never reached {state}: {submitor.get_job(job_id)}"
        submitor.refresh_jobs()
        time.sleep(0.2)


def test_cancel_running_stops_the_whole_job(atd: None, tmp_path: Path) -> None:
    submitor = Submitor(Cluster("at-live", "at", scheduler_options=AtOptions(term_grace_seconds=2)))
    pidfile = tmp_path / "child.pid"
    handle = submitor.submit_job(
        # A background grandchild that ignores nothing: it must die with the job.
        command=f"sleep 300 & echo $! > {pidfile}; wait",
        execution=JobExecution(cwd=str(tmp_path)),
    )
    _wait_state(submitor, handle.job_id, JobState.RUNNING)
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    child = int(pidfile.read_text())
    handle.cancel()
    record = submitor.get_job(handle.job_id)
    assert record.state == JobState.CANCELLED
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and "Z" not in _proc_state(child):
        assert time.monotonic() < deadline, "the job's background process survived cancel"
        time.sleep(0.1)
    assert record.scheduler_job_id not in _atq_ids()
    # Nothing brings it back.
    submitor.refresh_jobs()
    assert submitor.get_job(handle.job_id).state == JobState.CANCELLED


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def test_waiting_job_is_queued_then_removed_by_cancel(atd: None, later_at: str, tmp_path: Path) -> None:
    submitor = Submitor(Cluster("at-live", "at", scheduler_options=AtOptions(binaries={"at": later_at})))
    handle = submitor.submit_job(argv=["touch", str(tmp_path / "ran")], execution=JobExecution(cwd=str(tmp_path)))
    _wait_state(submitor, handle.job_id, JobState.QUEUED)
    record = submitor.get_job(handle.job_id)
    assert record.raw_state == "b" and record.scheduler_job_id and record.job_dir
    queue = {e.scheduler_job_id: e for e in submitor.target.get_queue()}
    assert queue[record.scheduler_job_id].state == JobState.QUEUED
    assert queue[record.scheduler_job_id].partition == "b"
    handle.cancel()
    assert submitor.get_job(handle.job_id).state == JobState.CANCELLED
    assert record.scheduler_job_id not in _atq_ids()
    assert not (Path(record.job_dir) / "started").exists()


def test_cancel_outcomes_from_the_real_atd(atd: None, later_at: str, tmp_path: Path) -> None:
    sched = build_scheduler(LocalTransport(), AtOptions(binaries={"at": later_at}))
    waiting = spec(cwd=str(tmp_path))
    waiting_dir = tmp_path / "waiting"
    waiting_dir.mkdir()
    sid = sched.submit(waiting, str(waiting_dir))
    assert sid in _atq_ids()
    job = TrackedJob(waiting.job_id, sid, str(waiting_dir))
    assert sched.cancel_many([job]) == {waiting.job_id: CancelOutcome.REQUESTED}
    assert sid not in _atq_ids() and not (waiting_dir / "started").exists()
    # Asked again (a retried cancel): at has forgotten it, and it never started.
    assert sched.cancel_many([job]) == {waiting.job_id: CancelOutcome.REQUESTED}


def test_a_finished_job_is_reported_as_already_ended(atd: None, tmp_path: Path) -> None:
    submitor = Submitor(Cluster("at-live", "at"))
    record = submitor.submit_job(argv=["true"], execution=JobExecution(cwd=str(tmp_path))).wait(timeout=60)
    assert record.state == JobState.SUCCEEDED and record.scheduler_job_id and record.job_dir
    sched = submitor.target.scheduler_impl
    assert sched.cancel_many([TrackedJob(record.job_id, record.scheduler_job_id, record.job_dir)]) == {
        record.job_id: CancelOutcome.ALREADY_ENDED}


def test_the_queue_lists_only_the_users_jobs(atd: None, later_at: str, tmp_path: Path) -> None:
    cluster = Cluster("at-live", "at", scheduler_options=AtOptions(binaries={"at": later_at}))
    submitor = Submitor(cluster)
    handle = submitor.submit_job(argv=["true"], execution=JobExecution(cwd=str(tmp_path)))
    try:
        sid = submitor.get_job(handle.job_id).scheduler_job_id
        me = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        mine = cluster.get_queue()
        assert sid in {e.scheduler_job_id for e in mine} and {e.user for e in mine} == {me}
        assert cluster.get_queue(user="no-such-user-here") == []
    finally:
        handle.cancel()


def test_adoption_finds_a_job_by_its_molq_tag(atd: None, later_at: str, tmp_path: Path) -> None:
    sched = build_scheduler(LocalTransport(), AtOptions(binaries={"at": later_at}))
    s = spec(cwd=str(tmp_path))
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    sid = sched.submit(s, str(job_dir))
    try:
        found = sched.find_adoptable([TrackedJob(s.job_id, None, str(job_dir)),
                                      TrackedJob(uuid.uuid4().hex, None, str(tmp_path / "other"))])
        assert found == {s.job_id: sid}
    finally:
        sched.cancel_many([TrackedJob(s.job_id, sid, str(job_dir))])
    assert sid not in _atq_ids()


def test_job_stdin_is_not_the_spool_and_outputs_go_where_asked(atd: None, tmp_path: Path) -> None:
    submitor = Submitor(Cluster("at-live", "at"))
    record = submitor.submit_job(
        # `cat` reads standard input: at's spool text must not leak into the job.
        command="cat; echo to-out; echo to-err >&2",
        execution=JobExecution(cwd=str(tmp_path), output_file="out.txt", error_file="err.txt"),
    ).wait(timeout=60)
    assert record.state == JobState.SUCCEEDED, record.failure_reason
    assert (tmp_path / "out.txt").read_text() == "to-out\n"
    assert (tmp_path / "err.txt").read_text() == "to-err\n"


def test_killed_job_reports_the_signal(atd: None, tmp_path: Path) -> None:
    submitor = Submitor(Cluster("at-live", "at"))
    record = submitor.submit_job(command="kill -9 $$", execution=JobExecution(cwd=str(tmp_path))).wait(timeout=60)
    assert record.state == JobState.FAILED
    assert record.exit_code == 137 and record.exit_signal == 9


def test_missing_setsid_fails_the_job_with_a_reason(atd: None, tmp_path: Path) -> None:
    submitor = Submitor(Cluster("at-live", "at", scheduler_options=AtOptions(binaries={"setsid": "/nonexistent/setsid"})))
    record = submitor.submit_job(argv=["true"], execution=JobExecution(cwd=str(tmp_path))).wait(timeout=60)
    assert record.state == JobState.FAILED and record.exit_code == 127 and record.job_dir
    assert "could not start the job with /nonexistent/setsid" in (Path(record.job_dir) / "stderr").read_text()


def test_refused_submission_fails_before_anything_runs(atd: None, tmp_path: Path) -> None:
    submitor = Submitor(Cluster("at-live", "at", scheduler_options=AtOptions(queue="b", binaries={"at": "/bin/false"})))
    with pytest.raises(SubmitError):
        submitor.submit_job(argv=["true"], execution=JobExecution(cwd=str(tmp_path)))
    (record,) = submitor.list_jobs(include_terminal=True)
    assert record.state == JobState.FAILED and "submission failed" in (record.failure_reason or "")


def test_many_jobs_one_status_call_each_refresh(atd: None, tmp_path: Path) -> None:
    sched_cluster = Cluster("at-live", "at")
    submitor = Submitor(sched_cluster)
    handles = [submitor.submit_job(argv=["true"], execution=JobExecution(cwd=str(tmp_path))) for _ in range(8)]
    sched = sched_cluster.scheduler_impl
    assert isinstance(sched, BatchScheduler)
    sched.command_log.clear()
    submitor.refresh_jobs()
    assert [name for name, _ in sched.command_log].count("atq") == 1
    records = submitor.watch_jobs([h.job_id for h in handles], timeout=90)
    assert all(r.state == JobState.SUCCEEDED for r in records)
    assert os.environ.get("MOLQ_AT_LEADER") is None

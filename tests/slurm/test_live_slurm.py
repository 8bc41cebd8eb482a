"""The SLURM backend against the real test clusters (tests/services/slurm.sh).

Every test runs on both clusters -- ``molqacct`` (slurmdbd accounting) and ``molqnoacct``
(none: final states come from scontrol and the wrapper's exit-code file). Jobs are driven
through the runner directly (no Submitor): write a job directory, build a JobSpec, submit,
poll until final.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from molq.batch import BatchScheduler
from molq.errors import SubmitError
from molq.model import (
    CompiledDependency,
    JobExecution,
    JobResources,
    JobScheduling,
    JobSpec,
    JobState,
    SchedulerStatus,
)
from molq.scheduler import TrackedJob
from molq.transport import LocalTransport
from molq_slurm import SlurmDialect, SlurmOptions, SlurmScheduler

pytestmark = pytest.mark.slurm

POLL = 0.3
WEIRD = 'molq live | "quoted" ünïcödé 名前 = x'


class Runner:
    """Submits specs into job directories under ``root`` and follows them."""

    def __init__(self, sched: BatchScheduler, root: Path) -> None:
        self.sched = sched
        self.root = root
        self.jobs: list[TrackedJob] = []

    def submit(self, spec: JobSpec, *, dir_name: str | None = None) -> TrackedJob:
        job_dir = self.root / (dir_name or spec.job_id)
        job_dir.mkdir(parents=True)
        sid = self.sched.submit(spec, str(job_dir))
        job = TrackedJob(spec.job_id, sid, str(job_dir), time.time())
        self.jobs.append(job)
        return job

    def wait(
        self,
        jobs: Sequence[TrackedJob],
        until: Callable[[SchedulerStatus], bool] = lambda s: s.state.is_terminal,
        timeout: float = 60,
    ) -> dict[str, SchedulerStatus]:
        """Poll (one squeue per round) until ``until`` holds for every job; jobs that left the
        queue are resolved through accounting / scontrol / exit-code files."""
        deadline = time.monotonic() + timeout
        last: dict[str, SchedulerStatus] = {}
        while True:
            last = self.sched.poll_many(jobs)
            missing = [j for j in jobs if j.job_id not in last]
            if missing:
                last.update(self.sched.resolve_terminal_many(missing, since=time.time() - 3600))
            if all(j.job_id in last and until(last[j.job_id]) for j in jobs):
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; last statuses: {last}")
            time.sleep(POLL)

    def cleanup(self) -> None:
        active = [j for j in self.jobs if j.scheduler_job_id]
        if active:
            try:
                self.sched.cancel_many(active)
            except Exception:  # noqa: BLE001 - best effort after a failed test
                pass


def spec(job_id: str | None = None, **kw) -> JobSpec:
    if "argv" not in kw and "command" not in kw:
        kw["argv"] = ("true",)
    kw.setdefault("command_type", "argv" if "argv" in kw else "command")
    return JobSpec(job_id=job_id or uuid.uuid4().hex, **kw)


@pytest.fixture
def runner(slurm_cluster, tmp_path: Path):
    # As the issue asks: the plain runner with the dialect, SLURM_CONF in its environment.
    r = Runner(BatchScheduler(SlurmDialect(), LocalTransport(), env=slurm_cluster.env), tmp_path)
    yield r
    r.cleanup()


@pytest.fixture
def slurm_runner(slurm_cluster, tmp_path: Path):
    # The scheduler molq builds for Cluster(..., "slurm"): epoch times, sacct exit-code fix.
    r = Runner(SlurmScheduler(LocalTransport(), SlurmOptions(env=slurm_cluster.env)), tmp_path)
    yield r
    r.cleanup()


def test_exit_codes_are_exact(slurm_runner: Runner, slurm_cluster) -> None:
    ok = slurm_runner.submit(spec(command="echo hello"))
    seven = slurm_runner.submit(spec(command="exit 7"))
    killed = slurm_runner.submit(spec(command="kill -9 $$"))  # the user's command dies of SIGKILL
    polled = slurm_runner.wait([ok, seven, killed])
    assert (polled[ok.job_id].state, polled[ok.job_id].exit_code) == (JobState.SUCCEEDED, 0)
    assert (polled[seven.job_id].state, polled[seven.job_id].exit_code) == (JobState.FAILED, 7)
    assert (polled[killed.job_id].exit_code, polled[killed.job_id].exit_signal) == (137, 9)
    assert polled[ok.job_id].started_at is not None and polled[ok.job_id].finished_at is not None
    assert "hello" in Path(ok.job_dir, "stdout").read_text()
    # The final-state path (sacct on molqacct, scontrol on molqnoacct) agrees.
    final = slurm_runner.sched.resolve_terminal_many([ok, seven, killed], since=time.time() - 600)
    assert (final[ok.job_id].state, final[ok.job_id].exit_code) == (JobState.SUCCEEDED, 0)
    assert (final[seven.job_id].state, final[seven.job_id].exit_code) == (JobState.FAILED, 7)
    assert (final[killed.job_id].exit_code, final[killed.job_id].exit_signal) == (137, 9)
    expected_source = "sacct" if slurm_cluster.accounting else "scontrol"
    assert expected_source in [name for name, _ in slurm_runner.sched.command_log]


def test_plain_runner_reports_exit_code_7(runner: Runner) -> None:
    seven = runner.submit(spec(command="exit 7"))
    status = runner.wait([seven])[seven.job_id]
    assert (status.state, status.exit_code, status.exit_signal) == (JobState.FAILED, 7, None)
    final = runner.sched.resolve_terminal_many([seven], since=time.time() - 600)[seven.job_id]
    assert (final.state, final.exit_code) == (JobState.FAILED, 7)


def test_final_state_once_slurm_forgot_the_job_comes_from_the_exit_code_file(slurm_runner: Runner) -> None:
    done = slurm_runner.submit(spec(command="exit 5"))
    slurm_runner.wait([done])
    # Ids SLURM never knew stand for jobs purged from the controller and accounting: only the
    # wrapper's exit-code file is left. One job (scontrol with one id) and several.
    gone = TrackedJob(done.job_id, "999990", done.job_dir)
    single = slurm_runner.sched.resolve_terminal_many([gone])
    assert (single[done.job_id].state, single[done.job_id].exit_code) == (JobState.FAILED, 5)
    assert single[done.job_id].raw_state == "exit_code_file"
    other = TrackedJob("no-dir-job", "999991", str(Path(done.job_dir).parent / "nothing"))
    several = slurm_runner.sched.resolve_terminal_many([gone, other])
    assert several[done.job_id].exit_code == 5 and "no-dir-job" not in several


@pytest.mark.slow
def test_time_limit_gives_timed_out(acct_cluster, noacct_cluster, tmp_path: Path) -> None:
    """One job per cluster, waited for together (SLURM enforces limits every ~30 s)."""
    runners = []
    try:
        for cluster in (acct_cluster, noacct_cluster):
            r = Runner(SlurmScheduler(LocalTransport(), SlurmOptions(env=cluster.env)), tmp_path / cluster.name)
            r.submit(spec(argv=("sleep", "300"), resources=JobResources(time_limit="1m")))
            runners.append(r)
        for r in runners:
            job = r.jobs[0]
            status = r.wait([job], timeout=180)[job.job_id]
            assert status.state == JobState.TIMED_OUT, status
            assert "time limit" in (status.reason or "")
            final = r.sched.resolve_terminal_many([job], since=time.time() - 600)[job.job_id]
            assert final.state == JobState.TIMED_OUT
            assert not Path(job.job_dir, "exit_code").exists()  # SLURM killed the wrapper
    finally:
        for r in runners:
            r.cleanup()


def test_cancel_queued_and_running_with_one_scancel(slurm_runner: Runner) -> None:
    blocker = slurm_runner.submit(spec(argv=("sleep", "120")))
    slurm_runner.wait([blocker], until=lambda s: s.state == JobState.RUNNING)
    queued = slurm_runner.submit(
        spec(dependencies=(CompiledDependency("after_success", blocker.job_id, blocker.scheduler_job_id),))
    )
    running = slurm_runner.submit(spec(argv=("sleep", "120")))
    slurm_runner.wait([running], until=lambda s: s.state == JobState.RUNNING)
    assert slurm_runner.sched.poll_many([queued])[queued.job_id].state == JobState.QUEUED
    before = len(slurm_runner.sched.command_log)
    slurm_runner.sched.cancel_many([queued, running])
    assert [name for name, _ in slurm_runner.sched.command_log[before:]] == ["scancel"]
    final = slurm_runner.wait([queued, running])
    assert final[queued.job_id].state == JobState.CANCELLED
    assert final[queued.job_id].started_at is None  # it never ran
    assert final[running.job_id].state == JobState.CANCELLED
    assert final[running.job_id].started_at is not None
    # Cancelling jobs that already ended is not an error.
    slurm_runner.sched.cancel_many([queued, running])
    slurm_runner.sched.cancel_many([blocker])
    assert slurm_runner.wait([blocker])[blocker.job_id].state == JobState.CANCELLED


def test_all_four_dependency_conditions(slurm_runner: Runner) -> None:
    ok = slurm_runner.submit(spec(argv=("true",)))
    bad = slurm_runner.submit(spec(command="exit 3"))
    long = slurm_runner.submit(spec(argv=("sleep", "120")))

    def dep(condition: str, up: TrackedJob) -> tuple[CompiledDependency, ...]:
        return (CompiledDependency(condition, up.job_id, up.scheduler_job_id),)  # type: ignore[arg-type]

    after_success = slurm_runner.submit(spec(dependencies=dep("after_success", ok)))
    after_failure = slurm_runner.submit(spec(dependencies=dep("after_failure", bad)))
    after_started = slurm_runner.submit(spec(dependencies=dep("after_started", long)))
    after_any = slurm_runner.submit(spec(dependencies=dep("after", bad)))
    never = slurm_runner.submit(spec(dependencies=dep("after_success", bad)))
    raw = slurm_runner.submit(spec(scheduling=JobScheduling(dependency=f"afterany:{ok.scheduler_job_id}")))

    done = slurm_runner.wait([after_success, after_failure, after_started, after_any, raw], timeout=90)
    for job in (after_success, after_failure, after_started, after_any, raw):
        assert done[job.job_id].state == JobState.SUCCEEDED, done[job.job_id]
    # after_started ran while its upstream was still running
    assert slurm_runner.sched.poll_many([long])[long.job_id].state == JobState.RUNNING
    blocked = slurm_runner.wait([never], until=lambda s: s.dependency_never_satisfied, timeout=60)[never.job_id]
    assert blocked.state == JobState.QUEUED and "DependencyNeverSatisfied" in (blocked.reason or "")
    slurm_runner.sched.cancel_many([never, long])


def test_array_job_is_one_molq_job(slurm_runner: Runner) -> None:
    mixed = slurm_runner.submit(
        spec(command="exit $((SLURM_ARRAY_TASK_ID % 2))", scheduling=JobScheduling(array_spec="1-4"))
    )
    throttled = slurm_runner.submit(spec(argv=("sleep", "2"), scheduling=JobScheduling(array_spec="1-3%1")))
    active = slurm_runner.wait([throttled], until=lambda s: s.state == JobState.RUNNING)[throttled.job_id]
    assert active.raw_state.startswith("array task: ")  # core's aggregation of the tasks
    final = slurm_runner.wait([mixed, throttled], timeout=90)
    assert (final[mixed.job_id].state, final[mixed.job_id].exit_code) == (JobState.FAILED, 1)
    assert "(first: 1: " in final[mixed.job_id].reason
    assert final[throttled.job_id].state == JobState.SUCCEEDED
    # Accounting is written asynchronously: right after the controller reports the end, sacct
    # may still show the last task running. It must catch up to the same end, never another.
    deadline = time.monotonic() + 30
    while True:
        again = slurm_runner.sched.resolve_terminal_many([mixed, throttled], since=time.time() - 600)
        states = {j.job_id: again[j.job_id].state for j in (mixed, throttled) if j.job_id in again}
        assert all(s == final[jid].state for jid, s in states.items() if s.is_terminal), states
        if len(states) == 2 and all(s.is_terminal for s in states.values()):
            break
        assert time.monotonic() < deadline, f"accounting never caught up: {again}"
        time.sleep(POLL)


def test_queue_includes_jobs_submitted_outside_molq(slurm_runner: Runner, slurm_cluster, tmp_path: Path) -> None:
    outside_name = "outside molq | ü x"
    proc = slurm_cluster.run(
        "sbatch", "--parsable", "--hold", f"--job-name={outside_name}", f"--chdir={tmp_path}",
        f"--output={tmp_path}/outside.out", "--wrap", "true",
    )
    assert proc.returncode == 0, proc.stderr
    outside_id = proc.stdout.strip().split(";")[0]
    mine = slurm_runner.submit(spec(argv=("sleep", "60"), execution=JobExecution(job_name=WEIRD)))
    try:
        slurm_runner.wait([mine], until=lambda s: s.state == JobState.RUNNING)
        entries = {e.scheduler_job_id: e for e in slurm_runner.sched.list_queue()}
        outside = entries[outside_id]
        assert outside.name == outside_name and outside.state == JobState.QUEUED
        assert outside.raw_state == "PENDING" and outside.submit_time and outside.start_time is None
        ours = entries[mine.scheduler_job_id]
        assert ours.name == WEIRD and ours.state == JobState.RUNNING and ours.start_time
        assert ours.user == "root" and ours.partition in slurm_cluster.partitions
        by_user = {e.scheduler_job_id for e in slurm_runner.sched.list_queue(user="root")}
        assert {outside_id, mine.scheduler_job_id} <= by_user
    finally:
        slurm_cluster.run("scancel", outside_id)


def test_adoption_finds_a_job_whose_id_was_lost(slurm_runner: Runner) -> None:
    job = slurm_runner.submit(spec(argv=("sleep", "30")))
    orphan = TrackedJob(job.job_id, None, job.job_dir)
    stranger = TrackedJob(uuid.uuid4().hex, None, job.job_dir)
    assert slurm_runner.sched.find_adoptable([orphan, stranger]) == {job.job_id: job.scheduler_job_id}
    slurm_runner.wait([job], until=lambda s: s.state == JobState.RUNNING)
    time.sleep(0.5)
    assert Path(job.job_dir, "slurm_job_id").read_text().strip() == job.scheduler_job_id


def test_directives_survive_real_sbatch(slurm_runner: Runner, slurm_cluster, tmp_path: Path) -> None:
    """Names with spaces, quotes, | and non-ASCII, a cwd with spaces and a job directory with a
    % reach SLURM intact; resources are applied as asked."""
    cwd = tmp_path / "work dir"
    cwd.mkdir()
    partition = slurm_cluster.partitions[-1]
    scheduling = JobScheduling(partition=partition)
    if slurm_cluster.accounting:
        scheduling = JobScheduling(partition=partition, account=slurm_cluster.account, qos=slurm_cluster.qos)
    job = slurm_runner.submit(
        spec(
            command='pwd; echo "$MOLQ_LIVE_VAR"',
            resources=JobResources(cpu_count=2, memory="300M", time_limit="10m"),
            scheduling=scheduling,
            execution=JobExecution(job_name=WEIRD, env={"MOLQ_LIVE_VAR": "it's $HOME"}),
            cwd=str(cwd),
        ),
        dir_name="100% done/job",
    )
    proc = slurm_cluster.run("scontrol", "show", "job", "-o", job.scheduler_job_id)
    from molq_slurm._parse import parse_scontrol_record

    rec = parse_scontrol_record(proc.stdout)
    assert rec["JobName"] == WEIRD
    assert rec["Partition"] == partition
    assert rec["CPUs/Task"] == "2" and rec["TimeLimit"] == "00:10:00"
    assert "mem=300M" in rec["TRES"]
    if slurm_cluster.accounting:
        assert rec["Account"] == slurm_cluster.account and rec["QOS"] == slurm_cluster.qos
    assert slurm_runner.wait([job])[job.job_id].state == JobState.SUCCEEDED
    out = Path(job.job_dir, "stdout").read_text().splitlines()
    assert out == [str(cwd), "it's $HOME"]


def test_script_goes_on_stdin_and_job_sh_is_the_same_script(slurm_runner: Runner, slurm_cluster) -> None:
    """sbatch gets the script on stdin; molq's job.sh copy is byte for byte what SLURM holds."""
    job = slurm_runner.submit(spec(command="echo from-stdin", execution=JobExecution(job_name=WEIRD)))
    held = slurm_cluster.run("scontrol", "write", "batch_script", job.scheduler_job_id, "-")
    assert held.returncode == 0, held.stderr
    copy = Path(job.job_dir, "job.sh").read_text()
    assert held.stdout.rstrip("\n") == copy.rstrip("\n")
    assert "#SBATCH --comment=" in copy
    assert Path(job.job_dir, "job.sh").stat().st_mode & 0o777 == 0o700
    assert [name for name, _ in slurm_runner.sched.command_log] == ["sbatch"]
    assert slurm_runner.wait([job])[job.job_id].state == JobState.SUCCEEDED
    assert Path(job.job_dir, "stdout").read_text() == "from-stdin\n"


def test_refused_submission_carries_slurms_message(slurm_runner: Runner) -> None:
    with pytest.raises(SubmitError, match="Invalid partition name specified"):
        slurm_runner.submit(spec(scheduling=JobScheduling(partition="no-such-partition")))


def test_status_of_a_single_unknown_id_is_an_empty_answer(slurm_runner: Runner, tmp_path: Path) -> None:
    assert slurm_runner.sched.poll_many([TrackedJob("x", "999997", str(tmp_path))]) == {}
    assert slurm_runner.sched.poll_many(
        [TrackedJob("x", "999997", str(tmp_path)), TrackedJob("y", "999998", str(tmp_path))]
    ) == {}


def test_unreachable_controller_raises_and_reports_nothing(noacct_cluster, tmp_path: Path) -> None:
    """A real SLURM client whose controller does not answer (its slurm.conf points at a closed
    port): the status query raises a transient error instead of answering "no jobs"."""
    from molq.errors import TransientSchedulerError

    conf = tmp_path / "slurm.conf"
    lines = Path(noacct_cluster.conf).read_text().splitlines()
    replace = {"SlurmctldPort": "SlurmctldPort=1", "MessageTimeout": "MessageTimeout=1"}  # fail fast
    conf.write_text("\n".join(replace.get(ln.split("=", 1)[0], ln) for ln in lines) + "\n")
    sleeps: list[float] = []
    sched = SlurmScheduler(
        LocalTransport(), SlurmOptions(env={"SLURM_CONF": str(conf)}, retry_attempts=2, retry_initial_delay=0.1),
        sleep=sleeps.append,
    )
    with pytest.raises(TransientSchedulerError, match="Unable to contact slurm controller"):
        sched.poll_many([TrackedJob("a", "1", str(tmp_path)), TrackedJob("b", "2", str(tmp_path))])
    assert sleeps == [0.1]  # retried once, then reported


def test_slurm_over_ssh_end_to_end(acct_cluster, ssh_login, tmp_path: Path) -> None:
    """The whole stack on "a remote login node": Cluster(host=...) over the real test sshd,
    Submitor, SLURM with accounting."""
    import shutil
    import tempfile

    from molq import Cluster, Submitor
    from molq.store import JobStore

    control_dir = tempfile.mkdtemp(prefix="mqslurm-", dir="/tmp")  # sockets need short paths
    cluster = Cluster(
        "slurm-over-ssh",
        "slurm",
        host=ssh_login["host"],
        transport_options={"config_file": ssh_login["config"], "control_dir": control_dir},
        scheduler_options={"env": acct_cluster.env},
    )
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    try:
        submitor = Submitor(cluster, store=store, jobs_dir=str(tmp_path / "jobs"))
        seven = submitor.submit_job(command="echo remote; exit 7", execution=JobExecution(cwd=str(tmp_path), job_name=WEIRD))
        record = seven.wait(timeout=90)
        assert (record.state, record.exit_code) == (JobState.FAILED, 7)
        assert record.scheduler_job_id
        assert "remote" in cluster.transport.read_text(f"{record.job_dir}/stdout")
        held = acct_cluster.run("sbatch", "--parsable", "--hold", "--job-name=ssh queue", "--wrap", "true")
        try:
            names = {e.name for e in cluster.get_queue()}
            assert "ssh queue" in names
        finally:
            acct_cluster.run("scancel", held.stdout.strip().split(";")[0])
    finally:
        store.close()
        close = getattr(cluster.transport, "close", None)
        if callable(close):
            close()  # the ssh master connection
        shutil.rmtree(control_dir, ignore_errors=True)

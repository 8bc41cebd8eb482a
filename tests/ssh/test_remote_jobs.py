"""Remote jobs end to end: the local scheduler and SLURM on the far side of the real test sshd.

The "remote" host is this machine (sshd on 127.0.0.1:2222), so every remote path is also a local
path. That the client never touches them itself is checked with an audit hook: while a test
runs remote jobs, any file this Python process creates, changes or deletes, and any program it
starts, is recorded. Only the store under ``$MOLQ_HOME`` may be written, and only ssh (or
rsync/scp) may be started; the remote side is reached through them alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from molq import Cluster, JobExecution, JobResources, JobState, RetentionPolicy, Submitor
from molq.errors import ConfigError, SchedulerError, SubmitError, TransportError
from molq.local import LocalSchedulerOptions, ShellScheduler
from molq.model import CompiledDependency, JobScheduling, JobSpec
from molq.scheduler import TrackedJob
from molq.store import JobStore
from molq.testing import SchedulerConformance
from molq.transport import LocalTransport
from molq_ssh import SshTransport, SshTransportOptions
from ssh_support import Sshd, ssh_calls, unavailable

REPO = Path(__file__).resolve().parents[2]


# -- helpers ---------------------------------------------------------------------------------


def remote_cluster(sshd: Sshd, control_dir: str, name: str = "remote", scheduler: str = "local",
                   **scheduler_options: Any) -> Cluster:
    return Cluster(
        name,
        scheduler,
        host=sshd.host,
        transport_options={"config_file": sshd.config, "control_dir": control_dir},
        scheduler_options=scheduler_options or None,
    )


class LocalSideEffects:
    """What this process does to the local filesystem and which programs it starts."""

    WRITE_EVENTS = {"os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.symlink", "os.link", "os.chmod",
                    "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.copymode",
                    "shutil.copystat", "shutil.move"}

    def __init__(self) -> None:
        self.active = False
        self.writes: list[tuple[str, str]] = []
        self.programs: list[str] = []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC)
            )
            if writing and isinstance(path, (str, bytes, os.PathLike)):
                self.writes.append((event, os.fsdecode(path)))
        elif event in self.WRITE_EVENTS:
            if args and isinstance(args[0], (str, bytes, os.PathLike)):
                self.writes.append((event, os.fsdecode(args[0])))
        elif event == "subprocess.Popen":
            self.programs.append(os.path.basename(os.fsdecode(args[0])))
        elif event in ("os.posix_spawn", "os.spawn", "os.exec", "os.system", "os.fork"):
            self.programs.append(f"{event}:{args[0] if args else ''}")


_SIDE_EFFECTS = LocalSideEffects()
_HOOKED: list[bool] = []


@contextlib.contextmanager
def record_local_side_effects() -> Iterator[LocalSideEffects]:
    if not _HOOKED:  # an audit hook cannot be removed: installed once, idle outside this block
        sys.addaudithook(_SIDE_EFFECTS)
        _HOOKED.append(True)
    _SIDE_EFFECTS.writes.clear()
    _SIDE_EFFECTS.programs.clear()
    _SIDE_EFFECTS.active = True
    try:
        yield _SIDE_EFFECTS
    finally:
        _SIDE_EFFECTS.active = False


def wait_state(submitor: Submitor, job_id: str, state: JobState, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while submitor.get_job(job_id).state != state:
        assert time.monotonic() < deadline, f"{job_id} never reached {state.value} ({submitor.get_job(job_id)})"
        submitor.refresh_jobs()
        time.sleep(0.2)


def group_members(transport: SshTransport, pgid: int) -> list[str]:
    """Live (non-zombie) processes of a process group on the remote host."""
    out = transport.run(["ps", "-eo", "pgid=,stat=,args="]).stdout
    members = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] == str(pgid) and not parts[1].startswith("Z"):
            members.append(parts[2])
    return members


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def spool(remote_dir: str) -> str:
    """A spool of this test only (the default one is in the remote user's home)."""
    return f"{remote_dir}/spool"


@pytest.fixture
def cluster(sshd: Sshd, control_dir: str, spool: str) -> Cluster:
    return remote_cluster(sshd, control_dir, spool_dir=spool, max_cpus=8, term_grace_seconds=2.0)


@pytest.fixture
def submitor(cluster: Cluster) -> Iterator[Submitor]:
    sub = Submitor(cluster)
    yield sub
    # Whatever a failed test left running on the remote side is stopped.
    with contextlib.suppress(Exception):
        sub.cancel_jobs([r.job_id for r in sub.list_jobs()])
    sub.close()


# -- the conformance kit ---------------------------------------------------------------------


@pytest.mark.sshd
class TestRemoteLocalSchedulerConformance(SchedulerConformance):
    """The molq.testing scheduler kit, for the local scheduler driven over ssh."""

    @pytest.fixture
    def cluster(self, sshd: Sshd, control_dir: str, remote_dir: str) -> Cluster:
        return remote_cluster(sshd, control_dir, "conformance", spool_dir=f"{remote_dir}/spool", max_cpus=4)

    @pytest.fixture
    def remote_dir(self, transport: SshTransport) -> Iterator[str]:  # type: ignore[override]
        path = transport.run(["mktemp", "-d", "/tmp/molq-remote-conf.XXXXXX"]).stdout.strip()
        assert path.startswith("/tmp/molq-remote-conf.")
        yield path
        transport.run(["rm", "-rf", "--", path])

    @pytest.fixture
    def job_timeout(self) -> float:
        return 60.0

    @pytest.fixture
    def unsupported_field(self) -> dict[str, Any]:
        return {"scheduling": JobScheduling(partition="gpu")}


# -- the remote spool scripts under each POSIX shell here (no server needed) ------------------


class ShellAsRemote(LocalTransport):
    """This machine, presented as a remote host whose ``sh`` is ``shell``: the local scheduler
    then takes its remote path (the spool scripts) and runs them with that shell."""

    name = "shell-as-remote"
    is_remote = True

    def __init__(self, shell: list[str], path: str | None = None) -> None:
        super().__init__()
        self.shell = [shutil.which(shell[0]) or shell[0], *shell[1:]]
        self.path = path
        self.scripts = 0

    def run(self, argv: Any, **kw: Any) -> Any:
        argv = list(argv)
        if argv[0] == "sh":
            self.scripts += 1
            argv = [*self.shell, *argv[1:]]
            if self.path is not None:
                kw["env"] = {**(kw.get("env") or {}), "PATH": self.path}
        return super().run(argv, **kw)


POSIX_SHELLS = [s for s in (["dash"], ["bash", "--posix"], ["busybox", "sh"], ["mksh"], ["ksh"])
                if shutil.which(s[0])]


def path_without_awk(directory: Path) -> str:
    """A PATH with the tools the spool scripts and the test jobs use, but no awk."""
    directory.mkdir()
    for name in ("setsid", "flock", "mv", "rm", "ln", "cat", "chmod", "mkdir", "nproc", "sleep", "true",
                 "echo", "kill", "ps"):
        found = shutil.which(name)
        if found:
            (directory / name).symlink_to(found)
    return str(directory)


@pytest.mark.parametrize("shell,awk", [(s, True) for s in POSIX_SHELLS] + [(["dash"], False)],
                         ids=[s[0] for s in POSIX_SHELLS] + ["dash-without-awk"])
def test_spool_scripts_run_under_each_posix_shell(shell: list[str], awk: bool, tmp_path: Path) -> None:
    transport = ShellAsRemote(shell, None if awk else path_without_awk(tmp_path / "bin"))
    cluster = Cluster("as-remote", "local", transport=transport,
                      scheduler_options={"spool_dir": str(tmp_path / "spool"), "max_cpus": 2,
                                         "term_grace_seconds": 2.0})
    work = str(tmp_path / "work dir 'q'")
    os.makedirs(work)
    submitor = Submitor(cluster)
    execution = JobExecution(cwd=work)
    try:
        seven = submitor.submit_job(command="echo seven; exit 7", execution=execution)
        two_cores = submitor.submit_job(command="sleep 1", resources=JobResources(cpu_count=2), execution=execution)
        after = submitor.submit_job(argv=["echo", "after $x"], after_failure=[seven.job_id], execution=execution)
        never = submitor.submit_job(argv=["true"], after_success=[seven.job_id], execution=execution)
        victim = submitor.submit_job(command="sleep 300 & sleep 301; wait", execution=execution)
        records = submitor.watch_jobs([seven.job_id, two_cores.job_id, after.job_id, never.job_id], timeout=60)
        assert [(r.state, r.exit_code) for r in records] == [
            (JobState.FAILED, 7), (JobState.SUCCEEDED, 0), (JobState.SUCCEEDED, 0), (JobState.FAILED, None)]
        assert "dependency never satisfied" in (records[3].failure_reason or "")
        assert Path(records[2].job_dir, "stdout").read_text() == "after $x\n"
        wait_state(submitor, victim.job_id, JobState.RUNNING)
        pgid = int(Path(tmp_path, "spool", "running", victim.job_id).read_text().split()[0])
        victim.cancel()
        assert submitor.get_job(victim.job_id).state == JobState.CANCELLED
        assert local_group_members(pgid) == []
        # With a job running, a refresh is one script run.
        live = submitor.submit_job(argv=["sleep", "30"], execution=execution)
        submitor.refresh_jobs()
        before = transport.scripts
        submitor.refresh_jobs()
        assert transport.scripts - before == 1
        live.cancel()
    finally:
        with contextlib.suppress(Exception):
            submitor.cancel_jobs([r.job_id for r in submitor.list_jobs()])
        submitor.close()


@pytest.mark.parametrize("method", ["auto", "rlimit"])
def test_memory_limit_through_the_spool_scripts(method: str, tmp_path: Path) -> None:
    """A job past its memory limit is out of memory on the remote path too: the spool scripts
    report the wrapper's evidence and, from a private cgroup, its peak (and remove a cgroup a
    killed wrapper left)."""
    cluster = Cluster("as-remote", "local", transport=ShellAsRemote(["dash"]),
                      scheduler_options={"spool_dir": str(tmp_path / "spool"), "memory_limit": method})
    submitor = Submitor(cluster)
    grab = "x = bytearray(300 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1"
    try:
        rec = submitor.submit_job(argv=[sys.executable, "-c", grab],
                                  resources=JobResources(memory="100M")).wait(timeout=60)
        assert (rec.state, rec.end_cause.value if rec.end_cause else None) == (JobState.FAILED, "out_of_memory"), rec
        cgroup = Path(rec.job_dir, "cgroup")
        if cgroup.exists():  # this host let the wrapper make a cgroup: killed in it, peak known
            assert method == "auto" and rec.exit_signal == 9
            assert rec.usage is not None and 0 < (rec.usage.max_rss_bytes or 0) <= 100 << 20
            assert not Path(cgroup.read_text().strip()).exists()
        else:  # ulimit -v: the allocation failed
            assert rec.exit_code == 1 and rec.usage is not None and rec.usage.max_rss_bytes is None
    finally:
        submitor.close()


def test_job_ids_that_are_not_plain_names_are_refused(tmp_path: Path) -> None:
    sched = Cluster("as-remote", "local", transport=ShellAsRemote(["dash"]),
                    scheduler_options={"spool_dir": str(tmp_path / "spool")}).scheduler_impl
    with pytest.raises(SchedulerError, match="cannot be used"):
        sched.poll_many([TrackedJob("x", "a b; touch pwned", str(tmp_path), None)])
    assert not (tmp_path / "pwned").exists()


def local_group_members(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pgid=,stat=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if line.split()[0] == str(pgid) and not line.split()[1].startswith("Z")]


# -- the local scheduler over ssh ------------------------------------------------------------


@pytest.mark.sshd
def test_remote_jobs_create_nothing_locally(
    sshd: Sshd, control_dir: str, remote_dir: str, molq_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Job directories, scripts, logs, exit codes, the spool and cleanup: all on the remote side."""
    local_cwd = tmp_path / "cwd"
    local_cwd.mkdir()
    monkeypatch.chdir(local_cwd)
    # The default spool: ~/.molq/local-spool of the *remote* user (resolved there, not from
    # this side's MOLQ_HOME, which is a temporary directory here).
    cluster = remote_cluster(sshd, control_dir, max_cpus=4)
    transport = cluster.transport
    remote_home = transport.home()
    spool = f"{remote_home}/.molq/local-spool"
    assert not spool.startswith(str(molq_home))
    submitor = Submitor(cluster)
    try:
        with record_local_side_effects() as effects:
            ok = submitor.submit_job(argv=["sh", "-c", "echo out; echo err >&2"],
                                     execution=JobExecution(cwd=remote_dir))
            bad = submitor.submit_job(command="exit 7", execution=JobExecution(cwd=remote_dir))
            records = submitor.watch_jobs([ok.job_id, bad.job_id], timeout=60)
            assert [(r.state, r.exit_code) for r in records] == [(JobState.SUCCEEDED, 0), (JobState.FAILED, 7)]
            job_dirs = [r.job_dir for r in records]
            for job_dir in job_dirs:
                assert job_dir.startswith(f"{remote_dir}/.molq/jobs/")
                assert transport.read_many([f"{job_dir}/job.sh"])[f"{job_dir}/job.sh"].startswith("#!/bin/sh")
            assert transport.read_text(f"{job_dirs[0]}/stdout") == "out\n"
            assert transport.read_text(f"{job_dirs[0]}/stderr") == "err\n"
            assert transport.read_text(f"{job_dirs[1]}/exit_code").strip() == "7"
            for record in records:
                assert transport.exists(f"{spool}/jobs/{record.job_id}.json")
            removed = submitor.cleanup_jobs(retention_policy=RetentionPolicy(
                keep_job_dirs_for_days=0, keep_terminal_records_for_days=0, keep_failed_job_dirs=False))
            assert sorted(removed["job_dirs"]) == sorted(job_dirs)
            for record in records:
                assert not transport.exists(record.job_dir)
                assert not transport.exists(f"{spool}/jobs/{record.job_id}.json")
    finally:
        submitor.close()

    writes_outside_store = [(e, p) for e, p in effects.writes
                            if not p.startswith(str(molq_home)) and p != os.devnull]
    assert writes_outside_store == [], "the client wrote locally"
    assert not [p for _e, p in effects.writes if p.startswith(remote_dir) or p.startswith(spool)]
    assert set(effects.programs) <= {"ssh"}, effects.programs
    assert effects.programs, "the remote side was reached through ssh"
    assert sorted(os.listdir(molq_home)) == sorted(n for n in os.listdir(molq_home) if n.startswith("jobs.db"))
    assert not (molq_home / "local-spool").exists()
    assert os.listdir(local_cwd) == []


@pytest.mark.sshd
def test_a_refresh_is_one_ssh_call(submitor: Submitor, cluster: Cluster, remote_dir: str) -> None:
    handles = [submitor.submit_job(argv=["sleep", "60"], execution=JobExecution(cwd=remote_dir)) for _ in range(6)]
    submitor.refresh_jobs()
    assert {submitor.get_job(h.job_id).state for h in handles} == {JobState.RUNNING}
    with ssh_calls(cluster.transport) as calls:
        submitor.refresh_jobs()
    assert len(calls) == 1
    with ssh_calls(cluster.transport) as calls:
        submitor.cancel_jobs([h.job_id for h in handles])
    # One look (a job that ended meanwhile keeps its state), one cancel, one look that confirms
    # the stop (a cancel is recorded only once confirmed).
    assert len(calls) == 3
    assert {submitor.get_job(h.job_id).state for h in handles} == {JobState.CANCELLED}


@pytest.mark.sshd
def test_cores_queue_and_dependencies(sshd: Sshd, control_dir: str, spool: str, remote_dir: str) -> None:
    cluster = remote_cluster(sshd, control_dir, spool_dir=spool, max_cpus=2)
    submitor = Submitor(cluster)
    try:
        execution = JobExecution(cwd=remote_dir)
        with pytest.raises(ConfigError, match="max_cpus"):
            submitor.submit_job(argv=["true"], resources=JobResources(cpu_count=3), execution=execution)
        # The two-core job holds its cores until the test opens the gate, whatever the machine's speed.
        first = submitor.submit_job(command="while [ ! -e gate ]; do sleep 0.1; done; echo first > order",
                                    resources=JobResources(cpu_count=2), execution=execution)
        waiting = submitor.submit_job(command="echo second >> order", execution=execution)
        ok = submitor.submit_job(command="cat order", after_success=[first.job_id, waiting.job_id],
                                 execution=execution)
        never = submitor.submit_job(command="echo never", after_failure=[first.job_id], execution=execution)
        started = submitor.submit_job(command="true", after_started=[first.job_id], execution=execution)
        submitor.refresh_jobs()
        assert submitor.get_job(waiting.job_id).state == JobState.QUEUED  # no free core yet
        assert cluster.transport.run(["touch", f"{remote_dir}/gate"]).returncode == 0
        records = submitor.watch_jobs([first.job_id, waiting.job_id, ok.job_id, never.job_id, started.job_id],
                                      timeout=60)
        states = [r.state for r in records]
        assert states == [JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.FAILED,
                          JobState.SUCCEEDED]
        assert "dependency never satisfied" in (records[3].failure_reason or "")
        # The two-core job held both cores: the one-core job only started after it.
        assert cluster.transport.read_text(f"{remote_dir}/order") == "first\nsecond\n"
        assert cluster.transport.read_text(f"{records[2].job_dir}/stdout") == "first\nsecond\n"
    finally:
        submitor.close()


@pytest.mark.sshd
def test_cancel_stops_the_whole_process_group(submitor: Submitor, cluster: Cluster, spool: str,
                                              remote_dir: str) -> None:
    handle = submitor.submit_job(command="sleep 300 & sleep 301 & wait", execution=JobExecution(cwd=remote_dir))
    wait_state(submitor, handle.job_id, JobState.RUNNING)
    pgid = int(cluster.transport.read_text(f"{spool}/running/{handle.job_id}").split()[0])
    deadline = time.monotonic() + 10
    while len(group_members(cluster.transport, pgid)) < 3:  # wrapper, sh -c, two sleeps
        assert time.monotonic() < deadline, group_members(cluster.transport, pgid)
        time.sleep(0.1)
    handle.cancel()
    record = submitor.get_job(handle.job_id)
    assert record.state == JobState.CANCELLED
    assert group_members(cluster.transport, pgid) == []
    submitor.refresh_jobs()
    assert submitor.get_job(handle.job_id).state == JobState.CANCELLED


@pytest.mark.sshd
def test_output_file_that_cannot_be_opened_fails_the_job(submitor: Submitor, remote_dir: str) -> None:
    record = submitor.submit_job(
        argv=["true"], execution=JobExecution(cwd=remote_dir, output_file="missing-dir/out.txt")
    ).wait(timeout=60)
    assert record.state == JobState.FAILED
    assert "cannot open the job's output files" in (record.failure_reason or "")
    assert "missing-dir/out.txt" in (record.failure_reason or "")


@pytest.mark.sshd
def test_workspace_and_project_round_trip(submitor: Submitor, cluster: Cluster, remote_dir: str,
                                          tmp_path: Path) -> None:
    workspace = cluster.get_workspace("ws", path=f"{remote_dir}/workspace")
    assert not workspace.exists()
    workspace.ensure()
    assert workspace.exists()
    project = cluster.get_project("proj ü", workspace=workspace)
    project.ensure()
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "numbers.txt").write_text("3\n4\n")
    project.upload(inputs, recursive=True)
    project.upload(inputs / "numbers.txt", remote_rel="copy.txt")
    record = project.submit_job(
        submitor, command="pwd > where; mkdir results; awk '{s+=$1} END {print s}' inputs/numbers.txt > results/sum.txt"
    ).wait(timeout=60)
    assert record.state == JobState.SUCCEEDED, record.failure_reason
    assert record.cwd == project.path
    project.download("results", tmp_path / "back", recursive=True)
    assert (tmp_path / "back" / "sum.txt").read_text() == "7\n"
    project.download("where", tmp_path / "where.txt")
    assert (tmp_path / "where.txt").read_text().strip() == project.path
    project.download("copy.txt", tmp_path / "copy.txt")
    assert (tmp_path / "copy.txt").read_text() == "3\n4\n"


@pytest.mark.sshd
def test_spool_shared_with_a_local_transport_process(sshd: Sshd, control_dir: str, spool: str,
                                                     remote_dir: str) -> None:
    """One spool driven both directly (LocalTransport) and over ssh: entries written by one
    are read, started and cancelled by the other, under the same lock."""
    options = LocalSchedulerOptions(max_cpus=1, spool_dir=spool, term_grace_seconds=2.0)
    local = ShellScheduler(LocalTransport(), options)
    remote = ShellScheduler(
        SshTransport(SshTransportOptions(sshd.host, config_file=sshd.config, control_dir=control_dir)), options
    )

    def spec(job_id: str, command: str, deps: tuple[CompiledDependency, ...] = ()) -> tuple[JobSpec, str]:
        job_dir = f"{remote_dir}/jobs/{job_id}"
        os.makedirs(job_dir)
        return JobSpec(job_id=job_id, command_type="command", argv=None, command=command, resources=JobResources(),
                       scheduling=JobScheduling(), execution=JobExecution(), cwd=remote_dir,
                       dependencies=deps), job_dir

    first, first_dir = spec("firstjob", "sleep 6; exit 4")
    second, second_dir = spec("secondjob", "echo ran",
                              (CompiledDependency("after_failure", "firstjob", "firstjob"),))
    third, third_dir = spec("thirdjob", "sleep 300")
    local.submit(first, first_dir)  # starts at once: the only core
    local.submit(second, second_dir)  # waits for firstjob
    remote.submit(third, third_dir)  # waits for the core
    jobs = [TrackedJob(s.job_id, s.job_id, d, None) for s, d in ((first, first_dir), (second, second_dir),
                                                                 (third, third_dir))]
    # Asked about the waiting jobs only: once the core is free, the remote side has to find out
    # about firstjob by itself to decide on secondjob.
    states = {k: v.state for k, v in remote.poll_many(jobs[1:]).items()}
    assert states == {"secondjob": JobState.QUEUED, "thirdjob": JobState.QUEUED}
    assert os.readlink(f"{spool}/jobs/secondjob.dir") == second_dir  # made from secondjob.json
    deadline = time.monotonic() + 30
    while True:
        statuses = remote.poll_many(jobs[1:])
        if statuses["secondjob"].state.is_terminal:
            break
        assert time.monotonic() < deadline, statuses
        time.sleep(0.3)
    assert (statuses["secondjob"].state, statuses["secondjob"].exit_code) == (JobState.SUCCEEDED, 0)
    assert os.readlink(f"{spool}/jobs/firstjob.dir") == first_dir
    first_status = remote.poll_many(jobs[:1])["firstjob"]
    assert (first_status.state, first_status.exit_code) == (JobState.FAILED, 4)
    assert Path(second_dir, "stdout").read_text() == "ran\n"
    # The core is free again: the next poll (from either side) starts the remote job.
    assert local.poll_many(jobs[2:])["thirdjob"].state == JobState.RUNNING
    remote.cancel_many(jobs[2:])
    assert local.poll_many(jobs[2:])["thirdjob"].state == JobState.CANCELLED
    remote.transport.close()


# -- failures ------------------------------------------------------------------------------


@pytest.mark.sshd
def test_unreachable_host_is_an_error_and_changes_nothing(
    sshd: Sshd, submitor: Submitor, cluster: Cluster, spool: str, remote_dir: str, private_control_dir: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handle = submitor.submit_job(argv=["sleep", "300"], execution=JobExecution(cwd=remote_dir))
    wait_state(submitor, handle.job_id, JobState.RUNNING)
    closed_port = Cluster(
        "remote", "local", host=sshd.host,
        transport_options={"config_file": sshd.config, "control_dir": private_control_dir, "port": 1,
                           "connect_timeout": 5},
        scheduler_options={"spool_dir": spool, "max_cpus": 8},
    )
    down = Submitor(closed_port, store=submitor.store)
    with pytest.raises(SubmitError, match="cannot connect to molq-test-remote") as info:
        down.submit_job(argv=["true"], execution=JobExecution(cwd=remote_dir))
    assert "Connection refused" in str(info.value)
    failed = [r for r in down.list_jobs(include_terminal=True) if r.job_id != handle.job_id]
    assert [(r.state, r.scheduler_job_id) for r in failed] == [(JobState.FAILED, None)]
    assert "submission failed: cannot connect" in (failed[0].failure_reason or "")
    for _ in range(4):
        down.refresh_jobs()  # each query fails: no job changes
    assert "status query failed" in caplog.text
    record = down.get_job(handle.job_id)
    assert (record.state, record.failure_reason) == (JobState.RUNNING, None)
    with pytest.raises(TransportError):
        down.cancel_job(handle.job_id)
    assert down.get_job(handle.job_id).state == JobState.RUNNING
    handle.cancel()  # through the working connection
    assert submitor.get_job(handle.job_id).state == JobState.CANCELLED


@pytest.mark.sshd
def test_spool_that_cannot_be_created(sshd: Sshd, control_dir: str, remote_dir: str) -> None:
    blocker = f"{remote_dir}/file"
    cluster = remote_cluster(sshd, control_dir, spool_dir=f"{blocker}/spool")
    cluster.transport.write_text(blocker, "not a directory")
    submitor = Submitor(cluster)
    try:
        with pytest.raises(SchedulerError, match="preparing the spool") as info:
            submitor.submit_job(argv=["true"], execution=JobExecution(cwd=remote_dir))
        assert "Not a directory" in str(info.value)
        assert submitor.list_jobs(include_terminal=True) == []
    finally:
        submitor.close()


@pytest.mark.sshd
@pytest.mark.slow
def test_sshd_restart_while_jobs_are_watched(
    sshd: Sshd, private_control_dir: str, remote_dir: str, tmp_path: Path
) -> None:
    """The server goes away while a watcher refreshes: refreshes in the gap change nothing;
    afterwards every job reaches its true final state, including a job that ended in the gap."""
    if os.geteuid() != 0 or not (REPO / "tests/services/sshd.sh").exists():
        unavailable("restarting the test sshd needs root and tests/services/sshd.sh")
    db = f"sqlite:///{tmp_path}/jobs.db"
    spool = f"{remote_dir}/spool"

    def make() -> Submitor:
        return Submitor(remote_cluster(sshd, private_control_dir, spool_dir=spool, max_cpus=8),
                        store=JobStore(db))

    main = make()
    execution = JobExecution(cwd=remote_dir)
    submitted = time.monotonic()
    in_gap = main.submit_job(command="sleep 4; exit 3", execution=execution)  # ends during the outage
    after_gap = main.submit_job(command="sleep 12; echo done", execution=execution)  # ends after it
    queued = main.submit_job(command="echo late", after_success=[after_gap.job_id], execution=execution)
    ids = [in_gap.job_id, after_gap.job_id, queued.job_id]
    main.refresh_jobs()
    before = {i: main.get_job(i).state for i in ids}
    assert before == {in_gap.job_id: JobState.RUNNING, after_gap.job_id: JobState.RUNNING,
                      queued.job_id: JobState.QUEUED}

    failures: list[str] = []
    result: dict[str, Any] = {}

    def watch() -> None:
        # Another Submitor with its own store connection, as a `molq watch` process would be.
        watcher = make()
        original = watcher.target.transport._exec

        def counting(command: str, **kw: Any) -> Any:
            try:
                return original(command, **kw)
            except TransportError as exc:
                failures.append(str(exc))
                raise

        watcher.target.transport._exec = counting
        try:
            result["records"] = watcher.watch_jobs(ids, timeout=120, poll_interval=0.3)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            result["error"] = exc
        finally:
            watcher.close()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    sshd_sh = ["bash", str(REPO / "tests/services/sshd.sh")]
    try:
        subprocess.run([*sshd_sh, "stop"], check=True, capture_output=True, timeout=60)
        # The server is gone, and so is the connection molq shared (as after a reboot of the
        # login node): the next calls need a new one, and fail.
        main.target.transport.close()
        deadline = time.monotonic() + 20
        while len(failures) < 3:
            assert time.monotonic() < deadline, "the watcher never hit the outage"
            time.sleep(0.2)
        time.sleep(max(0.0, submitted + 5.5 - time.monotonic()))  # in_gap has ended, unseen
        during = {i: main.get_job(i) for i in ids}
        assert {i: r.state for i, r in during.items()} == before
        assert all(r.failure_reason is None for r in during.values())
    finally:
        subprocess.run([*sshd_sh, "restart"], check=True, capture_output=True, timeout=120)
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")
    assert all("cannot connect" in f for f in failures), failures
    records = {r.job_id: r for r in result["records"]}
    assert (records[in_gap.job_id].state, records[in_gap.job_id].exit_code) == (JobState.FAILED, 3)
    assert (records[after_gap.job_id].state, records[after_gap.job_id].exit_code) == (JobState.SUCCEEDED, 0)
    assert (records[queued.job_id].state, records[queued.job_id].exit_code) == (JobState.SUCCEEDED, 0)
    assert main.target.transport.read_text(f"{records[queued.job_id].job_dir}/stdout") == "late\n"
    for i in ids:
        assert JobState.LOST not in [t.new_state for t in main.get_transitions(i)]
    main.close()
    main.target.transport.close()


# -- SLURM over ssh ------------------------------------------------------------------------


@pytest.fixture
def slurm_cluster(sshd: Sshd, control_dir: str, transport: SshTransport) -> Cluster:
    """SLURM (cluster molqacct, whose SLURM_CONF the ssh alias sends) on the far side."""
    probe = transport.run(["squeue", "--noheader", "--me"])
    if probe.returncode != 0:
        unavailable(f"SLURM is not reachable over ssh ({probe.stderr.strip()}); run tests/services/up.sh")
    return remote_cluster(sshd, control_dir, "remote-slurm", "slurm")


@pytest.mark.sshd
@pytest.mark.slurm
def test_slurm_over_ssh(slurm_cluster: Cluster, remote_dir: str) -> None:
    submitor = Submitor(slurm_cluster)
    transport = slurm_cluster.transport
    try:
        execution = JobExecution(cwd=remote_dir)
        seven = submitor.submit_job(command="echo remote out; exit 7", execution=execution)
        ok = submitor.submit_job(argv=["echo", "fine"], execution=execution)
        sleeper = submitor.submit_job(argv=["sleep", "300"], execution=execution)
        records = submitor.watch_jobs([seven.job_id, ok.job_id], timeout=120)
        assert [(r.state, r.exit_code) for r in records] == [(JobState.FAILED, 7), (JobState.SUCCEEDED, 0)]
        assert transport.read_text(f"{records[0].job_dir}/stdout") == "remote out\n"
        wait_state(submitor, sleeper.job_id, JobState.RUNNING, timeout=120)
        more = [submitor.submit_job(argv=["sleep", "300"], execution=execution) for _ in range(3)]
        for h in more:
            wait_state(submitor, h.job_id, JobState.RUNNING, timeout=120)
        pacing, submitor.scheduler.pacing = submitor.scheduler.pacing, None  # what one poll costs,
        try:                                                                    # not whether one is reused
            with ssh_calls(transport) as calls:
                submitor.refresh_jobs()  # four jobs in the queue: one squeue
        finally:
            submitor.scheduler.pacing = pacing
        assert len(calls) == 1
        with ssh_calls(transport) as calls:
            submitor.cancel_jobs([sleeper.job_id, *(h.job_id for h in more)])
        # One squeue (a job that ended meanwhile keeps its state), one scancel, one squeue that
        # confirms the stop; then, on a cluster with accounting, one sacct for the cancelled
        # jobs' usage together (never one per job).
        commands = [c.split()[0] if c else "" for c in calls]
        assert commands[:3] == ["squeue", "scancel", "squeue"], calls
        assert commands[3:] in ([], ["sacct"]), calls
        assert {submitor.get_job(h).state for h in (sleeper.job_id, *(m.job_id for m in more))} == {
            JobState.CANCELLED}
    finally:
        with contextlib.suppress(Exception):
            submitor.cancel_jobs([r.job_id for r in submitor.list_jobs()])
        submitor.close()


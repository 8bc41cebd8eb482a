"""The local queue: it advances with no molq process alive, starts each job at most once
whoever crashes (SIGKILL at exact points, a full disk), keeps molq's files private, and
reports times the wrapper recorded. Real processes throughout; no mocks."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from molq import Cluster, JobExecution, JobResources, JobState, Submitor, wrapper
from molq.errors import ConfigError
from molq.local import LocalSchedulerOptions, ShellScheduler, scripts
from molq.model import JobSpec
from molq.scheduler import TrackedJob
from molq.transport import LocalTransport
from privacy_probe import readable_by_another_user, require_another_user, tree
from waiting import wait_for

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def run_python(code: str, *args: str, env: dict[str, str] | None = None, umask: int | None = None) -> str:
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env or dict(os.environ), capture_output=True,
                          text=True, timeout=60, preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# -- the scripts -----------------------------------------------------------------------------


def test_every_spool_script_and_the_local_wrapper_pass_shellcheck(tmp_path):
    if shutil.which("shellcheck") is None:
        if IN_CI:
            pytest.fail("shellcheck is required in CI (CI=true); tests/bootstrap.sh installs it")
        pytest.skip("shellcheck is not installed (tests/bootstrap.sh installs it)")
    files = []
    for name in scripts.SCRIPT_NAMES:
        path = tmp_path / f"{name}.sh"
        path.write_text(scripts.script(name))
        files.append(str(path))
    spec = JobSpec(job_id="j1", command_type="argv", argv=("echo", "a b"), cwd="/tmp",
                   execution=JobExecution(env={"X": "1"}))
    local = wrapper.LocalWrapping(umask=0o022, handover="/bin/sh /spool/bin/advance.sh /spool 2 j1 \"$$\"")
    job = tmp_path / "job.sh"
    job.write_text(wrapper.render_local_script(spec, "/jobs/j1", local))
    files.append(str(job))
    proc = subprocess.run(["shellcheck", "-s", "sh", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scripts_are_package_data():
    from importlib import resources

    names = {p.name for p in resources.files("molq.local").joinpath("sh").iterdir()}
    assert {f"{n}.sh" for n in scripts.SCRIPT_NAMES} | {"lib.sh"} <= names


# -- the queue advances by itself --------------------------------------------------------------

PIPELINE = """
import sys
from molq import Cluster, JobExecution, JobResources, Submitor
work = sys.argv[1]
s = Submitor(Cluster("pipe", "local", scheduler_options={"max_cpus": 2}))
ex = JobExecution(cwd=work)
a = s.submit_job(command="sleep 0.4; date +%s.%N > a_end", execution=ex)
b = s.submit_job(command="date +%s.%N > b_start; sleep 0.3", execution=ex, after_success=[a.job_id])
c = s.submit_job(command="touch c_ran", execution=ex, after_failure=[a.job_id])
d = s.submit_job(command="date +%s.%N > d_start", execution=ex, resources=JobResources(cpu_count=2))
e = s.submit_job(command="touch e_ran", execution=ex, after_success=[c.job_id])
print(a.job_id, b.job_id, c.job_id, d.job_id, e.job_id)
"""


def test_a_pipeline_completes_with_no_molq_process_alive(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    ids = run_python(PIPELINE, str(work)).split()  # the submitter has exited
    wait_for(lambda: (work / "d_start").exists(), what="the job waiting for all cores to start")
    s = Submitor(Cluster("pipe", "local", scheduler_options={"max_cpus": 2}))
    recs = {r.job_id: r for r in s.list_jobs(include_terminal=True)}
    # Decided on the host before any molq process looked again: C and E can never run.
    for i in (ids[2], ids[4]):
        wait_for(lambda i=i: Path(recs[i].job_dir, "never_ran").exists(), what="never_ran")
    assert "never satisfied" in Path(recs[ids[2]].job_dir, "never_ran").read_text()
    # B started on A's end, D on B's end, nobody polling.
    a_end = Path(recs[ids[0]].job_dir, "exit_code").stat().st_mtime
    b_start = float((work / "b_start").read_text())
    assert 0 <= b_start - a_end < 1.0
    finals = {r.job_id: r for r in s.watch_jobs(ids, timeout=30)}
    assert [finals[i].state for i in ids] == [JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.FAILED,
                                              JobState.SUCCEEDED, JobState.FAILED]
    assert "never satisfied" in (finals[ids[2]].failure_reason or "")
    assert not (work / "c_ran").exists() and not (work / "e_ran").exists()
    assert float((work / "d_start").read_text()) >= b_start + 0.3 - 0.05  # D needed B's core too


def test_list_queue_shows_running_and_queued_jobs_with_cores_and_waits(tmp_path):
    s = Submitor(Cluster("q", "local", scheduler_options={"max_cpus": 2}))
    go = tmp_path / "go"
    hold = f"while [ ! -e {go} ]; do sleep 0.02; done"
    a = s.submit_job(command=hold)
    b = s.submit_job(command="true", resources=JobResources(cpu_count=2))
    c = s.submit_job(command="true", after_success=[a.job_id])
    try:
        rows = s.scheduler.list_queue()
        by_id = {r.scheduler_job_id: r for r in rows}
        assert [r.scheduler_job_id for r in rows] == [a.job_id, b.job_id, c.job_id]
        assert by_id[a.job_id].state == JobState.RUNNING and "1 core" in by_id[a.job_id].raw_state
        assert "2 cores" in by_id[b.job_id].raw_state and "waits for cores" in by_id[b.job_id].raw_state
        assert f"waits for {a.job_id} to end" in by_id[c.job_id].raw_state
    finally:
        go.touch()
    s.watch_jobs([a.job_id, b.job_id, c.job_id], timeout=30)
    assert s.scheduler.list_queue() == []


CONCURRENT = """
import sys
from molq import Cluster, Submitor
log = sys.argv[1]
s = Submitor(Cluster("race", "local", scheduler_options={"max_cpus": 2}))
for i in range(int(sys.argv[2])):
    h = s.submit_job(argv=["sh", "-c", 'echo "$0" >> "$1"', "x", log])
    s.refresh_jobs()
"""


def test_concurrent_submitters_and_passes_start_each_job_once(tmp_path):
    log = tmp_path / "ran.log"
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT.replace('"x"', f'"p{k}-"+str(i)'), str(log), "8"],
                              env=env, stderr=subprocess.PIPE, text=True) for k in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read() if p.stderr else ""
    s = Submitor(Cluster("race", "local", scheduler_options={"max_cpus": 2}))
    records = s.watch_jobs([r.job_id for r in s.list_jobs(include_terminal=True)], timeout=60)
    assert len(records) == 32 and all(r.state == JobState.SUCCEEDED for r in records)
    lines = log.read_text().split()
    assert sorted(lines) == sorted(set(lines)) and len(lines) == 32


# -- crash safety ------------------------------------------------------------------------------


@pytest.fixture
def request_release():
    """Files whose creation ends the test's waiting jobs: made at the end whatever happened,
    so no job outlives its test."""
    files: list[Path] = []
    yield files
    for f in files:
        f.touch()


def _queue_behind_blocker(s: Submitor, tmp_path: Path, command: str) -> tuple[str, str, Path]:
    go = tmp_path / "go"
    blocker = s.submit_job(command=f"while [ ! -e {go} ]; do sleep 0.02; done")
    job = s.submit_job(command=command)
    return blocker.job_id, job.job_id, go


@pytest.mark.parametrize("point", ["claimed", "spawned", "running"])
def test_a_pass_killed_while_starting_a_job_never_starts_it_twice(point, tmp_path, monkeypatch, request_release):
    marker = tmp_path / "ran"
    release = tmp_path / "release"
    s = Submitor(Cluster("crash", "local", scheduler_options={"max_cpus": 1}))
    # The blocker's wrapper inherits the fault: its hand-over pass dies at `point`.
    monkeypatch.setenv("MOLQ_TEST_KILL_AT", f"pass-{point}")
    blocker, job, go = _queue_behind_blocker(
        s, tmp_path, f"echo ran >> {marker}; while [ ! -e {release} ]; do sleep 0.02; done")
    monkeypatch.delenv("MOLQ_TEST_KILL_AT")
    go.touch()
    request_release.append(release)
    spool = Path(s.scheduler.spool)
    if point == "claimed":
        # Claimed, then its claimer died before starting it: nothing runs until a pass looks.
        wait_for(lambda: any(p.name.endswith(f"-{job}") for p in (spool / "claimed").iterdir()), what="the claim")
        time.sleep(0.3)
        assert not marker.exists()
        s.refresh_jobs()  # puts it back in its place in the queue, and starts it
    wait_for(marker.exists, what="the job to start")
    for _ in range(5):
        s.refresh_jobs()  # every pass sees the claim or the job; none starts it again
    assert s.get_job(job).state == JobState.RUNNING
    release.touch()
    rec = s.watch_jobs([job], timeout=30)[0]
    assert rec.state == JobState.SUCCEEDED
    time.sleep(0.2)
    assert marker.read_text() == "ran\n"
    assert s.watch_jobs([blocker], timeout=30)[0].state == JobState.SUCCEEDED
    assert not list((spool / "claimed").iterdir())


def test_a_job_claimed_twice_runs_once(tmp_path):
    """Two wrappers of one job (a claimer that died after starting one, then a second start):
    `begun` lets only the first run."""
    from molq.local.host import HostSpool

    marker = tmp_path / "ran"
    spec = JobSpec(job_id="twice", command_type="command", command=f"echo ran >> {marker}")
    sched = ShellScheduler(options=LocalSchedulerOptions(max_cpus=2, spool_dir=str(tmp_path / "spool")))
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    sched.submit(spec, str(job_dir))
    spool = sched._spool
    assert isinstance(spool, HostSpool)
    spool.start("twice", {"job_dir": str(job_dir), "cpus": 1})  # a second start of the same job
    job = TrackedJob(job_id="twice", scheduler_job_id="twice", job_dir=str(job_dir))
    wait_for(lambda: (st := sched.poll_many([job]).get("twice")) is not None and st.state.is_terminal)
    time.sleep(0.3)
    assert marker.read_text() == "ran\n"
    assert sched.poll_many([job])["twice"].state == JobState.SUCCEEDED


SUBMIT_THEN_DIE = """
import sys
from molq import Cluster, Submitor
s = Submitor(Cluster("die", "local"))
s.submit_job(command="echo ran >> " + sys.argv[1] + "; while [ ! -e " + sys.argv[2] + " ]; do sleep 0.02; done")
"""


def test_submitter_killed_between_spawn_and_running_entry_reports_running_then_the_end(tmp_path, request_release):
    marker, release = tmp_path / "ran", tmp_path / "release"
    env = dict(os.environ, MOLQ_TEST_KILL_AT="submit-spawned")
    proc = subprocess.run([sys.executable, "-c", SUBMIT_THEN_DIE, str(marker), str(release)], env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == -9
    request_release.append(release)
    wait_for(marker.exists, what="the job to start")
    s = Submitor(Cluster("die", "local"))
    (rec,) = s.list_jobs(include_terminal=True)
    for _ in range(3):
        s.refresh_jobs()
    assert s.get_job(rec.job_id).state == JobState.RUNNING  # adopted; its process lives
    release.touch()
    final = s.watch_jobs([rec.job_id], timeout=30)[0]
    assert final.state == JobState.SUCCEEDED and final.exit_code == 0
    assert marker.read_text() == "ran\n"


@pytest.fixture
def small_fs(tmp_path):
    """A real filesystem of 1 MiB that the test can fill (tmpfs; needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def _fill(directory: Path, name: str = "filler") -> None:
    fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        (directory / "probe").write_text("x")  # really full


def test_a_full_disk_never_starts_a_job_twice_and_an_unwritten_exit_code_is_no_evidence(small_fs, tmp_path,
                                                                                        request_release):
    marker, go, release = tmp_path / "ran", tmp_path / "go", tmp_path / "release"
    request_release += [go, release]
    sched = ShellScheduler(options=LocalSchedulerOptions(max_cpus=1, spool_dir=str(small_fs / "spool")))
    dirs = {}
    jobs = []
    for name, cmd in (("blocker", f"while [ ! -e {go} ]; do sleep 0.02; done"),
                      ("job", f"echo ran >> {marker}; while [ ! -e {release} ]; do sleep 0.02; done")):
        d = small_fs / name
        d.mkdir()
        spec = JobSpec(job_id=name, command_type="command", command=cmd)
        sched.submit(spec, str(d))
        dirs[name] = d
        jobs.append(TrackedJob(job_id=name, scheduler_job_id=name, job_dir=str(d)))
    _fill(small_fs)  # from here on no entry and no exit code can be written
    go.touch()
    wait_for(marker.exists, what="the queued job to start on a full disk")
    for _ in range(5):
        st = sched.poll_many(jobs)
    assert st["job"].state == JobState.RUNNING  # its identity is on record
    assert not list((small_fs / "spool" / "claimed").iterdir())
    _fill(small_fs, "filler2")  # removed entries freed pages: full again
    release.touch()
    wait_for(lambda: (dirs["job"] / "exit_unknown").exists(), what="the wrapper to give up on its exit code")
    time.sleep(0.2)
    st = sched.poll_many(jobs)
    assert "job" not in st  # no evidence: neither failed nor succeeded
    assert marker.read_text() == "ran\n"


# -- privacy, times, validation ----------------------------------------------------------------

UMASK0 = """
import os, sys
from molq import Cluster, JobExecution, Submitor
s = Submitor(Cluster("priv", "local"))
h = s.submit_job(command="echo secret", execution=JobExecution(cwd=sys.argv[1], output_file="out.txt",
                                                               error_file="err.txt"))
print(s.watch_jobs([h.job_id], timeout=30)[0].state.value, s.get_job(h.job_id).job_dir, s.scheduler.spool)
"""


def test_molqs_files_and_the_jobs_output_files_are_private_under_umask_000(tmp_path, molq_home):
    work = tmp_path / "work"
    work.mkdir(mode=0o777)
    os.chmod(work, 0o2775)  # a group's shared folder: molq must leave its mode alone
    state, job_dir, spool = run_python(UMASK0, str(work), umask=0).split()
    assert state == "succeeded"
    assert stat.S_IMODE(work.stat().st_mode) == 0o2775
    for p in (work / "out.txt", work / "err.txt"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert (work / "out.txt").read_text() == "secret\n"
    for root in (Path(spool), Path(job_dir)):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames:
                if os.path.islink(os.path.join(dirpath, name)):
                    continue  # jobs/<sid>.dir: a link's own mode means nothing
                mode = stat.S_IMODE(os.lstat(os.path.join(dirpath, name)).st_mode)
                assert mode & 0o077 == 0, (dirpath, name, oct(mode))
            for name in filenames:
                p = os.path.join(dirpath, name)
                if os.path.islink(p):
                    continue
                mode = stat.S_IMODE(os.lstat(p).st_mode)
                assert mode & 0o077 == 0, (p, oct(mode))
        assert stat.S_IMODE(root.stat().st_mode) & 0o077 == 0


def test_times_come_from_the_wrapper(tmp_path):
    s = Submitor(Cluster("times", "local"))
    h = s.submit_job(command="sleep 0.3")
    rec = s.get_job(h.job_id)
    wait_for(lambda: Path(rec.job_dir, "exit_code").exists(), what="the job to end")
    time.sleep(1.0)  # the refresh notices the end a second later
    final = s.watch_jobs([h.job_id], timeout=30)[0]
    ended = Path(rec.job_dir, "exit_code").stat().st_mtime
    assert final.started_at is not None and final.finished_at is not None
    assert final.started_at >= final.submitted_at
    assert abs(final.finished_at - ended) < 0.05
    assert 0.25 < final.finished_at - final.started_at < 0.9


@pytest.mark.parametrize("bad", [
    {"argv": ["echo", "a\x00b"]},
    {"argv": ["echo", "\udcff"]},
    {"command": "echo a\x00"},
    {"argv": ["true"], "execution": JobExecution(cwd="/tmp/a\x00b")},
])
def test_strings_the_scheduler_cannot_pass_faithfully_are_refused_before_anything_is_stored(bad):
    s = Submitor(Cluster("valid", "local"))
    with pytest.raises(ConfigError, match="NUL|encoded"):
        s.submit_job(**bad)
    assert s.list_jobs(include_terminal=True) == []


def test_queue_entries_of_an_earlier_molq_are_upgraded_and_start(tmp_path):
    spool = tmp_path / "spool"
    for sub in ("jobs", "queued", "running"):
        (spool / sub).mkdir(parents=True)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    marker = tmp_path / "ran"
    spec = JobSpec(job_id="old1", command_type="command", command=f"echo ran >> {marker}")
    # What molq-core before the package split left: a description, an empty entry, no link.
    (job_dir / "job.sh").write_text(wrapper.render_local_script(spec, str(job_dir)))
    (spool / "jobs" / "old1.json").write_text(json.dumps(
        {"job_dir": str(job_dir), "cpus": 1, "deps": [], "stdout": f"{job_dir}/stdout",
         "stderr": f"{job_dir}/stderr", "redirected": True, "submitted": 1.0}))
    (spool / "queued" / f"{time.time_ns():020d}-old1").write_text("")
    sched = ShellScheduler(options=LocalSchedulerOptions(spool_dir=str(spool), max_cpus=1))
    job = TrackedJob(job_id="old1", scheduler_job_id="old1", job_dir=str(job_dir))
    deadline = time.monotonic() + 20
    while (st := sched.poll_many([job]).get("old1")) is None or not st.state.is_terminal:
        assert time.monotonic() < deadline, st
        time.sleep(0.05)
    assert st.state == JobState.SUCCEEDED and marker.read_text() == "ran\n"


RANDOM_SUBMITTER = """
import sys
from molq import Cluster, Submitor
log = sys.argv[1]
s = Submitor(Cluster("chaos", "local", scheduler_options={"max_cpus": 1}))
s.list_jobs()
print("ready", flush=True)
prev = None
for i in range(6):
    token = sys.argv[2] + "-" + str(i)
    h = s.submit_job(argv=["sh", "-c", 'echo "$0" >> "$1"; sleep 0.05', token, log], metadata={"token": token},
                     after_success=[prev] if prev and i % 2 else None)
    prev = h.job_id
    s.refresh_jobs()
s.watch_jobs(None, timeout=60)
"""


def test_random_sigkills_of_submitters_never_run_a_job_twice_nor_record_a_wrong_end(tmp_path):
    import random

    rng = random.Random(1234)
    log = tmp_path / "ran.log"
    trials, twice, wrong = 8, 0, 0
    for trial in range(trials):
        proc = subprocess.Popen([sys.executable, "-c", RANDOM_SUBMITTER, str(log), f"t{trial}"],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.4))  # somewhere in its submissions and refreshes
        proc.kill()
        proc.wait()
    s = Submitor(Cluster("chaos", "local", scheduler_options={"max_cpus": 1}))
    records = s.watch_jobs([r.job_id for r in s.list_jobs(include_terminal=True)], timeout=120)
    time.sleep(0.3)
    ran = log.read_text().split() if log.exists() else []
    for rec in records:
        n = ran.count(rec.metadata["token"])
        twice += n > 1
        if rec.state == JobState.SUCCEEDED:
            wrong += n != 1
        elif rec.state == JobState.FAILED:
            # Never ran (interrupted, or its dependency can never be satisfied), or ran and failed.
            wrong += n != 0 and rec.exit_code in (None, 0)
        else:
            wrong += 1
    print(f"{trials} trials, {len(records)} jobs, {len(ran)} runs: ran twice {twice}, wrong end {wrong}")
    assert records and twice == 0 and wrong == 0


def test_another_local_user_can_read_nothing_molq_or_the_job_wrote_under_umask_000():
    require_another_user()
    import tempfile

    # Reachable by anyone (0711 up to here): only each file's own mode protects it.
    base = Path(tempfile.mkdtemp(prefix="molq-priv-", dir="/tmp"))
    try:
        os.chmod(base, 0o711)
        home, work = base / "home", base / "work"
        home.mkdir()
        work.mkdir()
        os.chmod(home, 0o711)
        os.chmod(work, 0o777)  # the user's own folder, shared on purpose
        env = dict(os.environ, MOLQ_HOME=str(home))
        state, job_dir, spool = run_python(UMASK0, str(work), env=env, umask=0).split()
        assert state == "succeeded"
        molq_made = [Path(spool), Path(job_dir), work / "out.txt", work / "err.txt", work / ".molq"]
        paths = tree(molq_made)
        readable = readable_by_another_user(p for p in paths if not p.is_symlink())
        assert len(paths) > 10 and readable == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


class _ThisHostAsRemote(LocalTransport):
    """This machine presented as a remote host: the scheduler drives the spool with its
    scripts only (the remote path), as over SSH."""

    name = "this-host-as-remote"
    is_remote = True


def test_remote_queue_entries_of_an_earlier_molq_are_upgraded_with_their_conditions(tmp_path):
    spool = tmp_path / "spool"
    for sub in ("jobs", "queued", "running"):
        (spool / sub).mkdir(parents=True)
    marker = tmp_path / "ran"
    dirs = {}
    for sid in ("up1", "dep1", "free1"):
        d = tmp_path / sid
        d.mkdir()
        dirs[sid] = d
        (spool / "jobs" / f"{sid}.dir").symlink_to(d)
    (dirs["up1"] / "exit_code").write_text("0\n")  # the upstream succeeded
    for sid, deps in (("up1", []), ("dep1", [["after_failure", "up1"]]), ("free1", [])):
        spec = JobSpec(job_id=sid, command_type="command", command=f"echo {sid} >> {marker}")
        (dirs[sid] / "job.sh").write_text(wrapper.render_local_script(spec, str(dirs[sid])))
        (spool / "jobs" / f"{sid}.json").write_text(json.dumps(
            {"job_dir": str(dirs[sid]), "cpus": 1, "deps": deps, "stdout": f"{dirs[sid]}/stdout",
             "stderr": f"{dirs[sid]}/stderr", "redirected": True, "submitted": 1.0}))
    # The earlier remote form: the upstream ids only, without their conditions.
    (spool / "queued" / f"{time.time_ns():020d}-dep1").write_text("up1\n")
    (spool / "queued" / f"{time.time_ns():020d}-free1").write_text("\n")
    sched = ShellScheduler(_ThisHostAsRemote(), LocalSchedulerOptions(spool_dir=str(spool), max_cpus=2))
    jobs = [TrackedJob(job_id=s, scheduler_job_id=s, job_dir=str(dirs[s])) for s in ("dep1", "free1")]
    deadline = time.monotonic() + 20
    while True:
        st = sched.poll_many(jobs)
        if len(st) == 2 and all(s.state.is_terminal for s in st.values()):
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.05)
    assert st["free1"].state == JobState.SUCCEEDED
    assert st["dep1"].state == JobState.FAILED and "up1 succeeded" in (st["dep1"].reason or "")
    assert marker.read_text() == "free1\n"  # the after_failure job never ran

"""End causes and usage: the engine's rules, the local scheduler's evidence (real processes, a
real store), the CLI's output and the events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from molq import Cluster, EndCause, EventType, JobResources, JobState, Submitor, Usage
from molq.causes import cause_from_exit, parse_causes, to_cause
from molq.engine.decide import ABSENT, LOST_AFTER_MISSES, LOST_AFTER_SECONDS, JobView, decide
from molq.model import SchedulerStatus

# -- the vocabulary --------------------------------------------------------------------------------


def test_the_causes_are_exactly_the_documented_ones() -> None:
    assert [c.value for c in EndCause] == [
        "completed", "exit_code", "signal", "out_of_memory", "time_limit", "cancelled_by_user",
        "cancelled_by_admin_or_system", "preempted", "node_failure", "launch_failed",
        "dependency_never_satisfied", "lost", "unknown",
    ]


@pytest.mark.parametrize(("state", "code", "sig", "cause"), [
    (JobState.SUCCEEDED, 0, None, EndCause.COMPLETED),
    (JobState.FAILED, 3, None, EndCause.EXIT_CODE),
    (JobState.FAILED, 143, 15, EndCause.SIGNAL),
    (JobState.FAILED, None, None, EndCause.UNKNOWN),
    (JobState.TIMED_OUT, None, None, EndCause.TIME_LIMIT),
    (JobState.CANCELLED, None, None, EndCause.UNKNOWN),  # who cancelled it is not said
    (JobState.LOST, None, None, EndCause.LOST),
    (JobState.RUNNING, None, None, None),
])
def test_cause_from_exit(state, code, sig, cause) -> None:
    assert cause_from_exit(state, code, sig) == cause


def test_cause_names_and_aliases() -> None:
    assert parse_causes("oom, timeout,preempted") == (EndCause.OUT_OF_MEMORY, EndCause.TIME_LIMIT,
                                                      EndCause.PREEMPTED)
    with pytest.raises(ValueError, match="'ooom'"):
        parse_causes("ooom")
    assert to_cause("a_cause_of_a_newer_molq") == EndCause.UNKNOWN


# -- the engine's rules ----------------------------------------------------------------------------


def test_a_backend_cause_is_recorded_else_the_one_the_exit_implies() -> None:
    view = JobView("j", JobState.RUNNING, "1")
    oom = SchedulerStatus(JobState.FAILED, "OUT_OF_MEMORY", end_cause=EndCause.OUT_OF_MEMORY)
    assert decide(view, oom, 10.0).fields["end_cause"] == "out_of_memory"
    plain = SchedulerStatus(JobState.FAILED, "FAILED", exit_code=2)
    assert decide(view, plain, 10.0).fields["end_cause"] == "exit_code"
    usage = Usage(elapsed_seconds=10, cpu_seconds=5, cpus=1)
    done = decide(view, SchedulerStatus(JobState.SUCCEEDED, "COMPLETED", exit_code=0, usage=usage), 10.0)
    assert done.fields["end_cause"] == "completed"
    assert done.fields["usage"].cpu_efficiency == 0.5


def test_molq_cancel_lost_and_unsatisfiable_dependency_causes() -> None:
    asked = JobView("j", JobState.RUNNING, "1", cancel_requested_at=100.0)
    killed = SchedulerStatus(JobState.FAILED, "FAILED", exit_code=143, exit_signal=15, finished_at=101.0,
                             end_cause=EndCause.SIGNAL)
    assert decide(asked, killed, 102.0).fields["end_cause"] == "cancelled_by_user"
    assert decide(asked, ABSENT, 102.0).fields["end_cause"] == "cancelled_by_user"
    missing = JobView("j", JobState.RUNNING, "1", missing_count=LOST_AFTER_MISSES - 1, missing_since=1.0)
    lost = decide(missing, ABSENT, LOST_AFTER_SECONDS + 2)
    assert lost.new_state == JobState.LOST and lost.fields["end_cause"] == "lost"
    never = SchedulerStatus(JobState.QUEUED, "PENDING", reason="DependencyNeverSatisfied",
                            dependency_never_satisfied=True)
    assert decide(JobView("j", JobState.QUEUED, "1"), never, 5.0).fields["end_cause"] == "dependency_never_satisfied"


# -- the local scheduler: real processes -----------------------------------------------------------


@pytest.fixture
def submitor(tmp_path):
    s = Submitor(Cluster("causes"), jobs_dir=str(tmp_path / "jobs"))
    yield s
    s.close()


def test_local_exit_code_signal_and_completion(submitor) -> None:
    ok = submitor.submit_job(argv=["true"]).wait(timeout=20)
    code = submitor.submit_job(command="exit 4").wait(timeout=20)
    sig = submitor.submit_job(argv=["sh", "-c", "kill -TERM $$"]).wait(timeout=20)
    assert (ok.end_cause, code.end_cause, sig.end_cause) == (
        EndCause.COMPLETED, EndCause.EXIT_CODE, EndCause.SIGNAL)


def test_local_cancel_is_cancelled_by_user(submitor) -> None:
    handle = submitor.submit_job(argv=["sleep", "30"])
    deadline = time.time() + 20
    while submitor.get_job(handle.job_id).state != JobState.RUNNING and time.time() < deadline:
        submitor.refresh_jobs()
        time.sleep(0.2)
    submitor.cancel_job(handle.job_id)
    rec = handle.wait(timeout=20)
    assert rec.state == JobState.CANCELLED and rec.end_cause == EndCause.CANCELLED_BY_USER


def test_local_usage_busy_versus_sleeping(submitor) -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.5: pass"
    busy = submitor.submit_job(argv=[sys.executable, "-c", burn], resources=JobResources(cpu_count=1))
    idle = submitor.submit_job(argv=["sleep", "2"], resources=JobResources(cpu_count=1))
    b, s = busy.wait(timeout=60), idle.wait(timeout=60)
    assert b.usage is not None and s.usage is not None
    # The wrapper measured the CPU time the job burned (1.5 s, plus the interpreter's start).
    assert b.usage.cpus == 1 and 1.4 <= (b.usage.cpu_seconds or 0) <= 4.0, b.usage
    assert s.usage.cpu_seconds is not None and s.usage.cpu_seconds < 0.2, s.usage
    assert s.usage.elapsed_seconds is not None and s.usage.elapsed_seconds >= 1.5
    # Efficiency: near 100 % for the busy job on an idle machine (98 % measured), near 0 for
    # the sleeper. This machine is shared: the busy job may wait for a core, so only the
    # formula and "far above the sleeper" are certain.
    busy_eff, idle_eff = b.usage.cpu_efficiency, s.usage.cpu_efficiency
    assert busy_eff is not None and idle_eff is not None
    assert busy_eff == pytest.approx(b.usage.cpu_seconds / b.usage.elapsed_seconds)
    assert busy_eff > 0.1 and idle_eff < 0.05, (b.usage, s.usage)


def _memory_cgroup() -> Path | None:
    """A writable cgroup v1 memory directory of this process, where the machine has one."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[1] == "memory":
            path = Path("/sys/fs/cgroup/memory" + parts[2])
            if os.access(path, os.W_OK) and (path / "memory.oom_control").exists():
                return path
    return None


def test_local_job_killed_by_the_kernel_oom_killer_is_out_of_memory(tmp_path) -> None:
    parent = _memory_cgroup()
    if parent is None:
        pytest.skip("no writable cgroup v1 memory controller on this machine")
    group = parent / f"molq-test-oom-{os.getpid()}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(256 << 20))
        try:
            (group / "memory.memsw.limit_in_bytes").write_text(str(256 << 20))
        except OSError:
            pass  # no swap accounting: the memory limit alone
        # A process in the limited group submits the job: the local scheduler's job starts there.
        # The limit is well above the submitter's own memory, so the job's program is the
        # largest process when it is reached, and the one the kernel kills.
        code = textwrap.dedent(f"""
            import sys
            from pathlib import Path
            Path({str(group / 'cgroup.procs')!r}).write_text(str(__import__('os').getpid()))
            from molq import Cluster, Submitor
            s = Submitor(Cluster("oom"), jobs_dir={str(tmp_path / 'jobs')!r})
            prog = "b = []\\nwhile True: b.append(bytearray(8 << 20))"
            rec = s.submit_job(argv=[sys.executable, "-c", prog]).wait(timeout=60)
            print(rec.state.value, rec.exit_signal, rec.end_cause, rec.failure_reason)
        """)
        env = dict(os.environ, MOLQ_HOME=str(tmp_path / "home"))
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        state, sig, cause, *_ = proc.stdout.split()
        assert (state, sig, cause) == ("failed", "9", "out_of_memory"), proc.stdout
    finally:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)  # the job's last processes are still leaving the group


# -- store, CLI, events ----------------------------------------------------------------------------


def test_cause_and_usage_are_stored_shown_and_in_events(submitor, tmp_path) -> None:
    seen = []
    submitor.on_event(EventType.JOB_FAILED, lambda p: seen.append(p.record))
    rec = submitor.submit_job(command="exit 6").wait(timeout=20)
    assert rec.end_cause == EndCause.EXIT_CODE and rec.usage is not None
    assert seen and seen[-1].end_cause == EndCause.EXIT_CODE and seen[-1].usage is not None
    run = [sys.executable, "-m", "molq", "show", rec.job_id]
    text = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    assert "end cause: exit_code" in text.stdout and "wall time:" in text.stdout, text.stdout
    data = json.loads(subprocess.run([*run, "--json"], capture_output=True, text=True, timeout=60).stdout)
    assert data["end_cause"] == "exit_code" and data["usage"]["cpus"] == 1


def test_cli_retry_rules_are_checked_before_anything_is_stored(submitor) -> None:
    def molq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "molq", *args], capture_output=True, text=True, timeout=60)

    for bad in (["--retry-on", "ooom"], ["--grow-memory", "0.5"], ["--retry-on", ","]):
        proc = molq("submit", *bad, "--", "true")
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert ("--retry-on" in proc.stderr or "--grow-memory" in proc.stderr), proc.stderr
    assert submitor.store.list_jobs("local", include_terminal=True) == []
    proc = molq("submit", "--retry-on", "oom,timeout", "--grow-memory", "2", "--cpus", "1", "--", "true")
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.split()[0]
    rec = submitor.store.get_job("local", job_id)  # the CLI's default cluster
    policy = submitor.store.internals(rec.cluster_name, rec.job_id).retry
    assert policy is not None and policy.max_attempts == 2
    assert policy.retry_on_causes == (EndCause.OUT_OF_MEMORY, EndCause.TIME_LIMIT)
    assert policy.on_out_of_memory is not None and policy.on_out_of_memory.memory == 2.0
    shown = molq("show", job_id)
    assert "resources: cpus=1" in shown.stdout, shown.stdout



def test_report_counts_causes_hours_and_offenders() -> None:
    local = Submitor(Cluster("local"))
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1: pass"
    jobs = [local.submit_job(argv=[sys.executable, "-c", burn], execution=_named("burn"),
                             resources=JobResources(cpu_count=1)),
            local.submit_job(argv=["sleep", "1"], execution=_named("nap"), resources=JobResources(cpu_count=2)),
            local.submit_job(command="exit 3", execution=_named("bad"))]
    recs = [j.wait(timeout=60) for j in jobs]
    local.close()

    def molq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "molq", *args], capture_output=True, text=True, timeout=60)

    proc = molq("report", "--since", "1d", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["schema"] == 1 and data["by"] == "cause"
    assert data["total"]["jobs"] == 3
    assert data["total"]["causes"] == {"completed": 2, "exit_code": 1}
    assert data["total"]["states"] == {"failed": 1, "succeeded": 2}
    hours = sum(r.usage.core_hours or 0 for r in recs if r.usage is not None)
    assert data["total"]["core_hours"] == pytest.approx(hours, abs=1e-3)
    # the two-core sleeper used next to none of its cores: the worst offender
    assert [o["job_id"] for o in data["offenders"]] == [recs[1].job_id]
    by_name = json.loads(molq("report", "--by", "name", "--name", "b*", "--json").stdout)
    assert set(by_name["groups"]) == {"burn", "bad"}
    text = molq("report", "--by", "state")
    assert text.returncode == 0 and "3 finished job(s)" in text.stdout and "worst offenders" in text.stdout
    bad = molq("report", "--since", "soon")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "--since" in bad.stderr


def _named(name: str):  # type: ignore[no-untyped-def]
    from molq import JobExecution

    return JobExecution(job_name=name)


def test_profiles_accept_the_same_retry_rules(tmp_path) -> None:
    from molq import ConfigError
    from molq.config import load_config
    from molq.retry_rules import Grow

    path = tmp_path / "config.toml"
    path.write_text('[profiles.hpc]\nscheduler = "local"\n[profiles.hpc.retry]\nmax_attempts = 3\n'
                    'retry_on_causes = ["oom", "timeout"]\non_out_of_memory = { memory = 2.0, max = "32G" }\n')
    policy = load_config(str(path)).profiles["hpc"].retry
    assert policy is not None and policy.retry_on_causes == (EndCause.OUT_OF_MEMORY, EndCause.TIME_LIMIT)
    assert policy.on_out_of_memory == Grow(memory=2.0, max="32G")
    for bad in ('retry_on_causes = ["ooom"]', 'on_out_of_memory = { memory = 0.5 }',
                'on_time_limit = { time = 2.0, max = "soon" }'):
        path.write_text(f'[profiles.hpc]\nscheduler = "local"\n[profiles.hpc.retry]\n{bad}\n')
        with pytest.raises(ConfigError, match="hpc"):
            load_config(str(path))

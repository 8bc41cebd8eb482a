"""Lifecycle behaviour on real processes and a real SQLite store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from molq import (
    Cluster,
    ConfigError,
    EventType,
    JobExecution,
    JobResources,
    JobState,
    RetentionPolicy,
    RetryBackoff,
    RetryPolicy,
    Script,
    Submitor,
)
from molq.errors import JobNotFoundError
from molq.model import ALLOWED_TRANSITIONS


@pytest.fixture
def submitor(tmp_path):
    s = Submitor(Cluster("life"), jobs_dir=str(tmp_path / "jobs"))
    yield s
    s.close()


def run_py(code: str, env_home: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, MOLQ_HOME=str(env_home))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_signal_kill_reported(submitor):
    rec = submitor.submit_job(argv=["sh", "-c", "kill -9 $$"]).wait(timeout=20)
    assert rec.state == JobState.FAILED
    assert rec.exit_signal == signal.SIGKILL
    assert "SIGKILL" in rec.failure_reason


def test_output_files_env_and_cwd(submitor, tmp_path):
    work = tmp_path / "work dir"
    work.mkdir()
    rec = submitor.submit_job(
        command='echo "$GREETING from $(pwd)"; echo err >&2',
        execution=JobExecution(cwd=str(work), env={"GREETING": "hi 'there'"},
                               output_file="out.log", error_file=str(tmp_path / "err.log")),
    ).wait(timeout=20)
    assert rec.state == JobState.SUCCEEDED
    assert (work / "out.log").read_text() == f"hi 'there' from {work}\n"
    assert (tmp_path / "err.log").read_text() == "err\n"


def test_unopenable_output_file_fails_the_job_with_the_reason(submitor, tmp_path):
    h = submitor.submit_job(argv=["touch", str(tmp_path / "ran")],
                            execution=JobExecution(output_file=str(tmp_path / "no" / "such" / "out.log")))
    rec = h.wait(timeout=30)
    assert rec.state == JobState.FAILED
    assert "cannot open the job output files" in rec.failure_reason
    assert str(tmp_path / "no" / "such" / "out.log") in rec.failure_reason
    assert not (tmp_path / "ran").exists()  # the command never ran


def test_inline_and_path_scripts(submitor, tmp_path):
    rec = submitor.submit_job(script=Script.inline("#!/bin/sh\necho inline $0\nexit 5\n")).wait(timeout=20)
    assert rec.exit_code == 5
    script = tmp_path / "s.sh"
    script.write_text("echo from file\n")
    rec = submitor.submit_job(script=Script.path(script)).wait(timeout=20)
    assert rec.state == JobState.SUCCEEDED
    assert Path(rec.job_dir, "stdout").read_text() == "from file\n"


def test_argv_names_a_program_not_a_builtin(submitor):
    rec = submitor.submit_job(argv=["exit", "0"]).wait(timeout=20)
    assert rec.state == JobState.FAILED and rec.exit_code == 127


def test_job_outlives_submitter_and_is_reconciled_by_new_process(tmp_path, molq_home):
    out = run_py(f"""
        from molq import Cluster, Submitor
        s = Submitor(Cluster("detach"))
        h = s.submit_job(command="sleep 1; exit 4", execution=__import__("molq").JobExecution(cwd={str(tmp_path)!r}))
        print(h.job_id)
    """, molq_home)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    s = Submitor(Cluster("detach"))
    rec = s.watch_jobs([job_id], timeout=20)[0]
    assert rec.state == JobState.FAILED and rec.exit_code == 4


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_cancel_kills_grandchildren(submitor, tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    h = submitor.submit_job(command=f"sh -c 'sleep 300 & echo $! > {pidfile}; wait' ; sleep 300")
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    assert _pid_alive(grandchild)
    h.cancel()
    assert submitor.get_job(h.job_id).state == JobState.CANCELLED
    deadline = time.monotonic() + 10
    while _pid_alive(grandchild):
        assert time.monotonic() < deadline, "grandchild survived cancel"
        time.sleep(0.05)


def test_cpu_count_limits_concurrency(tmp_path):
    s = Submitor(Cluster("cores", scheduler_options={"max_cpus": 2}), jobs_dir=str(tmp_path / "jobs"))
    log = tmp_path / "log"
    cmd = f'echo "start $(date +%s.%N)" >> {log}; sleep 0.6; echo "end $(date +%s.%N)" >> {log}'
    handles = [s.submit_job(command=cmd, resources=JobResources(cpu_count=1)) for _ in range(3)]
    big = s.submit_job(command=cmd, resources=JobResources(cpu_count=2))
    recs = s.watch_jobs([h.job_id for h in handles] + [big.job_id], timeout=30)
    assert all(r.state == JobState.SUCCEEDED for r in recs)
    events = sorted((float(t), kind) for kind, t in (line.split() for line in log.read_text().splitlines()))
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak <= 2
    with pytest.raises(ConfigError, match="cpu_count=3 exceeds"):
        s.submit_job(argv=["true"], resources=JobResources(cpu_count=3))
    assert len(s.list_jobs(include_terminal=True)) == 4


def test_all_dependency_conditions(submitor):
    ok = submitor.submit_job(command="sleep 0.3")
    bad = submitor.submit_job(command="sleep 0.3; exit 1")
    a = submitor.submit_job(argv=["true"], after_success=[ok.job_id])
    b = submitor.submit_job(argv=["true"], after_failure=[bad.job_id])
    c = submitor.submit_job(argv=["true"], after_started=[ok.job_id])
    d = submitor.submit_job(argv=["true"], after=[bad.job_id])
    never = submitor.submit_job(argv=["true"], after_success=[bad.job_id])
    recs = submitor.watch_jobs([a.job_id, b.job_id, c.job_id, d.job_id, never.job_id], timeout=30)
    assert [r.state for r in recs[:4]] == [JobState.SUCCEEDED] * 4
    assert recs[4].state == JobState.FAILED
    assert "never satisfied" in recs[4].failure_reason
    ok_rec = submitor.get_job(ok.job_id)
    assert submitor.get_job(a.job_id).started_at >= ok_rec.finished_at - 1
    # Known at submit time: refused before anything is persisted.
    n = len(submitor.list_jobs(include_terminal=True))
    with pytest.raises(ConfigError, match="never be satisfied"):
        submitor.submit_job(argv=["true"], after_success=[bad.job_id])
    assert len(submitor.list_jobs(include_terminal=True)) == n
    assert [d.dependency_type for d in submitor.get_dependents(bad.job_id)] == sorted(
        ["after_failure", "after", "after_success"], key=["after_failure", "after", "after_success"].index)


def test_bad_input_persists_and_starts_nothing(submitor):
    cases = [
        dict(),
        dict(argv=["true"], command="true"),
        dict(argv="true"),
        dict(argv=[]),
        dict(command="  "),
        dict(argv=["true"], after_success=["nope"]),
        dict(argv=["true"], resources=JobResources(cpu_count=1), job_dir_name="../x"),
        dict(argv=["true"], metadata={"a": 1}),
    ]
    for kwargs in cases:
        with pytest.raises(ConfigError):
            submitor.submit_job(**kwargs)
    assert submitor.list_jobs(include_terminal=True) == []


def test_retries_are_scheduled_and_keep_dependencies(submitor, tmp_path):
    counter = tmp_path / "count"
    upstream = submitor.submit_job(argv=["true"])
    events = []
    submitor.on_event(EventType.JOB_RETRYING, events.append)
    h = submitor.submit_job(
        command=f'echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ]',
        retry=RetryPolicy(max_attempts=3, backoff=RetryBackoff("fixed", initial_seconds=0.3)),
        after_success=[upstream.job_id],
    )
    final = h.wait(timeout=30)
    assert final.state == JobState.SUCCEEDED and final.attempt == 3
    family = submitor.get_retry_family(h.job_id)
    assert [r.attempt for r in family] == [1, 2, 3]
    assert [r.state for r in family] == [JobState.FAILED, JobState.FAILED, JobState.SUCCEEDED]
    assert all(r.root_job_id == h.job_id for r in family)
    assert family[1].previous_attempt_job_id == family[0].job_id
    for rec in family:
        assert [(d.dependency_job_id, d.dependency_type) for d in submitor.get_dependencies(rec.job_id)] == [
            (upstream.job_id, "after_success")]
    assert len(events) == 2
    # Backoff was honoured: attempt 2 was created no sooner than 0.3 s after attempt 1 ended.
    assert family[1].created_at - family[0].finished_at >= 0.29


def test_cancel_stops_pending_retry(submitor):
    h = submitor.submit_job(argv=["false"], retry=RetryPolicy(max_attempts=5, backoff=RetryBackoff("fixed", 60)))
    deadline = time.monotonic() + 20
    while submitor.get_job(h.job_id).next_retry_at is None:
        assert time.monotonic() < deadline
        submitor.refresh_jobs()
        time.sleep(0.05)
    h.cancel()
    rec = submitor.watch_jobs([h.job_id], timeout=5)[0]
    assert rec.state == JobState.FAILED and rec.attempt == 1


def test_events_reach_bus_and_sink_plugins(submitor):
    from molq.hookspecs import hookimpl
    from molq.plugin_types import EventSink
    from molq.plugins import get_plugin_manager

    sink_seen = []

    class Sink:
        @hookimpl
        def molq_register_event_sinks(self):
            yield EventSink(name="test-sink", handler=sink_seen.append)

    get_plugin_manager().register(Sink(), name="test-sink-plugin")
    s = Submitor(Cluster("events"), store=submitor.store)
    bus_seen = []
    s.on_event(EventType.JOB_COMPLETED, bus_seen.append)
    h = s.submit_job(argv=["true"])
    h.wait(timeout=20)
    assert [p.job_id for p in bus_seen] == [h.job_id]
    kinds = [p.event for p in sink_seen if p.job_id == h.job_id]
    assert EventType.JOB_SUBMITTED in kinds and EventType.JOB_COMPLETED in kinds
    assert any(p.event == EventType.ALL_COMPLETED for p in sink_seen)


def test_cleanup_goes_through_transport(submitor):
    ok = submitor.submit_job(argv=["true"]).wait(timeout=20)
    bad = submitor.submit_job(argv=["false"]).wait(timeout=20)
    policy = RetentionPolicy(keep_job_dirs_for_days=0, keep_terminal_records_for_days=30, keep_failed_job_dirs=True)
    dry = submitor.cleanup_jobs(dry_run=True, retention_policy=policy)
    assert dry == {"job_dirs": [ok.job_dir], "records": []}
    assert Path(ok.job_dir).exists()
    submitor.cleanup_jobs(retention_policy=policy)
    assert not Path(ok.job_dir).exists() and Path(bad.job_dir).exists()
    assert submitor.get_job(ok.job_id).cleaned_at is not None
    gone = submitor.cleanup_jobs(retention_policy=RetentionPolicy(0, 0, False))
    assert sorted(gone["records"]) == sorted([ok.job_id, bad.job_id])
    assert submitor.list_jobs(include_terminal=True) == []


def test_clusters_do_not_see_each_other(submitor):
    other = Submitor(Cluster("other"), store=submitor.store)
    h = submitor.submit_job(argv=["true"])
    assert other.list_jobs(include_terminal=True) == []
    with pytest.raises(JobNotFoundError):
        other.get_job(h.job_id)


CRASH_SCRIPT = """
import os, sys
from molq import Cluster, Submitor, JobExecution
from molq.local import ShellScheduler
when = sys.argv[1]
original = ShellScheduler.submit
def crashing(self, spec, job_dir):
    if when == "before":
        os._exit(17)
    sid = original(self, spec, job_dir)
    os._exit(17)
def crash_at_start(self, sid, info):
    os._exit(17)  # the spool has the job's description, but it was never queued or started
ShellScheduler.submit = crashing
ShellScheduler._start = crash_at_start if when == "mid" else ShellScheduler._start
s = Submitor(Cluster("crash"))
s.submit_job(command="echo ran >> " + sys.argv[2], execution=JobExecution(cwd=sys.argv[3]))
"""


@pytest.mark.parametrize("when", ["before", "mid", "after"])
def test_crash_during_submission_loses_and_duplicates_nothing(when, tmp_path, molq_home):
    marker = tmp_path / "ran"
    env = dict(os.environ, MOLQ_HOME=str(molq_home))
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, when, str(marker), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 17, proc.stderr
    s = Submitor(Cluster("crash"))
    (record,) = s.list_jobs(include_terminal=True)
    assert record.state == JobState.CREATED  # the crash left it mid-submission
    s.refresh_jobs()
    final = s.watch_jobs([record.job_id], timeout=20)[0]
    time.sleep(0.3)
    if when in ("before", "mid"):
        assert final.state == JobState.FAILED and "interrupted" in final.failure_reason
        assert not marker.exists()
    else:
        assert final.state == JobState.SUCCEEDED
        assert "adopted" in s.get_transitions(record.job_id)[1].reason
        assert marker.read_text() == "ran\n"  # ran exactly once
    assert len(s.list_jobs(include_terminal=True)) == 1


CONCURRENT_SCRIPT = """
import sys
from molq import Cluster, Submitor
s = Submitor(Cluster("busy"))
ids = [s.submit_job(argv=["sh", "-c", "exit $0", str(i % 3)]).job_id for i in range(8)]
for _ in range(3):
    s.refresh_jobs()
s.watch_jobs(ids, timeout=120)
print("ok")
"""


def test_eight_processes_share_one_store(tmp_path, molq_home):
    env = dict(os.environ, MOLQ_HOME=str(molq_home))
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_SCRIPT], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip() == "ok", err
        assert "database is locked" not in err
    s = Submitor(Cluster("busy"))
    records = s.list_jobs(include_terminal=True)
    assert len(records) == 64
    for rec in records:
        assert rec.state == (JobState.SUCCEEDED if rec.exit_code == 0 else JobState.FAILED)
        path = s.get_transitions(rec.job_id)
        assert path[0].old_state is None and path[0].new_state == JobState.CREATED
        for prev, nxt in zip(path, path[1:]):
            assert nxt.old_state == prev.new_state, path
            assert nxt.new_state in ALLOWED_TRANSITIONS[prev.new_state], path
        assert path[-1].new_state == rec.state

"""The local scheduler's memory limit (``resources.memory``), enforced for real: a private memory
cgroup where this machine lets molq make one, else ``ulimit -v``; and which end cause each kind
of death gets (out of memory only with evidence of it, a plain SIGKILL is a signal, a cancel is
the user's).

What this machine allows decides which tests run: a cgroup v1 memory controller (or v2 with
memory enabled for children) writable by this user. Without one the cgroup tests skip and the
``ulimit -v`` ones still run.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from molq import Cluster, ConfigError, EndCause, JobResources, JobState, Submitor
from molq.local import LocalSchedulerOptions
from molq.local.queue import JobFacts, status_from

# Allocates 300 MB and touches every page, so the memory is really used (not just reserved).
ALLOCATE_300M = "x = bytearray(300 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\nprint('survived')"
LIMIT = 100 << 20


def _memory_cgroup_parent() -> Path | None:
    """Where the wrapper would make its cgroup, if this user may make one there."""
    v2 = None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        if controllers == "memory":
            base = Path("/sys/fs/cgroup/memory" + path)
            return base if os.access(base, os.W_OK) and (base / "memory.limit_in_bytes").exists() else None
        if number == "0" and controllers == "":
            v2 = Path("/sys/fs/cgroup" + path)
    if v2 is None or not os.access(v2, os.W_OK):
        return None
    try:
        enabled = (v2 / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    return v2 if "memory" in enabled else None


CGROUP_PARENT = _memory_cgroup_parent()
needs_cgroup = pytest.mark.skipif(CGROUP_PARENT is None, reason="no writable memory cgroup on this machine")


def _submitor(tmp_path: Path, **options: Any) -> Submitor:
    return Submitor(Cluster("mem", scheduler_options=LocalSchedulerOptions(**options)), jobs_dir=str(tmp_path / "jobs"))


def _cgroup_of(job_dir: str) -> Path | None:
    path = Path(job_dir, "cgroup")
    return Path(path.read_text().strip()) if path.exists() else None


def _gone(path: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not path.exists()


# -- what happens for real -------------------------------------------------------------------------


@needs_cgroup
def test_allocating_past_the_limit_in_a_cgroup_is_out_of_memory(tmp_path: Path) -> None:
    s = _submitor(tmp_path)
    try:
        rec = s.submit_job(argv=[sys.executable, "-c", ALLOCATE_300M],
                           resources=JobResources(memory="100M")).wait(timeout=60)
        assert (rec.state, rec.exit_signal, rec.end_cause) == (JobState.FAILED, 9, EndCause.OUT_OF_MEMORY), rec
        assert "out-of-memory killer" in (rec.failure_reason or "")
        assert "survived" not in Path(rec.job_dir, "stdout").read_text()
        # The peak is the cgroup's: at the limit, never past it; the request is what was given.
        assert rec.usage is not None and rec.usage.requested_memory_bytes == LIMIT
        assert rec.usage.max_rss_bytes is not None and LIMIT // 2 < rec.usage.max_rss_bytes <= LIMIT, rec.usage
        group = _cgroup_of(rec.job_dir)
        assert group is not None and group.parent == CGROUP_PARENT
        assert _gone(group), f"{group} was left behind"
    finally:
        s.close()


@needs_cgroup
def test_a_job_within_its_limit_succeeds_and_reports_its_peak(tmp_path: Path) -> None:
    s = _submitor(tmp_path)
    try:
        small = "x = bytearray(40 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1"
        rec = s.submit_job(argv=[sys.executable, "-c", small], resources=JobResources(memory="200M")).wait(timeout=60)
        assert (rec.state, rec.end_cause) == (JobState.SUCCEEDED, EndCause.COMPLETED), rec
        assert rec.usage is not None and rec.usage.max_rss_bytes is not None
        assert 40 << 20 <= rec.usage.max_rss_bytes < 200 << 20, rec.usage
        assert rec.usage.memory_efficiency is not None and 0.2 <= rec.usage.memory_efficiency < 1.0
        group = _cgroup_of(rec.job_dir)
        assert group is not None and _gone(group)
    finally:
        s.close()


@needs_cgroup
def test_a_sigkill_without_an_oom_kill_is_a_signal_not_out_of_memory(tmp_path: Path) -> None:
    """The wrapper sees signal 9 either way; only the cgroup's OOM count makes it memory."""
    s = _submitor(tmp_path)
    try:
        rec = s.submit_job(argv=["sh", "-c", "kill -KILL $$"], resources=JobResources(memory="100M")).wait(timeout=30)
        assert (rec.state, rec.exit_signal, rec.end_cause) == (JobState.FAILED, 9, EndCause.SIGNAL), rec
        assert _cgroup_of(rec.job_dir) is not None  # it did run in its own cgroup
    finally:
        s.close()


@needs_cgroup
def test_cancel_ending_in_sigkill_is_the_users_and_removes_the_cgroup(tmp_path: Path) -> None:
    # The job ignores SIGTERM, so the cancel's SIGKILL ends it (and its wrapper, which then
    # cannot remove the cgroup itself: the spool's reader does).
    s = _submitor(tmp_path, term_grace_seconds=0.5)
    try:
        job = s.submit_job(command="trap '' TERM; echo up; while :; do sleep 0.1; done",
                           resources=JobResources(memory="100M"))
        deadline = time.monotonic() + 30
        while s.get_job(job.job_id).state != JobState.RUNNING and time.monotonic() < deadline:
            s.refresh_jobs()
            time.sleep(0.1)
        job_dir = s.get_job(job.job_id).job_dir
        while _cgroup_of(job_dir) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        group = _cgroup_of(job_dir)
        assert group is not None and group.exists()
        s.cancel_job(job.job_id)
        rec = job.wait(timeout=30)
        assert (rec.state, rec.end_cause) == (JobState.CANCELLED, EndCause.CANCELLED_BY_USER), rec
        s.refresh_jobs()
        assert _gone(group), f"{group} was left behind"
    finally:
        s.close()


def test_rlimit_makes_the_allocation_fail_and_memoryerror_is_the_evidence(tmp_path: Path) -> None:
    s = _submitor(tmp_path, memory_limit="rlimit")
    try:
        rec = s.submit_job(argv=[sys.executable, "-c", ALLOCATE_300M],
                           resources=JobResources(memory="100M")).wait(timeout=60)
        assert Path(rec.job_dir, "stderr").read_text().rstrip().endswith("MemoryError")
        assert (rec.state, rec.exit_code, rec.exit_signal) == (JobState.FAILED, 1, None), rec
        assert rec.end_cause == EndCause.OUT_OF_MEMORY and "memory" in (rec.failure_reason or "")
        assert _cgroup_of(rec.job_dir) is None
        # ulimit -v gives no peak: it is not reported rather than guessed.
        assert rec.usage is not None and rec.usage.max_rss_bytes is None and rec.usage.requested_memory_bytes == LIMIT
    finally:
        s.close()


def test_rlimit_failure_without_memoryerror_is_just_its_exit_code(tmp_path: Path) -> None:
    s = _submitor(tmp_path, memory_limit="rlimit")
    try:
        # The same failed allocation, reported by the program in its own words: no evidence.
        prog = "try:\n    bytearray(300 << 20)\nexcept MemoryError:\n    print('no room'); raise SystemExit(3)"
        rec = s.submit_job(argv=[sys.executable, "-c", prog], resources=JobResources(memory="100M")).wait(timeout=60)
        assert (rec.state, rec.exit_code, rec.end_cause) == (JobState.FAILED, 3, EndCause.EXIT_CODE), rec
        ok = s.submit_job(argv=[sys.executable, "-c", "print(1)"], resources=JobResources(memory="100M")).wait(timeout=60)
        assert (ok.state, ok.end_cause) == (JobState.SUCCEEDED, EndCause.COMPLETED), ok
    finally:
        s.close()


def test_memory_limit_option_is_checked() -> None:
    with pytest.raises(ConfigError, match="memory_limit"):
        LocalSchedulerOptions(memory_limit="cgroups-please")


# -- the decision, from facts ----------------------------------------------------------------------


@pytest.mark.parametrize(("facts", "state", "cause"), [
    (JobFacts(exit_code="137\n", oom_killed=True), JobState.FAILED, EndCause.OUT_OF_MEMORY),
    (JobFacts(exit_code="137\n"), JobState.FAILED, EndCause.SIGNAL),
    (JobFacts(exit_code="1\n", oom_killed=True), JobState.FAILED, EndCause.OUT_OF_MEMORY),
    # A cancel is the user's even when the job was also short of memory.
    (JobFacts(exit_code="137\n", oom_killed=True, cancelled=True), JobState.CANCELLED, EndCause.CANCELLED_BY_USER),
    (JobFacts(exit_code="143\n", cancelled=True), JobState.CANCELLED, EndCause.CANCELLED_BY_USER),
    # A job that still exited 0 (a child was killed, the job coped) succeeded.
    (JobFacts(exit_code="0\n", oom_killed=True), JobState.SUCCEEDED, EndCause.COMPLETED),
])
def test_out_of_memory_only_with_evidence(facts: JobFacts, state: JobState, cause: EndCause) -> None:
    st = status_from(facts)
    assert st is not None and (st.state, st.end_cause) == (state, cause)


def test_a_user_who_may_not_make_cgroups_still_runs_limited_jobs(tmp_path: Path) -> None:
    """``auto`` on a host where this user cannot create a memory cgroup (uid 65534 here): the
    job runs under ``ulimit -v`` instead, and its failed allocation is still out of memory."""
    import shutil
    import subprocess
    import textwrap

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv(1) to act as a user without cgroup rights")
    # The job's program: an interpreter the other user may run (a virtualenv's may live where
    # only its owner can reach).
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 for the other user's job")
    import tempfile

    # Outside pytest's private temporary tree, which the other user cannot enter.
    home = Path(tempfile.mkdtemp(prefix="molq-nocgroup-"))
    os.chown(home, 65534, 65534)
    code = textwrap.dedent(f"""
        import sys
        from molq import Cluster, JobResources, Submitor
        s = Submitor(Cluster("mem"), jobs_dir={str(home / 'jobs')!r})
        rec = s.submit_job(argv=[{python!r}, "-c", {ALLOCATE_300M!r}],
                           resources=JobResources(memory="100M")).wait(timeout=60)
        import os
        print(rec.state.value, rec.exit_code, rec.end_cause, os.path.exists(rec.job_dir + "/cgroup"))
        print(open(rec.job_dir + "/stderr").read()[-300:], file=sys.stderr)
    """)
    env = dict(os.environ, MOLQ_HOME=str(home / "home"), HOME=str(home))
    try:
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                               "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["failed", "1", "out_of_memory", "False"], (proc.stdout, proc.stderr)

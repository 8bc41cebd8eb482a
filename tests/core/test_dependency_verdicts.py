"""One dependency verdict, decided in two languages: the local queue's shell pass
(``molq_verdict`` in ``molq/local/sh/lib.sh``, which releases a queued job with no molq process
alive) and the engine (``molq.engine.prepare.dependency_verdict``, which checks a submission's
dependencies before anything is persisted). Both must agree for every condition and every way
an upstream can be; this test builds each upstream situation as real spool files, runs the real
shell function on them, and compares its answer with the engine's on the record molq keeps of
that same upstream.

Only situations both sides see are compared: an upstream whose retry is still to come is held
back by the engine before the local queue ever sees the dependent job, and an upstream the
spool does not know is refused by the engine as an unknown job id.
"""

from __future__ import annotations

import os
import subprocess
from importlib import resources
from pathlib import Path

import pytest
from molq.engine.prepare import dependency_verdict
from molq.model import DEPENDENCY_CONDITIONS, JobRecord, JobState

UPSTREAM = "u1"
T0 = 1_700_000_000.0


def _own_start_time() -> str:
    """Field 22 of /proc/self/stat: what the shell's molq_ident compares to tell a live
    process from a reused pid."""
    stat = Path("/proc/self/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[19]


def _alive() -> str:
    return f"{os.getpid()} {_own_start_time()}"


DEAD = "999999999 1"  # a pid that does not run

# situation -> (files in the upstream's job directory, or "queued" for a queue entry;
#               the state and start time molq records for that upstream)
SITUATIONS: dict[str, tuple[dict[str, str], JobState, float | None]] = {
    "queued": ({"@queued": "1"}, JobState.QUEUED, None),
    "running": ({"started": "@alive"}, JobState.RUNNING, T0),
    "succeeded": ({"started": DEAD, "exit_code": "0"}, JobState.SUCCEEDED, T0),
    "failed": ({"started": DEAD, "exit_code": "3"}, JobState.FAILED, T0),
    "cancelled while running": ({"started": DEAD, "exit_code": "143", "cancelled": ""}, JobState.CANCELLED, T0),
    "cancelled in the queue": ({"never_ran": "cancelled"}, JobState.CANCELLED, None),
    "never ran (its own dependency failed)": ({"never_ran": "dependency never satisfied"}, JobState.FAILED, None),
    "ended without an exit code": ({"started": DEAD}, JobState.LOST, T0),
    # The wrapper said it cannot know the exit code: no evidence, the record stays as it was.
    "exit code unknown": ({"started": DEAD, "exit_unknown": ""}, JobState.RUNNING, T0),
}

ANSWER = {True: "ok", False: "never", None: "wait"}


def _shell_verdict(tmp_path: Path, files: dict[str, str], condition: str) -> str:
    spool = tmp_path / "spool"
    for sub in ("jobs", "queued", "claimed", "running"):
        (spool / sub).mkdir(parents=True)
    job_dir = tmp_path / "jobdir"
    job_dir.mkdir()
    (spool / "jobs" / f"{UPSTREAM}.json").write_text("{}")
    (spool / "jobs" / f"{UPSTREAM}.dir").symlink_to(job_dir)
    for name, text in files.items():
        if name == "@queued":
            (spool / "queued" / f"{1:020d}-{UPSTREAM}").write_text(text + "\n")
            continue
        (job_dir / name).write_text((_alive() if text == "@alive" else text) + "\n" if text else "")
    lib = resources.files("molq.local").joinpath("sh").joinpath("lib.sh").read_text()
    program = lib + '\nmolq_verdict "$@"\nprintf "%s\\n" "$verdict"\n'
    proc = subprocess.run(["sh", "-c", program, "molq", str(spool), f"{condition}:{UPSTREAM}"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _record(state: JobState, started_at: float | None) -> JobRecord:
    return JobRecord(job_id=UPSTREAM, cluster_name="local", scheduler="local", state=state,
                     root_job_id=UPSTREAM, started_at=started_at,
                     finished_at=T0 + 60 if state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED,
                                                      JobState.LOST) else None)


@pytest.mark.parametrize("condition", DEPENDENCY_CONDITIONS)
@pytest.mark.parametrize("situation", list(SITUATIONS))
def test_the_shell_queue_and_the_engine_give_the_same_verdict(tmp_path: Path, situation: str, condition: str) -> None:
    files, state, started_at = SITUATIONS[situation]
    engine = ANSWER[dependency_verdict(condition, _record(state, started_at))]
    assert _shell_verdict(tmp_path, files, condition) == engine, (situation, condition)


def test_every_answer_occurs() -> None:
    """The table above reaches every verdict of every condition it can: a table of only
    'wait' situations would agree trivially."""
    seen = {(c, ANSWER[dependency_verdict(c, _record(s, t))]) for c in DEPENDENCY_CONDITIONS
            for _f, s, t in SITUATIONS.values()}
    for condition in DEPENDENCY_CONDITIONS:
        expected = {"ok", "wait"} if condition == "after" else {"ok", "wait", "never"}
        assert {a for c, a in seen if c == condition} == expected, condition

"""BatchScheduler.submit_many on LSF (simulator): one command for the whole batch, each job's
answer parsed by the LSF dialect, a refused job failing alone."""

from __future__ import annotations

from molq.errors import SubmitError
from molq.model import JobState
from molq.scheduler import TrackedJob


def test_a_batch_is_one_command_and_a_refused_job_fails_alone(lsf) -> None:
    specs = [lsf.spec(["printf", "%s %s\\n", f"it's {i}", "$(x)"]) for i in range(4)]
    specs[2] = lsf.spec(["true"], partition="nope")
    items = []
    for spec in specs:
        job_dir = lsf.root / ".molq" / "jobs" / spec.job_id
        job_dir.mkdir(parents=True)
        items.append((spec, str(job_dir)))
    before = len(lsf.scheduler.command_log)
    results = lsf.scheduler.submit_many(items)
    assert [name for name, _ in lsf.scheduler.command_log[before:]] == ["bulk-submit"]
    assert isinstance(results[2], SubmitError) and "nope" in str(results[2])
    ids = [r for i, r in enumerate(results) if i != 2]
    assert all(isinstance(r, str) and r.isdigit() for r in ids) and len(set(ids)) == 3
    for i in (0, 1, 3):
        job = TrackedJob(specs[i].job_id, str(results[i]), items[i][1], 0.0)
        assert lsf.wait(job).state == JobState.SUCCEEDED
        assert lsf.read(job) == f"it's {i} $(x)\n"

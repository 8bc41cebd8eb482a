"""BatchScheduler.submit_many on PBS Pro (simulator): one command for the whole batch, each
job's answer parsed by the PBS dialect, a refused job failing alone."""

from __future__ import annotations

import time
from pathlib import Path

from molq.errors import SubmitError
from molq.model import JobScheduling, JobState
from molq.scheduler import TrackedJob
from pbssim_harness import wait_final


def test_a_batch_is_one_command_and_a_refused_job_fails_alone(pbs_sim, make_job) -> None:
    sched = pbs_sim.scheduler()
    items = [make_job(("printf", "%s %s\\n", f"it's {i}", "$(x)")) for i in range(4)]
    items[1] = make_job(("true",), scheduling=JobScheduling(partition="nope"))
    before = len(sched.command_log)
    results = sched.submit_many(items)
    assert [name for name, _ in sched.command_log[before:]] == ["bulk-submit"]
    assert isinstance(results[1], SubmitError) and "Unknown queue" in str(results[1])
    jobs = [TrackedJob(spec.job_id, str(results[i]), job_dir, time.time())
            for i, (spec, job_dir) in enumerate(items) if i != 1]
    assert all(j.scheduler_job_id.endswith(".pbssim") for j in jobs) and len({j.scheduler_job_id for j in jobs}) == 3
    final = wait_final(sched, jobs)
    assert {s.state for s in final.values()} == {JobState.SUCCEEDED}
    for i, job in zip((0, 2, 3), jobs, strict=True):
        assert Path(job.job_dir, "stdout").read_text() == f"it's {i} $(x)\n"

"""molq quickstart: a small pipeline on the local scheduler, followed to its end.

Run with ``bash examples/demo.sh`` (sets up .venv first) or ``python examples/quickstart.py``.
"""

from __future__ import annotations

import tempfile

from molq import Cluster, JobResources, JobState, RetryBackoff, RetryPolicy, Submitor


def main() -> int:
    workdir = tempfile.mkdtemp(prefix="molq-quickstart-")
    submitor = Submitor(Cluster("quickstart"))  # local scheduler, ~/.molq/jobs.db
    # 1. preprocess -> 2. two analyses in parallel -> 3. report after both succeed
    pre = submitor.submit_job(
        command="seq 1 1000 > numbers.txt && echo preprocessed",
        execution=_in(workdir, "preprocess"),
    )
    total = submitor.submit_job(
        command="awk '{s+=$1} END {print s}' numbers.txt > total.txt",
        after_success=[pre.job_id],
        resources=JobResources(cpu_count=1),
        execution=_in(workdir, "total"),
    )
    count = submitor.submit_job(
        argv=["sh", "-c", "wc -l < numbers.txt > count.txt"],
        after_success=[pre.job_id],
        execution=_in(workdir, "count"),
    )
    report = submitor.submit_job(
        command='echo "mean = $(( $(cat total.txt) / $(cat count.txt) ))"',
        after_success=[total.job_id, count.job_id],
        retry=RetryPolicy(max_attempts=2, backoff=RetryBackoff(initial_seconds=1)),
        execution=_in(workdir, "report"),
    )
    records = submitor.watch_jobs([pre.job_id, total.job_id, count.job_id, report.job_id], timeout=120)
    for rec in records:
        print(f"{rec.short_id}  {rec.job_name:<10} {rec.state.value:<9} exit={rec.exit_code}  {rec.command_display}")
    final = records[-1]
    with open(f"{final.job_dir}/stdout") as fh:
        print("report says:", fh.read().strip())
    submitor.close()
    return 0 if all(r.state == JobState.SUCCEEDED for r in records) else 1


def _in(workdir: str, name: str):
    from molq import JobExecution

    return JobExecution(cwd=workdir, job_name=name)


if __name__ == "__main__":
    raise SystemExit(main())

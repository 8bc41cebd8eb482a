"""``molq resubmit``: submit an ended job again as its next attempt."""

from __future__ import annotations

import click

from molq.cli.commands import Session, complete_job_ids


@click.command()
@click.argument("job_id", shell_complete=complete_job_ids)
@click.option("--failed-tasks", is_flag=True,
              help="Only the array tasks that did not succeed (exit code other than 0, or none).")
def resubmit(job_id: str, failed_tasks: bool) -> int:
    """Submit the ended job JOB_ID again as its next attempt (one scheduler submission).

    Today this needs --failed-tasks and an array job: the tasks whose exit code was not 0
    (or that never wrote one) run again, with the job's throttle; the id, history and
    dependents follow the new attempt.
    """
    if not failed_tasks:
        raise click.UsageError("molq resubmit needs --failed-tasks (re-running whole jobs is what retry policies do)")
    sess = Session()
    sub, rec = sess.find(job_id)
    handle = sub.rerun_failed_tasks(rec.job_id)
    new = sub.store.latest_attempts(sub.cluster_name, [handle.job_id])[handle.job_id]
    spec = sub.store.internals(sub.cluster_name, new.job_id).spec
    array = (spec.get("scheduling") or {}).get("array_spec")
    click.echo(f"{new.job_id} attempt {new.attempt} {new.state.value} tasks {array}"
               + (f" ({new.scheduler_job_id})" if new.scheduler_job_id else ""))
    return 0

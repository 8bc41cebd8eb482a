"""``molq queue``: the scheduler's own queue, including jobs molq did not submit."""

from __future__ import annotations

import click

from molq.cli import render
from molq.cli.common import cluster_options, json_option, open_store, resolve_cluster


@click.command()
@cluster_options
@click.option("-u", "--user", default=None, help="Whose queue (default: yours).")
@json_option
def queue(cluster_name: str | None, profile: str | None, user: str | None, as_json: bool) -> int:
    """The scheduler's own queue, including jobs not submitted by molq."""
    store = open_store()
    cluster = resolve_cluster(cluster_name, profile, store)
    entries = cluster.get_queue(user=user)
    if as_json:
        render.dump_json([render.queue_json(e) for e in entries])
        return 0
    if not entries:
        click.echo(f"the {cluster.scheduler} queue of {cluster.name} is empty", err=True)
        return 0
    rows = [[e.scheduler_job_id, e.state.value, e.raw_state, e.user or "-", e.partition or "-",
             render.ago(e.submit_time), render.truncate(e.name, 40)] for e in entries]
    headers = ["SCHED ID", "STATE", "RAW", "USER", "PARTITION", "SUBMITTED", "NAME"]
    if any(e.sub_state for e in entries):  # held, suspended, waiting...: only when some job is
        headers.insert(2, "SUB")
        for row, e in zip(rows, entries):
            row.insert(2, render.sub_state(e) or "-")
    click.echo(render.table(headers, rows, colour_col=1))
    return 0

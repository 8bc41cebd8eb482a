"""``molq cancel``: cancel jobs by id or by filter, one scheduler call per cluster."""

from __future__ import annotations

import sys
from collections import defaultdict

import click

from molq.cli import render
from molq.cli.common import Session, complete_job_ids


@click.command()
@click.argument("job_ids", nargs=-1, shell_complete=complete_job_ids)
@click.option("--state", "states", multiple=True, type=click.Choice(["created", "submitted", "queued", "running"]),
              help="Every active job in this state (repeatable), as scancel -t.")
@click.option("--name", "name_pattern", metavar="PATTERN", default=None,
              help="Every active job whose name matches this shell pattern, as scancel -n.")
@click.option("--all", "all_active", is_flag=True, help="Every active job (of -c's cluster, if given).")
@click.option("-c", "--cluster", "cluster_name", default=None, help="Only jobs of this cluster (with a filter).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation of a filter.")
def cancel(job_ids: tuple[str, ...], states: tuple[str, ...], name_pattern: str | None, all_active: bool,
           cluster_name: str | None, yes: bool) -> int:
    """Cancel jobs by id, or every active job matching --state/--name/--all (one scheduler call
    per cluster). Finished jobs keep their final state.

    A filter asks for confirmation on a terminal, and needs --yes otherwise.
    """
    import fnmatch

    filtering = bool(states or name_pattern or all_active)
    if not job_ids and not filtering:
        raise click.UsageError("give job ids, or a filter: --state, --name or --all")
    if cluster_name and not filtering:
        raise click.UsageError("-c/--cluster only narrows a filter (--state, --name, --all)")
    sess = Session()
    by_cluster: dict[str, list[str]] = defaultdict(list)
    for j in job_ids:
        sub, rec = sess.find(j)
        by_cluster[sub.cluster_name].append(rec.job_id)
    if filtering:
        matched = [r for r in sess.store.list_jobs(cluster_name)
                   if (not states or r.state.value in states)
                   and (name_pattern is None or fnmatch.fnmatchcase(r.job_name or "", name_pattern))]
        if not matched and not job_ids:
            click.echo("no active job matches", err=True)
            return 0
        if matched and not yes:
            if not (sys.stdin.isatty() and render.is_tty()):
                raise click.UsageError(f"{len(matched)} jobs match; add --yes to cancel them without a terminal")
            click.echo(render.jobs_table(matched, max_width=render.terminal_width()))
            click.confirm(f"cancel these {len(matched)} jobs?", abort=True)
        for rec in matched:
            if rec.job_id not in by_cluster[rec.cluster_name]:
                by_cluster[rec.cluster_name].append(rec.job_id)
    for name, ids in by_cluster.items():
        sub = sess.submitor(name)
        sub.cancel_jobs(ids)
        roots = {i: sub.get_job(i).root_job_id for i in ids}
        latest = sess.store.latest_attempts(name, list(set(roots.values())))
        for j in ids:
            rec = latest[roots[j]]
            click.echo(f"{rec.job_id[:8]} {render.state_text(rec.state.value)}")
    return 0

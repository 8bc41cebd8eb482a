"""``molq cleanup``: remove finished jobs' directories and records."""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Any

import click

from molq.cli import render
from molq.cli.common import Session, complete_job_ids, json_option, parse_when
from molq.errors import ConfigError


@click.command()
@click.argument("job_ids", nargs=-1, shell_complete=complete_job_ids)
@click.option("--older-than", metavar="AGE", default=None,
              help="Finished jobs that ended more than AGE ago (30d, 12h, ...), instead of the retention policy.")
@click.option("--state", "states", multiple=True,
              type=click.Choice(["succeeded", "failed", "cancelled", "timed_out", "lost"]),
              help="With --older-than or ids: only jobs that ended in this state (repeatable).")
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@click.option("-c", "--cluster", "cluster_name", default=None, help="Only this cluster.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (chosen jobs, on a terminal).")
@json_option
def cleanup(job_ids: tuple[str, ...], older_than: str | None, states: tuple[str, ...], dry_run: bool,
            cluster_name: str | None, yes: bool, as_json: bool) -> int:
    """Remove job directories and records: of the jobs given (ids or --older-than), or else
    those past each cluster's retention policy.

    Only finished jobs are removed. Chosen jobs are listed and confirmed first on a terminal.
    """
    sess = Session()
    result: dict[str, dict[str, list[str]]] = {}
    if not job_ids and older_than is None:
        if states:
            raise click.UsageError("--state needs job ids or --older-than")
        for name in sess.store.all_cluster_names():
            if cluster_name not in (None, name):
                continue
            result[name] = sess.submitor(name).cleanup_jobs(dry_run=dry_run)
    else:
        chosen = _chosen_for_cleanup(sess, job_ids, older_than, states, cluster_name)
        if chosen and not dry_run and not yes and sys.stdin.isatty() and render.is_tty() and not as_json:
            click.echo(render.jobs_table(chosen, max_width=render.terminal_width()))
            click.confirm(f"remove these {len(chosen)} jobs' directories and records?", abort=True)
        by_cluster: dict[str, list[Any]] = defaultdict(list)
        for rec in chosen:
            by_cluster[rec.cluster_name].append(rec)
        for name, recs in by_cluster.items():
            result[name] = _remove_jobs(sess.submitor(name), recs, dry_run)
    if as_json:
        render.dump_json(render.with_schema({"dry_run": dry_run, "clusters": result}))
        return 0
    verb = "would remove" if dry_run else "removed"
    if not result:
        click.echo("nothing to clean up", err=True)
    for name, res in result.items():
        click.echo(f"{name}: {verb} {len(res['job_dirs'])} job directories and {len(res['records'])} records")
        for d in res["job_dirs"]:
            click.echo(f"  {d}")
    return 0


def _chosen_for_cleanup(sess: Session, job_ids: tuple[str, ...], older_than: str | None,
                        states: tuple[str, ...], cluster_name: str | None) -> list[Any]:
    records = []
    for j in job_ids:
        _sub, rec = sess.find(j)
        if not rec.is_terminal:
            raise ConfigError(f"{rec.job_id[:8]} is {rec.state.value}: cancel it first (`molq cancel {rec.job_id[:8]}`)")
        records.append(rec)
    if older_than is not None:
        cutoff = parse_when(older_than, "--older-than")
        for rec in sess.store.list_jobs(cluster_name, include_terminal=True):
            if rec.is_terminal and (rec.finished_at or rec.updated_at or 0) < cutoff \
                    and all(rec.job_id != r.job_id for r in records):
                records.append(rec)
    records = [r for r in records if cluster_name in (None, r.cluster_name)]
    if states:
        records = [r for r in records if r.state.value in states]
    return [r for r in records if not (r.next_retry_at is not None and r.retried_by is None)]


def _remove_jobs(sub: Any, records: list[Any], dry_run: bool) -> dict[str, list[str]]:
    dirs = [r.job_dir for r in records if r.job_dir and r.cleaned_at is None]
    ids = [r.job_id for r in records]
    if not dry_run:
        transport = sub.target.transport
        forget = getattr(sub.scheduler, "forget", None)
        for rec in records:
            if rec.job_dir and rec.cleaned_at is None:
                transport.remove(rec.job_dir, recursive=True)
                if forget is not None and rec.scheduler_job_id:
                    forget(rec.scheduler_job_id)
        sub.store.delete_jobs(sub.cluster_name, ids)
    return {"job_dirs": dirs, "records": ids}

"""``molq store``: move a job store to another database, or check one."""

from __future__ import annotations

import json

import click


@click.group("store")
def store() -> None:
    """Copy a job store to another URL (SQLite <-> PostgreSQL), or check one."""


@store.command("copy")
@click.argument("src")
@click.argument("dst")
@click.option("--force", is_flag=True, help="Replace the contents of a destination that already holds jobs.")
def copy_cmd(src: str, dst: str, force: bool) -> int:
    """Copy every record, transition and dependency edge from SRC to DST (store URLs or
    SQLite paths), then compare the counts. Leases are not copied."""
    from molq.store.transfer import copy_store

    counts = copy_store(src, dst, force=force)
    click.echo(f"copied {counts['molq_jobs']} jobs, {counts['molq_transitions']} transitions, "
               f"{counts['molq_dependencies']} dependency edges; counts match")
    return 0


@store.command("check")
@click.argument("url", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (documented, stable shape).")
def check_cmd(url: str | None, as_json: bool) -> int:
    """Verify a store (default: the current one): the file's integrity (SQLite), the schema
    version and tables, and every job's transition history. Exit status 1 when it finds a
    problem. Never writes."""
    from molq.store.opening import default_store_url
    from molq.store.transfer import check_store

    report = check_store(url or default_store_url())
    if as_json:
        click.echo(json.dumps({"url": report.url, "ok": report.ok, "schema_version": report.schema_version,
                               "counts": report.counts, "problems": report.problems}, indent=2))
    else:
        for problem in report.problems:
            click.echo(f"problem: {problem}")
        summary = ", ".join(f"{n} {name.removeprefix('molq_')}" for name, n in report.counts.items())
        click.echo(f"{report.url}: schema version {report.schema_version}"
                   + (f", {summary}" if summary else "") + (": ok" if report.ok else f": {len(report.problems)} problem(s)"))
    return 0 if report.ok else 1

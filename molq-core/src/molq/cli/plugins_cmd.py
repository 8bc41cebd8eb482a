"""``molq plugins``: every discovered plugin and its load errors."""

from __future__ import annotations

import click

from molq.cli import render
from molq.cli.common import json_option


@click.command()
@json_option
def plugins(as_json: bool) -> int:
    """Every discovered plugin: name, kinds, distribution, version and load errors."""
    from molq.plugins import get_plugin_manager

    infos = get_plugin_manager().plugin_infos()
    if as_json:
        render.dump_json([{
            "schema": render.JSON_SCHEMA, "name": i.name, "distribution": i.distribution, "version": i.version, "kinds": list(i.kinds),
            "provides": list(i.provides), "blocked": i.blocked, "error": i.error,
        } for i in infos])
        return 0
    rows = []
    for i in infos:
        status = "blocked" if i.blocked else ("error" if i.error else "ok")
        rows.append([i.name, i.distribution, i.version, ", ".join(i.provides) or "-", status])
    click.echo(render.table(["PLUGIN", "DISTRIBUTION", "VERSION", "PROVIDES", "STATUS"], rows))
    for i in infos:
        if i.error:
            click.echo(f"{i.name}: {i.error}", err=True)
    return 0

"""The ``molq`` click application (imported by :func:`molq.cli.main` unless a cached
``molq --help`` answers first).

Only click is imported up front; each command imports what it needs (SQLAlchemy, backends)
when it runs. Plugins add commands through the CLI-command hook.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from molq.cli import BUILTIN_COMMANDS, _environment_signature, _index_path, store_help, write_cache


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked.

    The names and help of plugin commands are cached (``~/.molq/cache/cli-commands.json``,
    invalidated when installed packages change) so ``molq --help`` loads no plugin.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*BUILTIN_COMMANDS, *self._plugin_index()])

    def _plugin_index(self) -> dict[str, str]:
        import json

        path = _index_path()
        signature = _environment_signature()
        try:
            with open(path) as fh:
                cached = json.load(fh)
            if cached.get("signature") == signature:
                return dict(cached["commands"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        index = {name: cmd.help for name, cmd in self._plugin_commands().items()}
        write_cache(path, json.dumps({"signature": signature, "commands": index}).encode())
        return index

    def _plugin_commands(self) -> dict[str, Any]:
        cached = getattr(self, "_plugins", None)
        if cached is None:
            cached = {}
            try:
                from molq.plugins import get_plugin_manager

                for cmd in get_plugin_manager().cli_commands():
                    if cmd.name not in BUILTIN_COMMANDS:
                        cached[cmd.name] = cmd
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
                click.echo(f"molq: plugin commands unavailable: {exc}", err=True)
            self._plugins = cached
        return cached

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in BUILTIN_COMMANDS:
            module, attr, _ = BUILTIN_COMMANDS[name]
            return getattr(importlib.import_module(module), attr)
        plugin = self._plugin_commands().get(name)
        return plugin.load() if plugin is not None else None

    def get_help(self, ctx: click.Context) -> str:
        text = super().get_help(ctx)
        if ctx.parent is None:
            # Saved for the next `molq --help`, which then needs neither click nor plugins.
            store_help(ctx.make_formatter().width, text + "\n")
        return text

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, _, help_) in sorted(BUILTIN_COMMANDS.items())]
        rows += sorted(self._plugin_index().items())
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="molq-core", prog_name="molq")
def cli() -> None:
    """Submit and track batch jobs on this machine or on HPC clusters.

    Jobs go to the default cluster (the local scheduler, or the profile marked default)
    unless -c/--cluster or -p/--profile says otherwise. Job ids may be abbreviated to any
    unique prefix.
    """


def run(argv: list[str] | None = None) -> int:
    """Run the click application: user mistakes become one line on stderr, not a traceback."""
    try:
        rv = cli.main(args=argv, prog_name="molq", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.exceptions.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001
        from molq.errors import MolqError

        if isinstance(exc, (MolqError, TimeoutError)):
            click.echo(f"molq: error: {exc}", err=True)
            return 2 if not isinstance(exc, TimeoutError) else 124
        raise
    return rv if isinstance(rv, int) else 0

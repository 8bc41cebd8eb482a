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

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name = click.utils.make_str(args[0])
        if self.get_command(ctx, name) is None and not name.startswith("-"):
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)

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


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="molq-core", prog_name="molq")
def cli() -> None:
    """Submit and track batch jobs on this machine or on HPC clusters.

    Jobs go to the default cluster (the local scheduler, or the profile marked default)
    unless -c/--cluster or -p/--profile says otherwise. Job ids may be abbreviated to any
    unique prefix.
    """


def run(argv: list[str] | None = None) -> int:
    """Run the click application. A user's mistake or a problem of the environment (a missing
    file, an unreadable store, a missing database driver) becomes one line on stderr, never a
    traceback; only a bug in molq still shows one."""
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
    except BrokenPipeError:
        # `molq list | head`: the reader left; say nothing more.
        _silence_stdout()
        return 141
    except Exception as exc:  # noqa: BLE001 - classified below; anything else is re-raised
        from molq.cli.errors import describe

        described = describe(exc)
        if described is None:
            raise
        message, status = described
        click.echo(f"molq: error: {message}", err=True)
        return status
    return rv if isinstance(rv, int) else 0


def _silence_stdout() -> None:
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass

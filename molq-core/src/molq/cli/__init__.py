"""The ``molq`` command line.

Start-up is kept light: only click is imported up front; each command imports what it needs
(SQLAlchemy, backends) when it runs. Plugins add commands through the CLI-command hook.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

# command name -> (module, attribute, one-line help). Help text lives here so that
# `molq --help` needs no command module import.
BUILTIN_COMMANDS: dict[str, tuple[str, str, str]] = {
    "submit": ("molq.cli.commands", "submit", "Submit a job and print its id."),
    "list": ("molq.cli.commands", "list_cmd", "List jobs (active ones by default)."),
    "show": ("molq.cli.commands", "show", "Show one job: record, transitions, retries, dependencies."),
    "watch": ("molq.cli.commands", "watch", "Follow jobs until every one is finished."),
    "cancel": ("molq.cli.commands", "cancel", "Cancel jobs."),
    "logs": ("molq.cli.commands", "logs", "Print a job's standard output (or error)."),
    "queue": ("molq.cli.commands", "queue", "Show the scheduler's own queue (all your jobs)."),
    "cleanup": ("molq.cli.commands", "cleanup", "Remove old job directories and records."),
    "daemon": ("molq.cli.commands", "daemon", "Reconcile every cluster in the store in a loop."),
    "profile": ("molq.cli.profiles", "profile", "Manage profiles in ~/.molq/config.toml."),
    "plugins": ("molq.cli.commands", "plugins", "List discovered plugins and load errors."),
    "completion": ("molq.cli.commands", "completion", "Print the bash, zsh or fish completion script."),
}


def _index_path() -> str:
    import os

    home = os.environ.get("MOLQ_HOME") or os.path.join(os.path.expanduser("~"), ".molq")
    return os.path.join(home, "cache", "cli-commands.json")


def _environment_signature() -> list[list[float | str]]:
    """Changes whenever a distribution is installed or removed (site directories' mtimes),
    plus the plugin block list."""
    import os

    sig: list[list[float | str]] = [["block", os.environ.get("MOLQ_BLOCK_PLUGINS", "")]]
    for entry in sys.path:
        try:
            sig.append([entry, os.stat(entry or ".").st_mtime])
        except OSError:
            continue
    return sig


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
        try:
            import os

            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as fh:
                json.dump({"signature": signature, "commands": index}, fh)
            os.replace(tmp, path)
        except OSError:
            pass
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


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: user mistakes become one line on stderr, not a traceback."""
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

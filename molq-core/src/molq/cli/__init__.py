"""The ``molq`` command line.

Start-up is kept light. ``molq --help`` is answered from a cache of the help text the click
application rendered last time (``~/.molq/cache/cli-help.marshal``, keyed like the plugin
command index, plus the terminal width and this package's files), so it imports neither click
nor any plugin; everything else goes to :mod:`molq.cli.app`, and each command imports what it
needs (SQLAlchemy, backends) when it runs. This module imports nothing beyond the standard
modules every Python process has already loaded.
"""

from __future__ import annotations

import os
import sys

# command name -> (module, attribute, one-line help). Help text lives here so that
# `molq --help` needs no command module import.
BUILTIN_COMMANDS: dict[str, tuple[str, str, str]] = {
    "submit": ("molq.cli.submit_cmd", "submit", "Submit a job and print its id."),
    "list": ("molq.cli.view_cmd", "list_cmd", "List jobs (active ones by default)."),
    "show": ("molq.cli.view_cmd", "show", "Show one job: record, transitions, retries, dependencies."),
    "watch": ("molq.cli.view_cmd", "watch", "Follow jobs until every one is finished."),
    "cancel": ("molq.cli.cancel_cmd", "cancel", "Cancel jobs."),
    "resubmit": ("molq.cli.resubmit_cmd", "resubmit", "Submit an ended job again (--failed-tasks: an array's failed tasks)."),
    "logs": ("molq.cli.logs_cmd", "logs", "Print a job's standard output (or error)."),
    "queue": ("molq.cli.queue_cmd", "queue", "Show the scheduler's own queue (all your jobs)."),
    "cleanup": ("molq.cli.cleanup_cmd", "cleanup", "Remove old job directories and records."),
    "report": ("molq.cli.report", "report", "Report how finished jobs ended and what they used."),
    "daemon": ("molq.cli.daemon_cmd", "daemon", "Run, start, stop or inspect the daemon that advances jobs."),
    "profile": ("molq.cli.profiles", "profile", "Manage profiles in ~/.molq/config.toml."),
    "plugins": ("molq.cli.plugins_cmd", "plugins", "List discovered plugins and load errors."),
    "store": ("molq.cli.store_cmd", "store", "Copy a job store to another URL, or check one."),
    "completion": ("molq.cli.completion_cmd", "completion", "Print the bash, zsh or fish completion script."),
}

_HELP_OPTIONS = (["--help"], ["-h"])


def _cache_dir() -> str:
    from molq.identity import molq_home_dir

    return os.path.join(molq_home_dir(), "cache")


def _index_path() -> str:
    return os.path.join(_cache_dir(), "cli-commands.json")


def _help_path() -> str:
    return os.path.join(_cache_dir(), "cli-help.marshal")


def _environment_signature() -> list[list[float | str]]:
    """Changes whenever a distribution is installed or removed (site directories' mtimes),
    plus the plugin block list."""
    sig: list[list[float | str]] = [["block", os.environ.get("MOLQ_BLOCK_PLUGINS", "")]]
    for entry in sys.path:
        try:
            sig.append([entry, os.stat(entry or ".").st_mtime])
        except OSError:
            continue
    return sig


def _help_signature() -> list[list[float | str]]:
    """The plugin-index signature, the interpreter, and this package's own files (an editable
    install changes them without touching site-packages)."""
    sig: list[list[float | str]] = [["python", sys.version], *_environment_signature()]
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("__init__.py", "app.py"):
        try:
            sig.append([name, os.stat(os.path.join(here, name)).st_mtime])
        except OSError:
            continue
    return sig


def _help_width() -> int:
    """The width click's help formatter will use: the terminal's columns (COLUMNS first), at
    most 80, minus 2, at least 50."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return max(min(columns, 80) - 2, 50)


def _load_help_cache() -> dict:
    import marshal

    try:
        with open(_help_path(), "rb") as fh:
            cached = marshal.load(fh)
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    return cached if isinstance(cached, dict) else {}


def cached_help() -> str | None:
    """The top-level help text rendered earlier for this environment and width, if any."""
    cached = _load_help_cache()
    if cached.get("signature") != _help_signature():
        return None
    text = cached.get("help", {}).get(_help_width())
    return text if isinstance(text, str) else None


def write_cache(path: str, data: bytes) -> None:
    """Replace a cache file (private directory, temporary file + rename); a cache that
    cannot be written is simply not used."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        pass


def store_help(width: int, text: str) -> None:
    """Remember the rendered top-level help (called by the click application)."""
    import marshal

    signature = _help_signature()
    cached = _load_help_cache()
    helps = cached.get("help", {}) if cached.get("signature") == signature else {}
    if helps.get(width) == text:
        return
    helps[width] = text
    write_cache(_help_path(), marshal.dumps({"signature": signature, "help": helps}))


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args in _HELP_OPTIONS:
        text = cached_help()
        if text is not None:
            try:
                sys.stdout.write(text)
                sys.stdout.flush()
            except BrokenPipeError:
                pass
            return 0
    from molq.cli.app import run

    return run(argv)


def __getattr__(name: str) -> object:
    # The click objects live in molq.cli.app; loading them costs click's import.
    if name in ("cli", "LazyGroup", "run"):
        from molq.cli import app

        return getattr(app, name)
    raise AttributeError(f"module 'molq.cli' has no attribute {name!r}")

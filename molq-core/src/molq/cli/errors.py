"""How the command line words errors: one line each, and the exit status to go with it.

A user's mistake or a problem of the environment is never shown as a traceback: a missing or
unreadable file, an unreadable job store, a database driver that is not installed. Anything
else is a bug in molq and keeps its traceback.
"""

from __future__ import annotations

import re
import sqlite3

# Database driver modules SQLAlchemy imports for a store URL -> what installs them.
DRIVERS = {
    "psycopg": "pip install 'psycopg[binary]'",
    "psycopg2": "pip install psycopg2-binary",
    "MySQLdb": "pip install mysqlclient",
    "pymysql": "pip install pymysql",
    "asyncpg": "pip install asyncpg",
    "oracledb": "pip install oracledb",
    "pyodbc": "pip install pyodbc",
}


def one_line(text: str) -> str:
    """SQLAlchemy's messages carry a "(Background on this error at: …)" line and the DBAPI
    class name; keep the part a user can act on, on one line."""
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)
    text = re.sub(r"extra fields found \(([^)]*)\) @ \$", r"unknown field(s): \1", text)
    text = re.sub(r"\((?:sqlite3|psycopg2?|pymysql)\.[\w.]+\)\s*", "", text)
    return " ".join(text.split())


def describe_oserror(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    if exc.filename is not None:
        target = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
        return f"{target}: {what}"
    return what


def missing_driver(exc: ModuleNotFoundError, url: str) -> str | None:
    """The message for a store URL whose database driver is not installed, or None when the
    missing module is not a driver (a bug, which keeps its traceback)."""
    module = (exc.name or "").split(".")[0]
    if url.startswith("sqlite") or (module not in DRIVERS and "://" not in url):
        return None
    hint = DRIVERS.get(module, f"pip install {module}")
    return (f"the job store {url} needs the database driver {module!r}, which is not installed; "
            f"install it with: {hint}")


#: The molq family's own backends, published under these names: only for them does the command
#: line suggest an install command for a name nothing installed provides (a typo gets "did you
#: mean" instead of a command that installs nothing).
MOLQ_BACKENDS = {name: f"pip install molq-{name}" for name in ("slurm", "pbs", "lsf", "ssh")}
INSTALL_HINTS = MOLQ_BACKENDS


def plugin_not_found(kind: str, name: str) -> str:
    """Why no plugin provides ``name``: blocked (and by what), known but not installed (with
    the command that installs it), or unknown (with the names that are installed)."""
    import difflib
    import os

    from molq.plugins import BLOCK_ENV, blocked_names, get_plugin_manager

    manager = get_plugin_manager()
    blocked = blocked_names()
    dist = INSTALL_HINTS.get(name, "").removeprefix("pip install ")
    hits = [i for i in manager.plugin_infos() if i.blocked and (i.name == name or i.distribution == dist)]
    if name in blocked or hits:
        by = hits[0].distribution if hits else name
        return (f"the {kind} {name!r} is blocked: {BLOCK_ENV}={os.environ.get(BLOCK_ENV, '')!r} "
                f"excludes the plugin {by!r} (remove it from {BLOCK_ENV} to use it)")
    failed = [i for i in manager.plugin_infos() if i.error and i.name == name]
    if failed:
        return f"the {kind} plugin {name!r} from {failed[0].distribution} failed to load: {failed[0].error}"
    if name in INSTALL_HINTS:
        return f"no {kind} named {name!r} is installed; install it with: {INSTALL_HINTS[name]}"
    installed = sorted(manager.schedulers() if kind == "scheduler" else manager.transports())
    close = difflib.get_close_matches(name, installed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"no {kind} named {name!r}{hint} (installed: {', '.join(installed) or 'none'}; `molq plugins` lists them)"


def describe(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit status) for an error that is not a bug, else None."""
    from molq.errors import MolqError

    if isinstance(exc, TimeoutError):
        return one_line(str(exc)) or "timed out", 124
    from molq.errors import PluginNotFoundError

    if isinstance(exc, PluginNotFoundError) and exc.kind in ("scheduler", "transport"):
        return plugin_not_found(exc.kind, exc.name), 2
    if isinstance(exc, MolqError):
        return one_line(str(exc)), 2
    if isinstance(exc, sqlite3.Error):
        return f"cannot open the job store: {one_line(str(exc))}", 2
    if isinstance(exc, OSError):
        return describe_oserror(exc), 2
    return None

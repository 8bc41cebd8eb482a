"""SQLAlchemy engines for the job store: URL normalisation, the SQLite file's privacy and
connection settings, driver errors, and the corruption check done at open."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event

from molq.errors import StoreError

__all__ = ["check_sqlite_file", "make_engine", "normalize_url", "sqlite_file", "stamp_verified"]

_SQLITE_HEADER = b"SQLite format 3\x00"

RECOVERY_HINT = (
    "molq will not write to it. Run `molq store check` to see the damage, then restore a backup, "
    "or salvage what is readable with `sqlite3 OLD.db .recover | sqlite3 NEW.db` and set "
    "MOLQ_STORE_URL=sqlite:///NEW.db"
)


def normalize_url(url: str) -> str:
    """Plain ``postgresql://`` (and ``postgres://``) URLs use psycopg 3, the driver the
    ``postgresql`` extra installs (SQLAlchemy's own default is psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    if url.startswith("postgres+"):
        return "postgresql+" + url[len("postgres+"):]
    return url


def sqlite_file(url: sa.engine.URL) -> Path | None:
    """The database file of a SQLite URL, None for an in-memory one or another database."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:") or "mode=memory" in database:
        return None
    return Path(database).expanduser()


def _makedirs_private(folder: Path) -> None:
    """Create ``folder`` and its missing parents 0700 whatever the umask; never change the
    mode of a folder that already exists (a group's shared folder stays as it is)."""
    missing: list[Path] = []
    cur = folder
    while not cur.exists():
        missing.append(cur)
        if cur.parent == cur:
            break
        cur = cur.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask only downwards; be exact


def _prepare_file(path: Path) -> None:
    """Create the store file private (0600) or make an existing one private."""
    _makedirs_private(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
        except OSError:
            pass  # not ours to change (another user's store): opening will say what is wrong
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _file_state(path: Path) -> str:
    st = path.stat()
    return f"{st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns}"


def stamp_verified(path: Path) -> None:
    """Record the file's current state as sound, so the next open can skip the page check.
    Called after a passed check and when a store closes (its own writes and checkpoints are
    sound by construction). A stamp that cannot be written only costs a check next time."""
    try:
        state = _file_state(path)
        tmp = _stamp_path(path).with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(state)
        os.replace(tmp, _stamp_path(path))
    except OSError:
        pass


def _structure_problem(path: Path, header: bytes) -> str | None:
    """What the header alone shows: not SQLite at all, or a file shorter than its pages."""
    if not header.startswith(_SQLITE_HEADER) or len(header) < 100:
        return "is not a SQLite database (truncated, zeroed or overwritten)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # the in-header page count is valid when "version-valid-for" equals the change counter
    if header[92:96] == header[24:28] and pages and path.stat().st_size < pages * page_size:
        return f"is damaged (truncated: {path.stat().st_size} bytes for {pages} pages of {page_size})"
    return None


def check_sqlite_file(path: Path, *, quick_check: bool = True) -> None:
    """Refuse a file that is not a sound SQLite database (truncated, zeroed, overwritten,
    damaged pages), with a message that says how to recover.

    The header is checked on every open (microseconds). SQLite's page check (``PRAGMA
    quick_check``, ~70 ms for 10,000 jobs) runs when the file changed since it was last
    stamped sound: after an outside write, a crash, or a copy."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot read the job store {path}: {exc.strerror or exc}") from exc
    if not header:
        return  # a new, empty file: the schema is created next
    problem = _structure_problem(path, header)
    if problem:
        raise StoreError(f"the job store {path} {problem}; " + RECOVERY_HINT)
    if not quick_check:
        return
    try:
        if _stamp_path(path).read_text() == _file_state(path):
            return
    except OSError:
        pass
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=60)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:  # locked, unreadable, read-only folder...
        raise StoreError(f"cannot read the job store {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
        raise StoreError(f"the job store {path} is damaged ({exc}); " + RECOVERY_HINT) from exc
    if rows != ["ok"]:
        raise StoreError(f"the job store {path} is damaged ({'; '.join(rows)}); " + RECOVERY_HINT)
    stamp_verified(path)


def _missing_driver(url: str, exc: ImportError) -> StoreError:
    backend = sa.engine.make_url(url).get_backend_name()
    hint = "pip install 'molq-core[postgresql]'" if backend == "postgresql" else "install its database driver"
    return StoreError(f"the job store {url.split('@')[-1]} needs a driver that is not installed "
                      f"({exc.name or exc}); {hint}")


def make_engine(url: str) -> sa.engine.Engine:
    """An engine for ``url`` (already normalised). SQLite files get WAL, a busy timeout and
    ``BEGIN IMMEDIATE`` for writers; other databases a pre-ping pool."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"invalid job store URL {url!r}: {exc}") from exc
    if parsed.get_backend_name() != "sqlite":
        try:
            return sa.create_engine(url, pool_pre_ping=True, future=True)
        except ImportError as exc:
            raise _missing_driver(url, exc) from exc
        except sa.exc.NoSuchModuleError as exc:
            raise StoreError(f"no database dialect for the job store URL {url!r}: {exc}") from exc
    path = sqlite_file(parsed)
    in_memory = path is None
    if path is not None:
        # Private to the owner: jobs hold command lines, paths and environments.
        try:
            _prepare_file(path)
        except OSError as exc:
            raise StoreError(f"cannot create the job store {path}: {exc.strerror or exc}") from exc
        check_sqlite_file(path)
    kwargs: dict[str, Any] = {"future": True}
    if in_memory:
        kwargs["poolclass"] = sa.pool.StaticPool
        kwargs["connect_args"] = {"check_same_thread": False}
    else:
        kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
    engine = sa.create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions defer locking).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not in_memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            # A checkpoint fsyncs the WAL and the database file. Every submission writes a
            # dozen pages, so SQLite's default (every 1000 pages) meant two fsyncs per ~80
            # jobs, which stall a busy filesystem (and the scheduler daemons sharing it) for
            # milliseconds. Checkpoint every ~40 MB instead, and cut the WAL file back to
            # 64 MB afterwards. Durability is unchanged: commits are in the WAL either way.
            cur.execute("PRAGMA wal_autocheckpoint=10000")
            cur.execute("PRAGMA journal_size_limit=67108864")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.engine.Connection) -> None:
        # Writers take the write lock up front: no read-to-write upgrade, so no deadlock and
        # the busy timeout applies instead of an immediate "database is locked".
        if conn.get_execution_options().get("molq_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine

"""Transports: how molq runs commands and touches files on a cluster's filesystem.

Schedulers never call :mod:`subprocess` or :mod:`os` for the cluster side; they go through a
:class:`Transport`, so every scheduler works locally and over SSH alike.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

from molq.errors import TransportError

__all__ = ["CommandResult", "Transport", "BaseTransport", "LocalTransport", "shell_join"]


@attrs.frozen
class CommandResult:
    """The outcome of one command: argv, return code and decoded output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def shell_join(argv: Sequence[str]) -> str:
    """Quote ``argv`` for a POSIX shell so that every element arrives byte-identical."""
    return " ".join(shlex.quote(str(a)) for a in argv)


@runtime_checkable
class Transport(Protocol):
    """The operations a scheduler, a Workspace and the lifecycle engine need on a cluster."""

    name: str
    is_remote: bool

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``argv`` (no shell) and return its result; a non-zero exit is not an error.
        Raises :class:`TransportError` when the command could not be run at all."""
        ...

    def read_text(self, path: str) -> str: ...
    def read_bytes(self, path: str) -> bytes: ...
    def write_text(self, path: str, text: str, *, mode: int | None = None) -> None: ...
    def write_bytes(self, path: str, data: bytes, *, mode: int | None = None) -> None: ...
    def exists(self, path: str) -> bool: ...
    def mkdir(self, path: str, *, parents: bool = True, mode: int | None = None) -> None: ...
    def chmod(self, path: str, mode: int) -> None: ...
    def remove(self, path: str, *, recursive: bool = False) -> None: ...
    def upload(self, local: str | Path, remote: str, *, recursive: bool = False) -> None: ...
    def download(self, remote: str, local: str | Path, *, recursive: bool = False) -> None: ...

    def spawn_detached(
        self, argv: Sequence[str], *, cwd: str | None, stdout: str, stderr: str
    ) -> int:
        """Start ``argv`` in a new session that outlives the caller; return its pid.
        ``argv[0]`` is an absolute path; ``cwd=None`` keeps the current directory."""
        ...

    def read_many(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Read many small text files at once (None for a missing file)."""
        ...

    def home(self) -> str:
        """The user's home directory on the cluster side."""
        ...


class BaseTransport:
    """Builds the composite operations of :class:`Transport` from :meth:`run` alone.

    A remote transport only needs ``run``, ``upload`` and ``download``; everything else here is
    done with one POSIX shell command each, with every path quoted.
    """

    name = "base"
    is_remote = True

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def upload(self, local: str | Path, remote: str, *, recursive: bool = False) -> None:
        raise NotImplementedError  # pragma: no cover

    def download(self, remote: str, local: str | Path, *, recursive: bool = False) -> None:
        raise NotImplementedError  # pragma: no cover

    # -- helpers -----------------------------------------------------------------------------
    def sh(self, script: str, *args: str, input: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run a fixed shell ``script`` with ``args`` as positional parameters ($1, $2...).

        User data only ever travels as arguments, never as part of the script text.
        """
        return self.run(["sh", "-c", script, "molq", *args], input=input, timeout=timeout)

    def _check(self, result: CommandResult, what: str) -> CommandResult:
        if result.returncode != 0:
            raise TransportError(f"{what} failed on {self.name}: {result.stderr.strip() or result.returncode}")
        return result

    def read_text(self, path: str) -> str:
        return self._check(self.run(["cat", "--", path]), f"reading {path}").stdout

    def read_bytes(self, path: str) -> bytes:
        # base64 keeps arbitrary bytes intact through a text channel
        import base64

        out = self._check(self.run(["base64", "--", path]), f"reading {path}").stdout
        return base64.b64decode(out)

    def write_text(self, path: str, text: str, *, mode: int | None = None) -> None:
        self.write_bytes(path, text.encode(), mode=mode)

    def write_bytes(self, path: str, data: bytes, *, mode: int | None = None) -> None:
        import base64

        script = 'if [ -d "$1" ]; then echo "$1: Is a directory" >&2; exit 1; fi; umask 077; t="$1.molq-tmp.$$"; base64 -d > "$t" && { [ -z "$2" ] || chmod "$2" "$t"; } && mv -f "$t" "$1"'
        self._check(
            self.sh(script, path, "" if mode is None else format(mode, "o"), input=base64.b64encode(data).decode()),
            f"writing {path}",
        )

    def create_text(self, path: str, text: str, *, mode: int = 0o600) -> None:
        """Write a file that nobody reads until the caller is done with it (a new job's
        script in a fresh job directory). Defaults to :meth:`write_text`."""
        self.write_text(path, text, mode=mode)

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path]).returncode == 0

    def mkdir(self, path: str, *, parents: bool = True, mode: int | None = None) -> None:
        argv = ["mkdir"] + (["-p"] if parents else []) + (["-m", format(mode, "o")] if mode is not None else []) + ["--", path]
        self._check(self.run(argv), f"creating {path}")

    def chmod(self, path: str, mode: int) -> None:
        self._check(self.run(["chmod", format(mode, "o"), "--", path]), f"chmod {path}")

    def remove(self, path: str, *, recursive: bool = False) -> None:
        self._check(self.run(["rm", "-rf" if recursive else "-f", "--", path]), f"removing {path}")

    def read_many(self, paths: Sequence[str]) -> dict[str, str | None]:
        if not paths:
            return {}
        # One command for any number of files: each file is printed between markers.
        script = 'for f do if [ -f "$f" ]; then printf "\\036F\\n"; cat -- "$f"; else printf "\\036M\\n"; fi; done'
        result = self._check(self.sh(script, *paths), "reading files")
        chunks = result.stdout.split("\x1e")[1:]
        out: dict[str, str | None] = {}
        for path, chunk in zip(paths, chunks):
            out[path] = chunk[2:] if chunk.startswith("F\n") else None
        return out

    def spawn_detached(self, argv: Sequence[str], *, cwd: str | None, stdout: str, stderr: str) -> int:
        script = 'cd "${1:-.}" || exit 97; o="$2"; e="$3"; shift 3; setsid "$@" > "$o" 2> "$e" < /dev/null & echo $!'
        result = self._check(self.sh(script, cwd or "", stdout, stderr, *argv), "starting a job")
        return int(result.stdout.strip().splitlines()[-1])

    def home(self) -> str:
        cached = getattr(self, "_home", None)
        if cached is None:
            cached = self._check(self.sh('printf "%s" "$HOME"'), "finding the home directory").stdout
            self._home = cached
        return cached


class LocalTransport(BaseTransport):
    """Runs commands with :mod:`subprocess` and touches files with :mod:`pathlib` directly."""

    name = "local"
    is_remote = False

    def __init__(self) -> None:
        self._home = os.path.expanduser("~")

    def __repr__(self) -> str:
        return "LocalTransport()"

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update(env)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                cwd=cwd,
                env=full_env,
            )
        except FileNotFoundError as exc:
            return CommandResult(tuple(argv), 127, "", f"{argv[0]}: command not found ({exc})", 0.0)
        except OSError as exc:
            raise TransportError(f"cannot run {argv[0]}: {exc}") from exc
        # A timer kills a command that overruns; communicate() without a timeout returns as
        # soon as the command ends (Popen.wait(timeout) would poll with growing sleeps).
        timer = None
        fired: list[bool] = []
        if timeout is not None:
            def _kill() -> None:
                fired.append(True)
                proc.kill()

            timer = threading.Timer(timeout, _kill)
            timer.daemon = True
            timer.start()
        try:
            stdout, stderr = proc.communicate(input)
        finally:
            if timer is not None:
                timer.cancel()
        if fired:
            raise TransportError(f"command timed out after {timeout}s: {shell_join(argv)}")
        return CommandResult(tuple(argv), proc.returncode, stdout, stderr, time.monotonic() - start)

    def read_text(self, path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError as exc:
            raise TransportError(f"cannot read {path}: {exc.strerror}") from exc

    def read_bytes(self, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise TransportError(f"cannot read {path}: {exc.strerror}") from exc

    def write_text(self, path: str, text: str, *, mode: int | None = None) -> None:
        self.write_bytes(path, text.encode(), mode=mode)

    def write_bytes(self, path: str, data: bytes, *, mode: int | None = None) -> None:
        p = Path(path)
        try:
            fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                if mode is not None:
                    os.chmod(tmp, mode)
                os.replace(tmp, p)
            except BaseException:
                with _suppress():
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise TransportError(f"cannot write {path}: {exc.strerror}") from exc

    def create_text(self, path: str, text: str, *, mode: int = 0o600) -> None:
        # One open(O_EXCL) and one write instead of a temporary file, chmod and rename.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            self.write_text(path, text, mode=mode)
            return
        except OSError as exc:
            raise TransportError(f"cannot write {path}: {exc.strerror}") from exc
        with os.fdopen(fd, "w") as fh:
            fh.write(text)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def mkdir(self, path: str, *, parents: bool = True, mode: int | None = None) -> None:
        try:
            if not parents and mode is not None:
                try:
                    os.mkdir(path, mode)  # new directory: umask cannot widen 0o700
                    return
                except FileExistsError:
                    pass
            if mode is None:
                Path(path).mkdir(parents=parents, exist_ok=True)
            else:
                Path(path).mkdir(parents=parents, exist_ok=True, mode=mode)
                os.chmod(path, mode)
        except OSError as exc:
            raise TransportError(f"cannot create {path}: {exc.strerror}") from exc

    def chmod(self, path: str, mode: int) -> None:
        try:
            os.chmod(path, mode)
        except OSError as exc:
            raise TransportError(f"cannot chmod {path}: {exc.strerror}") from exc

    def remove(self, path: str, *, recursive: bool = False) -> None:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                if recursive:
                    shutil.rmtree(path)
                else:
                    os.rmdir(path)
            elif os.path.lexists(path):
                os.unlink(path)
        except OSError as exc:
            raise TransportError(f"cannot remove {path}: {exc.strerror}") from exc

    def upload(self, local: str | Path, remote: str, *, recursive: bool = False) -> None:
        _copy(Path(local), Path(remote), recursive)

    def download(self, remote: str, local: str | Path, *, recursive: bool = False) -> None:
        _copy(Path(remote), Path(local), recursive)

    def read_many(self, paths: Sequence[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for path in paths:
            try:
                with open(path) as fh:
                    out[path] = fh.read()
            except FileNotFoundError:
                out[path] = None
        return out

    def spawn_detached(self, argv: Sequence[str], *, cwd: str | None, stdout: str, stderr: str) -> int:
        if cwd is None and hasattr(os, "posix_spawn"):
            # posix_spawn (vfork-like) is several times cheaper than fork+exec from a large
            # Python process; the job starts in a session of its own.
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            actions = [
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, stdout, flags, 0o600),
                (os.POSIX_SPAWN_OPEN, 2, stderr, flags, 0o600),
            ]
            try:
                pid = os.posix_spawn(argv[0], list(argv), os.environ, file_actions=actions, setsid=True)
            except OSError as exc:
                raise TransportError(f"cannot start {argv[0]}: {exc}") from exc
            _spawned_pids.append(pid)
            return pid
        try:
            with open(stdout, "ab") as out, open(stderr, "ab") as err:
                proc = subprocess.Popen(
                    list(argv),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            raise TransportError(f"cannot start {argv[0]}: {exc}") from exc
        # The child belongs to its own session; nobody in this process waits for it, so make
        # sure it does not linger as a zombie of ours when it ends.
        _reap_later(proc)
        return proc.pid


_children: list[subprocess.Popen] = []


def _reap_later(proc: subprocess.Popen) -> None:
    _children.append(proc)
    if len(_children) > 64:
        _children[:] = [p for p in _children if p.poll() is None]


_spawned_pids: list[int] = []


def reap_children() -> None:
    """Collect exited detached children of this process (avoids zombies)."""
    _children[:] = [p for p in _children if p.poll() is None]
    alive = []
    for pid in _spawned_pids:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if done == 0:
            alive.append(pid)
    _spawned_pids[:] = alive


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def _copy(src: Path, dst: Path, recursive: bool) -> None:
    try:
        if src.is_dir():
            if not recursive:
                raise TransportError(f"{src} is a directory; pass recursive=True")
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            if dst.is_dir():
                dst = dst / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    except OSError as exc:
        raise TransportError(f"cannot copy {src} to {dst}: {exc.strerror or exc}") from exc

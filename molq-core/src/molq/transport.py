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
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs

from molq.errors import TransportError

__all__ = ["CommandResult", "RunningCommand", "Transport", "BaseTransport", "LocalTransport", "shell_join"]


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


class RunningCommand:
    """A command started by :meth:`LocalTransport.start`; :meth:`wait` returns its result
    (once; later calls return the same result)."""

    def __init__(self, argv: Sequence[str], *, run: Callable[[], CommandResult] | None = None,
                 result: CommandResult | None = None) -> None:
        self.argv = tuple(argv)
        self._run, self._result = run, result

    def wait(self) -> CommandResult:
        if self._result is None:
            assert self._run is not None
            run, self._run = self._run, None
            self._result = run()
        return self._result


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
        return self.start(argv, input=input, cwd=cwd, env=env, timeout=timeout).wait()

    def start(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> RunningCommand:
        """Start ``argv`` and return at once; ``wait()`` on the result gives what :meth:`run`
        would have returned. The caller can do other work while the command runs (a batch
        scheduler writes its copy of the job script while ``sbatch`` talks to the controller)."""
        argv = [str(a) for a in argv]
        def via_popen() -> RunningCommand:
            return RunningCommand(argv, run=lambda: self._run_popen(argv, input=input, cwd=cwd, env=env, timeout=timeout))

        if cwd is not None or not hasattr(os, "posix_spawn"):
            return via_popen()
        started = time.monotonic()
        envb = _environ()
        if env:
            envb = dict(envb)
            envb.update((os.fsencode(k), os.fsencode(v)) for k, v in env.items())
        path = _which(argv[0], envb)
        if path is None:
            return RunningCommand(argv, result=_not_found(argv))
        try:
            pid, r_out, r_err, w_in = _spawn(path, argv, envb, input)
        except _NeedPopen:
            return via_popen()
        except FileNotFoundError as exc:
            _which_cache.clear()
            return RunningCommand(argv, result=_not_found(argv, exc))
        except OSError as exc:
            raise TransportError(f"cannot run {argv[0]}: {exc}") from exc

        def collect() -> CommandResult:
            try:
                code, out, err = _collect(pid, r_out, r_err, w_in, input, argv, timeout, started)
            except subprocess.TimeoutExpired:
                raise TransportError(f"command timed out after {timeout}s: {shell_join(argv)}") from None
            return CommandResult(tuple(argv), code, out, err, time.monotonic() - started)

        return RunningCommand(argv, run=collect)

    def _run_popen(
        self,
        argv: list[str],
        *,
        input: str | None,
        cwd: str | None,
        env: Mapping[str, str] | None,
        timeout: float | None,
    ) -> CommandResult:
        """The general path (a working directory to enter): :mod:`subprocess`."""
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update(env)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=full_env,
            )
        except FileNotFoundError as exc:
            return _not_found(argv, exc)
        except OSError as exc:
            raise TransportError(f"cannot run {argv[0]}: {exc}") from exc
        try:
            stdout, stderr = proc.communicate(None if input is None else input.encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise TransportError(f"command timed out after {timeout}s: {shell_join(argv)}") from None
        return CommandResult(tuple(argv), proc.returncode, _decode(stdout), _decode(stderr),
                             time.monotonic() - start)

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
            write_new_file(path, text, mode=mode)
        except FileExistsError:
            self.write_text(path, text, mode=mode)
        except OSError as exc:
            raise TransportError(f"cannot write {path}: {exc.strerror}") from exc

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
            actions: list[tuple[Any, ...]] = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0)]
            for fd, path in ((1, stdout), (2, stderr)):
                # The parent waits while the child prepares: /dev/null is shared, not reopened.
                if path == os.devnull:
                    actions.append((os.POSIX_SPAWN_DUP2, 0, fd))
                else:
                    actions.append((os.POSIX_SPAWN_OPEN, fd, path, flags, 0o600))
            try:
                pid = os.posix_spawn(argv[0], list(argv), _environ(), file_actions=actions, setsid=True)
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


# -- running a command: posix_spawn and pipes ----------------------------------------------------
#
# Every scheduler command (sbatch, squeue, ...) goes through LocalTransport.run. subprocess.Popen
# with communicate() and a timer thread costs about half a millisecond more per command than
# posix_spawn (vfork-like) with the two pipes read in a poll() loop, and a submission loop pays
# that per job.

_which_cache: dict[tuple[str, bytes], str | None] = {}


def _which(name: str, envb: Mapping[bytes, bytes]) -> str | None:
    """``name`` resolved on the child's PATH, as subprocess would (cached)."""
    if "/" in name:
        return name
    search = envb.get(b"PATH", os.defpath.encode())
    key = (name, search)
    if key not in _which_cache:
        _which_cache[key] = shutil.which(name, path=os.fsdecode(search))
    return _which_cache[key]


def _decode(data: bytes) -> str:
    return data.decode(errors="replace")


def _not_found(argv: Sequence[str], exc: OSError | None = None) -> CommandResult:
    detail = f" ({exc})" if exc is not None else ""
    return CommandResult(tuple(argv), 127, "", f"{argv[0]}: command not found{detail}", 0.0)


def write_new_file(path: str, text: str, *, mode: int = 0o600, exclusive: bool = True) -> None:
    """Write ``text`` to ``path`` with os-level calls (no buffered file object): a new file
    (``exclusive``: FileExistsError if it exists) or an existing one truncated first. For small
    files nobody reads before they are complete; raises OSError."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, mode)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def _spawn(
    path: str, argv: list[str], envb: Mapping[bytes, bytes], input: str | None
) -> tuple[int, int, int, int]:
    """Start ``path`` with pipes for its output (and input); return (pid, stdout fd,
    stderr fd, stdin fd or -1). Raises :class:`_NeedPopen` when posix_spawn cannot set the
    standard streams up safely."""
    fds: list[int] = []
    try:
        r_out, w_out = os.pipe()  # non-inheritable: only the dup2'ed copies reach the child
        fds += [r_out, w_out]
        r_err, w_err = os.pipe()
        fds += [r_err, w_err]
        r_in = w_in = -1
        if input is not None:
            r_in, w_in = os.pipe()
            fds += [r_in, w_in]
        if min(fds) < 3:  # a standard stream of ours is closed: let subprocess sort fds out
            raise _NeedPopen
        actions: list[tuple[Any, ...]] = [
            (os.POSIX_SPAWN_DUP2, r_in, 0) if input is not None else (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, w_out, 1),
            (os.POSIX_SPAWN_DUP2, w_err, 2),
        ]
        pid = os.posix_spawn(path, argv, envb, file_actions=actions)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    for fd in (w_out, w_err, r_in):
        if fd >= 0:
            os.close(fd)
    return pid, r_out, r_err, w_in


def _collect(
    pid: int, r_out: int, r_err: int, w_in: int, input: str | None, argv: list[str], timeout: float | None,
    started: float,
) -> tuple[int, str, str]:
    """Feed ``input``, read both outputs to the end and reap the command; return (exit status,
    stdout, stderr). A negative status is a signal, as with subprocess. Raises
    TimeoutExpired (after killing it) once ``timeout`` seconds have passed since ``started``."""
    import select

    chunks: dict[int, list[bytes]] = {r_out: [], r_err: []}
    poller = select.poll()
    poller.register(r_out, select.POLLIN)
    poller.register(r_err, select.POLLIN)
    open_fds = {r_out, r_err}
    pending = input.encode() if input else b""
    if w_in >= 0:
        if pending:
            os.set_blocking(w_in, False)
            poller.register(w_in, select.POLLOUT)
            open_fds.add(w_in)
        else:
            os.close(w_in)
    deadline = None if timeout is None else started + timeout
    try:
        while open_fds:
            wait_ms = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
            events = poller.poll(wait_ms)
            # Checked on every round, not only on a quiet one: a command that keeps printing
            # must not outlive its timeout either.
            if deadline is not None and time.monotonic() >= deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise subprocess.TimeoutExpired(argv, timeout or 0)
            for fd, _event in events:
                if fd == w_in:
                    try:
                        pending = pending[os.write(fd, pending[:65536]):]
                    except BrokenPipeError:
                        pending = b""  # the command stopped reading; like subprocess, carry on
                    if not pending:
                        poller.unregister(fd)
                        os.close(fd)
                        open_fds.discard(fd)
                    continue
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                else:
                    poller.unregister(fd)
                    os.close(fd)
                    open_fds.discard(fd)
    finally:
        for fd in open_fds:
            os.close(fd)
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), _decode(b"".join(chunks[r_out])), _decode(b"".join(chunks[r_err]))


class _NeedPopen(Exception):
    """posix_spawn cannot set up the child's standard streams safely here."""


def _environ() -> Mapping[Any, Any]:
    """This process's environment as of now, for a child. On POSIX ``os.environ`` keeps it as
    a dict of bytes (``_data``); handing that over skips decoding and re-encoding every
    variable on each start."""
    data = getattr(os.environ, "_data", None)
    return data if isinstance(data, dict) else os.environ


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

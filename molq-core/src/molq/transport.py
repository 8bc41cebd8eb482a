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
from typing import Protocol, runtime_checkable

import attrs

from molq.errors import TransportError

__all__ = [
    "CommandResult", "RunningCommand", "Transport", "BaseTransport", "LocalTransport", "shell_join", "make_dirs",
]


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

    def make_dirs(self, paths: Sequence[str], *, mode: int = 0o700, timeout: float | None = None) -> dict[str, str]:
        """Create every directory of ``paths`` (with missing parents) in one command; the
        paths that could not be created, with the reason. ``mode`` applies to the directories
        created here; an existing directory keeps its own. Raises :class:`TransportError`
        when the command could not be run (then nothing is known about any path)."""
        from molq.shell_program import Program, parse_records

        if not paths:
            return {}
        program = Program()
        program.add(f"umask {~mode & 0o777:03o}")
        for i, path in enumerate(paths):
            p = _shell_word(path)
            program.add(f'{{ [ -d {p} ] || mkdir -p -- {p}; }} > "$molq_o" 2> "$molq_e"; molq_report {i} D $?')
        result = self.run(program.argv(), input=program.text(), timeout=timeout)
        records = parse_records(result.stdout, program.nonce)
        failed: dict[str, str] = {}
        for i, path in enumerate(paths):
            rec = records.get(i)
            if rec is None:
                failed[path] = (result.stderr.strip() or f"exit status {result.returncode}")
            elif rec.returncode != 0:
                failed[path] = rec.stderr.strip() or f"mkdir exit status {rec.returncode}"
        if len(failed) == len(paths) and not records:
            raise TransportError(f"creating {len(paths)} directories failed on {self.name}: "
                                 f"{result.stderr.strip() or result.returncode}")
        return failed

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
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update(env)
        started = time.monotonic()
        try:
            # subprocess starts the child with vfork on Linux where it can.
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=full_env,
            )
        except FileNotFoundError as exc:
            return RunningCommand(argv, result=_not_found(argv, exc))
        except OSError as exc:
            raise TransportError(f"cannot run {argv[0]}: {exc}") from exc

        def collect() -> CommandResult:
            remaining = None if timeout is None else max(timeout - (time.monotonic() - started), 0.0)
            try:
                out, err = proc.communicate(None if input is None else input.encode(), timeout=remaining)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise TransportError(f"command timed out after {timeout}s: {shell_join(argv)}") from None
            return CommandResult(tuple(argv), proc.returncode, _decode(out), _decode(err),
                                 time.monotonic() - started)

        return RunningCommand(argv, run=collect)

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

    def make_dirs(self, paths: Sequence[str], *, mode: int = 0o700, timeout: float | None = None) -> dict[str, str]:
        return _make_dirs_one_by_one(self, paths, mode)

    def mkdir(self, path: str, *, parents: bool = True, mode: int | None = None) -> None:
        """Create ``path`` (and its missing parents). ``mode`` applies to the directories
        created here, whatever the umask; an existing directory keeps its mode (it may be a
        group's shared folder)."""
        try:
            if mode is None:
                Path(path).mkdir(parents=parents, exist_ok=True)
                return
            missing: list[str] = []
            p = os.path.abspath(path)
            while not os.path.isdir(p):
                missing.append(p)
                if not parents:
                    break
                p = os.path.dirname(p)
            for d in reversed(missing):
                try:
                    os.mkdir(d, mode)
                except FileExistsError:
                    if not os.path.isdir(d):
                        raise
                    continue
                if mode != 0o700:
                    os.chmod(d, mode)  # ours: the umask must neither widen nor narrow it
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
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        fds: list[int] = []
        try:
            for path in (stdout, stderr):
                fds.append(os.open(path, flags, 0o600))  # output files are private
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=fds[0],
                stderr=fds[1],
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise TransportError(f"cannot start {argv[0]}: {exc}") from exc
        finally:
            for fd in fds:
                os.close(fd)
        # The child belongs to its own session; nobody in this process waits for it, so make
        # sure it does not linger as a zombie of ours when it ends.
        _reap_later(proc)
        return proc.pid


def make_dirs(transport: Transport, paths: Sequence[str], *, mode: int = 0o700,
              timeout: float | None = None) -> dict[str, str]:
    """Create the directories ``paths`` (with missing parents); the ones that failed, with
    the reason. Uses the transport's own ``make_dirs`` (one command for all) when it has one,
    else one :meth:`Transport.mkdir` per path."""
    many = getattr(transport, "make_dirs", None)
    if many is not None:
        out: dict[str, str] = many(paths, mode=mode, timeout=timeout)
        return out
    return _make_dirs_one_by_one(transport, paths, mode)


def _make_dirs_one_by_one(transport: Transport, paths: Sequence[str], mode: int) -> dict[str, str]:
    failed: dict[str, str] = {}
    for path in paths:
        try:
            transport.mkdir(path, parents=True, mode=mode)
        except TransportError as exc:
            failed[path] = str(exc)
    return failed


def _shell_word(value: str) -> str:
    from molq.shell_program import word

    return word(value)


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


_children: list[subprocess.Popen] = []


def _reap_later(proc: subprocess.Popen) -> None:
    _children.append(proc)
    if len(_children) > 64:
        _children[:] = [p for p in _children if p.poll() is None]


def reap_children() -> None:
    """Collect exited detached children of this process (avoids zombies)."""
    _children[:] = [p for p in _children if p.poll() is None]


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

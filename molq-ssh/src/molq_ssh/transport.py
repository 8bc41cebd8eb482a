"""The OpenSSH transport: runs commands and moves files on a cluster with ``ssh``, ``rsync``, ``scp``.

No Python SSH library is involved, so whatever works in the user's terminal (``~/.ssh/config``,
agents, ProxyJump, Kerberos, hardware keys) works here too.

Every ``run`` is one ``ssh`` process talking to a shared *master* connection (OpenSSH
ControlMaster): the handshake is paid once, then each call costs one session on the existing
connection, across SshTransport instances and across processes, until the master has been idle
for ``control_persist`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from molq.errors import ConfigError, TransportError
from molq.transport import BaseTransport, CommandResult, shell_join

from molq_ssh.commands import (
    Markers,
    escape_remote_glob,
    has_glob_chars,
    parse_master_pid,
    remote_command,
    remote_spec,
    rsync_rsh,
    split_output,
    ssh_option_value,
    ssh_percent_escape,
    strip_mux_noise,
)
from molq_ssh.options import SshTransportOptions

__all__ = ["SshTransport", "default_control_dir"]

#: ssh's exit status for "could not connect / connection lost" (and for a remote 255).
SSH_CONNECTION_FAILED = 255

# A unix socket path must fit in sun_path (104 bytes on macOS/BSD, 108 on Linux);
# "cm-" + the 40 hex digits of %C are appended to the directory.
_MAX_SOCKET_PATH = 100
_SOCKET_NAME_LEN = len("/cm-") + 40


def _ensure_private_dir(path: str) -> str:
    """Create ``path`` (mode 0700) if needed and make sure nobody else can use it."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise TransportError(f"ssh control directory {path} is not a directory owned by this user")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def default_control_dir() -> str:
    """``$MOLQ_HOME/ssh`` (``~/.molq/ssh``), or ``<tmp>/molq-ssh-<uid>`` when that path is too
    long for a unix socket."""
    from molq.config import molq_home

    preferred = os.path.join(os.fspath(molq_home()), "ssh")
    if len(os.fsencode(preferred)) + _SOCKET_NAME_LEN <= _MAX_SOCKET_PATH:
        return preferred
    tmp = tempfile.gettempdir()
    if len(os.fsencode(tmp)) > 40:
        tmp = "/tmp"
    return os.path.join(tmp, f"molq-ssh-{os.getuid()}")


class SshTransport(BaseTransport):
    """A :class:`~molq.transport.Transport` over OpenSSH.

    >>> t = SshTransport(SshTransportOptions(host="login.example.org"))   # doctest: +SKIP
    >>> t.run(["hostname"]).stdout                                         # doctest: +SKIP
    'login01\\n'

    ``SshTransport("alias")`` is short for ``SshTransport(SshTransportOptions(host="alias"))``.
    Use it as a context manager, or call :meth:`close`, to shut the shared master connection.
    """

    name = "ssh"
    is_remote = True

    def __init__(self, options: SshTransportOptions | str) -> None:
        if isinstance(options, str):
            options = SshTransportOptions(host=options)
        if not isinstance(options, SshTransportOptions):
            raise ConfigError(f"SshTransport needs SshTransportOptions, got {type(options).__name__}")
        self.options = options
        self.host = options.host
        self._markers = Markers(secrets.token_hex(8))
        self._control_dir: str | None = None
        self._control_path: str | None = None

    def __repr__(self) -> str:
        return f"SshTransport(host={self.host!r})"

    # -- command lines ---------------------------------------------------------------------------
    def control_dir(self) -> str | None:
        """The private directory holding the control sockets (created on first use)."""
        if not self.options.multiplex:
            return None
        if self._control_dir is None:
            self._control_dir = _ensure_private_dir(self.options.control_dir or default_control_dir())
        return self._control_dir

    def connection_args(self) -> list[str]:
        """ssh options (no host, no command) shared by ssh, scp and rsync's ``-e``.

        Order matters: for ``-o`` options the first value ssh sees wins. ``BatchMode`` comes
        first so nothing can make ssh wait for a password; the user's ``ssh_opts`` come next
        so they override molq's defaults; command-line options beat the config file.
        """
        o = self.options
        args: list[str] = []
        if o.config_file is not None:
            args += ["-F", o.config_file]
        args += ["-o", "BatchMode=yes", *o.ssh_opts]
        settings = [
            f"ConnectTimeout={o.connect_timeout}",
            f"ServerAliveInterval={o.server_alive_interval}",
            "ServerAliveCountMax=3",
            "RequestTTY=no",
            "ForwardX11=no",
            # Forwardings from ssh_config would be requested again on every call.
            "ClearAllForwardings=yes",
            # Keeps "Warning: Permanently added ..." and similar chatter out of stderr.
            "LogLevel=ERROR",
        ]
        control_dir = self.control_dir()
        if control_dir is None:
            settings += ["ControlMaster=no", "ControlPath=none"]
        else:
            path = ssh_percent_escape(os.path.join(control_dir, "cm-")) + "%C"
            settings += [
                "ControlMaster=auto",
                f"ControlPath={ssh_option_value(path)}",
                f"ControlPersist={o.control_persist}",
            ]
        if o.port is not None:
            settings.append(f"Port={o.port}")
        if o.identity_file is not None:
            settings.append("IdentitiesOnly=yes")
            args += ["-i", ssh_percent_escape(os.path.expanduser(o.identity_file))]
        for setting in settings:
            args += ["-o", setting]
        return args

    def ssh_argv(self, *tail: str) -> list[str]:
        """``ssh <connection options> -- <host> <tail...>``."""
        return ["ssh", *self.connection_args(), "--", self.host, *tail]

    def _control_argv(self, command: str) -> list[str]:
        return ["ssh", *self.connection_args(), "-O", command, "--", self.host]

    # -- process plumbing ------------------------------------------------------------------------
    def _spawn(
        self, argv: list[str], *, input: bytes | None, timeout: float | None, what: str
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                argv,
                input=input,
                stdin=subprocess.DEVNULL if input is None else None,
                capture_output=True,
                timeout=timeout,
            )
        except FileNotFoundError as exc:
            raise TransportError(
                f"{argv[0]} not found: molq's ssh transport needs the OpenSSH client "
                f"(and rsync or scp for file transfers) on PATH ({exc})"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise TransportError(f"{what} on {self.host} timed out after {timeout}s") from exc
        except OSError as exc:
            raise TransportError(f"cannot run {argv[0]} for {self.host}: {exc}") from exc

    def _exec(
        self, command: str, *, input: bytes | None, timeout: float | None, what: str
    ) -> tuple[int, bytes, bytes, float]:
        """Run a remote command string built by :func:`remote_command`; returns (status, out, err, secs).

        Connection-level failures raise TransportError. A failure before the remote shell
        started the command, while a control socket whose master no longer answers is in
        place, is retried once on a fresh connection; nothing is ever retried once the command
        may have started.
        """
        start = time.monotonic()
        for attempt in (1, 2):
            proc = self._spawn(self.ssh_argv(command), input=input, timeout=timeout, what=what)
            out = split_output(proc.stdout, self._markers)
            stderr, bypassed = strip_mux_noise(proc.stderr)
            if bypassed:
                # ssh found the master unusable and connected directly; make sure the next
                # call can build a working master instead of paying a handshake every time.
                self._discard_dead_master()
            if out.status is not None:
                # The remote shell reported the command's own status: trust it over ssh's.
                return out.status, out.stdout, stderr, time.monotonic() - start
            if proc.returncode != SSH_CONNECTION_FAILED:
                return proc.returncode, out.stdout, stderr, time.monotonic() - start
            message = _text(stderr).strip() or "ssh exited with status 255"
            if out.started:
                raise TransportError(
                    f"connection to {self.host} was lost while {what} was running "
                    f"(it may or may not have completed): {message}"
                )
            if attempt == 1 and self._discard_dead_master():
                continue
            raise TransportError(f"cannot connect to {self.host} over ssh: {message}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _discard_dead_master(self) -> bool:
        """Remove the control socket if its master does not answer; True if one was removed.

        A master that answers is left alone: other calls and processes may be using it, and
        ``ssh -O exit`` would cut their sessions.
        """
        path = self.control_path()
        if path is None or not os.path.exists(path):
            return False
        try:
            alive = (
                subprocess.run(
                    self._control_argv("check"), stdin=subprocess.DEVNULL, capture_output=True, timeout=10
                ).returncode
                == 0
            )
        except (subprocess.TimeoutExpired, OSError):
            alive = False
        if alive:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return True

    # -- Transport -------------------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``argv`` on the host; every word, env value and ``cwd`` arrive byte-identical.

        A non-zero exit (including 255 from the remote command itself) is returned, not
        raised. Raises TransportError if the host cannot be reached, the connection is lost
        during the command, or ``timeout`` expires.
        """
        try:
            command = remote_command(argv, self._markers, cwd=cwd, env=env)
        except ValueError as exc:
            raise ConfigError(f"ssh: {exc}") from exc
        data = None if input is None else input.encode()
        status, out, err, secs = self._exec(command, input=data, timeout=timeout, what=shell_join(argv))
        return CommandResult(tuple(str(a) for a in argv), status, _text(out), _text(err), secs)

    def _run_bytes(self, argv: Sequence[str], *, input: bytes | None = None, what: str) -> bytes:
        """Run ``argv`` with raw bytes in and out; raise TransportError (with stderr) on failure."""
        command = remote_command(argv, self._markers)
        status, out, err, _ = self._exec(command, input=input, timeout=None, what=what)
        if status != 0:
            raise TransportError(
                f"{what} failed on {self.host}: {_text(err).strip() or f'exit status {status}'}"
            )
        return out

    def _check(self, result: CommandResult, what: str) -> CommandResult:
        if result.returncode != 0:
            raise TransportError(
                f"{what} failed on {self.host}: {result.stderr.strip() or result.returncode}"
            )
        return result

    # Raw bytes over stdin/stdout: no base64 inflation, exact for binary data of any size.
    def read_bytes(self, path: str) -> bytes:
        return self._run_bytes(["cat", "--", path], what=f"reading {path}")

    def read_text(self, path: str) -> str:
        return _text(self.read_bytes(path))

    def write_bytes(self, path: str, data: bytes, *, mode: int | None = None) -> None:
        # Written to a temporary name next to the target, then renamed: readers never see a
        # half-written file. ``mv`` onto a directory would move the file *into* it, so a
        # directory target is refused first, as os.replace refuses it.
        script = (
            'if [ -d "$1" ]; then echo "$1: Is a directory" >&2; exit 1; fi; '
            'umask 077; t="$1.molq-tmp.$$"; '
            'if cat > "$t" && { [ -z "$2" ] || chmod "$2" "$t"; } && mv -f "$t" "$1"; then exit 0; fi; '
            'rm -f "$t"; exit 1'
        )
        self._run_bytes(
            ["sh", "-c", script, "molq", path, "" if mode is None else format(mode, "o")],
            input=bytes(data),
            what=f"writing {path}",
        )

    def write_text(self, path: str, text: str, *, mode: int | None = None) -> None:
        self.write_bytes(path, text.encode(), mode=mode)

    def mkdir(self, path: str, *, parents: bool = True, mode: int | None = None) -> None:
        # Like LocalTransport: an existing directory is fine and still gets ``mode``.
        script = '[ -d "$1" ] || mkdir $3 -- "$1" || exit 1; [ -z "$2" ] || chmod "$2" "$1"'
        self._check(
            self.sh(script, path, "" if mode is None else format(mode, "o"), "-p" if parents else ""),
            f"creating {path}",
        )

    def remove(self, path: str, *, recursive: bool = False) -> None:
        # Like LocalTransport: a missing path is fine, an empty directory is removed without
        # ``recursive``, a non-empty one is an error.
        script = (
            'if [ -d "$1" ] && [ ! -L "$1" ]; then '
            'if [ -n "$2" ]; then rm -rf -- "$1"; else rmdir -- "$1"; fi; '
            'else rm -f -- "$1"; fi'
        )
        self._check(self.sh(script, path, "r" if recursive else ""), f"removing {path}")

    # -- file transfer ---------------------------------------------------------------------------
    def _use_rsync(self, remote_has_rsync: bool) -> bool:
        mode = self.options.file_transfer
        if mode == "scp":
            return False
        local = shutil.which("rsync") is not None
        if mode == "rsync":
            if not (local and remote_has_rsync):
                side = "this machine" if not local else self.host
                raise TransportError(f"file_transfer='rsync' but rsync is not installed on {side}")
            return True
        return local and remote_has_rsync

    def _probe(self, path: str, *, mkdir: str | None = None) -> tuple[str, bool]:
        """One remote call: the type of ``path`` (d, f or n), whether rsync exists there, and
        optionally ``mkdir -p`` of a directory first."""
        script = (
            '[ -z "$2" ] || mkdir -p -- "$2" || exit 1; '
            'if [ -d "$1" ]; then t=d; elif [ -e "$1" ] || [ -L "$1" ]; then t=f; else t=n; fi; '
            'if command -v rsync >/dev/null 2>&1; then r=1; else r=0; fi; printf "%s%s" "$t" "$r"'
        )
        result = self._check(self.sh(script, path or ".", mkdir or ""), f"preparing transfer of {path}")
        answer = result.stdout.strip()
        return answer[:1], answer.endswith("1")

    def upload(self, local: str | Path, remote: str, *, recursive: bool = False) -> None:
        """Copy a local file or directory to ``remote`` (byte-exact, modes and times kept).

        A directory needs ``recursive=True``; its *contents* are merged into ``remote``
        (created with its parents). A file lands at ``remote``, or inside it when ``remote``
        is an existing directory; missing parent directories are created.
        """
        src = os.path.abspath(os.fspath(local))  # absolute: a ':' in a name is never a host
        if os.path.isdir(src):
            if not recursive:
                raise TransportError(f"{src} is a directory; pass recursive=True to upload it")
            _kind, remote_rsync = self._probe(remote, mkdir=remote or ".")
            if self._use_rsync(remote_rsync):
                self._rsync([src.rstrip("/") + "/", remote_spec(self.host, _dir(remote))], recursive=True)
            else:
                entries = sorted(os.listdir(src))
                if entries:
                    sources = [os.path.join(src, e) for e in entries]
                    self._scp([*sources, remote_spec(self.host, _dir(remote))], recursive=True)
            return
        if not os.path.lexists(src):
            raise TransportError(f"cannot upload {src}: no such file or directory")
        parent = remote if remote.endswith("/") else posixpath.dirname(remote)
        _kind, remote_rsync = self._probe(remote, mkdir=parent)
        if self._use_rsync(remote_rsync):
            self._rsync([src, remote_spec(self.host, remote)], recursive=False)
        else:
            self._scp([src, remote_spec(self.host, remote)], recursive=False)

    def download(self, remote: str, local: str | Path, *, recursive: bool = False) -> None:
        """Copy a remote file or directory to ``local`` (same rules as :meth:`upload`)."""
        dst = os.path.abspath(os.fspath(local))
        kind, remote_rsync = self._probe(remote)
        if kind == "n":
            raise TransportError(f"cannot download {remote} from {self.host}: no such file or directory")
        # rsync's sender expands wildcards in source names; scp's can be escaped reliably.
        use_rsync = self._use_rsync(remote_rsync) and (
            self.options.file_transfer == "rsync" or not has_glob_chars(remote)
        )
        if kind == "d":
            if not recursive:
                raise TransportError(f"{remote} on {self.host} is a directory; pass recursive=True")
            _make_local_dir(dst)
            if use_rsync:
                self._rsync([remote_spec(self.host, _rsync_source(_dir(remote))), dst + "/"], recursive=True)
            else:
                names = self._list_dir(remote)
                if names:
                    base = _dir(remote)
                    sources = [remote_spec(self.host, escape_remote_glob(base + n)) for n in names]
                    self._scp([*sources, dst + "/"], recursive=True)
            return
        if not os.path.isdir(dst):
            _make_local_dir(os.path.dirname(dst))
        if use_rsync:
            self._rsync([remote_spec(self.host, _rsync_source(remote)), dst], recursive=False)
        else:
            self._scp([remote_spec(self.host, escape_remote_glob(remote)), dst], recursive=False)

    def _list_dir(self, remote: str) -> list[str]:
        script = (
            'cd -- "$1" || exit 1; for f in * .[!.]* ..?*; do '
            '{ [ -e "$f" ] || [ -L "$f" ]; } && printf "%s\\0" "$f"; done; exit 0'
        )
        out = self._check(self.sh(script, remote), f"listing {remote}").stdout
        return [n for n in out.split("\0") if n]

    def _rsync(self, paths: list[str], *, recursive: bool) -> None:
        rsh = rsync_rsh(["ssh", *self.connection_args()])
        argv = ["rsync", *self.options.rsync_opts]
        if recursive:
            argv.append("-r")
        # -s: names travel inside rsync's protocol, never through the remote shell.
        argv += ["-s", "-e", rsh, "--", *paths]
        proc = self._spawn(argv, input=None, timeout=None, what="rsync")
        if proc.returncode != 0:
            raise TransportError(
                f"rsync {paths[0]} -> {paths[-1]} ({self.host}) failed: "
                f"{_text(proc.stderr).strip() or f'exit status {proc.returncode}'}"
            )

    def _scp(self, paths: list[str], *, recursive: bool) -> None:
        argv = ["scp", "-q", "-p", *(["-r"] if recursive else []), *self.connection_args(), "--", *paths]
        proc = self._spawn(argv, input=None, timeout=None, what="scp")
        if proc.returncode != 0:
            raise TransportError(
                f"scp {paths[0]} -> {paths[-1]} ({self.host}) failed: "
                f"{_text(proc.stderr).strip() or f'exit status {proc.returncode}'}"
            )

    # -- the shared connection -------------------------------------------------------------------
    def control_path(self) -> str | None:
        """The control socket this transport uses (ssh's own expansion of ``cm-%C``)."""
        if not self.options.multiplex:
            return None
        if self._control_path is None:
            proc = self._spawn(
                ["ssh", *self.connection_args(), "-G", "--", self.host], input=None, timeout=15, what="ssh -G"
            )
            for line in _text(proc.stdout).splitlines():
                key, _, value = line.partition(" ")
                if key == "controlpath" and value not in ("", "none"):
                    self._control_path = value
                    break
        return self._control_path

    def master_pid(self) -> int | None:
        """The pid of the running master connection, or None if there is none."""
        if not self.options.multiplex:
            return None
        proc = self._spawn(self._control_argv("check"), input=None, timeout=15, what="ssh -O check")
        if proc.returncode != 0:
            return None
        return parse_master_pid(_text(proc.stderr) + _text(proc.stdout))

    def close(self) -> None:
        """Shut the shared master connection (``ssh -O exit``); the next call opens a new one.

        The master is shared with other SshTransport objects and processes using the same
        host; they reconnect transparently.
        """
        if not self.options.multiplex:
            return
        with contextlib.suppress(TransportError):
            self._spawn(self._control_argv("exit"), input=None, timeout=15, what="ssh -O exit")

    def __enter__(self) -> SshTransport:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _dir(path: str) -> str:
    """``path`` with one trailing slash (rsync: the directory's contents; "" = home)."""
    if not path:
        return "./"
    return path.rstrip("/") + "/" if path.rstrip("/") else "/"


def _rsync_source(path: str) -> str:
    # With file_transfer="rsync" forced, wildcard characters are escaped for rsync's sender;
    # otherwise (auto) such names go through scp and this is a no-op.
    return escape_remote_glob(path) if has_glob_chars(path) else path


def _make_local_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise TransportError(f"cannot create local directory {path}: {exc.strerror or exc}") from exc

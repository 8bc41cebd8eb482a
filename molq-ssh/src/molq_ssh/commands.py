"""Pure helpers that build OpenSSH, rsync and scp command lines and read their output.

Nothing here does I/O, so every rule (quoting, markers, option order) is testable on its own.

The remote command string
-------------------------
OpenSSH joins the words after the host with spaces and hands the result to the remote user's
login shell as ``$SHELL -c <string>``. molq therefore sends ONE string, in which every word
is quoted for a POSIX shell, shaped as::

    printf '\\036S<nonce>\\036'; cd <cwd> && NAME=<value> <argv...>; s=$?; printf '\\036E<nonce>:%d\\036' "$s"; exit "$s"

The start marker tells that the remote shell got as far as the command (anything a login
script printed before it is dropped). The end marker carries the command's own exit status, so
a command that itself exits with 255 is told apart from ssh's "connection failed" status 255,
and a failure before the start marker is known to have run nothing (safe to retry).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

import attrs

__all__ = [
    "ENV_NAME_RE",
    "Markers",
    "quote_word",
    "remote_command",
    "split_output",
    "ssh_option_value",
    "ssh_percent_escape",
    "rsync_rsh",
    "escape_remote_glob",
    "remote_spec",
    "parse_master_pid",
    "strip_mux_noise",
]

#: Names that a POSIX shell accepts in a ``NAME=value`` assignment.
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_MASTER_PID_RE = re.compile(r"Master running \(pid=(\d+)\)")

# What ssh itself prints when a control master is unusable and it falls back to a direct
# connection. These lines come before anything the remote command writes.
_MUX_NOISE_RE = re.compile(
    rb"^(?:mux_client_[a-z_]+: |muxclient: |Control ?[Ss]ocket connect\(|"
    rb"ControlSocket .* already exists, disabling multiplexing)"
)


def quote_word(word: str, *, force: bool = False) -> str:
    """Quote ``word`` for a POSIX shell. ``force`` quotes even words shlex leaves bare.

    The command word is always forced into quotes: a bare ``if``, ``A=b`` or an alias name
    would otherwise be read as a keyword, an assignment or an alias.
    """
    if not force:
        return shlex.quote(word)
    return "'" + word.replace("'", "'\"'\"'") + "'"


@attrs.frozen
class Markers:
    """The start/end markers of one transport instance (``nonce`` makes them unguessable)."""

    nonce: str

    @property
    def start(self) -> bytes:
        return b"\x1eS" + self.nonce.encode() + b"\x1e"

    @property
    def end_prefix(self) -> bytes:
        return b"\x1eE" + self.nonce.encode() + b":"


def remote_command(
    argv: Sequence[str],
    markers: Markers,
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The single remote command string for ``argv`` (see the module docstring).

    Raises ValueError for an empty argv or an environment name a shell cannot assign.
    """
    if not argv:
        raise ValueError("argv must not be empty")
    parts: list[str] = []
    if cwd is not None:
        # "./" keeps a relative path from being read as an option ("-x", "-") and from being
        # looked up in $CDPATH (which would also print the directory on stdout).
        if not cwd.startswith(("/", "./", "../")):
            cwd = "./" + cwd
        parts.append(f"cd {quote_word(cwd)} &&")
    for name, value in (env or {}).items():
        if not ENV_NAME_RE.match(name):
            raise ValueError(f"invalid environment variable name {name!r}")
        # A prefix assignment exports the variable to this command only.
        parts.append(f"{name}={quote_word(str(value), force=True)}")
    words = [str(a) for a in argv]
    parts.append(quote_word(words[0], force=True))
    parts.extend(quote_word(w) for w in words[1:])
    nonce = markers.nonce
    return (
        f"printf '\\036S{nonce}\\036'; "
        + " ".join(parts)
        + f'; s=$?; printf \'\\036E{nonce}:%d\\036\' "$s"; exit "$s"'
    )


@attrs.frozen
class SplitOutput:
    """stdout with the markers removed, and what they told."""

    stdout: bytes
    started: bool
    status: int | None


def split_output(raw: bytes, markers: Markers) -> SplitOutput:
    """Remove the start and end markers from ``raw`` stdout.

    Output before the start marker (login-script noise) is dropped. Bytes after the end
    marker (written late by a background child that kept stdout open) are kept.
    """
    start = raw.find(markers.start)
    started = start >= 0
    body = raw[start + len(markers.start) :] if started else raw
    status: int | None = None
    end = body.rfind(markers.end_prefix)
    if end >= 0:
        tail = body[end + len(markers.end_prefix) :]
        close = tail.find(b"\x1e")
        digits = tail[:close] if close >= 0 else b""
        if close >= 0 and digits.isdigit():
            status = int(digits)
            body = body[:end] + tail[close + 1 :]
    return SplitOutput(body, started, status)


def ssh_percent_escape(value: str) -> str:
    """Escape ``%`` for options in which ssh expands %-tokens (ControlPath, IdentityFile)."""
    return value.replace("%", "%%")


def ssh_option_value(value: str) -> str:
    """Quote a value for ``-o Key=<value>``, which ssh splits like a config line."""
    if value and not re.search(r"[\s\"'\\#]", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rsync_rsh(argv: Sequence[str]) -> str:
    """Join an ssh argv into rsync's ``-e`` string.

    rsync splits that string on spaces and honours single and double quotes (a doubled quote
    inside a quoted word is a literal quote); it does not know backslashes. So every word is
    single-quoted with inner single quotes doubled.
    """
    return " ".join("'" + str(a).replace("'", "''") + "'" for a in argv)


_GLOB_CHARS = re.compile(r"([*?\[\]\\])")


def escape_remote_glob(path: str) -> str:
    """Backslash-escape glob characters of a remote *source* path for scp's SFTP mode.

    scp (SFTP protocol, the default since OpenSSH 9.0) expands wildcards in remote source
    paths; an escaped path names exactly one file.
    """
    return _GLOB_CHARS.sub(r"\\\1", path)


def has_glob_chars(path: str) -> bool:
    """True if a remote path has characters that rsync's sender would expand as a pattern."""
    return any(c in path for c in "*?[")


def remote_spec(host: str, path: str) -> str:
    """``host:path`` as rsync and scp expect it (an IPv6 literal host is bracketed)."""
    if ":" in host and not host.startswith("["):
        user, at, name = host.rpartition("@")
        host = f"{user}{at}[{name}]"
    return f"{host}:{path}"


def parse_master_pid(text: str) -> int | None:
    """The master's pid from ``ssh -O check`` output (``Master running (pid=123)``)."""
    match = _MASTER_PID_RE.search(text)
    return int(match.group(1)) if match else None


def strip_mux_noise(stderr: bytes) -> tuple[bytes, bool]:
    """Remove ssh's own multiplexing diagnostics from the start of ``stderr``.

    Returns the remote command's stderr and whether ssh said it bypassed a broken master.
    """
    noisy = False
    while stderr:
        line, nl, rest = stderr.partition(b"\n")
        if not _MUX_NOISE_RE.match(line):
            break
        noisy = True
        stderr = rest if nl else b""
    return stderr, noisy

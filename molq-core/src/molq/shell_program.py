"""Generated shell programs that do many small things in one command (one round trip over SSH).

A program is sent whole on standard input to a fixed ``sh -c`` runner, which reads all of it
first and runs it only when its last line is the expected end token: a program cut short by a
broken connection runs nothing, instead of running its first half. Every value the caller
passes in (paths, file contents, command words) is one single-quoted shell word
(:func:`word`); the program text around them is molq's own.

Each item's outcome is printed as a delimited record (:func:`parse_records`) carrying its exit
status, stdout and stderr; the delimiters hold a random nonce, so output of the item itself
cannot forge one.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Sequence

import attrs

from molq.errors import ConfigError
from molq.transport import CommandResult

__all__ = ["Program", "Record", "word", "command", "parse_records", "RUNNER"]

#: The fixed runner: read the program, check its end, run it. ``$1`` is the end token.
RUNNER = (
    'p=$(cat) || exit 97; case $p in *"$1") ;; '
    '*) echo "molq: the generated program arrived incomplete; nothing was run" >&2; exit 97;; esac; '
    'eval "$p"'
)

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def word(value: str, *, force: bool = False) -> str:
    """``value`` as one shell word that expands to exactly ``value``. ``force`` quotes even
    plain words (a command word must never be read as a keyword or an assignment)."""
    if "\x00" in value:
        raise ConfigError(f"a NUL byte cannot be passed through a shell: {value[:40]!r}")
    if force:
        return "'" + value.replace("'", "'\"'\"'") + "'"
    return shlex.quote(value)


def command(argv: Sequence[str]) -> str:
    """``argv`` as one simple command (no shell syntax of the caller's)."""
    if not argv:
        raise ValueError("argv must not be empty")
    return " ".join([word(str(argv[0]), force=True), *(word(str(a)) for a in argv[1:])])


@attrs.frozen
class Record:
    """One item's outcome as the program reported it."""

    index: int
    stage: str
    returncode: int
    stdout: str
    stderr: str

    def result(self, argv: Sequence[str]) -> CommandResult:
        return CommandResult(tuple(argv), self.returncode, self.stdout, self.stderr)


class Program:
    """A program under construction: :meth:`add` lines, then :meth:`text` and :meth:`argv`.

    The prelude makes a private scratch directory and defines ``molq_report INDEX STAGE
    STATUS``, which prints one record with the item's captured stdout (``$molq_o``) and
    stderr (``$molq_e``) and fails when nobody reads the output any more, so that a program
    whose caller went away stops at the next item instead of carrying on unseen.
    """

    def __init__(self, *, env: dict[str, str] | None = None) -> None:
        self.nonce = secrets.token_hex(8)
        self.end = f"# molq-end {secrets.token_hex(8)}"
        n = self.nonce
        self.lines: list[str] = [
            "umask 077",
            'molq_t=$(mktemp -d "${TMPDIR:-/tmp}/molq.XXXXXX") || exit 98',
            "trap 'rm -rf -- \"$molq_t\"' EXIT",
            'molq_o="$molq_t/o"; molq_e="$molq_t/e"',
            "molq_report() {",
            f"  printf '\\036{n} %s %s %s\\036' \"$1\" \"$2\" \"$3\" || exit 1",
            f"  cat -- \"$molq_o\" && printf '\\036{n}\\036' && cat -- \"$molq_e\" && printf '\\036{n}.\\036' || exit 1",
            "}",
        ]
        for name, value in (env or {}).items():
            if not _NAME_RE.match(name):
                raise ConfigError(f"invalid environment variable name {name!r}")
            self.lines.append(f"{name}={word(value, force=True)}; export {name}")

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def text(self) -> str:
        return "\n".join([*self.lines, self.end])

    def argv(self) -> list[str]:
        """The command that runs :meth:`text` given on standard input."""
        return ["sh", "-c", RUNNER, "molq", self.end]


def parse_records(stdout: str, nonce: str) -> dict[int, Record]:
    """Every complete record in ``stdout`` by item index (a record cut short is left out)."""
    pattern = re.compile(
        "\x1e" + re.escape(nonce) + r" (\d+) (\w+) (\d+)\x1e(.*?)\x1e" + re.escape(nonce)
        + "\x1e(.*?)\x1e" + re.escape(nonce) + r"\.\x1e",
        re.DOTALL,
    )
    out: dict[int, Record] = {}
    for m in pattern.finditer(stdout):
        index = int(m.group(1))
        out[index] = Record(index, m.group(2), int(m.group(3)), m.group(4), m.group(5))
    return out

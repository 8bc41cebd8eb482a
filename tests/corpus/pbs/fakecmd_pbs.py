"""Fake PBS commands for the corpus tests: ``qsub``, ``qstat``, ``qdel`` scripts put first on
PATH that print recorded scheduler answers and log how they were called.

Each command answers from ``<root>/<command>.json``: a list of answers
(``{"stdout", "stderr", "returncode"}``) given in turn; the last one repeats. Every call is
appended to ``<root>/calls.jsonl`` as ``[command, argv...]``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

COMMANDS = ("qsub", "qstat", "qdel")

_SCRIPT = '''#!{python}
import json, os, sys
root = {root!r}
name = os.path.basename(sys.argv[0])
with open(os.path.join(root, "calls.jsonl"), "a") as log:
    log.write(json.dumps([name, *sys.argv[1:]]) + "\\n")
if name == "qsub" and not sys.stdin.isatty():
    sys.stdin.read()
path = os.path.join(root, name + ".json")
try:
    with open(path) as fh:
        answers = json.load(fh)
except FileNotFoundError:
    sys.stderr.write(name + ": no answer recorded for this test\\n")
    sys.exit(99)
counter = os.path.join(root, name + ".count")
try:
    with open(counter) as fh:
        n = int(fh.read() or 0)
except FileNotFoundError:
    n = 0
with open(counter, "w") as fh:
    fh.write(str(n + 1))
answer = answers[min(n, len(answers) - 1)]
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(answer.get("returncode", 0))
'''


class FakePbs:
    """A directory of fake PBS commands; put :attr:`bin` first on PATH."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.bin = self.root / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        for name in COMMANDS:
            script = self.bin / name
            script.write_text(_SCRIPT.format(python=sys.executable, root=str(self.root)))
            script.chmod(0o755)

    def answer(self, command: str, *answers: dict[str, Any]) -> None:
        """Answers for the next calls of ``command``, in turn (the last repeats)."""
        assert command in COMMANDS and answers
        (self.root / f"{command}.json").write_text(json.dumps(list(answers)))
        count = self.root / f"{command}.count"
        if count.exists():
            count.unlink()

    def calls(self, command: str | None = None) -> list[list[str]]:
        """Every recorded call (argv without the command name), oldest first."""
        path = self.root / "calls.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [row[1:] for row in rows if command is None or row[0] == command]

    def path_env(self) -> str:
        return f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"


def sample_answer(sample: dict[str, Any]) -> dict[str, Any]:
    """The command answer a corpus sample records."""
    return {
        "stdout": sample.get("stdout", ""),
        "stderr": sample.get("stderr", ""),
        "returncode": int(sample.get("returncode", 0)),
    }

"""Fake LSF commands for the corpus: ``bsub``, ``bjobs`` and ``bkill`` that print recorded text.

:class:`FakeLsf` writes one small Python script per command name into a directory that the
tests put first on ``PATH``. Each script reads ``answers.json`` in that directory: per command
a list of answers ``{"stdout", "stderr", "returncode"}``. Every call takes the next answer; the
last one repeats; ``sleep`` seconds delay an answer (a hanging command). Every call's argv is appended to ``calls.jsonl``, so tests can check what molq
asked for.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

COMMANDS = ("bsub", "bjobs", "bkill")

_SCRIPT = '''#!{python}
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
name = os.path.basename(sys.argv[0])
with open(os.path.join(here, "calls.jsonl"), "a") as fh:
    fh.write(json.dumps([name, *sys.argv[1:]]) + "\\n")
if name == "bsub" and not sys.stdin.isatty():
    sys.stdin.read()
with open(os.path.join(here, "answers.json")) as fh:
    answers = json.load(fh)
queue = answers.get(name) or [{{"stdout": "", "stderr": name + ": no recorded answer", "returncode": 255}}]
counter = os.path.join(here, name + ".count")
n = int(open(counter).read()) if os.path.exists(counter) else 0
with open(counter, "w") as fh:
    fh.write(str(n + 1))
answer = queue[min(n, len(queue) - 1)]
if answer.get("sleep"):
    import time
    time.sleep(answer["sleep"])
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(int(answer.get("returncode", 0)))
'''


class FakeLsf:
    """A directory of fake LSF commands answering with recorded text."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.bin = Path(root)
        self.bin.mkdir(parents=True, exist_ok=True)
        for name in COMMANDS:
            path = self.bin / name
            path.write_text(_SCRIPT.format(python=sys.executable))
            path.chmod(0o755)
        self._answers: dict[str, list[dict[str, Any]]] = {}
        self._save()

    def answer(self, command: str, *answers: dict[str, Any]) -> None:
        """From now on ``command`` prints ``answers`` in turn (the last one repeats)."""
        self._answers[command] = [
            {"stdout": a.get("stdout", ""), "stderr": a.get("stderr", ""),
             "returncode": int(a.get("returncode", 0)), "sleep": float(a.get("sleep", 0))}
            for a in answers
        ]
        (self.bin / f"{command}.count").unlink(missing_ok=True)
        self._save()

    def calls(self, command: str | None = None) -> list[list[str]]:
        path = self.bin / "calls.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r[1:] for r in rows if command is None or r[0] == command] if command else rows

    def _save(self) -> None:
        tmp = self.bin / "answers.json.tmp"
        tmp.write_text(json.dumps(self._answers))
        tmp.replace(self.bin / "answers.json")

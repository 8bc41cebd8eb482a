"""Fake scheduler commands on PATH that print recorded scheduler output.

The corpus tests drive molq through its public path (``Cluster``, ``Submitor``) against
scheduler text nobody on this project wrote. :class:`FakeCommands` makes that possible: for each
command name (``squeue``, ``qstat``, ``bjobs``...) it writes a small executable into a private
``bin`` directory that prints the answers it was given, one per call (the last answer repeats),
and logs every call's argv and stdin. Put :attr:`FakeCommands.bin_dir` first on ``PATH`` (the
``fake_commands`` fixture does) and the real scheduler is never reached.

Samples live in TOML files (``tests/corpus/<scheduler>/*.toml``); :func:`load_samples` reads
them. The harness knows nothing about any scheduler: what a sample means is up to the test.

Sample layout (keys are free-form except these)::

    source = "where the text came from"
    transcribed = false          # true when facts were moved into molq's requested format
    command = "squeue"           # the command whose answer this is
    returncode = 0
    stdout = '''...'''
    stderr = ''
    [[also]]                     # other commands' answers in the same scenario (optional)
    command = "sacct"
    stdout = ''
    [expect]                     # what molq must conclude (scheduler-specific keys)
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import tomllib

__all__ = ["FakeCommands", "Answer", "answer_of", "load_samples", "sample_answers", "on_path", "fake_commands"]

# The script every fake command runs: answer number N (capped at the last one) from the
# command's answer file, after appending its argv and stdin to the call log; an answer with
# ``sleep`` seconds is given that much later (a hanging command).
_SCRIPT = """#!{python}
import json, os, select, sys
here = os.path.dirname(os.path.abspath(__file__))
name = os.path.basename(__file__)
data = os.path.join(here, name + ".answers.json")
log = os.path.join(here, name + ".calls.jsonl")
stdin = ""
# Read stdin only when something is written to it: an inherited, idle stdin must not block.
if sys.stdin is not None and not sys.stdin.isatty() and select.select([sys.stdin], [], [], 0.2)[0]:
    stdin = sys.stdin.read()
with open(log, "a", encoding="utf-8") as fh:
    fh.write(json.dumps({{"argv": sys.argv[1:], "stdin": stdin}}) + "\\n")
with open(log, encoding="utf-8") as fh:
    count = sum(1 for _ in fh)
with open(data, encoding="utf-8") as fh:
    answers = json.load(fh)
answer = answers[min(count, len(answers)) - 1]
if answer.get("sleep"):
    import time
    time.sleep(answer["sleep"])
sys.stdout.write(answer["stdout"])
sys.stderr.write(answer["stderr"])
sys.stdout.flush()
sys.exit(answer["returncode"])
"""


class Answer(dict):  # a plain mapping, stored as JSON next to the script
    """One answer of a fake command: ``stdout``, ``stderr``, ``returncode``, and ``sleep``
    seconds before it is given."""

    def __init__(self, stdout: str = "", stderr: str = "", returncode: int = 0, sleep: float = 0.0) -> None:
        super().__init__(stdout=stdout, stderr=stderr, returncode=int(returncode), sleep=float(sleep))


class FakeCommands:
    """A directory of fake commands. ``set(name, ...)`` installs or replaces one.

    ``commands`` are installed at once with no answer: until a test gives them one they fail
    (status 99, saying so), so a backend never reaches the real command by accident.
    """

    def __init__(self, bin_dir: Path, commands: Iterable[str] = ()) -> None:
        self.bin_dir = Path(bin_dir)
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        for name in commands:
            self.set(name, Answer("", f"{name}: no answer recorded for this test\n", 99))

    def set(self, name: str, *answers: Mapping[str, Any] | str, stdout: str | None = None,
            stderr: str = "", returncode: int = 0) -> None:
        """Install ``name``. Give either answers (each an :class:`Answer`, a mapping with the
        same keys, or a plain stdout string) or one answer as keywords. Resets its call log."""
        if stdout is not None or not answers:
            answers = (Answer(stdout or "", stderr, returncode),)
        normal = [Answer(a) if isinstance(a, str) else Answer(a.get("stdout", ""), a.get("stderr", ""),
                                                               a.get("returncode", 0), a.get("sleep", 0))
                  for a in answers]
        script = self.bin_dir / name
        script.write_text(_SCRIPT.format(python=sys.executable), encoding="utf-8")
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        (self.bin_dir / f"{name}.answers.json").write_text(json.dumps(normal), encoding="utf-8")
        (self.bin_dir / f"{name}.calls.jsonl").unlink(missing_ok=True)

    def calls(self, name: str) -> list[dict[str, Any]]:
        """Every call of ``name`` so far: ``{"argv": [...], "stdin": "..."}``."""
        log = self.bin_dir / f"{name}.calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]

    def argvs(self, name: str) -> list[list[str]]:
        """The argv (without the command name) of every call of ``name`` so far."""
        return [call["argv"] for call in self.calls(name)]

    def path_env(self) -> str:
        return f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def load_samples(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(file stem, parsed TOML)`` of every ``*.toml`` sample in ``directory``, sorted."""
    out = []
    for path in sorted(Path(directory).glob("*.toml")):
        with path.open("rb") as fh:
            out.append((path.stem, tomllib.load(fh)))
    return out


def answer_of(sample: Mapping[str, Any]) -> Answer:
    """The answer a sample records (its ``stdout``, ``stderr``, ``returncode`` and ``sleep``)."""
    return Answer(sample.get("stdout", ""), sample.get("stderr", ""), sample.get("returncode", 0),
                  sample.get("sleep", 0))


def sample_answers(sample: Mapping[str, Any]) -> Iterator[tuple[str, Answer]]:
    """The sample's main answer and its ``[[also]]`` answers, as ``(command, answer)``."""
    if "command" in sample:
        yield sample["command"], Answer(sample.get("stdout", ""), sample.get("stderr", ""),
                                        sample.get("returncode", 0))
    for extra in sample.get("also", ()):
        yield extra["command"], Answer(extra.get("stdout", ""), extra.get("stderr", ""),
                                       extra.get("returncode", 0))


def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCommands:
    """Fake commands first on PATH and a private ``MOLQ_HOME``, for the current test."""
    fakes = FakeCommands(tmp_path / "fakebin")
    monkeypatch.setenv("PATH", fakes.path_env())
    monkeypatch.setenv("MOLQ_HOME", str(tmp_path / "molq-home"))
    return fakes


@pytest.fixture
def fake_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCommands:
    """:func:`on_path` as a fixture (import it into a test module to use it)."""
    return on_path(tmp_path, monkeypatch)

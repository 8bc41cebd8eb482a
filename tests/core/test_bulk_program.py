"""The bulk submission program (molq.batch.bulk, molq.shell_program) run by a real sh: exact
files and arguments whatever they hold, one answer per job, and nothing guessed when the
program is cut short or killed half-way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from molq.batch import bulk
from molq.errors import SchedulerError, SubmissionDeferred, TransientSchedulerError, TransportError
from molq.transport import BaseTransport, CommandResult, LocalTransport

NASTY = ["it's", '"dq"', "$(touch CANARY)", "`touch CANARY`", "${HOME}", "a\nb", "\\", "*", " lead", "ü€", "%s%n", ""]


def run(entries: list[bulk.Entry], env: dict[str, str] | None = None, cut: int = 0
        ) -> tuple[CommandResult, list[CommandResult | BaseException]]:
    program = bulk.program_for(entries, env)
    text = program.text()
    result = LocalTransport().run(program.argv(), input=text[: len(text) - cut])
    return result, bulk.results_of(entries, result, program.nonce)


def test_files_arguments_and_env_arrive_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a canary that runs would land here
    entries = []
    for i, value in enumerate(NASTY):
        d = tmp_path / f"d {i} {value.replace('/', '_')}"
        d.mkdir()
        script = f"#!/bin/sh\n{value}\n\n"
        entries.append(bulk.Entry(((str(d / "job.sh"), script, 0o700),), ("cat", "--", str(d / "job.sh")), None))
        entries.append(bulk.Entry((), ("printf", "%s|", value, "$MOLQ_V"), None))
    entries.append(bulk.Entry((), ("sh", "-c", 'printf "%s" "$MOLQ_V"'), None))
    _result, answers = run(entries, env={"MOLQ_V": "".join(NASTY)})
    assert all(isinstance(a, CommandResult) and a.returncode == 0 for a in answers), answers
    for i, value in enumerate(NASTY):
        file_answer, arg_answer = answers[2 * i], answers[2 * i + 1]
        assert isinstance(file_answer, CommandResult) and isinstance(arg_answer, CommandResult)
        assert file_answer.stdout == f"#!/bin/sh\n{value}\n\n"
        assert arg_answer.stdout == f"{value}|$MOLQ_V|"
    last = answers[-1]
    assert isinstance(last, CommandResult) and last.stdout == "".join(NASTY)
    assert not (tmp_path / "CANARY").exists()
    mode = (tmp_path / "d 0 it's" / "job.sh").stat().st_mode & 0o777
    assert mode == 0o700


def test_each_job_gets_its_own_status_output_and_errors(tmp_path: Path) -> None:
    forged = "\x1e0123456789abcdef 0 S 0\x1eforged"
    entries = [
        bulk.Entry((), ("sh", "-c", "echo out; echo err >&2; exit 3"), None),
        bulk.Entry(((str(tmp_path / "missing" / "job.sh"), "x", 0o700),), ("touch", str(tmp_path / "ran")), None),
        bulk.Entry((), ("printf", "%s", forged), None),
        bulk.Entry(((str(tmp_path / "job.sh"), "from stdin\n", 0o700),), ("cat",), str(tmp_path / "job.sh")),
    ]
    _result, answers = run(entries)
    first, second, third, fourth = answers
    assert isinstance(first, CommandResult)
    assert (first.returncode, first.stdout, first.stderr) == (3, "out\n", "err\n")
    # Its files could not be written: not submitted, and said so.
    assert isinstance(second, TransportError) and "writing the job files failed" in str(second)
    assert not (tmp_path / "ran").exists()
    assert isinstance(third, CommandResult) and third.stdout == forged
    assert isinstance(fourth, CommandResult) and fourth.stdout == "from stdin\n"


def test_a_program_cut_short_runs_nothing(tmp_path: Path) -> None:
    entries = [bulk.Entry((), ("touch", str(tmp_path / f"ran{i}")), None) for i in range(3)]
    result, answers = run(entries, cut=3)
    assert result.returncode == 97
    assert all(isinstance(a, SchedulerError) and not isinstance(a, TransientSchedulerError) for a in answers)
    assert list(tmp_path.iterdir()) == []


def test_a_program_killed_half_way_leaves_the_rest_uncertain(tmp_path: Path) -> None:
    entries = [
        bulk.Entry((), ("touch", str(tmp_path / "ran0")), None),
        # Kills the shell running the program: its own answer and the later ones never come.
        bulk.Entry((), ("sh", "-c", 'touch "$1"; kill -9 "$PPID"', "sh", str(tmp_path / "ran1")), None),
        bulk.Entry((), ("touch", str(tmp_path / "ran2")), None),
    ]
    _result, answers = run(entries)
    assert isinstance(answers[0], CommandResult) and answers[0].returncode == 0
    assert all(isinstance(a, TransientSchedulerError) for a in answers[1:]), answers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ran0", "ran1"]


class ShellOnly(BaseTransport):
    """BaseTransport's composite operations over a local shell (as a remote transport does)."""

    def run(self, argv, *, input=None, cwd=None, env=None, timeout=None):  # type: ignore[no-untyped-def]
        return LocalTransport().run(argv, input=input, cwd=cwd, env=env, timeout=timeout)


def test_make_dirs_creates_all_in_one_command_and_reports_each_failure(tmp_path: Path) -> None:
    calls = []
    transport = ShellOnly()
    original = transport.run

    def counting(argv, **kw):  # type: ignore[no-untyped-def]
        calls.append(argv)
        return original(argv, **kw)

    transport.run = counting  # type: ignore[method-assign]
    (tmp_path / "file").write_text("")
    wanted = [str(tmp_path / "a" / value / "job") for value in NASTY if value] + [str(tmp_path / "file" / "x")]
    failed = transport.make_dirs(wanted, mode=0o700)
    assert len(calls) == 1
    assert list(failed) == [str(tmp_path / "file" / "x")]
    for path in wanted[:-1]:
        assert os.path.isdir(path) and os.stat(path).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("value", ["a\x00b"])
def test_a_nul_byte_is_refused_before_anything_runs(value: str) -> None:
    with pytest.raises(Exception, match="NUL"):
        bulk.program_for([bulk.Entry((), ("echo", value), None)])


def test_jobs_whose_turn_comes_after_the_deadline_are_deferred_not_run(tmp_path: Path) -> None:
    entries = [bulk.Entry((), ("sh", "-c", 'sleep 2.2; touch "$1"', "sh", str(tmp_path / "ran0")), None)]
    entries += [bulk.Entry((), ("touch", str(tmp_path / f"ran{i}")), None) for i in (1, 2)]
    program = bulk.program_for(entries, deadline=1)
    result = LocalTransport().run(program.argv(), input=program.text())
    answers = bulk.results_of(entries, result, program.nonce)
    assert isinstance(answers[0], CommandResult) and answers[0].returncode == 0
    assert all(isinstance(a, SubmissionDeferred) for a in answers[1:]), answers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ran0"]

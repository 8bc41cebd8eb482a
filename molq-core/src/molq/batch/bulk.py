"""Many submissions in one command: the program that writes every job's files and runs every
submit command, and the reading of its per-job answers.

Pure: :func:`program_for` builds the program (:mod:`molq.shell_program`) from what the runner
prepared, :func:`results_of` turns its output into one outcome per job. The runner
(:meth:`molq.batch.BatchScheduler.submit_many`) runs it through the transport, so a batch
costs one round trip however many jobs it holds.

Per job, in order: write its files (a fresh job directory: written in place, as
``create_text`` does), then, only if they were written, run its submit command, stdin from its
``job.sh`` when the scheduler reads the script there, else from ``/dev/null``. A job whose
files cannot be written is not submitted; the others go on.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from molq.errors import SchedulerError, SubmissionDeferred, TransientSchedulerError, TransportError
from molq.shell_program import Program, Record, command, parse_records, word
from molq.transport import CommandResult

__all__ = ["Entry", "program_for", "results_of", "WRITE", "SUBMIT", "DEFERRED"]

#: Record stages: the job's files could not be written / the submit command ran / the job's
#: turn came too late (not submitted).
WRITE, SUBMIT, DEFERRED = "W", "S", "D"


@attrs.frozen
class Entry:
    """One job of a bulk submission, ready to run: its files, its submit command, and the
    file its submit command reads on stdin (None: nothing)."""

    files: tuple[tuple[str, str, int], ...]
    argv: tuple[str, ...]
    stdin_path: str | None


def program_for(entries: Sequence[Entry], env: dict[str, str] | None = None,
                deadline: int | None = None) -> Program:
    """The program for ``entries``. With ``deadline`` (seconds), a job whose turn comes later
    than that after the program started is not submitted but reported deferred (the first job
    always goes): a submission never starts long after its record was marked as submitting,
    which is what recovery counts on (``submit_in_flight_seconds``)."""
    program = Program(env=env)
    if deadline is not None:
        program.add(f"molq_until=$(( $(date +%s) + {int(deadline)} ))")
    for i, entry in enumerate(entries):
        late = deadline is not None and i > 0
        if late:
            program.add('if [ "$(date +%s)" -ge "$molq_until" ]; then',
                        f'  : > "$molq_o"; : > "$molq_e"; molq_report {i} {DEFERRED} 0', "else")
        writes = [
            f"printf '%s' {word(text)} > {word(path)} && chmod {mode:o} {word(path)}"
            for path, text, mode in entry.files
        ] or [":"]
        stdin = word(entry.stdin_path) if entry.stdin_path is not None else "/dev/null"
        program.add(
            f': > "$molq_o"; if {{ {" && ".join(writes)}; }} 2> "$molq_e"; then',
            f'  {command(entry.argv)} < {stdin} > "$molq_o" 2> "$molq_e"; molq_report {i} {SUBMIT} $?',
            f"else molq_report {i} {WRITE} $?; fi",
        )
        if late:
            program.add("fi")
    return program


def results_of(
    entries: Sequence[Entry], result: CommandResult | None, nonce: str, failure: str = ""
) -> list[CommandResult | BaseException]:
    """One outcome per entry: the submit command's own result (for the dialect's
    ``parse_submit``), or the error that stands for it.

    A job without a record never reached a verdict: when its submit command may have run (the
    program ran, or the connection broke while it did), the submission is uncertain, never
    failed -- the scheduler may hold the job, and adoption looks for it by its molq tag.
    """
    records: dict[int, Record] = parse_records(result.stdout, nonce) if result is not None else {}
    out: list[CommandResult | BaseException] = []
    for i, entry in enumerate(entries):
        rec = records.get(i)
        if rec is None:
            why = failure or (result.stderr.strip() if result is not None else "") or "no answer"
            if result is not None and result.returncode in (97, 98) and not records:
                # The runner refused an incomplete program, or found no scratch space: it ran nothing.
                out.append(SchedulerError(f"the bulk submission did not run: {why}"))
            else:
                out.append(TransientSchedulerError(
                    f"{entry.argv[0]}: no answer for this job from the bulk submission; it may or may "
                    f"not have been accepted ({why})", command=list(entry.argv)))
        elif rec.stage == DEFERRED:
            out.append(SubmissionDeferred("the bulk submission ran out of time before this job; not submitted"))
        elif rec.stage == WRITE:
            out.append(TransportError(f"writing the job files failed: {rec.stderr.strip() or rec.returncode}"))
        else:
            out.append(rec.result(entry.argv))
    return out

"""molq's job wrapper: the POSIX shell body every job runs inside, on every scheduler.

The wrapper records when the job started, runs the user's command in the requested working
directory and environment, and writes the exit code atomically (temp file, then rename) into
the job directory. That exit-code file is the source of truth when a scheduler keeps no
accounting.

Layout of a job directory::

    job.sh        the script the scheduler runs (directives + this wrapper)
    script        the user's inline script, when there is one
    stdout        standard output (unless output_file says otherwise)
    stderr        standard error (unless error_file says otherwise)
    started       the wrapper's pid, created when the job began (its mtime is the start time);
                  local jobs add the process start time: "<pid> <start ticks>"
    exit_code     "<code>\\n" once the job ended (one write; complete only with its newline)
                  (its mtime is the end time)
    begun         local jobs only: created exclusively before anything runs, so a job is
                  started at most once (see molq.local)
    exit_unknown  local jobs only: the exit code could not be written (a full disk)
"""

from __future__ import annotations

import shlex

import attrs

from molq.model import JobSpec

STARTED_FILE = "started"
EXIT_CODE_FILE = "exit_code"
SCRIPT_FILE = "job.sh"
INLINE_SCRIPT_FILE = "script"
NEVER_RAN_FILE = "never_ran"
BEGUN_FILE = "begun"
EXIT_UNKNOWN_FILE = "exit_unknown"
STDOUT_FILE = "stdout"
STDERR_FILE = "stderr"

q = shlex.quote


def join_path(directory: str, name: str) -> str:
    """Join POSIX paths without touching the local filesystem (the job dir may be remote)."""
    return name if name.startswith("/") else directory.rstrip("/") + "/" + name


def stdout_path(spec: JobSpec, job_dir: str) -> str:
    out = spec.execution.output_file
    return join_path(spec.cwd or job_dir, out) if out else join_path(job_dir, STDOUT_FILE)


def stderr_path(spec: JobSpec, job_dir: str) -> str:
    err = spec.execution.error_file
    return join_path(spec.cwd or job_dir, err) if err else join_path(job_dir, STDERR_FILE)


def inline_script_path(job_dir: str) -> str:
    return join_path(job_dir, INLINE_SCRIPT_FILE)


def render_command(spec: JobSpec, job_dir: str) -> str:
    """The shell line that runs the user's work. User text only ever appears quoted."""
    if spec.argv is not None:
        # exec in a subshell: argv names a program, never a shell builtin or function
        return "(exec " + " ".join(q(a) for a in spec.argv) + ")"
    if spec.command is not None:
        return "/bin/sh -c " + q(spec.command)
    assert spec.script is not None
    if spec.script.variant == "inline":
        path = q(inline_script_path(job_dir))
        if (spec.script.text or "").startswith("#!"):
            return path
        return f"/bin/sh {path}"
    path = q(spec.script.file_path or "")
    return f"if [ -x {path} ]; then {path}; else /bin/sh {path}; fi"


def render_wrapper_body(
    spec: JobSpec,
    job_dir: str,
    *,
    pre_run: str = "",
    redirect: bool = False,
    local: LocalWrapping | None = None,
) -> str:
    """The wrapper lines placed after a scheduler's directives (or alone, locally).

    With ``redirect`` the wrapper opens the job's stdout/stderr files itself (the local
    scheduler starts it with /dev/null, which keeps the submitter's part of a start short); if
    they cannot be opened the job never runs and ``never_ran`` says why.

    ``local`` adds what only the local scheduler needs: the once-only start token, private
    output files, the process identity in ``started`` and the hand-over to the next queued job.
    """
    # Shell builtins only, apart from the user's command: the start is recorded by creating a
    # file (its mtime is the start time; its content the wrapper's pid), and the exit code is
    # one `printf` of "<code>\n" -- a single write(2), and readers treat the file as complete
    # only once its newline is there -- so no extra process runs and trivial jobs stay cheap.
    # $molq_dir (the job directory) and $molq_task (".<index>" for an array task, else empty)
    # are stable names that a dialect's pre_run may use. Array tasks share one job directory,
    # so each writes its own started/exit_code files.
    lines = [
        f"# molq job {spec.job_id}",
        f"molq_dir={q(job_dir)}",
        'molq_task="${SLURM_ARRAY_TASK_ID:-${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-}}}"',
        'if [ -z "$molq_task" ] && [ "${LSB_JOBINDEX:-0}" != 0 ]; then molq_task="$LSB_JOBINDEX"; fi',
        'molq_task="${molq_task:+.$molq_task}"',
    ]
    done = "exit 127"
    if local is not None:
        # Whoever creates `begun` first decides: this wrapper (the job runs) or a spool pass
        # that found the job claimed by a process that died before starting it (never runs).
        # `true`, not `:`: a failed redirection of a special builtin would end the shell.
        lines += [
            "umask 077",  # molq's files (and the job's output files) are private
            f"set -C; if ! true 2>/dev/null > \"$molq_dir/{BEGUN_FILE}\"; then exit 0; fi; set +C",
            "trap 'molq_sig=1' HUP INT TERM",  # keep going after the job to record and hand over
            "molq_handover() {",
            local.handover if local.handover else "    :",
            "}",
        ]
        done = "molq_handover; exit 127"
    if redirect:
        out, err = stdout_path(spec, job_dir), stderr_path(spec, job_dir)
        # `command` keeps a failed redirection from ending the shell before it can say why.
        lines.append(
            f"if ! command exec >>{q(out)} 2>>{q(err)}; then "
            f'printf "%s\\n" {q(f"cannot open the job output files {out} and {err}")} '
            f'> "$molq_dir/{NEVER_RAN_FILE}"; {done}; fi'
        )
    if local is not None:
        # The process start time (field 22 of /proc/PID/stat) makes the identity; builtins only.
        lines += [
            "molq_st=; { IFS= read -r molq_s; } 2>/dev/null < /proc/$$/stat || :",
            "molq_s=${molq_s##*)}; set -f",
            "# shellcheck disable=SC2086 # split the stat fields",
            "set -- $molq_s",
            "set +f; [ $# -lt 20 ] || { shift 19; molq_st=$1; }",
            f'printf "%s %s\\n" "$$" "$molq_st" > "$molq_dir/{STARTED_FILE}$molq_task"',
            f"umask {local.umask:04o}",
        ]
    else:
        # A batch job can run more than once in the same directory (a requeue): the previous
        # attempt's exit code is no evidence about this one, and would decide the job if this
        # attempt dies without writing its own (SIGKILL, node failure). Emptied, not removed
        # (builtins only): an exit-code file without its newline is "not written yet".
        lines.append(
            f'if [ -e "$molq_dir/{EXIT_CODE_FILE}$molq_task" ]; then '
            f': > "$molq_dir/{EXIT_CODE_FILE}$molq_task"; fi'
        )
        lines.append(f'printf "%s\\n" "$$" > "$molq_dir/{STARTED_FILE}$molq_task"')
    for key, value in sorted((spec.execution.env or {}).items()):
        lines.append(f"export {key}={q(value)}")
    if pre_run:
        lines.append(pre_run)
    if spec.cwd:
        cd = f"cd {q(spec.cwd)}"
        lines.append(
            f'if {cd}; then {render_command(spec, job_dir)}; molq_rc=$?; '
            f'else echo "molq: cannot enter working directory" >&2; molq_rc=127; fi'
        )
    else:
        lines.append(f"{render_command(spec, job_dir)}; molq_rc=$?")
    if local is not None:
        # A full disk: say that the code is unknown (an empty file needs no data block).
        lines += [
            "umask 077",
            f'printf "%s\\n" "$molq_rc" 2>/dev/null > "$molq_dir/{EXIT_CODE_FILE}$molq_task" || '
            f'true 2>/dev/null > "$molq_dir/{EXIT_UNKNOWN_FILE}$molq_task"',
            "molq_handover",
        ]
    else:
        lines.append(f'printf "%s\\n" "$molq_rc" > "$molq_dir/{EXIT_CODE_FILE}$molq_task"')
    lines.append('exit "$molq_rc"')
    return "\n".join(lines) + "\n"


def read_whole(body: str) -> str:
    """``body`` as one compound command. A shell runs nothing of a compound command before it
    has read all of it, so a script that reached the scheduler cut short (its submitter was
    killed while writing it to the submit command's stdin) fails with a syntax error instead of
    running its first lines: the job never records a start, nor ends "completed" without
    having run the user's command."""
    return "{\n" + body + "}\n"


@attrs.frozen
class LocalWrapping:
    """What the local scheduler adds to the wrapper: the job's umask (molq's own files are
    created 0600 first) and the shell line that hands the job's cores to the next queued job."""

    umask: int = 0o022
    handover: str = ""


def render_local_script(spec: JobSpec, job_dir: str, local: LocalWrapping | None = None) -> str:
    return "#!/bin/sh\n" + render_wrapper_body(spec, job_dir, redirect=True, local=local or LocalWrapping())


def parse_exit_code(text: str | None) -> int | None:
    """Read an exit-code file; ``None`` when absent or not yet complete (the wrapper writes
    ``"<code>\\n"`` with one write; without its newline the line is still being written)."""
    if text is None or not text.endswith("\n"):
        return None
    text = text.strip()
    if not text.lstrip("-").isdigit():
        return None
    return int(text)


def parse_started(text: str | None, mtime: float | None = None) -> tuple[float | None, int | None] | None:
    """Read a ``started`` file: (start time, wrapper pid). The start time is the file's mtime
    (pass it when known); the content is the wrapper's pid."""
    if text is None:
        return None
    parts = text.split()
    pid = int(parts[0]) if parts and parts[0].isdigit() else None
    return mtime, pid


def describe_exit(code: int) -> tuple[int | None, str | None]:
    """Split a shell exit status into (signal, reason). 128+N means "killed by signal N"."""
    import signal as _signal

    if 128 < code <= 128 + 64:
        sig = code - 128
        try:
            name = _signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return sig, f"killed by signal {sig} ({name})"
    if code < 0:
        sig = -code
        try:
            name = _signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return sig, f"killed by signal {sig} ({name})"
    if code != 0:
        return None, f"exited with code {code}"
    return None, None

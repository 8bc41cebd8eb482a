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
    started       the wrapper's pid, created when the job began (its mtime is the start time)
    exit_code     "<code>\\n" once the job ended (one write; complete only with its newline)
"""

from __future__ import annotations

import shlex

from molq.model import JobSpec

STARTED_FILE = "started"
EXIT_CODE_FILE = "exit_code"
SCRIPT_FILE = "job.sh"
INLINE_SCRIPT_FILE = "script"
NEVER_RAN_FILE = "never_ran"
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
        if spec.script.text.startswith("#!"):
            return path
        return f"/bin/sh {path}"
    path = q(spec.script.file_path)
    return f"if [ -x {path} ]; then {path}; else /bin/sh {path}; fi"


def render_wrapper_body(spec: JobSpec, job_dir: str, *, pre_run: str = "", redirect: bool = False) -> str:
    """The wrapper lines placed after a scheduler's directives (or alone, locally).

    With ``redirect`` the wrapper opens the job's stdout/stderr files itself (the local
    scheduler starts it with /dev/null, which keeps the submitter's part of a start short); if
    they cannot be opened the job never runs and ``never_ran`` says why.
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
    if redirect:
        out, err = stdout_path(spec, job_dir), stderr_path(spec, job_dir)
        # `command` keeps a failed redirection from ending the shell before it can say why.
        lines.append(
            f"if ! command exec >>{q(out)} 2>>{q(err)}; then "
            f'printf "%s\\n" {q(f"cannot open the job output files {out} and {err}")} '
            f'> "$molq_dir/{NEVER_RAN_FILE}"; exit 127; fi'
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
    lines += [
        f'printf "%s\\n" "$molq_rc" > "$molq_dir/{EXIT_CODE_FILE}$molq_task"',
        'exit "$molq_rc"',
    ]
    return "\n".join(lines) + "\n"


def render_local_script(spec: JobSpec, job_dir: str) -> str:
    return "#!/bin/sh\n" + render_wrapper_body(spec, job_dir, redirect=True)


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

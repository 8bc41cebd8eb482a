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
    usage         local jobs only: the shell's ``times``; its second line is the user and system
                  CPU time of the job's processes (``0m4.98s 0m0.01s``), written before exit_code
                  and, for a job given memory in a private cgroup, its peak memory in bytes
                  (the cgroup's ``memory.max_usage_in_bytes`` or ``memory.peak``) as a third line
    oom_killed    local jobs only: evidence that the job ran out of memory (see below)
    cgroup        local jobs with memory only: the path of the job's private memory cgroup, so
                  that a reader can remove it when the wrapper was killed before it could

Out-of-memory evidence (local jobs): a failed job whose private memory cgroup counted an OOM
kill; a job that died of SIGKILL while the OOM killer killed a process in the wrapper's own
(shared) memory cgroup (``oom_kill`` of cgroup v1 ``memory.oom_control`` or v2
``memory.events``); a job limited with ``ulimit -v`` (no cgroup) that failed with a Python
``MemoryError`` as the last line of its stderr. Anything else is not called out of memory.
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
USAGE_FILE = "usage"
OOM_KILLED_FILE = "oom_killed"
CGROUP_FILE = "cgroup"
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
            # The OOM kills counted in the wrapper's memory cgroup (v1 memory.oom_control, else
            # v2 memory.events: both have an "oom_kill N" line), builtins only; empty where the
            # machine has neither.
            "molq_oom_count() {",
            "    molq_oomn=; molq_cg=/sys/fs/cgroup/memory.events",
            "    { while IFS= read -r molq_l; do case $molq_l in",
            '        *:memory:*) molq_cg="/sys/fs/cgroup/memory${molq_l#*:memory:}/memory.oom_control"; break ;;',
            '        0::*) molq_cg="/sys/fs/cgroup${molq_l#0::}/memory.events" ;;',
            "    esac; done; } 2>/dev/null < /proc/self/cgroup",
            '    { while read -r molq_k molq_v; do [ "$molq_k" != oom_kill ] || molq_oomn=$molq_v; done; } '
            '2>/dev/null < "$molq_cg"',
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
    if local is not None:
        if local.memory_bytes:
            lines += _memory_limit_lines(spec, job_dir, local)
        lines.append("molq_oom_count; molq_oom0=$molq_oomn")
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
            # CPU time of the job's processes (the shell's children: the second line of `times`);
            # a SIGKILL that coincides with a new OOM kill in the cgroup is the
            # kernel's doing. Both before the exit code, whose presence says the job ended.
            "molq_oom_count; molq_oom=",
            'if [ "$molq_rc" = 137 ] && [ -n "$molq_oomn" ] && [ "$molq_oomn" != "$molq_oom0" ]; then molq_oom=1; fi',
        ]
        if local.memory_bytes:
            err = q(stderr_path(spec, job_dir))
            lines += [
                # Its own cgroup: every OOM kill counted there is the job's.
                'if [ "$molq_mem" = cgroup ] && [ "$molq_rc" != 0 ] && [ "${molq_oomn:-0}" != 0 ]; then molq_oom=1; fi',
                # ulimit -v makes an allocation fail instead; only Python's own word counts.
                'if [ "$molq_mem" = rlimit ] && [ "$molq_rc" != 0 ]; then '
                f'case $(tail -n 1 {err} 2>/dev/null) in MemoryError*) molq_oom=1 ;; esac; fi',
                'molq_peak=; if [ "$molq_mem" = cgroup ]; then '
                '{ read -r molq_peak < "$molq_cgnew/memory.peak" || read -r molq_peak < "$molq_cgnew/memory.max_usage_in_bytes"; } 2>/dev/null; '
                # Out of the job's cgroup, then remove it (a process the job left behind keeps it:
                # the spool's reader removes it later).
                'printf "%s\\n" "$$" 2>/dev/null > "$molq_cgup/cgroup.procs"; rmdir "$molq_cgnew" 2>/dev/null; fi',
                f'{{ times; printf "%s\\n" "$molq_peak"; }} 2>/dev/null > "$molq_dir/{USAGE_FILE}$molq_task" || :',
            ]
        else:
            lines.append(f'{{ times; }} 2>/dev/null > "$molq_dir/{USAGE_FILE}$molq_task" || :')
        lines += [
            f'[ -z "$molq_oom" ] || true 2>/dev/null > "$molq_dir/{OOM_KILLED_FILE}$molq_task"',
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


def _memory_limit_lines(spec: JobSpec, job_dir: str, local: LocalWrapping) -> list[str]:
    """Shell lines that put the wrapper (so the job) under its memory limit: a private memory
    cgroup where the machine lets this user make one (cgroup v1's memory controller, or v2 with
    memory enabled for children of the wrapper's cgroup), else ``ulimit -v``. ``$molq_mem`` says
    which (``cgroup`` or ``rlimit``); a job whose limit cannot be set at all never runs."""
    limit = int(local.memory_bytes or 0)
    kib = max(1, -(-limit // 1024))
    never = q(f"cannot limit the job's memory to {limit} bytes on this host")
    lines = [
        "molq_mem=; molq_cgup=; molq_cgnew=",
        "molq_memory_cgroup() {",
        "    molq_cgv=",
        "    { while IFS= read -r molq_l; do case $molq_l in",
        '        *:memory:*) molq_cgup="/sys/fs/cgroup/memory${molq_l#*:memory:}"; molq_cgv=1; break ;;',
        '        0::*) molq_cgup="/sys/fs/cgroup${molq_l#0::}"; molq_cgv=2 ;;',
        "    esac; done; } 2>/dev/null < /proc/self/cgroup",
        '    [ -n "$molq_cgv" ] || return 1',
        '    molq_cgup=${molq_cgup%/}',
        '    if [ "$molq_cgv" = 2 ]; then',
        '        molq_sc=; { read -r molq_sc < "$molq_cgup/cgroup.subtree_control"; } 2>/dev/null',
        '        case " $molq_sc " in *" memory "*) ;; *) return 1 ;; esac',
        "    fi",
        f'    molq_cgnew="$molq_cgup/molq-{spec.job_id}$molq_task-$$"',
        '    mkdir "$molq_cgnew" 2>/dev/null || return 1',
        '    if [ "$molq_cgv" = 1 ]; then',
        f'        printf "%s\\n" {limit} 2>/dev/null > "$molq_cgnew/memory.limit_in_bytes" &&',
        # No swap beyond the limit, where the kernel accounts swap (else the job swaps instead).
        f'        {{ printf "%s\\n" {limit} 2>/dev/null > "$molq_cgnew/memory.memsw.limit_in_bytes" || :; }}',
        "    else",
        f'        printf "%s\\n" {limit} 2>/dev/null > "$molq_cgnew/memory.max" &&',
        '        { printf "0\\n" 2>/dev/null > "$molq_cgnew/memory.swap.max" || :; }',
        '    fi && printf "%s\\n" "$$" 2>/dev/null > "$molq_cgnew/cgroup.procs" || {',
        '        rmdir "$molq_cgnew" 2>/dev/null; molq_cgnew=; return 1; }',
        f'    printf "%s\\n" "$molq_cgnew" 2>/dev/null > "$molq_dir/{CGROUP_FILE}$molq_task"',
        "}",
    ]
    if local.memory_method == "auto":
        lines.append("if molq_memory_cgroup; then molq_mem=cgroup; fi")
    lines.append(
        f'if [ -z "$molq_mem" ]; then if ulimit -v {kib} 2>/dev/null; then molq_mem=rlimit; else '
        f'printf "%s\\n" {never} > "$molq_dir/{NEVER_RAN_FILE}"; molq_handover; exit 127; fi; fi'
    )
    return lines


@attrs.frozen
class LocalWrapping:
    """What the local scheduler adds to the wrapper: the job's umask (molq's own files are
    created 0600 first), the shell line that hands the job's cores to the next queued job, and
    the job's memory limit with how to enforce it (``auto``: a private cgroup where the machine
    allows one, else ``ulimit -v``; ``rlimit``: ``ulimit -v`` only)."""

    umask: int = 0o022
    handover: str = ""
    memory_bytes: int | None = None
    memory_method: str = "auto"


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


def parse_times_line(text: str | None) -> float | None:
    """CPU seconds (user + system) from a line of the shell's ``times`` (``0m4.980s 0m0.010s``)."""
    import re

    if not text:
        return None
    found = re.findall(r"(\d+)m(\d+(?:[.,]\d+)?)s", text)
    if len(found) != 2:
        return None
    return sum(int(m) * 60 + float(sec.replace(",", ".")) for m, sec in found)


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

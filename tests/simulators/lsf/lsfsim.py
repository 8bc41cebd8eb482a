"""A small LSF simulator for tests: ``bsub``, ``bjobs``, ``bkill``, ``bstop``, ``bresume`` and
``brequeue`` that run jobs for real, and ``bparams -a`` (``max_array_size`` in the config is
its ``MAX_JOB_ARRAY_SIZE``: an array whose largest index exceeds it is refused).

State lives in ``$MOLQ_LSFSIM_HOME/state.json`` (replaced atomically; writers hold an fcntl
lock on ``state.lock``). There is no daemon: every command first "advances the world" (starts
jobs whose dependencies are met, forgets jobs finished longer than ``clean_period`` ago), and
every started job element gets a small detached monitor process that runs it in its own
session, enforces the run limit (SIGUSR2, then SIGKILL), carries out ``bkill`` (SIGINT,
SIGTERM, SIGKILL) and ``brequeue`` (kill, then back to PEND with TERM_REQUEUE_OWNER, to be
dispatched again) and records how it ended. ``bstop``/``bresume`` stop and continue the job's
process group (USUSP and back to RUN). Only the owner may kill, stop or requeue a job
("User permission denied" otherwise).

Settings come from ``$MOLQ_LSFSIM_HOME/config.json`` (see DEFAULTS). ``minute_seconds``
shrinks LSF's minutes so ``-W 1`` can be tested in a second. A file ``down`` in the home (or
``MOLQ_LSFSIM_DOWN=1``) simulates an outage: every command prints the file's text (default
``LSF is down. Please wait ...``) and exits 255. ``MOLQ_LSFSIM_USER`` overrides the user name.
Output formats follow the IBM Spectrum LSF 10.1 command reference.

Usage is measured for real: the monitor reads the CPU time and peak memory of the job's
processes (its reaped children's rusage) when the job ends; ``bjobs -o`` prints ``cpu_used``
with one decimal (``0.3 second(s)``), ``run_time`` in whole seconds, ``max_mem``/``memlimit``
with a unit (``12 Mbytes``), and times as ``hh:mm:ss`` under ``-hms``. ``unit_for_limits``
(config, default KB) is the unit of a bare ``-M`` number, as ``LSF_UNIT_FOR_LIMITS`` is.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time

DEFAULTS = {
    "queues": ["normal", "long"], "default_queue": "normal", "restricted_queues": [],
    "slots": 64, "max_slots_per_job": 64, "clean_period": 3600, "minute_seconds": 60,
    "kill_interval": 1.0, "runlimit_grace": 2.0, "max_array_size": 1000, "unit_for_limits": "KB",
}
FINISHED = ("DONE", "EXIT")
STARTED = ("RUN", "USUSP", "SSUSP", "DONE", "EXIT")
REASON_DEP_WAIT = "Job dependency condition not satisfied"
REASON_DEP_NEVER = "Dependency condition invalid or never satisfied"
REASON_HELD = "The job was suspended by the user while pending"
REASON_LIMIT = "The job array has reached its job slot limit"
REASON_SLOTS = "Not enough job slot(s)"
REASON_NEW = "New job is waiting for scheduling"
TERM_OWNER = "TERM_OWNER: job killed by owner"
TERM_RUNLIMIT = "TERM_RUNLIMIT: job killed after reaching LSF run time limit"
TERM_CWD = ("TERM_CWD_NOTEXIST: current working directory is not accessible or does not exist "
            "on the execution host")
TERM_LOST = "TERM_EXTERNAL_SIGNAL: job killed by a signal external to LSF"
TERM_REQUEUE = "TERM_REQUEUE_OWNER: job killed and requeued by owner"
#: States of a dispatched element whose processes exist (running or stopped).
ON_HOST = ("RUN", "USUSP", "SSUSP")
FIELDS = ("jobid", "jobindex", "job_name", "stat", "user", "queue", "proj_name", "job_description",
          "exit_code", "exit_reason", "pend_reason", "from_host", "exec_host", "submit_time",
          "start_time", "finish_time", "command", "dependency", "slots", "runtimelimit",
          "cpu_used", "run_time", "max_mem", "memlimit")
ALIASES = {"id": "jobid", "name": "job_name", "proj": "proj_name", "project": "proj_name",
           "nreq_slot": "slots"}


class Refused(Exception):
    """A command-line or submission error, printed as LSF prints it (exit 255)."""


# -- state ----------------------------------------------------------------------------------------

def home() -> str:
    path = os.environ.get("MOLQ_LSFSIM_HOME")
    if not path:
        raise Refused("lsfsim: MOLQ_LSFSIM_HOME is not set")
    os.makedirs(os.path.join(path, "spool"), exist_ok=True)
    return path


def config(root: str) -> dict:
    cfg = dict(DEFAULTS)
    try:
        with open(os.path.join(root, "config.json")) as fh:
            cfg.update(json.load(fh))
    except FileNotFoundError:
        pass
    return cfg


def read_state(root: str) -> dict:
    try:
        with open(os.path.join(root, "state.json")) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {"next_id": 1001, "jobs": {}}


def write_state(root: str, state: dict) -> None:
    tmp = os.path.join(root, f"state.json.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(state, fh)
    os.replace(tmp, os.path.join(root, "state.json"))


class Locked:
    """Exclusive access to the state for one read-modify-write."""

    def __init__(self, root: str, write: bool = True) -> None:
        self.root, self.write = root, write

    def __enter__(self) -> dict:
        self.fd = os.open(os.path.join(self.root, "state.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.state = read_state(self.root)
        return self.state

    def __exit__(self, exc_type, *_exc) -> None:
        try:
            if exc_type is None and self.write:
                write_state(self.root, self.state)
        finally:
            os.close(self.fd)


def user_name() -> str:
    return os.environ.get("MOLQ_LSFSIM_USER") or pwd.getpwuid(os.getuid()).pw_name


def proc_alive(ident) -> bool:
    """Whether the process (pid, start ticks) still runs (zombies and reused pids do not)."""
    if not ident:
        return False
    try:
        with open(f"/proc/{ident[0]}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and int(fields[19]) == ident[1]


def proc_ident(pid: int) -> list:
    """(pid, start ticks) of a child we just started (it cannot have been reaped yet)."""
    with open(f"/proc/{pid}/stat") as fh:
        return [pid, int(fh.read().rsplit(")", 1)[1].split()[19])]


def lsf_time(ts) -> str:
    return "" if ts is None else time.strftime("%b %e %H:%M", time.localtime(ts))


# -- the world ------------------------------------------------------------------------------------

def condition(state: dict, func: str, jid: str) -> str:
    """'yes', 'wait' or 'never' for one dependency function on one job (all its elements)."""
    job = state["jobs"].get(jid)
    if job is None:
        return "never"
    stats = [e["stat"] for e in job["elements"].values()]
    if func == "done":
        ok, bad = all(s == "DONE" for s in stats), any(s == "EXIT" for s in stats)
    elif func == "exit":
        ok, bad = all(s == "EXIT" for s in stats), any(s == "DONE" for s in stats)
    elif func == "started":
        ok, bad = all(s in STARTED for s in stats), False
    else:  # ended
        ok, bad = all(s in FINISHED for s in stats), False
    return "yes" if ok else "never" if bad else "wait"


_TOKEN = re.compile(r"\s*(?:(&&|\|\||\(|\)|!)|(done|exit|started|ended)\(\s*(\d+)\s*\))")


def parse_dependency(expr: str) -> list:
    """Tokens of a -w expression (numeric job ids only); raises Refused on bad syntax."""
    tokens, pos = [], 0
    while pos < len(expr.rstrip()):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise Refused("Dependency condition syntax error. Job not submitted.")
        tokens.append(m.group(1) or (m.group(2), m.group(3)))
        pos = m.end()
    evaluate([t if isinstance(t, str) else "yes" for t in tokens])  # syntax check
    return tokens


def evaluate(tokens: list) -> str:
    """Three-valued &&/||/! over 'yes'/'wait'/'never' (precedence: ! then && then ||)."""
    pos = 0

    def atom():
        nonlocal pos
        if pos >= len(tokens):
            raise Refused("Dependency condition syntax error. Job not submitted.")
        tok = tokens[pos]
        pos += 1
        if tok == "!":
            return {"yes": "never", "never": "yes", "wait": "wait"}[atom()]
        if tok == "(":
            value = disj()
            if pos >= len(tokens) or tokens[pos] != ")":
                raise Refused("Dependency condition syntax error. Job not submitted.")
            pos += 1
            return value
        if tok in ("yes", "wait", "never"):
            return tok
        raise Refused("Dependency condition syntax error. Job not submitted.")

    def conj():
        nonlocal pos
        values = [atom()]
        while pos < len(tokens) and tokens[pos] == "&&":
            pos += 1
            values.append(atom())
        return "never" if "never" in values else "wait" if "wait" in values else "yes"

    def disj():
        nonlocal pos
        values = [conj()]
        while pos < len(tokens) and tokens[pos] == "||":
            pos += 1
            values.append(conj())
        return "yes" if "yes" in values else "wait" if "wait" in values else "never"

    value = disj()
    if pos != len(tokens):
        raise Refused("Dependency condition syntax error. Job not submitted.")
    return value


def advance(root: str, state: dict, cfg: dict) -> None:
    """Forget old jobs, notice dead monitors, start every job that may start now."""
    now = time.time()
    for jid in list(state["jobs"]):
        els = state["jobs"][jid]["elements"].values()
        if all(e["stat"] in FINISHED and e["finish"] < now - cfg["clean_period"] for e in els):
            del state["jobs"][jid]
    for jid, job in state["jobs"].items():
        for index, e in job["elements"].items():
            if e["stat"] in ON_HOST and not proc_alive(e.get("monitor")):
                try:  # the monitor died (killed by hand?): do not leave its job behind
                    with open(os.path.join(root, "spool", f"{jid}.{index}.pid")) as fh:
                        os.killpg(int(fh.read()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
                finish(e, "EXIT", None, TERM_LOST)
    used = sum(job["slots"] for job in state["jobs"].values()
               for e in job["elements"].values() if e["stat"] in ON_HOST)
    for jid in sorted(state["jobs"], key=int):
        job = state["jobs"][jid]
        pending = [(i, e) for i, e in sorted(job["elements"].items(), key=lambda kv: int(kv[0]))
                   if e["stat"] == "PEND"]
        if not pending:
            continue
        verdict = "yes"
        if job["dependency"]:
            verdict = evaluate([t if isinstance(t, str) else condition(state, t[0], t[1])
                                for t in job["dependency"]])
        running = sum(1 for e in job["elements"].values() if e["stat"] in ON_HOST)
        for index, e in pending:
            if verdict != "yes":
                e["reason"] = REASON_DEP_NEVER if verdict == "never" else REASON_DEP_WAIT
            elif job["limit"] and running >= job["limit"]:
                e["reason"] = REASON_LIMIT
            elif used + job["slots"] > cfg["slots"]:
                e["reason"] = REASON_SLOTS
            else:
                dispatch(root, jid, index, e)
                running += 1
                used += job["slots"]


def dispatch(root: str, jid: str, index: str, element: dict) -> None:
    monitor = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--monitor", root, jid, index],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(root, "monitor.log"), "ab"), start_new_session=True, close_fds=True,
    )
    element.update(stat="RUN", start=time.time(), reason="", monitor=proc_ident(monitor.pid))


def finish(element: dict, stat: str, code, reason: str) -> None:
    element.update(stat=stat, code=code, exit_reason=reason, finish=time.time(), reason="")


def monitor(root: str, jid: str, index: str) -> None:
    """Run one job element to its end (a detached process of its own)."""
    with Locked(root, write=False) as state:  # waits until the dispatcher has committed
        job = state["jobs"][jid]
    cfg, start = config(root), job["elements"][index]["start"]
    with open(os.path.join(root, "spool", f"{jid}.json")) as fh:
        spool = json.load(fh)
    env = dict(spool["env"], LSB_JOBID=jid, LSB_JOBINDEX=index, LSB_JOBNAME=job["name"],
               LSB_QUEUE=job["queue"], LS_SUBCWD=job["cwd"])

    def path(pattern):
        return pattern.replace("%J", jid).replace("%I", index) if pattern else os.devnull

    def sink(pattern):
        try:
            return open(path(pattern), "ab")
        except OSError:  # LSF would mail the output instead
            return open(os.devnull, "ab")

    outcome, usage = None, None
    out = sink(job["out"])
    err = sink(job["err"]) if job["err"] else out
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", spool["command"]], cwd=job["cwd"], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
    except OSError:
        outcome = ("EXIT", 1, TERM_CWD)
    if outcome is None:
        with open(os.path.join(root, "spool", f"{jid}.{index}.pid"), "w") as fh:
            fh.write(str(proc.pid))  # lets test harnesses clean up stray jobs
        deadline = start + job["runlimit"] * cfg["minute_seconds"] if job["runlimit"] else None
        kill_flag = os.path.join(root, "spool", f"{jid}.{index}.kill")
        requeue_flag = os.path.join(root, "spool", f"{jid}.{index}.requeue")
        plan, why = [], None  # plan: [(when, signal)] still to send
        while proc.poll() is None:
            now = time.time()
            if why is None and os.path.exists(requeue_flag):
                os.unlink(requeue_flag)
                why, plan = TERM_REQUEUE, [(now, signal.SIGCONT), (now, signal.SIGKILL)]
            elif why is None and os.path.exists(kill_flag):
                step = cfg["kill_interval"]
                # A stopped job must run again to see its signals.
                why, plan = TERM_OWNER, [(now, signal.SIGCONT), (now, signal.SIGINT),
                                         (now + step, signal.SIGTERM), (now + 2 * step, signal.SIGKILL)]
            elif why is None and deadline is not None and now >= deadline:
                grace = now + cfg["runlimit_grace"]
                why, plan = TERM_RUNLIMIT, [(now, signal.SIGUSR2), (grace, signal.SIGKILL)]
            while plan and plan[0][0] <= now:
                try:
                    os.killpg(proc.pid, plan.pop(0)[1])
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        rc = proc.returncode
        # The job's processes are this monitor's reaped descendants: their rusage is the job's.
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        usage = {"cpu": used.ru_utime + used.ru_stime, "maxrss_kb": used.ru_maxrss}
        if why:  # a killed job is killed whole: no process of its group survives
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        code = 128 - rc if rc < 0 else rc
        outcome = ("EXIT", code, why) if why else ("DONE" if code == 0 else "EXIT", code, "")
    with Locked(root) as state:
        element = state["jobs"][jid]["elements"][index]
        if outcome[2] == TERM_REQUEUE:
            # Back in the queue with its submit time; advance() dispatches it again.
            element.update(stat="PEND", start=None, finish=None, code=None, monitor=None,
                           exit_reason="", reason=REASON_NEW, requeued=element.get("requeued", 0) + 1)
        elif element["stat"] in ON_HOST:
            finish(element, *outcome)
            if usage is not None:
                element.update(usage)
        advance(root, state, config(root))


# -- commands -------------------------------------------------------------------------------------

BSUB_VALUE = {"-n", "-R", "-M", "-W", "-q", "-P", "-J", "-Jd", "-w", "-o", "-e", "-oo", "-eo",
              "-gpu", "-u", "-cwd", "-sp", "-U", "-G", "-m", "-L", "-app", "-g", "-sla"}
BSUB_FLAG = {"-x", "-N", "-B", "-H", "-r", "-rn", "-K"}


def parse_bsub_args(argv: list, opts: dict) -> list:
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        flag = argv[i]
        if flag in BSUB_FLAG:
            opts[flag] = True
        elif flag in BSUB_VALUE:
            if i + 1 >= len(argv):
                raise Refused(f"{flag}: option requires an argument. Job not submitted.")
            if flag == "-R":
                opts.setdefault("-R*", []).append(argv[i + 1])
            else:
                opts[flag] = argv[i + 1]
            i += 1
        else:
            raise Refused(f"bsub: illegal option -- {flag.lstrip('-')}\n"
                          "Usage: bsub [options] command [arguments]")
        i += 1
    return argv[i:]


def positive(text: str, what: str) -> int:
    if not re.fullmatch(r"\d+", text or "") or int(text) < 1:
        raise Refused(f"{text}: Bad {what} specification. Job not submitted.")
    return int(text)


def array_indices(spec: str, cfg: dict) -> list:
    out = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not m:
            raise Refused("Bad job name. Job not submitted.")
        lo, hi, step = int(m.group(1)), int(m.group(2) or m.group(1)), int(m.group(3) or 1)
        out.extend(range(lo, hi + 1, step))
    if not out or min(out) < 1:
        raise Refused("Bad job name. Job not submitted.")
    if max(out) > cfg["max_array_size"]:
        # MAX_JOB_ARRAY_SIZE bounds the largest index (IBM bsub -J: "the maximum job array
        # index can never exceed" it); LSF's text for LSBE_BIG_IDX.
        raise Refused("Job array index too large. Job not submitted.")
    return sorted(set(out))


def bparams(argv: list, root: str, cfg: dict) -> int:
    """``bparams -a``: one ``NAME = value`` line per parameter, as LSF prints them."""
    if argv != ["-a"]:
        raise Refused("bparams: only -a is simulated")
    print(f"lsb.params configuration at {time.strftime('%a %b %d %H:%M:%S %Y')}")
    for name, value in (("DEFAULT_QUEUE", cfg["default_queue"]), ("MBD_SLEEP_TIME", 10),
                        ("SBD_SLEEP_TIME", 7), ("CLEAN_PERIOD", cfg["clean_period"]),
                        ("MAX_JOB_ARRAY_SIZE", cfg["max_array_size"])):
        print(f"    {name} = {value}")
    return 0


def bsub(argv: list, root: str, cfg: dict) -> int:
    opts: dict = {}
    command = parse_bsub_args(argv, opts)
    if not command:
        # No command: the job is the script on standard input, with embedded #BSUB options.
        text = sys.stdin.read()
        embedded: dict = {}
        for line in text.splitlines():
            if line.startswith("#BSUB"):
                parse_bsub_args(shlex.split(line[5:]), embedded)
        opts = {**embedded, **opts, "-R*": embedded.get("-R*", []) + opts.get("-R*", [])}
        script = os.path.join(root, "spool", f"stdin.{os.getpid()}.{time.time_ns()}.sh")
        with open(script, "w") as fh:
            fh.write(text)
        command = ["/bin/sh", shlex.quote(script)]
    queue = opts.get("-q", cfg["default_queue"])
    if queue not in cfg["queues"]:
        raise Refused(f"{queue}: No such queue. Job not submitted.")
    if queue in cfg["restricted_queues"]:
        raise Refused(f"{queue}: User cannot use the queue. Job not submitted.")
    slots = positive(opts.get("-n", "1"), "processor number")
    if slots > cfg["max_slots_per_job"]:
        raise Refused("Too many processors requested. Job not submitted.")
    runlimit = None
    if "-W" in opts:
        m = re.fullmatch(r"(?:(\d+):)?(\d+)", opts["-W"])
        if not m or (int(m.group(1) or 0) * 60 + int(m.group(2))) < 1:
            raise Refused(f"{opts['-W']}: Bad RUNLIMIT specification. Job not submitted.")
        runlimit = int(m.group(1) or 0) * 60 + int(m.group(2))
    if "-M" in opts and not re.fullmatch(r"\d+(?:[KMGTP]B?)?", opts["-M"], re.I):
        raise Refused(f"{opts['-M']}: Bad memory limit specification. Job not submitted.")
    name_spec = opts.get("-J") or " ".join(command)
    m = re.fullmatch(r"(.*)\[([^\]]+)\](?:%(\d+))?", name_spec, re.S) if "-J" in opts else None
    if m:
        name, indices, limit = m.group(1), array_indices(m.group(2), cfg), int(m.group(3) or 0)
    else:
        name, indices, limit = name_spec, [0], 0
    with Locked(root) as state:
        dependency = parse_dependency(opts["-w"]) if opts.get("-w") else None
        for tok in dependency or []:
            if not isinstance(tok, str) and tok[1] not in state["jobs"]:
                raise Refused(f"{tok[1]}: No matching job found. Job not submitted.")
        jid = str(state["next_id"])
        state["next_id"] += 1
        cwd = opts.get("-cwd") or os.getcwd()
        spool = {"env": dict(os.environ), "command": " ".join(command)}
        with open(os.path.join(root, "spool", f"{jid}.json"), "w") as fh:
            json.dump(spool, fh)
        held = bool(opts.get("-H"))
        state["jobs"][jid] = {
            "name": name, "array": bool(m),
            "desc": opts.get("-Jd", ""), "user": user_name(), "queue": queue,
            "project": opts.get("-P", "default"), "cwd": cwd, "command": " ".join(command),
            "out": opts.get("-oo") or opts.get("-o"), "err": opts.get("-eo") or opts.get("-e"),
            "slots": slots, "runlimit": runlimit, "dependency": dependency,
            "memlimit_kb": memory_kb(opts["-M"], cfg) if "-M" in opts else None,
            "dependency_text": opts.get("-w", ""), "limit": limit, "submit": time.time(),
            "elements": {str(i): {"stat": "PSUSP" if held else "PEND", "start": None, "finish": None,
                                  "code": None, "exit_reason": "", "monitor": None,
                                  "reason": REASON_HELD if held else REASON_NEW} for i in indices},
        }
        advance(root, state, cfg)
    where = "queue" if "-q" in opts else "default queue"
    print(f"Job <{jid}> is submitted to {where} <{queue}>.")
    return 0


def memory_kb(text: str, cfg: dict) -> int:
    """KB of a ``-M`` value: a number in ``unit_for_limits``, or with its own unit."""
    m = re.fullmatch(r"(\d+)([KMGTP]?)B?", text.strip(), re.I)
    assert m, text  # checked by bsub
    unit = (m.group(2) or cfg["unit_for_limits"][:1]).upper()
    return int(m.group(1)) * 1024 ** "KMGTP".index(unit)


def amount(kb) -> str:
    """A memory amount as bjobs prints it (``12 Mbytes``, ``1.2 Gbytes``)."""
    if kb is None:
        return ""
    for unit, scale in (("Gbytes", 1 << 20), ("Mbytes", 1 << 10)):
        if kb >= scale:
            value = kb / scale
            return f"{value:.0f} {unit}" if value >= 10 or value == int(value) else f"{value:.1f} {unit}"
    return f"{kb} Kbytes"


def duration(seconds, hms: bool, decimal: bool) -> str:
    """A bjobs duration: ``0.3 second(s)`` (cpu_used: one decimal) or, under -hms, hh:mm:ss
    with the seconds rounded up."""
    if seconds is None:
        return ""
    if hms:
        total = int(-(-seconds // 1))
        return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"
    return f"{seconds:.1f} second(s)" if decimal else f"{int(seconds)} second(s)"


def field_values(job: dict, jid: str, index: str, e: dict, hms: bool = False) -> dict:
    host = socket.gethostname()
    started = e["start"] is not None
    ran = None
    if started:
        ran = (e["finish"] if e["finish"] is not None else time.time()) - e["start"]
    return {
        "cpu_used": duration(e.get("cpu"), hms, True), "run_time": duration(ran, hms, False),
        "max_mem": amount(e.get("maxrss_kb")), "memlimit": amount(job.get("memlimit_kb")),
        "jobid": jid, "jobindex": index, "stat": e["stat"], "user": job["user"], "queue": job["queue"],
        "job_name": f"{job['name']}[{index}]" if job["array"] else job["name"],
        "proj_name": job["project"], "job_description": job["desc"],
        "exit_code": "" if e["stat"] != "EXIT" or e["code"] is None else str(e["code"]),
        "exit_reason": e["exit_reason"] if e["stat"] == "EXIT" else "",
        "pend_reason": e["reason"] if e["stat"] in ("PEND", "PSUSP") else "",
        "from_host": host, "exec_host": host if started else "",
        "submit_time": lsf_time(job["submit"]), "start_time": lsf_time(e["start"]),
        "finish_time": lsf_time(e["finish"]), "command": job["command"],
        "dependency": job["dependency_text"], "slots": str(job["slots"]),
        "runtimelimit": f"{job['runlimit']:.1f}" if job["runlimit"] else "",
    }


def bjobs(argv: list, root: str, cfg: dict) -> int:
    opts, ids, i = {}, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-a", "-d", "-r", "-p", "-json", "-noheader", "-w", "-hms"):
            opts[arg] = True
        elif arg in ("-o", "-u", "-q", "-J", "-Jd"):
            if i + 1 >= len(argv):
                raise Refused(f"bjobs: option requires an argument -- {arg[1:]}")
            opts[arg] = argv[i + 1]
            i += 1
        elif arg.startswith("-"):
            raise Refused(f"bjobs: illegal option -- {arg[1:]}\nUsage: bjobs [-h] [-V] [-a] ... [jobId ...]")
        else:
            if not re.fullmatch(r"\d+(\[\d+\])?", arg):
                raise Refused(f"{arg}: Illegal job ID.")
            ids.append(arg)
        i += 1
    delimiter, fields = " ", None
    if "-o" in opts:
        spec = opts["-o"]
        dm = re.search(r"delimiter='(.)'", spec)
        if dm:
            delimiter, spec = dm.group(1), spec.replace(dm.group(0), "")
        fields = [ALIASES.get(f.split(":")[0].lower(), f.split(":")[0].lower()) for f in spec.split()]
        bad = [f for f in fields if f not in FIELDS]
        if bad:
            raise Refused(f"{bad[0]}: Illegal field name. Output format is not valid.")
    with Locked(root) as state:
        advance(root, state, cfg)
        snapshot = state["jobs"]  # only read below
    want_user = opts.get("-u", user_name())
    rows, errors = [], []

    def selected(job, e):
        if ids:
            return True
        if want_user != "all" and job["user"] != want_user:
            return False
        if opts.get("-q") and job["queue"] != opts["-q"]:
            return False
        if opts.get("-J") and job["name"] != opts["-J"]:
            return False
        return not opts.get("-Jd") or job["desc"] == opts["-Jd"]

    def state_ok(stat):
        if opts.get("-d"):
            return stat in FINISHED
        if opts.get("-r"):
            return stat == "RUN"
        if opts.get("-p"):
            return stat in ("PEND", "PSUSP")
        return opts.get("-a") or stat not in FINISHED

    wanted = ids or sorted(snapshot, key=int)
    for ident in wanted:
        jid, _, idx = ident.partition("[")
        job = snapshot.get(jid)
        if job is None or (idx and idx.rstrip("]") not in job["elements"]):
            errors.append(f"Job <{ident}> is not found")
            continue
        for index, e in sorted(job["elements"].items(), key=lambda kv: int(kv[0])):
            if (not idx or index == idx.rstrip("]")) and selected(job, e) and state_ok(e["stat"]):
                rows.append(field_values(job, jid, index, e, bool(opts.get("-hms"))))
    if opts.get("-json") and fields:  # -json without -o has no effect (LSF docs)
        records = [{f.upper(): row[f] for f in fields} for row in rows]
        records += [{"ERROR": message} for message in errors]
        print(json.dumps({"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": records}, indent=2,
                         ensure_ascii=False))
        return 255 if errors else 0
    for message in errors:
        print(message, file=sys.stderr)
    if not rows:
        if not errors:
            print("No job found" if opts.get("-a") or opts.get("-d") else "No unfinished job found",
                  file=sys.stderr)
        return 255 if errors else 0
    if fields:
        if not opts.get("-noheader"):
            print(delimiter.join(f.upper() for f in fields))
        for row in rows:
            print(delimiter.join(row[f] or "-" for f in fields))
        return 255 if errors else 0
    if not opts.get("-noheader"):
        print("JOBID   USER    STAT  QUEUE      FROM_HOST   EXEC_HOST   JOB_NAME   SUBMIT_TIME")
    for row in rows:
        name = row["job_name"]
        if len(name) > 10 and not opts.get("-w"):
            name = "*" + name[-9:]
        print(f"{row['jobid']:<7} {row['user']:<7} {row['stat']:<5} {row['queue']:<10} "
              f"{row['from_host'][:11]:<11} {row['exec_host'][:11]:<11} {name:<10} {row['submit_time']}")
    return 255 if errors else 0


def bkill(argv: list, root: str, cfg: dict) -> int:
    ids = [a for a in argv if not a.startswith("-")]
    if not ids or len(ids) != len(argv):
        raise Refused("Usage: bkill [-h] [-V] [-l] ... [jobId | \"jobId[index_list]\" ...]")
    rc = 0
    with Locked(root) as state:
        for ident in ids:
            jid, _, idx = ident.partition("[")
            job = state["jobs"].get(jid)
            chosen = [] if job is None else [
                (i, e) for i, e in job["elements"].items() if not idx or i == idx.rstrip("]")]
            if not chosen:
                print(f"Job <{ident}>: No matching job found", file=sys.stderr)
                rc = 255
                continue
            if job["user"] != user_name():
                print(f"Job <{ident}>: User permission denied", file=sys.stderr)
                rc = 255
                continue
            live = [(i, e) for i, e in chosen if e["stat"] not in FINISHED]
            if not live:
                print(f"Job <{ident}>: Job has already finished", file=sys.stderr)
                rc = 255
                continue
            for index, e in live:
                if e["stat"] in ON_HOST:
                    open(os.path.join(root, "spool", f"{jid}.{index}.kill"), "w").close()
                else:
                    finish(e, "EXIT", None, TERM_OWNER)
            print(f"Job <{ident}> is being terminated")
        advance(root, state, cfg)
    return rc


def _job_control(argv: list, root: str, cfg: dict, usage: str, act) -> int:
    """bstop / bresume / brequeue: ``act(jid, index, element)`` returns the answer's verb or
    an error text for one element."""
    ids = [a for a in argv if not a.startswith("-")]
    if not ids or len(ids) != len(argv):
        raise Refused(f"Usage: {usage} [-h] [-V] [jobId | \"jobId[index_list]\" ...]")
    rc = 0
    with Locked(root) as state:
        advance(root, state, cfg)
        for ident in ids:
            jid, _, idx = ident.partition("[")
            job = state["jobs"].get(jid)
            chosen = [] if job is None else [
                (i, e) for i, e in job["elements"].items() if not idx or i == idx.rstrip("]")]
            if not chosen:
                print(f"Job <{ident}>: No matching job found", file=sys.stderr)
                rc = 255
                continue
            if job["user"] != user_name():
                print(f"Job <{ident}>: User permission denied", file=sys.stderr)
                rc = 255
                continue
            answers = {act(root, jid, i, e) for i, e in chosen}
            done = sorted(a for a in answers if a.startswith("is being"))
            if done:
                print(f"Job <{ident}> {done[0]}")
            else:
                print(f"Job <{ident}>: {sorted(answers)[0]}", file=sys.stderr)
                rc = 255
        advance(root, state, cfg)
    return rc


def _signal_group(root: str, jid: str, index: str, sig: int) -> None:
    try:
        with open(os.path.join(root, "spool", f"{jid}.{index}.pid")) as fh:
            os.killpg(int(fh.read()), sig)
    except (OSError, ValueError):
        pass


def _stop(root: str, jid: str, index: str, e: dict) -> str:
    if e["stat"] in FINISHED:
        return "Job has already finished"
    if e["stat"] == "RUN":
        _signal_group(root, jid, index, signal.SIGSTOP)
        e["stat"] = "USUSP"
    elif e["stat"] == "PEND":
        e.update(stat="PSUSP", reason=REASON_HELD)
    return "is being stopped"


def _resume(root: str, jid: str, index: str, e: dict) -> str:
    if e["stat"] in FINISHED:
        return "Job has already finished"
    if e["stat"] == "USUSP":
        _signal_group(root, jid, index, signal.SIGCONT)
        e["stat"] = "RUN"
    elif e["stat"] == "PSUSP":
        e.update(stat="PEND", reason=REASON_NEW)
    else:
        return "Job is not suspended"
    return "is being resumed"


def _requeue(root: str, jid: str, index: str, e: dict) -> str:
    if e["stat"] not in ON_HOST:
        return "Job has already finished" if e["stat"] in FINISHED else "Job is not running"
    open(os.path.join(root, "spool", f"{jid}.{index}.requeue"), "w").close()
    return "is being requeued"


def bstop(argv: list, root: str, cfg: dict) -> int:
    return _job_control(argv, root, cfg, "bstop", _stop)


def bresume(argv: list, root: str, cfg: dict) -> int:
    return _job_control(argv, root, cfg, "bresume", _resume)


def brequeue(argv: list, root: str, cfg: dict) -> int:
    return _job_control(argv, root, cfg, "brequeue", _requeue)


def main(command: str, argv: list) -> int:
    try:
        if len(argv) == 4 and argv[0] == "--monitor":
            monitor(*argv[1:])
            return 0
        root = home()
        down = os.path.join(root, "down")
        if os.path.exists(down) or os.environ.get("MOLQ_LSFSIM_DOWN"):
            text = open(down).read().strip() if os.path.exists(down) else ""
            print(text or "LSF is down. Please wait ...", file=sys.stderr)
            return 255
        commands = {"bsub": bsub, "bjobs": bjobs, "bkill": bkill, "bstop": bstop,
                    "bresume": bresume, "brequeue": brequeue, "bparams": bparams}
        return commands[command](argv, root, config(root))
    except Refused as exc:
        print(exc, file=sys.stderr)
        return 255


if __name__ == "__main__":
    sys.exit(main("monitor", sys.argv[1:]))

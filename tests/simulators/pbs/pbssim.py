#!/usr/bin/env python3
"""pbssim: a small PBS Professional server for tests (``qsub``, ``qstat``, ``qdel``, ``qrls``).

Jobs really run, as detached local processes. There is no daemon: every command first takes
the server lock (``fcntl``), "advances the world" (collects finished jobs, releases or deletes
jobs waiting on dependencies, starts eligible jobs), does its work and saves the state. Each
running job has a small runner process (``pbssim.py --run``) that plays PBS MoM: it runs the
job script in its own session, enforces walltime (SIGTERM, then SIGKILL after a grace period)
and deletion requests, and writes the job's exit status atomically into the job's directory.

Environment:
  MOLQ_PBSSIM_HOME        state directory (default /tmp/molq-pbssim-<uid>)
  MOLQ_PBSSIM_QUEUES      comma-separated queue names, first is the default (workq,long)
  MOLQ_PBSSIM_KILL_DELAY  seconds between SIGTERM and SIGKILL (default 2)
  MOLQ_PBSSIM_HISTORY     seconds finished jobs stay visible to ``qstat -x`` (default 3600)
  MOLQ_PBSSIM_OUTAGE      commands that fail as if the server were down ("qstat,qdel" or
                          "all"); the file <home>/outage has the same effect.
  MOLQ_PBSSIM_MAX_ARRAY_SIZE  the server's max_array_size, most subjobs in one array job
                          (default 10000, PBS Pro's documented default), shown by ``qstat -Bf``

Formats follow the PBS Professional reference (qstat default/alternate tables, ``-f`` text,
``-f -F json``, error messages such as ``qstat: Unknown Job Id <id>`` with exit status 153).
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time

SERVER = "pbssim"
VERSION = "2022.1.0"
HOST = socket.gethostname().split(".")[0]
WALLTIME_EXIT = -29  # JOB_EXEC_KILL_WALLTIME
RESOURCES = set(
    "select place walltime ncpus mem ngpus nodes cput vmem host software gpu_model nodect".split()
)
DETACHED = {"stdin": subprocess.DEVNULL, "start_new_session": True, "close_fds": True}
# Attributes every job shows and molq never sets.
JOB_DEFAULTS = {"server": SERVER, "Checkpoint": "u", "Keep_Files": "n", "run_count": 0}
ARG_OPTS, FLAG_OPTS = set("aAcCeJklmMNopPqrSuvW"), set("hVfzIX")


class Fail(Exception):
    """A command error: message for stderr and the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def home() -> str:
    return os.environ.get("MOLQ_PBSSIM_HOME") or f"/tmp/molq-pbssim-{os.getuid()}"


def max_array_size() -> int:
    return int(os.environ.get("MOLQ_PBSSIM_MAX_ARRAY_SIZE", "10000"))


def queues() -> list[str]:
    return [q.strip() for q in os.environ.get("MOLQ_PBSSIM_QUEUES", "workq,long").split(",") if q.strip()]


def envf(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def pbs_time(epoch: float | None) -> str | None:
    return None if epoch is None else time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(epoch))


def hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def parse_hms(text: str) -> int | None:
    parts = text.split(":")
    if len(parts) > 3 or not all(p.isdigit() for p in parts):
        return None
    total = 0
    for p in parts:
        total = total * 60 + int(p)
    return total


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def owner(job: dict) -> str:
    return job["Job_Owner"].split("@")[0]


def full_id(raw: str) -> str:
    """``12`` / ``12.pbssim`` / ``12[]`` / ``12[3].pbssim`` -> canonical id with our server."""
    seq = raw.split("@", 1)[0].split(".", 1)[0]
    return f"{seq}.{SERVER}"


class Server:
    """The lock-protected state: ``{"next": int, "jobs": {id: job}}`` in ``state.json``."""

    def __enter__(self) -> Server:
        self.dir = home()
        os.makedirs(os.path.join(self.dir, "jobs"), exist_ok=True)
        self.lock = open(os.path.join(self.dir, "lock"), "a")
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        try:
            with open(os.path.join(self.dir, "state.json")) as fh:
                self.state = json.load(fh)
        except FileNotFoundError:
            self.state = {"next": 1, "jobs": {}}
        self.jobs: dict[str, dict] = self.state["jobs"]
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None or exc[0] is Fail:
                write_atomic(os.path.join(self.dir, "state.json"), json.dumps(self.state))
        finally:
            fcntl.flock(self.lock, fcntl.LOCK_UN)
            self.lock.close()

    def jobdir(self, jid: str) -> str:
        return os.path.join(self.dir, "jobs", jid.replace("[", "_").replace("]", "_"))

    def members(self, jid: str) -> list[str]:
        """The job and, for an array, its subjobs."""
        return [jid] + [k for k, j in self.jobs.items() if j.get("array_id") == jid]

    @staticmethod
    def finish(job: dict, substate: int, comment: str, now: float) -> None:
        """End a job that never ran (deleted while queued or held)."""
        job.update(
            job_state="X" if job.get("array_id") else "F", substate=substate, mtime=now, comment=comment
        )

    # -- the world ---------------------------------------------------------------------------
    def advance(self) -> None:
        now = time.time()
        for jid, job in list(self.jobs.items()):
            if job.get("array"):
                continue
            if job["job_state"] in "RE":
                self.collect(jid, job)
            elif job["job_state"] in "QH":
                self.consider(jid, job, now)
        for jid, job in self.jobs.items():
            if job.get("array"):
                self.update_parent(jid, job)
        for jid, job in list(self.jobs.items()):
            end = job.get("obittime") or job.get("mtime") or now
            if (
                job["job_state"] in "FX"
                and now - end > envf("MOLQ_PBSSIM_HISTORY", 3600)
                and not job.get("array_id")
            ):
                for sub in self.members(jid):
                    self.jobs.pop(sub, None)

    def collect(self, jid: str, job: dict) -> None:
        path = os.path.join(self.jobdir(jid), "result.json")
        if not os.path.exists(path):
            return
        with open(path) as fh:
            res = json.load(fh)
        es, used = res["Exit_status"], res["used"]
        job.update(
            Exit_status=es,
            obittime=res["end"],
            mtime=res["end"],
            job_state="X" if job.get("array_id") else "F",
        )
        ncpus = job["Resource_List"].get("ncpus", 1)
        job["resources_used"] = {"cput": hms(res.get("cput", 0)), "ncpus": ncpus, "walltime": hms(used)}
        if res.get("mem_kb"):
            job["resources_used"]["mem"] = f"{res['mem_kb']}kb"
        if job.get("_deleted"):
            job.update(substate=91, comment=f"Job deleted by {owner(job)}")
        else:
            job["substate"] = 92 if es == 0 else 93
            ran = f"Job run at {pbs_time(job['stime'])} on ({HOST}:ncpus={ncpus})"
            job["comment"] = f"{ran} and {'finished' if es == 0 else 'failed'}"
            if res.get("reason") == "walltime":
                job["comment"] = f"job killed: walltime {used} exceeded limit {job['_walltime']}"

    def target(self, raw: str) -> dict | None:
        key = full_id(raw)
        return self.jobs.get(key) or self.jobs.get(key.replace(".", "[].", 1))

    def dep_verdict(self, job: dict) -> str:
        """The job's ``depend`` list: "go", "wait" or "never" (can no longer be satisfied)."""
        verdict = "go"
        for item in (job.get("depend") or "").split(","):
            kind, _, ids = item.partition(":")
            for raw in filter(None, ids.split(":")):
                t = self.target(raw)
                if t is None:  # purged from history: treat as satisfied
                    continue
                done = t["job_state"] in "FX"
                ran = t.get("stime") is not None
                ok = done and t.get("Exit_status") == 0 and t.get("substate") != 91
                if kind == "after":
                    this = "go" if ran else ("never" if done else "wait")
                elif kind == "afterok":
                    this = "go" if ok else ("never" if done else "wait")
                elif kind == "afternotok":
                    this = ("never" if ok else "go") if done else "wait"
                else:  # afterany: never for a job deleted before it ran
                    this = ("go" if ran else "never") if done else "wait"
                if this == "never":
                    return "never"
                if this == "wait":
                    verdict = "wait"
        return verdict

    def consider(self, jid: str, job: dict, now: float) -> None:
        if job["Hold_Types"] == "u":
            return
        verdict = self.dep_verdict(job) if job.get("depend") else "go"
        if verdict == "never":
            self.finish(job, 91, f"Job deleted as result of dependency on job {job['depend']}", now)
            return
        if verdict == "wait":
            job.update(job_state="H", substate=22, Hold_Types="s")
            return
        job.update(job_state="Q", substate=10, Hold_Types="n")
        parent = self.jobs.get(job.get("array_id") or "")
        if parent and parent.get("_max_run"):
            running = sum(
                1
                for j in self.jobs.values()
                if j.get("array_id") == job["array_id"] and j["job_state"] in "RE"
            )
            if running >= parent["_max_run"]:
                return
        self.start(jid, job, now)

    def start(self, jid: str, job: dict, now: float) -> None:
        jdir = self.jobdir(jid)
        os.makedirs(jdir, exist_ok=True)
        env = {k: v for k, v in job["_env"].items()}
        env.update(
            PBS_JOBID=jid,
            PBS_JOBNAME=job["Job_Name"],
            PBS_QUEUE=job["queue"],
            PBS_ENVIRONMENT="PBS_BATCH",
            PBS_NODEFILE="/dev/null",
        )
        if job.get("array_id"):
            env.update(PBS_ARRAY_INDEX=str(job["array_index"]), PBS_ARRAY_ID=job["array_id"])
        out = job["Output_Path"].split(":", 1)[1]
        err = None if job["Join_Path"] == "oe" else job["Error_Path"].split(":", 1)[1]
        if job.get("array_id"):
            out = out.replace("^array_index^", str(job["array_index"]))
            err = err and err.replace("^array_index^", str(job["array_index"]))
        spec = {
            "script": job["_script"],
            "env": env,
            "stdout": out,
            "stderr": err,
            "cwd": env.get("HOME", "/"),
            "walltime": job.get("_walltime"),
        }
        write_atomic(os.path.join(jdir, "spec.json"), json.dumps(spec))
        runner = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--run", jdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **DETACHED,
        )
        ncpus = job["Resource_List"].get("ncpus", 1)
        job.update(
            job_state="R",
            substate=42,
            stime=now,
            mtime=now,
            session_id=runner.pid,
            exec_host=f"{HOST}/0*{ncpus}",
            exec_vnode=f"({HOST}:ncpus={ncpus})",
            run_count=job.get("run_count", 0) + 1,
            comment=f"Job run at {pbs_time(now)} on ({HOST}:ncpus={ncpus})",
        )

    def update_parent(self, jid: str, job: dict) -> None:
        subs = [j for j in self.jobs.values() if j.get("array_id") == jid]
        if not subs or job["job_state"] == "F":
            return
        states = [s["job_state"] for s in subs]
        started = [s["stime"] for s in subs if s.get("stime")]
        if started and not job.get("stime"):
            job["stime"] = min(started)
        if all(s in "FX" for s in states):
            deleted = any(s.get("substate") == 91 or s.get("Exit_status") is None for s in subs)
            failed = any(s.get("Exit_status") not in (0, None) for s in subs)
            end = max(s.get("mtime") or 0 for s in subs)
            gone = job.get("_deleted") or all(s.get("substate") == 91 for s in subs)
            job.update(
                job_state="F",
                substate=91 if gone else 92,
                mtime=end,
                obittime=end,
                Exit_status=2 if deleted else (1 if failed else 0),
            )
        elif any(s in "RE" for s in states) or started:
            job.update(job_state="B", substate=70)
        else:
            job.update(job_state="H" if all(s == "H" for s in states) else "Q")
        counts = {
            name: sum(1 for s in states if s in letters)
            for name, letters in (("Queued", "QH"), ("Running", "R"), ("Exiting", "E"), ("Expired", "FX"))
        }
        job["array_state_count"] = " ".join(f"{k}:{v}" for k, v in counts.items())
        job["array_indices_remaining"] = (
            ",".join(str(s["array_index"]) for s in subs if s["job_state"] in "QH") or "-"
        )

    # -- views -------------------------------------------------------------------------------
    def public(self, jid: str, job: dict) -> dict:
        """The job as ``qstat -f`` shows it (PBS attribute names, times as dates)."""
        out = {k: v for k, v in job.items() if not k.startswith("_") and v is not None}
        for key in ("ctime", "qtime", "mtime", "stime", "obittime", "etime"):
            if key in out:
                out[key] = pbs_time(out[key])
        if job.get("array_id"):
            out.pop("array_state_count", None)
        order = ["Job_Name", "Job_Owner", "resources_used", "job_state", "queue", "server"]
        return {k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order}


# -- qsub ----------------------------------------------------------------------------------
def getopt(
    argv: list[str], with_arg: set[str], flags: set[str], command: str
) -> tuple[list[tuple[str, str]], list[str]]:
    """POSIX getopt: clustered flags (``-fx``), attached (``-lwalltime=1``) or separate values."""
    opts, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return opts, argv[i + 1 :]
        if not arg.startswith("-") or arg == "-":
            return opts, argv[i:]
        j = 1
        while j < len(arg):
            letter = arg[j]
            if letter in flags:
                opts.append((letter, ""))
                j += 1
            elif letter in with_arg:
                value = arg[j + 1 :]
                if not value:
                    i += 1
                    if i >= len(argv):
                        raise Fail(f"{command}: option requires an argument -- '{letter}'", 2)
                    value = argv[i]
                opts.append((letter, value))
                break
            else:
                raise Fail(f"{command}: invalid option -- '{letter}'\nusage: {command} ...", 2)
        i += 1
    return opts, []


def directives(text: str) -> list[str]:
    """Words of the ``#PBS`` lines before the first command, as PBS reads them."""
    words: list[str] = []
    for line in text.splitlines()[1 if text.startswith("#!") else 0 :]:
        stripped = line.strip()
        if stripped.startswith("#PBS"):
            words += shlex.split(stripped[4:], comments=False)
        elif stripped and not stripped.startswith("#"):
            break
    return words


def split_resources(value: str) -> list[tuple[str, str]]:
    items = []
    for item in value.split(","):
        name, sep, val = item.partition("=")
        if not sep or not name:
            raise Fail("qsub: illegal -l value")
        items.append((name.strip(), val.strip()))
    return items


def check_resource(name: str, value: str) -> None:
    if name not in RESOURCES:
        raise Fail(f"qsub: Unknown resource Resource_List.{name}")
    ok = True
    if name in ("walltime", "cput"):
        ok = parse_hms(value) is not None
    elif name in ("mem", "vmem"):
        ok = re.fullmatch(r"\d+([kmgt]?[bw])?", value, re.I) is not None
    elif name in ("ncpus", "ngpus"):
        ok = value.isdigit()
    elif name == "select":
        ok = all(re.fullmatch(r"(\d+:)?\w+=[^:+]+(:\w+=[^:+]+)*|\d+", c) for c in value.split("+"))
    elif name == "place":
        ok = all(
            p in ("free", "pack", "scatter", "vscatter", "excl", "shared", "exclhost")
            or p.startswith("group=")
            for p in value.split(":")
        )
    if not ok:
        raise Fail("qsub: illegal -l value")


def cmd_qsub(argv: list[str]) -> int:
    opts, rest = getopt(argv, ARG_OPTS, FLAG_OPTS, "qsub")
    if not rest:
        raise Fail("usage: qsub [options] script", 2)
    script_path = os.path.abspath(rest[0])
    try:
        with open(script_path, errors="replace") as fh:
            text = fh.read()
    except OSError:
        raise Fail(f"qsub: script file:: No such file or directory: {rest[0]}", 2) from None
    dir_opts, _ = getopt(directives(text), ARG_OPTS, FLAG_OPTS, "qsub")
    merged: dict[str, str] = {}
    resources: dict[str, str] = {}
    variables: dict[str, str] = {}
    flags: set[str] = set()
    for letter, value in dir_opts + opts:  # command-line options win over directives
        if letter == "l":
            for name, val in split_resources(value):
                check_resource(name, val)
                resources[name] = val
        elif letter == "v":
            for item in value.split(","):
                name, sep, val = item.partition("=")
                variables[name.strip()] = (
                    val.strip().strip("'\"") if sep else os.environ.get(name.strip(), "")
                )
        elif letter in FLAG_OPTS:
            flags.add(letter)
        else:
            merged[letter] = value
    queue = merged.get("q", queues()[0]).split("@", 1)[0]
    if queue not in queues():
        raise Fail("qsub: Unknown queue")
    name = merged.get("N", os.path.basename(script_path))
    if len(name) > 236 or not re.fullmatch(r"[A-Za-z0-9][\x21-\x7e]*", name):
        raise Fail("qsub: illegal -N value")
    array = merged.get("J")
    match = re.fullmatch(r"(\d+)-(\d+)(?::(\d+))?(?:%(\d+))?", array or "")
    if array is not None and (not match or int(match[1]) >= int(match[2])):
        raise Fail("qsub: illegal -J value")
    if match and array is not None:
        count = len(range(int(match[1]), int(match[2]) + 1, int(match[3] or 1)))
        if count > max_array_size():
            raise Fail("qsub: Array job exceeds server or queue size limit")
    priority = merged.get("p", "0")
    if not re.fullmatch(r"[+-]?\d+", priority) or not -1024 <= int(priority) <= 1023:
        raise Fail("qsub: illegal -p value")
    depend = None
    for attr in filter(None, merged.get("W", "").split(",")):
        key, _, val = attr.partition("=")
        if key == "depend":
            depend = val
        elif depend is not None and ":" in attr and "=" not in attr:
            depend += "," + attr  # -W depend=afterok:1,afterany:2 splits on the comma
    with Server() as srv:
        srv.advance()
        for item in filter(None, (depend or "").split(",")):
            kind, _, ids = item.partition(":")
            if kind not in ("after", "afterok", "afternotok", "afterany") or not ids:
                raise Fail("qsub: illegal -W value")
            for raw in ids.split(":"):
                if srv.target(raw) is None:
                    raise Fail(f"qsub: Unknown Job Id {raw}", 153)
        seq = srv.state["next"]
        srv.state["next"] = seq + 1
        jid = f"{seq}[].{SERVER}" if array else f"{seq}.{SERVER}"
        spooled = os.path.join(srv.dir, "jobs", f"{seq}.SC")
        write_atomic(spooled, text)
        os.chmod(spooled, 0o700)
        cwd, now = os.getcwd(), time.time()
        suffix = f"{seq}.^array_index^" if array else str(seq)

        def path(letter: str, kind: str) -> str:
            given = merged.get(letter)
            target = os.path.join(cwd, given) if given else os.path.join(cwd, f"{name}.{kind}{suffix}")
            return f"{HOST}:{target}"

        env = {k: os.environ[k] for k in ("HOME", "PATH", "LANG", "SHELL") if k in os.environ}
        user = getpass.getuser()
        env.update(
            USER=user,
            LOGNAME=user,
            PBS_O_WORKDIR=cwd,
            PBS_O_HOME=env.get("HOME", ""),
            PBS_O_HOST=HOST,
            PBS_O_PATH=env.get("PATH", ""),
            PBS_O_QUEUE=queue,
            PBS_O_SYSTEM="Linux",
        )
        if "V" in flags:
            env = dict(os.environ) | env
        env.update(variables)
        # Job-wide ncpus becomes a one-chunk select, as PBS Pro converts it; the server sums the
        # chunks' ncpus and mem into the job-wide Resource_List (count x per-chunk amount).
        select = resources.get("select") or f"1:ncpus={resources.get('ncpus', 1)}"
        ncpus, mem_kb, nodect = 0, 0, 0
        for chunk in select.split("+"):
            count = int(chunk.split(":")[0]) if chunk[0].isdigit() else 1
            nodect += count
            found = re.search(r"ncpus=(\d+)", chunk)
            ncpus += count * (int(found[1]) if found else 1)
            found = re.search(r"mem=(\d+)([kmgt]?)b", chunk, re.I)
            if found:
                mem_kb += count * int(found[1]) * 1024 ** "bkmgt".index(found[2].lower() or "b") // 1024
        resource_list = {"place": "pack", **resources, "select": select, "ncpus": ncpus, "nodect": nodect}
        if mem_kb and "mem" not in resources:
            resource_list["mem"] = f"{mem_kb}kb"
        held = "h" in flags
        job = dict(
            JOB_DEFAULTS, Job_Name=name, Job_Owner=f"{user}@{HOST}", queue=queue, Priority=int(priority)
        )
        job.update(
            job_state="H" if held else "Q", substate=20 if held else 10, Hold_Types="u" if held else "n"
        )
        job.update(
            ctime=now, qtime=now, mtime=now, etime=now, Output_Path=path("o", "o"), Error_Path=path("e", "e")
        )
        job.update(
            Join_Path=merged.get("j", "n"), Mail_Points=merged.get("m", "a"), Mail_Users=merged.get("M")
        )
        job.update(Account_Name=merged.get("A"), Rerunable="False" if merged.get("r") == "n" else "True")
        job.update(
            Resource_List=resource_list, depend=depend, project=merged.get("P", "_pbs_project_default")
        )
        job.update(Variable_List={k: v for k, v in env.items() if k.startswith("PBS_O_")} | variables)
        job.update(Submit_arguments=shlex.join(argv), euser=user, egroup=user, _script=spooled, _env=env)
        job["_walltime"] = parse_hms(resources["walltime"]) if "walltime" in resources else None
        if array and match:
            step = int(match[3] or 1)
            job.update(
                array=True,
                array_indices_submitted=array.split("%")[0],
                _max_run=int(match[4]) if match[4] else None,
            )
            srv.jobs[jid] = job
            for idx in range(int(match[1]), int(match[2]) + 1, step):
                sub = {
                    k: v for k, v in job.items() if k not in ("array", "array_indices_submitted", "_max_run")
                }
                sub.update(array_id=jid, array_index=idx)
                srv.jobs[f"{seq}[{idx}].{SERVER}"] = sub
        else:
            srv.jobs[jid] = job
        srv.advance()
    print(jid)
    return 0


# -- qstat ---------------------------------------------------------------------------------
def trunc(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "*"


def cmd_qstat(argv: list[str]) -> int:
    opts, ids = getopt(argv, {"F", "u", "D", "W"}, set("fxtJwaiHrsnE1pB"), "qstat")
    flags = {k for k, _ in opts}
    if "B" in flags:
        return server_status("f" in flags)
    fmt = dict(opts).get("F")
    user = dict(opts).get("u")
    history = "x" in flags or "H" in flags
    rc, errors, selected = 0, [], []
    with Server() as srv:
        srv.advance()
        if ids:
            for raw in ids:
                key = full_id(raw)
                job = srv.jobs.get(key)
                if job is None:
                    errors.append(f"qstat: Unknown Job Id {raw}")
                    rc = 153
                elif job["job_state"] in "FX" and not history:
                    errors.append(
                        f"qstat: {key} Job has finished, use -x or -H to obtain historical job information"
                    )
                    rc = 35
                else:
                    selected.append(key)
                    if "t" in flags and job.get("array"):
                        # -t: an array job's subjobs are listed with it
                        selected += [m for m in srv.members(key)[1:] if history or srv.jobs[m]["job_state"] not in "FX"]
        else:
            for key, job in srv.jobs.items():
                if job.get("array_id") and "t" not in flags:
                    continue
                if job["job_state"] in "FX" and not history:
                    continue
                if user and owner(job) not in user.split(","):
                    continue
                selected.append(key)
        views = {key: srv.public(key, srv.jobs[key]) for key in selected}
    if "f" in flags and fmt == "json":
        doc: dict = {"timestamp": int(time.time()), "pbs_version": VERSION, "pbs_server": SERVER}
        if views:
            doc["Jobs"] = views
        print(json.dumps(doc, indent=4))
    elif "f" in flags:
        for key, view in views.items():
            print(f"Job Id: {key}")
            for name, value in view.items():
                if isinstance(value, dict):
                    if name == "Variable_List":
                        print(f"    {name} = " + ",".join(f"{k}={v}" for k, v in value.items()))
                    else:
                        for sub, val in value.items():
                            print(f"    {name}.{sub} = {val}")
                else:
                    print(f"    {name} = {value}")
            print()
    elif user or flags & set("aiHrsn"):
        if views:
            print(f"\n{SERVER}: \n{'':60}Req'd  Req'd   Elap")
            print("Job ID          Username Queue    Jobname    SessID NDS TSK Memory Time  S Time")
            print("--------------- -------- -------- ---------- ------ --- --- ------ ----- - -----")
        for key, v in views.items():
            res, used = v.get("Resource_List", {}), v.get("resources_used", {})
            print(
                f"{trunc(key, 15):<15} {trunc(owner(v), 8):<8} {trunc(v['queue'], 8):<8} "
                f"{trunc(v['Job_Name'], 10):<10} {str(v.get('session_id', '--')):>6} {res.get('nodect', 1):>3} "
                f"{res.get('ncpus', 1):>3} {res.get('mem', '--'):>6} {res.get('walltime', '--')[:5]:>5} "
                f"{v['job_state']} {used.get('walltime', '--')[:5]:>5}"
            )
    elif views:
        print("Job id            Name             User              Time Use S Queue")
        print("----------------  ---------------- ----------------  -------- - -----")
        for key, v in views.items():
            cput = v.get("resources_used", {}).get("cput", "0")
            print(
                f"{trunc(key, 16):<16}  {trunc(v['Job_Name'], 16):<16} {trunc(owner(v), 16):<16}  "
                f"{cput:>8} {v['job_state']} {trunc(v['queue'], 5)}"
            )
    for line in errors:
        print(line, file=sys.stderr)
    return rc


def server_status(full: bool) -> int:
    """``qstat -B [-f]``: the server's one-line summary, or its attributes (the layout of PBS
    Pro's server attribute listing; see tests/corpus/pbs/samples/limits_*)."""
    with Server() as srv:
        srv.advance()
        states = [job["job_state"] for key, job in srv.jobs.items() if not job.get("array_id")]
    counts = {s: states.count(s) for s in "QHWRETB"}
    if not full:
        print("Server             Max   Tot   Que   Run   Hld   Wat   Trn   Ext Status")
        print("---------------- ----- ----- ----- ----- ----- ----- ----- ----- -----------")
        print(f"{SERVER:<16}     0 {len(states):>5} {counts['Q']:>5} {counts['R']:>5} {counts['H']:>5} "
              f"{counts['W']:>5}     0 {counts['E']:>5} Active")
        return 0
    print(f"Server: {SERVER}")
    for name, value in (
        ("server_state", "Active"), ("server_host", HOST), ("scheduling", "True"),
        ("total_jobs", len(states)),
        ("state_count", f"Transit:0 Queued:{counts['Q']} Held:{counts['H']} Waiting:{counts['W']} "
                        f"Running:{counts['R']} Exiting:{counts['E']} Begun:{counts['B']}"),
        ("default_queue", queues()[0]), ("query_other_jobs", "True"), ("max_array_size", max_array_size()),
        ("pbs_version", VERSION),
    ):
        print(f"    {name} = {value}")
    print()
    return 0


# -- qdel / qrls ---------------------------------------------------------------------------
def cmd_qdel(argv: list[str]) -> int:
    _, ids = getopt(argv, {"W"}, set("x"), "qdel")
    if not ids:
        raise Fail("usage: qdel job_identifier ...", 2)
    rc = 0
    with Server() as srv:
        srv.advance()
        now = time.time()
        for raw in ids:
            key = full_id(raw)
            job = srv.jobs.get(key)
            if job is None:
                print(f"qdel: Unknown Job Id {raw}", file=sys.stderr)
                rc = 153
                continue
            if job["job_state"] in "FX":
                print(f"qdel: Job has finished {raw}", file=sys.stderr)
                rc = 35
                continue
            for member in srv.members(key):
                j = srv.jobs[member]
                j["_deleted"] = True
                if j.get("array"):
                    continue
                if j["job_state"] in "RE":
                    os.makedirs(srv.jobdir(member), exist_ok=True)
                    write_atomic(os.path.join(srv.jobdir(member), "kill"), "qdel\n")
                    j.update(job_state="E", substate=50)
                elif j["job_state"] not in "FX":
                    srv.finish(j, 91, f"Job deleted by {owner(j)}", now)
        srv.advance()
    return rc


def cmd_qrls(argv: list[str]) -> int:
    _, ids = getopt(argv, {"h"}, set(), "qrls")
    rc = 0
    with Server() as srv:
        for raw in ids:
            key = full_id(raw)
            if key not in srv.jobs:
                print(f"qrls: Unknown Job Id {raw}", file=sys.stderr)
                rc = 153
                continue
            for member in srv.members(key):
                if srv.jobs[member]["Hold_Types"] == "u":
                    srv.jobs[member].update(Hold_Types="n", job_state="Q", substate=10)
        srv.advance()
    return rc


# -- the runner (PBS MoM for one job) ------------------------------------------------------
def run_job(jdir: str) -> None:
    with open(os.path.join(jdir, "spec.json")) as fh:
        spec = json.load(fh)

    def sink(path: str | None, fallback: str):
        try:
            return open(path, "w") if path else None
        except OSError:  # PBS keeps undeliverable output in its spool; so do we
            return open(os.path.join(jdir, fallback), "w")

    out = sink(spec["stdout"], "OU")
    err = sink(spec["stderr"], "ER") or out
    with open(spec["script"]) as fh:
        argv = [spec["script"]] if fh.read(2) == "#!" else ["/bin/sh", spec["script"]]
    start = time.time()
    try:
        child = subprocess.Popen(argv, cwd=spec["cwd"], env=spec["env"], stdout=out, stderr=err, **DETACHED)
    except OSError as exc:
        err.write(f"=>> PBS: job failed to start: {exc}\n")
        result = {"Exit_status": -1, "end": time.time(), "used": 0, "reason": "exec"}
        write_atomic(os.path.join(jdir, "result.json"), json.dumps(result))
        return
    reason, kill_at, limit = None, None, spec.get("walltime")
    while child.poll() is None:
        now = time.time()
        if reason is None and os.path.exists(os.path.join(jdir, "kill")):
            reason = "deleted"
        elif reason is None and limit is not None and now - start >= limit:
            reason = "walltime"
            err.write(f"=>> PBS: job killed: walltime {int(now - start)} exceeded limit {limit}\n")
            err.flush()
        if reason and kill_at is None:
            kill_at = now + envf("MOLQ_PBSSIM_KILL_DELAY", 2)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
        elif kill_at is not None and now >= kill_at:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)  # MoM cleans up what the job left behind
    rc = child.returncode
    status = WALLTIME_EXIT if reason == "walltime" else (rc if rc >= 0 else 256 - rc)
    # The job's processes are this runner's reaped descendants: their rusage is the job's
    # (what MoM reports as resources_used.cput and .mem).
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {"Exit_status": status, "end": time.time(), "used": int(time.time() - start), "reason": reason,
              "cput": ru.ru_utime + ru.ru_stime, "mem_kb": ru.ru_maxrss}
    write_atomic(os.path.join(jdir, "result.json"), json.dumps(result))


def outage(command: str) -> bool:
    names = os.environ.get("MOLQ_PBSSIM_OUTAGE", "")
    with contextlib.suppress(OSError):
        with open(os.path.join(home(), "outage")) as fh:
            names += "," + fh.read()
    wanted = {n.strip() for n in names.replace("\n", ",").split(",") if n.strip()}
    return command in wanted or "all" in wanted


COMMANDS = {"qsub": cmd_qsub, "qstat": cmd_qstat, "qdel": cmd_qdel, "qrls": cmd_qrls}


def main(command: str, argv: list[str]) -> int:
    """Run one simulated PBS command; returns its exit status."""
    if command == "--run":
        run_job(argv[0])
        return 0
    if argv == ["--version"]:
        # Every PBS Pro client answers this locally, without asking the server.
        print(f"pbs_version = {VERSION}")
        return 0
    if outage(command):
        print(
            f"Connection refused\n{command}: cannot connect to server {SERVER} (errno=111)", file=sys.stderr
        )
        return 1
    try:
        return COMMANDS[command](argv)
    except Fail as exc:
        print(str(exc), file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--run":
        sys.exit(main("--run", sys.argv[2:]))
    sys.exit(main(os.path.basename(sys.argv[0]), sys.argv[1:]))

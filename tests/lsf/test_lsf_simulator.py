"""The LSF simulator itself: documented output formats, errors and robustness.

The molq tests above trust the simulator to behave like LSF; these tests pin that behaviour.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import pytest
from lsfsim_harness import LsfSimulator


def test_bsub_messages(lsf_sim: LsfSimulator):
    done = lsf_sim.run("bsub", "true")
    assert re.fullmatch(r"Job <\d+> is submitted to default queue <normal>\.\n", done.stdout)
    done = lsf_sim.run("bsub", "-q", "long", "true")
    assert re.fullmatch(r"Job <\d+> is submitted to queue <long>\.\n", done.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-q", "nope", "true"], "nope: No such queue. Job not submitted.\n"),
        (["-w", "done(", "true"], "Dependency condition syntax error. Job not submitted.\n"),
        (["-w", "done(424242)", "true"], "424242: No matching job found. Job not submitted.\n"),
        (["-W", "ten", "true"], "ten: Bad RUNLIMIT specification. Job not submitted.\n"),
        (["-n", "999", "true"], "Too many processors requested. Job not submitted.\n"),
        (["-J", "a[0-3]", "true"], "Bad job name. Job not submitted.\n"),
    ],
)
def test_bsub_refusals(lsf_sim, args, message):
    done = lsf_sim.run("bsub", *args)
    assert (done.returncode, done.stdout, done.stderr) == (255, "", message)
    assert lsf_sim.state()["jobs"] == {}


def test_bjobs_default_table_and_truncated_names(lsf_sim):
    jid = lsf_sim.bsub("-H", "-J", "a_rather_long_job_name", "true")
    done = lsf_sim.run("bjobs")
    lines = done.stdout.splitlines()
    assert lines[0] == "JOBID   USER    STAT  QUEUE      FROM_HOST   EXEC_HOST   JOB_NAME   SUBMIT_TIME"
    assert lines[1].split()[:3] == [jid, lsf_sim.state()["jobs"][jid]["user"], "PSUSP"]
    assert "*_job_name" in lines[1]
    assert "a_rather_long_job_name" in lsf_sim.run("bjobs", "-w").stdout
    assert re.search(r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d$", lines[1])


def test_bjobs_not_found_and_empty(lsf_sim):
    done = lsf_sim.run("bjobs", "999")
    assert (done.returncode, done.stdout, done.stderr) == (255, "", "Job <999> is not found\n")
    done = lsf_sim.run("bjobs")
    assert (done.returncode, done.stderr) == (0, "No unfinished job found\n")
    done = lsf_sim.run("bjobs", "-o", "jobid stat", "-json", "999")
    assert done.returncode == 255
    assert json.loads(done.stdout) == {
        "COMMAND": "bjobs", "JOBS": 1, "RECORDS": [{"ERROR": "Job <999> is not found"}]}


def test_finished_jobs_need_dash_a(lsf_sim):
    jid = lsf_sim.bsub("true")
    lsf_sim.wait_stat(jid, ("DONE",))
    assert lsf_sim.run("bjobs", jid).stderr == "No unfinished job found\n"
    assert lsf_sim.run("bjobs", "-a", "-o", "stat", "-noheader", jid).stdout == "DONE\n"


def test_custom_output_with_delimiter_and_json(lsf_sim):
    jid = lsf_sim.bsub("-J", "näme with spaces", "-Jd", "molq-tag", "sh", "-c", "'exit 3'")
    lsf_sim.wait_stat(jid, ("EXIT",))
    done = lsf_sim.run("bjobs", "-a", "-o", "jobid stat exit_code pend_reason delimiter='^'", jid)
    assert done.stdout == f"JOBID^STAT^EXIT_CODE^PEND_REASON\n{jid}^EXIT^3^-\n"
    done = lsf_sim.run("bjobs", "-a", "-o", "id name job_description exit_code exit_reason", "-json", jid)
    data = json.loads(done.stdout)
    assert data["COMMAND"] == "bjobs" and data["JOBS"] == 1
    assert data["RECORDS"] == [{"JOBID": jid, "JOB_NAME": "näme with spaces",
                                "JOB_DESCRIPTION": "molq-tag", "EXIT_CODE": "3", "EXIT_REASON": ""}]
    assert lsf_sim.run("bjobs", "-o", "jobid nonsense").returncode == 255


def test_array_rows_and_output_substitution(lsf_sim, tmp_path):
    out = tmp_path / "out.%J.%I"
    jid = lsf_sim.bsub("-J", "arr[1-3]", "-o", str(out), "echo $LSB_JOBID-$LSB_JOBINDEX")
    for index in (1, 2, 3):
        lsf_sim.wait_stat(jid, ("DONE",), index=index)
        assert (tmp_path / f"out.{jid}.{index}").read_text() == f"{jid}-{index}\n"
    data = json.loads(lsf_sim.run("bjobs", "-a", "-o", "jobid jobindex job_name stat", "-json", jid).stdout)
    assert [(r["JOBID"], r["JOBINDEX"], r["JOB_NAME"]) for r in data["RECORDS"]] == [
        (jid, "1", "arr[1]"), (jid, "2", "arr[2]"), (jid, "3", "arr[3]")]
    one = json.loads(lsf_sim.run("bjobs", "-a", "-o", "jobindex", "-json", f"{jid}[2]").stdout)
    assert one["RECORDS"] == [{"JOBINDEX": "2"}]


def test_bkill_messages(lsf_sim):
    pending = lsf_sim.bsub("-H", "true")
    done = lsf_sim.run("bkill", pending, "31337")
    assert done.stdout == f"Job <{pending}> is being terminated\n"
    assert done.stderr == "Job <31337>: No matching job found\n"
    assert done.returncode == 255
    assert lsf_sim.element(pending)["stat"] == "EXIT"
    again = lsf_sim.run("bkill", pending)
    assert (again.returncode, again.stderr) == (255, f"Job <{pending}>: Job has already finished\n")


def test_stdin_script_with_embedded_options(lsf_sim, tmp_path):
    out = tmp_path / "stdin.out"
    script = f"#!/bin/sh\n#BSUB -J from_stdin\n#BSUB -o {out}\necho embedded\n"
    done = lsf_sim.run("bsub", input=script)
    jid = re.search(r"<(\d+)>", done.stdout).group(1)
    lsf_sim.wait_stat(jid, ("DONE",))
    assert out.read_text() == "embedded\n"
    assert lsf_sim.state()["jobs"][jid]["name"] == "from_stdin"


def test_slot_limit_keeps_jobs_pending(lsf_sim):
    lsf_sim.configure(slots=1)
    first = lsf_sim.bsub("sleep", "30")
    second = lsf_sim.bsub("true")
    lsf_sim.run("bjobs")
    assert lsf_sim.element(second)["stat"] == "PEND"
    assert lsf_sim.element(second)["reason"] == "Not enough job slot(s)"
    lsf_sim.run("bkill", first)
    lsf_sim.wait_stat(second, ("DONE",))


def test_outage_message(lsf_sim):
    lsf_sim.outage("Failed in an LSF library call: Communication time out")
    for command in ("bsub", "bjobs", "bkill"):
        done = lsf_sim.run(command, "1")
        assert (done.returncode, done.stderr) == (255, "Failed in an LSF library call: Communication time out\n")
    lsf_sim.restore()
    done = lsf_sim.run("bjobs", env={"MOLQ_LSFSIM_DOWN": "1"})
    assert (done.returncode, done.stderr) == (255, "LSF is down. Please wait ...\n")


def test_dead_monitor_is_noticed_and_its_job_killed(lsf_sim):
    jid = lsf_sim.bsub("sleep", "60")
    element = lsf_sim.wait_stat(jid, ("RUN",))
    pgid = lsf_sim.job_pgid(jid)
    assert lsf_sim.live_processes(pgid)
    os.kill(element["monitor"][0], signal.SIGKILL)
    element = lsf_sim.wait_stat(jid, ("EXIT",))
    assert element["exit_reason"].startswith("TERM_EXTERNAL_SIGNAL")
    assert lsf_sim.wait_group_gone(pgid)


def test_concurrent_commands_keep_state_consistent(lsf_sim):
    ids: list[str] = []
    lock = threading.Lock()

    def worker():
        for _ in range(3):
            jid = lsf_sim.bsub("true")
            lsf_sim.run("bjobs", "-a")
            with lock:
                ids.append(jid)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 12
    for jid in ids:
        lsf_sim.wait_stat(jid, ("DONE",))
    assert set(lsf_sim.state()["jobs"]) == set(ids)


def test_job_control_answers_and_ownership(tmp_path):
    sim = LsfSimulator(tmp_path / "lsf")
    try:
        sid = sim.bsub("sleep 30")
        sim.wait_stat(sid, ("RUN",))
        assert sim.run("bstop", sid).stdout == f"Job <{sid}> is being stopped\n"
        assert sim.element(sid)["stat"] == "USUSP"
        assert sim.run("bresume", sid).stdout == f"Job <{sid}> is being resumed\n"
        assert sim.run("bresume", sid).stderr == f"Job <{sid}>: Job is not suspended\n"
        other = sim.run("bkill", sid, env={"MOLQ_LSFSIM_USER": "mallory"})
        assert (other.returncode, other.stderr) == (255, f"Job <{sid}>: User permission denied\n")
        assert sim.run("brequeue", sid).stdout == f"Job <{sid}> is being requeued\n"
        deadline = time.monotonic() + 20
        while sim.element(sid).get("requeued") != 1:  # killed, then dispatched again
            assert time.monotonic() < deadline, sim.element(sid)
            sim.run("bjobs", "-a", sid)
        assert sim.wait_stat(sid, ("RUN",))["exit_reason"] == ""
        assert sim.run("brequeue", "99999").stderr == "Job <99999>: No matching job found\n"
    finally:
        sim.shutdown()


def test_usage_fields_in_both_time_formats(lsf_sim):
    jid = lsf_sim.bsub("-M", "2048", "-n", "1", "sh", "-c", "'sleep 1'")
    lsf_sim.wait_stat(jid, ("DONE",))
    fields = "cpu_used run_time max_mem memlimit slots"
    plain = json.loads(lsf_sim.run("bjobs", "-a", "-o", fields, "-json", jid).stdout)["RECORDS"][0]
    assert re.fullmatch(r"\d+\.\d second\(s\)", plain["CPU_USED"]), plain
    assert re.fullmatch(r"[12] second\(s\)", plain["RUN_TIME"]), plain
    assert re.fullmatch(r"\d+(\.\d)? [KMG]bytes", plain["MAX_MEM"]), plain
    assert plain["MEMLIMIT"] == "2 Mbytes" and plain["SLOTS"] == "1"  # -M 2048 in KB (the default unit)
    hms = json.loads(lsf_sim.run("bjobs", "-a", "-hms", "-o", fields, "-json", jid).stdout)["RECORDS"][0]
    assert re.fullmatch(r"00:00:0[0-2]", hms["CPU_USED"]) and re.fullmatch(r"00:00:0[12]", hms["RUN_TIME"]), hms

"""The PBS Pro simulator itself: formats, error messages and exit codes, directives, the job
environment, and safety under concurrent commands."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from molq_pbs.parse import parse_qstat_full, parse_qstat_json
from pbssim_harness import wait_for


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def finished(sim, jid: str) -> dict:
    def done():
        doc = json.loads(sim.command("qstat", "-f", "-F", "json", "-x", jid).stdout)
        job = doc.get("Jobs", {}).get(jid)
        return job if job and job["job_state"] in "FX" else None

    return wait_for(done)


def test_job_environment_and_directive_precedence(pbs_sim, tmp_path):
    script = write(
        tmp_path / "env.sh",
        (
            "#!/bin/sh\n"
            "#PBS -N from_directive\n"
            "#PBS -l walltime=00:10:00,ncpus=2\n"
            "#PBS -q long\n"
            'echo "$PBS_JOBID|$PBS_JOBNAME|$PBS_O_WORKDIR|$PBS_QUEUE|$MY_VAR|$(pwd)"\n'
            "#PBS -N ignored_after_first_command\n"
        ),
    )
    res = pbs_sim.command(
        "qsub", "-N", "from_cli", "-v", "MY_VAR=hello", "-o", "out.txt", str(script), cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    jid = res.stdout.strip()
    assert jid.endswith(".pbssim")
    job = finished(pbs_sim, jid)
    assert job["Job_Name"] == "from_cli"  # the command line wins over #PBS
    assert job["queue"] == "long"
    assert job["Resource_List"]["walltime"] == "00:10:00" and job["Resource_List"]["ncpus"] == 2
    assert (job["Exit_status"], job["substate"]) == (0, 92)
    home = str(Path.home())
    assert (tmp_path / "out.txt").read_text() == f"{jid}|from_cli|{tmp_path}|long|hello|{home}\n"
    assert (tmp_path / f"from_cli.e{jid.split('.')[0]}").exists()  # default error path


def test_array_subjobs_and_their_ids(pbs_sim, tmp_path):
    script = write(tmp_path / "arr.sh", "#!/bin/sh\necho $PBS_ARRAY_INDEX\n")
    jid = pbs_sim.command("qsub", "-J", "2-6:2", str(script), cwd=tmp_path).stdout.strip()
    seq = jid.split("[")[0]
    assert jid == f"{seq}[].pbssim"
    parent = finished(pbs_sim, jid)
    assert parent["array"] is True and parent["array_indices_submitted"] == "2-6:2"
    assert parent["Exit_status"] == 0
    listing = pbs_sim.command("qstat", "-x", "-t").stdout
    for index in (2, 4, 6):
        assert f"{seq}[{index}].pbssim" in listing
        assert (tmp_path / f"arr.sh.o{seq}.{index}").read_text() == f"{index}\n"
    sub = json.loads(pbs_sim.command("qstat", "-f", "-F", "json", "-x", f"{seq}[4]").stdout)["Jobs"]
    assert sub[f"{seq}[4].pbssim"]["array_id"] == jid and sub[f"{seq}[4].pbssim"]["job_state"] == "X"


def test_error_messages_and_exit_codes(pbs_sim, tmp_path):
    script = write(tmp_path / "j.sh", "#!/bin/sh\ntrue\n")
    cases = [
        (("qsub", "-q", "nope", str(script)), 1, "qsub: Unknown queue"),
        (("qsub", "-l", "walltime=soon", str(script)), 1, "qsub: illegal -l value"),
        (("qsub", "-l", "bogus=1", str(script)), 1, "qsub: Unknown resource Resource_List.bogus"),
        (("qsub", "-N", "has space", str(script)), 1, "qsub: illegal -N value"),
        (("qsub", "-J", "5", str(script)), 1, "qsub: illegal -J value"),
        (("qsub", "-W", "depend=afterok:999", str(script)), 153, "qsub: Unknown Job Id 999"),
        (("qsub", "-Y", str(script)), 2, "qsub: invalid option -- 'Y'"),
        (("qstat", "12345"), 153, "qstat: Unknown Job Id 12345"),
        (("qdel", "12345.pbssim"), 153, "qdel: Unknown Job Id 12345.pbssim"),
    ]
    for argv, code, message in cases:
        res = pbs_sim.command(*argv, cwd=tmp_path)
        assert (res.returncode, res.stderr.splitlines()[0]) == (code, message), argv
        assert res.stdout == ""
    assert pbs_sim.state()["jobs"] == {}


def test_finished_jobs_need_x(pbs_sim, tmp_path):
    script = write(tmp_path / "j.sh", "#!/bin/sh\nexit 4\n")
    jid = pbs_sim.command("qsub", str(script), cwd=tmp_path).stdout.strip()
    job = finished(pbs_sim, jid)
    assert (job["Exit_status"], job["substate"]) == (4, 93)
    res = pbs_sim.command("qstat", jid)
    assert res.returncode == 35
    assert (
        res.stderr.strip()
        == f"qstat: {jid} Job has finished, use -x or -H to obtain historical job information"
    )
    again = pbs_sim.command("qdel", jid)
    assert (again.returncode, again.stderr.strip()) == (35, f"qdel: Job has finished {jid}")


def test_text_and_table_formats(pbs_sim, tmp_path):
    script = write(tmp_path / "j.sh", "#!/bin/sh\n#PBS -N tabled\nsleep 20\n")
    held = pbs_sim.command("qsub", "-h", str(script), cwd=tmp_path).stdout.strip()
    running = pbs_sim.command("qsub", str(script), cwd=tmp_path).stdout.strip()
    table = pbs_sim.command("qstat").stdout.splitlines()
    assert table[0].split() == ["Job", "id", "Name", "User", "Time", "Use", "S", "Queue"]
    assert set(table[1].replace(" ", "")) == {"-"}
    rows = {line.split()[0]: line.split() for line in table[2:]}
    assert rows[held][1] == "tabled" and rows[held][-2:] == ["H", "workq"]
    assert rows[running][-2] == "R"
    text = parse_qstat_full(pbs_sim.command("qstat", "-f", held, running).stdout)
    as_json = parse_qstat_json(pbs_sim.command("qstat", "-f", "-F", "json", held, running).stdout)
    assert set(text) == set(as_json) == {held, running}
    for jid in (held, running):
        assert text[jid]["job_state"] == as_json[jid]["job_state"]
        assert text[jid]["Resource_List.ncpus"] == as_json[jid]["Resource_List.ncpus"] == "1"
    alternate = pbs_sim.command("qstat", "-u", text[held]["Job_Owner"].split("@")[0]).stdout
    assert "Job ID          Username Queue    Jobname    SessID NDS TSK Memory Time  S Time" in alternate
    assert pbs_sim.command("qstat", "-u", "nobody-at-all").stdout == ""
    released = pbs_sim.command("qrls", held)
    assert released.returncode == 0
    assert (
        json.loads(pbs_sim.command("qstat", "-f", "-F", "json", held).stdout)["Jobs"][held]["job_state"]
        == "R"
    )


def test_concurrent_commands_keep_a_consistent_state(pbs_sim, tmp_path):
    script = write(tmp_path / "j.sh", "#!/bin/sh\nsleep 0.2\n")

    def submit(_: int) -> str:
        res = pbs_sim.command("qsub", str(script), cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    def query(_: int) -> int:
        return pbs_sim.command("qstat", "-x").returncode

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(submit, range(12)))
        codes = list(pool.map(query, range(8)))
    assert len(set(ids)) == 12 and codes == [0] * 8
    assert sorted(int(j.split(".")[0]) for j in ids) == list(range(1, 13))
    for jid in ids:
        assert finished(pbs_sim, jid)["Exit_status"] == 0
    assert set(pbs_sim.state()["jobs"]) == set(ids)


def test_auto_flavour_asks_qstat_version_once(pbs_sim):
    """The simulator answers ``qstat --version`` like PBS Pro (locally, even in an outage)."""
    from molq.batch import BatchScheduler
    from molq_pbs import PbsProDialect

    pbs_sim.set_outage("all")
    sched = pbs_sim.scheduler(flavor="auto")
    assert type(sched) is BatchScheduler and isinstance(sched.dialect, PbsProDialect)
    assert pbs_sim.command("qstat", "--version").stdout == "pbs_version = 2022.1.0\n"

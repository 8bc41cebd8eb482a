"""PBS Pro arrays above the server's max_array_size: read from the server, split into parts
tracked as one molq job, against the PBS Pro simulator (jobs really run)."""

from __future__ import annotations

import time
from pathlib import Path

from molq.array_runner import max_array_size
from molq.arrays import part_ids
from molq.model import JobScheduling, JobState
from molq.scheduler import TrackedJob
from molq.transport import CommandResult
from molq_pbs.dialect import PbsProDialect
from pbssim_harness import wait_final

DATA = Path(__file__).parent / "data"


def test_the_limit_is_read_from_the_server_attributes() -> None:
    d = PbsProDialect()
    qmgr = (DATA / "pbspro_qmgr_print_server.txt").read_text()
    assert d.parse_max_array_size(CommandResult(("qmgr",), 0, qmgr, "")) == 10000
    listing = "Server: pbs01\n    server_state = Active\n    max_array_size = 250\n    pbs_version = 2022.1.0\n"
    assert d.parse_max_array_size(CommandResult(("qstat",), 0, listing, "")) == 250
    # Not shown: no evidence of a limit, the array goes whole and the server judges it.
    assert d.parse_max_array_size(CommandResult(("qstat",), 0, "Server: pbs01\n    server_state = Active\n", "")) is None


def test_a_split_array_runs_every_index_once_as_one_job(pbs_sim, make_job) -> None:
    pbs_sim.env["MOLQ_PBSSIM_MAX_ARRAY_SIZE"] = "4"
    sched = pbs_sim.scheduler()
    before = len(sched.command_log)
    assert max_array_size(sched) == 4
    assert max_array_size(sched) == 4
    assert [name for name, _ in sched.command_log[before:]] == ["qstat"]  # asked once
    spec, job_dir = make_job(command='echo "$PBS_ARRAY_INDEX" > "out.$PBS_ARRAY_INDEX"',
                             scheduling=JobScheduling(array_spec="0-9"))
    sid = sched.submit(spec, job_dir)
    parts = part_ids(sid)
    assert len(parts) == 3 and all(p.endswith("[].pbssim") for p in parts)  # 0-3, 4-7, 8-9 shifted
    assert Path(job_dir, "array_parts").read_text() == f"3\n{sid}\n"
    final = wait_final(sched, [TrackedJob(spec.job_id, sid, job_dir, time.time())])[spec.job_id]
    assert (final.state, final.exit_code) == (JobState.SUCCEEDED, 0)
    for index in range(10):
        assert Path(spec.cwd, f"out.{index}").read_text() == f"{index}\n"
    # Every part stayed within the server's limit (the simulator refuses more).
    arrays = [j for j in pbs_sim.state()["jobs"].values() if j.get("array_id") in parts]
    assert len(arrays) == 10


def test_an_array_within_the_limit_goes_whole(pbs_sim, make_job) -> None:
    pbs_sim.env["MOLQ_PBSSIM_MAX_ARRAY_SIZE"] = "4"
    sched = pbs_sim.scheduler()
    spec, job_dir = make_job(command="true", scheduling=JobScheduling(array_spec="0-3"))
    assert len(part_ids(sched.submit(spec, job_dir))) == 1


def test_adoption_takes_the_recorded_parts_once_the_server_no_longer_lists_them(pbs_sim, make_job) -> None:
    pbs_sim.env["MOLQ_PBSSIM_MAX_ARRAY_SIZE"] = "4"
    sched = pbs_sim.scheduler()
    spec, job_dir = make_job(command="true", scheduling=JobScheduling(array_spec="0-9"))
    sid = sched.submit(spec, job_dir)
    assert Path(job_dir, "array_parts").read_text() == f"3\n{sid}\n"
    wait_final(sched, [TrackedJob(spec.job_id, sid, job_dir, time.time())])
    # Finished: the queue listing adoption reads no longer shows the parts; the plan file does.
    orphan = TrackedJob(spec.job_id, None, job_dir, None)
    assert sched.find_adoptable([orphan]) == {spec.job_id: sid}
    # A plan without the parts' ids (the submitter stopped before every part was accepted)
    # adopts nothing from the file.
    Path(job_dir, "array_parts").write_text("3\n")
    assert sched.find_adoptable([orphan]) == {}

"""Fixtures for the PBS backend tests: a simulated PBS Pro server per test, job specs, and the
real SLURM test cluster seen through its Torque wrappers."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from molq.model import JobSpec

SIM_DIR = Path(__file__).resolve().parents[1] / "simulators" / "pbs"
DATA_DIR = Path(__file__).resolve().parent / "data"
if str(SIM_DIR) not in sys.path:
    sys.path.insert(0, str(SIM_DIR))

from pbssim_harness import PbsSim  # noqa: E402


@pytest.fixture
def pbs_sim(tmp_path: Path):
    """A fresh simulated PBS Pro server; everything still running is deleted afterwards."""
    sim = PbsSim(tmp_path / "pbssim-home")
    try:
        yield sim
    finally:
        sim.shutdown()


@pytest.fixture
def data_file():
    """Read a golden file from tests/pbs/data."""

    def read(name: str) -> str:
        return (DATA_DIR / name).read_text()

    return read


@pytest.fixture
def make_job(tmp_path: Path):
    """Build (spec, job_dir) pairs whose job directory exists, working in ``tmp_path/work``."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)

    def make(
        argv: tuple[str, ...] | None = None, *, command: str | None = None, **fields
    ) -> tuple[JobSpec, str]:
        job_id = fields.pop("job_id", uuid.uuid4().hex[:12])
        job_dir = tmp_path / "jobs" / job_id
        job_dir.mkdir(parents=True)
        kind = "command" if command is not None else "argv"
        spec = JobSpec(job_id=job_id, command_type=kind, argv=argv, command=command, cwd=str(work), **fields)
        return spec, str(job_dir)

    return make


TORQUE_WRAPPERS = ("qsub", "qstat", "qdel")


def _torque_service() -> tuple[dict[str, str] | None, str, str]:
    """(environment for SLURM's Torque wrappers, default partition, "") or (None, "", why not)."""
    values = dict(os.environ)
    env_file = Path(os.environ.get("MOLQ_TEST_DIR", "/var/lib/molq-test")) / "slurm" / "env.sh"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            words = shlex.split(line, comments=True)
            if len(words) == 2 and words[0] == "export" and "=" in words[1]:
                key, _, value = words[1].partition("=")
                values.setdefault(key, value)
    conf = values.get("MOLQ_TEST_SLURM_ACCT_CONF") or values.get("MOLQ_TEST_SLURM_NOACCT_CONF")
    if not conf or not Path(conf).exists():
        return (
            None,
            "",
            f"no SLURM test cluster configured (run tests/services/slurm.sh; looked at {env_file})",
        )
    missing = [w for w in TORQUE_WRAPPERS if shutil.which(w) is None]
    if missing:
        return None, "", f"slurm-wlm-torque wrappers missing: {', '.join(missing)}"
    env = {"SLURM_CONF": conf}
    try:
        probe = subprocess.run(
            ["sinfo", "-h"], env={**os.environ, **env}, capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, "", f"sinfo failed: {exc}"
    if probe.returncode != 0:
        return None, "", f"SLURM controller not answering: {probe.stderr.strip()}"
    partition = (values.get("MOLQ_TEST_SLURM_PARTITIONS") or "debug").split()[0]
    return env, partition, ""


@pytest.fixture(scope="session")
def torque_options():
    """PbsOptions (Torque flavour) for the real SLURM test cluster driven through Debian's
    slurm-wlm-torque wrappers. Missing service: fail with CI=true, skip otherwise."""
    from molq_pbs import PbsOptions

    env, partition, reason = _torque_service()
    if env is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"Torque live tests need the SLURM service (CI=true): {reason}")
        pytest.skip(reason)
    return PbsOptions(flavor="torque", env=env, default_queue=partition)

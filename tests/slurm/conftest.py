"""Fixtures for the SLURM tests: spec builders and the two real test clusters.

The clusters come from ``tests/services/slurm.sh``, which writes
``$MOLQ_TEST_DIR/slurm/env.sh`` (default ``/var/lib/molq-test``). When that file or the
clusters are missing, live tests are skipped -- except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from molq.model import JobExecution, JobResources, JobScheduling, JobSpec
from shims import CommandShim

ENV_FILE = Path(os.environ.get("MOLQ_TEST_DIR", "/var/lib/molq-test")) / "slurm" / "env.sh"
GOLDEN = Path(__file__).resolve().parent / "golden"


def make_spec(
    *,
    job_id: str | None = None,
    argv: tuple[str, ...] | None = None,
    command: str | None = None,
    resources: JobResources | None = None,
    scheduling: JobScheduling | None = None,
    execution: JobExecution | None = None,
    cwd: str | None = None,
    dependencies: tuple[Any, ...] = (),
) -> JobSpec:
    """A JobSpec as the Submitor would build it (default: ``true``)."""
    if argv is None and command is None:
        argv = ("true",)
    return JobSpec(
        job_id=job_id or uuid.uuid4().hex,
        command_type="argv" if argv is not None else "command",
        argv=argv,
        command=command,
        resources=resources or JobResources(),
        scheduling=scheduling or JobScheduling(),
        execution=execution or JobExecution(),
        cwd=cwd,
        dependencies=dependencies,
    )


@pytest.fixture
def spec_factory() -> Callable[..., JobSpec]:
    return make_spec


@attrs.frozen
class SlurmCluster:
    """One live test cluster: its name, ``SLURM_CONF`` and whether it keeps accounting."""

    name: str
    conf: str
    accounting: bool
    account: str | None
    qos: str | None
    partitions: tuple[str, ...]

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": self.conf}

    def run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client command against this cluster (outside molq)."""
        env = dict(os.environ, SLURM_CONF=self.conf)
        env.pop("SLURM_TIME_FORMAT", None)
        return subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout)


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _read_env_file() -> dict[str, str]:
    """The cluster variables: from the environment when ``env.sh`` was sourced, else the file."""
    if os.environ.get("MOLQ_TEST_SLURM_ACCT_CONF"):
        return {k: v for k, v in os.environ.items() if k.startswith("MOLQ_TEST_SLURM_")}
    out: dict[str, str] = {}
    for line in ENV_FILE.read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def _missing(reason: str, what: str = "the SLURM test clusters", script: str = "slurm.sh") -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {what}: unavailable ({reason})", pytrace=False)
    pytest.skip(f"{what}: unavailable ({reason}); start with tests/services/{script}")


def _discover() -> tuple[list[SlurmCluster], str | None]:
    if not ENV_FILE.exists() and not os.environ.get("MOLQ_TEST_SLURM_ACCT_CONF"):
        return [], f"{ENV_FILE} not found"
    try:
        env = _read_env_file()
    except OSError as exc:
        return [], f"cannot read {ENV_FILE}: {exc}"
    clusters = []
    partitions = tuple(env.get("MOLQ_TEST_SLURM_PARTITIONS", "debug").split())
    for kind, accounting in (("ACCT", True), ("NOACCT", False)):
        conf = env.get(f"MOLQ_TEST_SLURM_{kind}_CONF")
        name = env.get(f"MOLQ_TEST_SLURM_{kind}_CLUSTER", kind.lower())
        if not conf or not Path(conf).exists():
            return [], f"{kind} cluster config {conf!r} missing"
        clusters.append(
            SlurmCluster(
                name=name,
                conf=conf,
                accounting=accounting,
                account=env.get("MOLQ_TEST_SLURM_ACCOUNT") if accounting else None,
                qos=env.get("MOLQ_TEST_SLURM_QOS") if accounting else None,
                partitions=partitions,
            )
        )
    for cluster in clusters:
        try:
            proc = cluster.run("sinfo", "--noheader", "--format=%t")
        except (OSError, subprocess.TimeoutExpired) as exc:
            return [], f"sinfo on {cluster.name} failed: {exc}"
        if proc.returncode != 0:
            return [], f"sinfo on {cluster.name} failed: {proc.stderr.strip()}"
    return clusters, None


_CLUSTERS: tuple[list[SlurmCluster], str | None] | None = None


def _clusters() -> tuple[list[SlurmCluster], str | None]:
    global _CLUSTERS
    if _CLUSTERS is None:
        _CLUSTERS = _discover()
    return _CLUSTERS


@pytest.fixture(params=["acct", "noacct"])
def slurm_cluster(request: pytest.FixtureRequest) -> SlurmCluster:
    """Each live test runs on both clusters: with accounting and without."""
    clusters, problem = _clusters()
    if problem:
        _missing(problem)
    return clusters[0] if request.param == "acct" else clusters[1]


@pytest.fixture
def acct_cluster() -> SlurmCluster:
    clusters, problem = _clusters()
    if problem:
        _missing(problem)
    return clusters[0]


@pytest.fixture
def noacct_cluster() -> SlurmCluster:
    clusters, problem = _clusters()
    if problem:
        _missing(problem)
    return clusters[1]


@pytest.fixture
def ssh_login() -> dict[str, str]:
    """The test sshd (tests/services/sshd.sh) as a "login node": ``host`` and ``config``."""
    keys = {"host": "MOLQ_TEST_SSH_HOST", "config": "MOLQ_TEST_SSH_CONFIG"}
    found = {name: os.environ.get(var, "") for name, var in keys.items()}
    env_file = ENV_FILE.parent.parent / "sshd" / "env.sh"
    if not all(found.values()) and env_file.exists():
        for line in env_file.read_text().splitlines():
            key, _, value = line.strip().removeprefix("export ").partition("=")
            for name, var in keys.items():
                if key.strip() == var and not found[name]:
                    found[name] = value.strip().strip('"').strip("'")
    if not all(found.values()):
        _missing(f"{env_file} missing", "the test sshd", "sshd.sh")
    probe = subprocess.run(
        ["ssh", "-F", found["config"], "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", found["host"], "true"],
        capture_output=True, text=True, timeout=30,
    )
    if probe.returncode != 0:
        _missing(f"not reachable: {probe.stderr.strip()}", "the test sshd", "sshd.sh")
    return found



@pytest.fixture
def squeue_shim(tmp_path: Path) -> CommandShim:
    """Every ``squeue`` call of the test, whichever process made it (see tests/shims.py)."""
    return CommandShim.install(tmp_path, "squeue")

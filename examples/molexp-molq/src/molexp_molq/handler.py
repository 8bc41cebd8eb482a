"""Turn molexp-style scheduler flags into molq objects and submit run directories.

>>> flags = SubmitFlags(scheduler="slurm", partition="gpu", cpus=8, mem="32G", gpus=1, time="2h")
>>> flags.resources()
JobResources(cpu_count=8, memory=Memory(bytes=34359738368), gpu_count=1, gpu_type=None, time_limit=Duration(seconds=7200))
>>> flags.scheduling().partition
'gpu'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from molexp_molq.runs import RUN_DIR_METADATA_KEY, RUN_FILE, check_run, read_run, update_run
from molexp_molq.sink import executor_info

__all__ = [
    "SubmitFlags",
    "SubmitHandler",
    "BackendMissingError",
    "SubmitInputError",
    "build_cluster",
    "worker_argv",
    "DEFAULT_WORKER_PYTHON",
]

#: How the worker runs, as in molexp (``python -m molexp.cli execute <run_dir>``).
WORKER_MODULE = "molexp_molq.worker"

#: The interpreter that runs the worker on the cluster: a plain ``python3`` found on the PATH
#: there. The submitting machine's ``sys.executable`` is a path on this machine (often inside a
#: virtual environment) that a cluster node usually does not have.
DEFAULT_WORKER_PYTHON = "python3"


class BackendMissingError(RuntimeError):
    """The requested scheduler (or molq itself) is not installed. The message ends with the
    command that installs it."""


class SubmitInputError(ValueError):
    """What was asked cannot be submitted as given (no runs, a run given twice, a bad worker
    interpreter). Raised before any run is submitted."""


# --8<-- [start:flags]
@attrs.frozen
class SubmitFlags:
    """The scheduler flags of ``molexp run``, as given on the command line.

    ``cluster`` names the molq cluster (the namespace jobs are recorded under). When a molq
    profile of that name exists, its destination settings are used as well (host, scheduler
    options such as ``SLURM_CONF``); ``scheduler`` must then agree with the profile's.
    """

    scheduler: str = "local"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    cluster: str | None = None
    cpus: int | None = None
    mem: str | None = None
    gpus: int | None = None
    gpu_type: str | None = None
    time: str | None = None

    def resources(self) -> Any:
        """``--cpus --mem --gpus --gpu-type --time`` as :class:`molq.JobResources`."""
        from molq import JobResources

        return JobResources(cpu_count=self.cpus, memory=self.mem, gpu_count=self.gpus,
                            gpu_type=self.gpu_type, time_limit=self.time)

    def scheduling(self) -> Any:
        """``--partition/--queue --account --qos`` as :class:`molq.JobScheduling`."""
        from molq import JobScheduling

        return JobScheduling(partition=self.partition, account=self.account, qos=self.qos)

    def execution(self, run_dir: str, run_id: str, *, with_name: bool = True) -> Any:
        """Where and as what the worker runs: in the run directory, named after the run."""
        from molq import JobExecution

        return JobExecution(cwd=run_dir, job_name=f"molexp-{run_id}" if with_name else None)
# --8<-- [end:flags]


# --8<-- [start:build]
def build_cluster(flags: SubmitFlags) -> Any:
    """The molq :class:`~molq.Cluster` for ``flags``; fails fast, before any run is touched,
    when the scheduler's plugin (or molq) is not installed."""
    try:
        from molq import Cluster, ConfigError, PluginNotFoundError, load_config
    except ImportError as exc:
        raise BackendMissingError(
            f"--scheduler {flags.scheduler} needs molq, which is not installed; "
            f"install it with: pip install molq-core ({exc})"
        ) from exc
    try:
        profiles = load_config().profiles
        if flags.cluster and flags.cluster in profiles:
            profile = profiles[flags.cluster]
            if profile.scheduler != flags.scheduler:
                raise ConfigError(
                    f"--cluster {flags.cluster} is a molq profile for the {profile.scheduler!r} "
                    f"scheduler, but --scheduler says {flags.scheduler!r}"
                )
            return Cluster.from_profile(flags.cluster)
        return Cluster(flags.cluster or flags.scheduler, flags.scheduler)
    except PluginNotFoundError as exc:
        raise BackendMissingError(str(exc)) from exc
# --8<-- [end:build]


def worker_argv(run_dir: str, python: str = DEFAULT_WORKER_PYTHON) -> list[str]:
    """The command a job runs: the worker, with the cluster's interpreter ``python``, on ``run_dir``.

    >>> worker_argv("/runs/r1")
    ['python3', '-m', 'molexp_molq.worker', 'execute', '/runs/r1']
    """
    return [python, "-m", WORKER_MODULE, "execute", run_dir]


def _check_python(python: str) -> str:
    if not isinstance(python, str) or not python.strip():
        raise SubmitInputError(f"the worker interpreter must be a command or a path, got {python!r}")
    if any(c in python for c in "\n\r\x00"):
        raise SubmitInputError(f"the worker interpreter must be one line without NUL bytes: {python!r}")
    return python


class SubmitHandler:
    """Submits run directories through molq, as molexp's ``submit_molq`` plugin does.

    The handler writes the normalised executor metadata into each run's ``run.json``; the
    status that follows comes from molq's events (see :mod:`molexp_molq.sink`).
    """

    def __init__(self, flags: SubmitFlags, *, store: Any = None, python: str = DEFAULT_WORKER_PYTHON) -> None:
        self.flags = flags
        #: The interpreter the worker runs with on the cluster (see DEFAULT_WORKER_PYTHON).
        self.python = _check_python(python)
        self.cluster = build_cluster(flags)
        from molq import Submitor, load_config

        if flags.cluster and flags.cluster in load_config().profiles:
            self.submitor = Submitor.from_profile(flags.cluster, target=self.cluster, store=store)
        else:
            self.submitor = Submitor(self.cluster, store=store)

    def close(self) -> None:
        self.submitor.close()

    def __enter__(self) -> SubmitHandler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --8<-- [start:submit]
    def validate(self, run_dirs: Sequence[str | Path]) -> list[tuple[str, dict[str, Any]]]:
        """Check every run directory and the flags before anything is submitted.

        Returns ``(absolute run directory, run.json)`` for each run, in order. Raises
        :class:`~molexp_molq.runs.RunDirError`, :class:`SubmitInputError` or molq's
        ``ConfigError`` (a flag value molq refuses, or one the scheduler cannot honour) on the
        first problem; nothing is submitted or written then.
        """
        if not run_dirs:
            raise SubmitInputError("no run directories given")
        from molq import JobSpec

        caps = self.cluster.scheduler_impl.capabilities()
        planned: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for run_dir in run_dirs:
            path = str(Path(run_dir).absolute())
            if path in seen:
                raise SubmitInputError(f"{run_dir}: given twice; each run is submitted once per call")
            seen.add(path)
            run = check_run(path)
            # The spec the Submitor would build, checked the way it checks one.
            caps.check(JobSpec(job_id=run["run_id"], command_type="argv", argv=tuple(worker_argv(path, self.python)),
                               **self._request(path, run, caps)), self.cluster.scheduler)
            planned.append((path, run))
        return planned

    def _request(self, path: str, run: dict[str, Any], caps: Any) -> dict[str, Any]:
        return {
            "resources": self.flags.resources(),
            "scheduling": self.flags.scheduling(),
            "execution": self.flags.execution(path, run["run_id"], with_name=caps.supports("job_name")),
        }

    def submit_validated(self, path: str, run: dict[str, Any]) -> dict[str, Any]:
        """Submit the worker for one run that :meth:`validate` accepted; return the executor
        metadata written to its run.json."""
        caps = self.cluster.scheduler_impl.capabilities()
        handle = self.submitor.submit_job(
            argv=worker_argv(path, self.python),
            metadata={RUN_DIR_METADATA_KEY: path, "molexp.run_id": run["run_id"]},
            **self._request(path, run, caps),
        )
        info = executor_info(handle)

        def change(data: dict[str, Any]) -> None:
            data["executor"] = {**(data.get("executor") or {}), **{k: v for k, v in info.items() if v is not None}}
            # The job id wins over an older one the sink might have seen.
            data["executor"]["job_id"] = info["job_id"]

        update_run(path, change)
        return info

    def submit_runs(self, run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
        """Validate every run, then submit each; a bad run means none is submitted."""
        return [self.submit_validated(path, run) for path, run in self.validate(run_dirs)]

    def submit_run(self, run_dir: str | Path) -> dict[str, Any]:
        """Submit the worker for ``run_dir``; return the executor metadata written to run.json."""
        return self.submit_runs([run_dir])[0]
    # --8<-- [end:submit]

    def wait(self, run_dirs: Sequence[str | Path], timeout: float | None = None) -> list[dict[str, Any]]:
        """Drive molq's refreshes until every run's job is final; return the runs' run.json.

        The statuses in run.json come from the event sink, not from this loop."""
        job_ids = [read_run(d)["executor"]["job_id"] for d in run_dirs]
        self.submitor.watch_jobs(job_ids, timeout=timeout)
        return [read_run(d) for d in run_dirs]

    def cancel(self, run_dir: str | Path) -> None:
        self.submitor.cancel_job(read_run(run_dir)["executor"]["job_id"])


def run_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / RUN_FILE

"""molexp-molq: submit molexp-style run directories through molq.

An example consumer of molq, shaped after molexp's ``submit_molq`` plugin: scheduler flags
become :class:`molq.JobResources` / :class:`molq.JobScheduling` / :class:`molq.JobExecution`,
each run directory is submitted as ``python3 -m molexp_molq.worker execute <run_dir>`` (the
interpreter on the cluster is configurable), the
normalised executor metadata goes into ``run.json``, and an event sink (registered through
molq's entry points) keeps the run's status current.
"""

from molexp_molq.handler import (
    DEFAULT_WORKER_PYTHON,
    BackendMissingError,
    SubmitFlags,
    SubmitHandler,
    SubmitInputError,
    build_cluster,
    worker_argv,
)
from molexp_molq.plugins import UIPluginDescriptor, discover_ui_plugins
from molexp_molq.runs import RunDirError, check_run, create_run, read_run, update_run
from molexp_molq.sink import executor_info

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "SubmitFlags",
    "SubmitHandler",
    "BackendMissingError",
    "SubmitInputError",
    "RunDirError",
    "DEFAULT_WORKER_PYTHON",
    "discover_ui_plugins",
    "UIPluginDescriptor",
    "check_run",
    "build_cluster",
    "worker_argv",
    "create_run",
    "read_run",
    "update_run",
    "executor_info",
]

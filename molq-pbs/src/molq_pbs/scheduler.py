"""Build the PBS scheduler: molq's batch runner driving the PBS Pro or Torque dialect.

There is no PBS subclass of the runner: the per-user queue filter is the dialect's
``queue_filters_user_itself = False``. :func:`PbsScheduler` (also ``PBSScheduler``) is a factory
returning a plain :class:`~molq.batch.BatchScheduler`.

``flavor="auto"`` asks ``qstat --version`` once, when the scheduler is built (a cluster builds
its scheduler on first use and keeps it): PBS Pro / OpenPBS print ``pbs_version = 2022.1.0``,
Torque prints ``Version: 6.1.2`` (older releases ``version: 2.4.16``), and SLURM's Torque
front-ends do not know ``--version`` at all.
"""

from __future__ import annotations

import re
from typing import Any

from molq.batch import BatchScheduler
from molq.errors import ConfigError, SchedulerError, TransportError
from molq.transport import CommandResult

from molq_pbs.dialect import make_dialect
from molq_pbs.options import PbsOptions

__all__ = ["PbsScheduler", "PBSScheduler", "detect_flavor", "build_scheduler"]

_PBSPRO_VERSION_RE = re.compile(r"^\s*pbs_version\s*=\s*\S+", re.MULTILINE)
_TORQUE_VERSION_RE = re.compile(r"^\s*version:\s*\d", re.MULTILINE | re.IGNORECASE)
# slurm-wlm-torque's Perl qstat: "Unknown option: version" and a Torque-style usage.
_SLURM_TORQUE_RE = re.compile(r"^Unknown option: version\s*$", re.MULTILINE)


def detect_flavor(result: CommandResult) -> str | None:
    """The PBS flavour behind a ``qstat --version`` answer, or None when it cannot tell.

    >>> detect_flavor(CommandResult(("qstat", "--version"), 0, "pbs_version = 19.1.3\\n", ""))
    'pbspro'
    >>> detect_flavor(CommandResult(("qstat", "--version"), 0, "Version: 6.1.2\\nCommit: 661e0\\n", ""))
    'torque'
    """
    text = result.stdout + "\n" + result.stderr
    if _PBSPRO_VERSION_RE.search(text):
        return "pbspro"
    if _TORQUE_VERSION_RE.search(text) or _SLURM_TORQUE_RE.search(text):
        return "torque"
    return None


def _probe_flavor(transport: Any, opts: PbsOptions) -> str:
    argv = [opts.binaries.get("qstat", "qstat"), "--version"]
    try:
        result = transport.run(argv, env=opts.env or None, timeout=opts.command_timeout)
    except TransportError as exc:
        raise SchedulerError(f"pbs: cannot run 'qstat --version' to find the PBS flavour: {exc}",
                             command=argv) from exc
    flavor = detect_flavor(result)
    if flavor is None:
        said = (result.stdout.strip() or result.stderr.strip() or f"exit status {result.returncode}")[:200]
        raise ConfigError(
            f"pbs: cannot tell PBS Pro from Torque by 'qstat --version' ({said!r}): "
            "set PbsOptions(flavor='pbspro') or PbsOptions(flavor='torque')"
        )
    return flavor


def build_scheduler(transport: Any, options: PbsOptions | None = None, **kwargs: Any) -> BatchScheduler:
    """A :class:`~molq.batch.BatchScheduler` for PBS over ``transport``: the PBS Pro or Torque
    dialect, configured from ``options``. ``kwargs`` go to the runner (e.g. ``sleep=``).

    >>> from molq.transport import LocalTransport
    >>> build_scheduler(LocalTransport(), PbsOptions(flavor="torque")).dialect.flavor
    'torque'
    """
    if options is None:
        options = PbsOptions()
    elif not isinstance(options, PbsOptions):
        raise ConfigError(f"the pbs scheduler takes PbsOptions, got {type(options).__name__}")
    flavor = _probe_flavor(transport, options) if options.flavor == "auto" else options.flavor
    dialect = make_dialect(
        flavor,
        default_queue=options.default_queue,
        default_account=options.default_account,
        use_history=options.use_history,
        gpu_type_resource=options.gpu_type_resource,
    )
    kwargs = {**options.runner_settings(), **kwargs}
    return BatchScheduler(
        dialect,
        transport,
        binaries=options.binaries,
        extra_submit_args=options.extra_qsub_args,
        env=options.env,
        **kwargs,
    )


def PbsScheduler(transport: Any, options: PbsOptions | None = None, **kwargs: Any) -> BatchScheduler:  # noqa: N802
    """The PBS scheduler (a plain :class:`~molq.batch.BatchScheduler`); see :func:`build_scheduler`."""
    return build_scheduler(transport, options, **kwargs)


#: The name the API reference uses.
PBSScheduler = PbsScheduler

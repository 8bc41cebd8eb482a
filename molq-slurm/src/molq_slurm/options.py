"""``SlurmOptions``: per-cluster settings of the SLURM backend, loaded from profiles.

Example profile::

    [profiles.hpc]
    scheduler = "slurm"
    host = "login.hpc.example.org"

    [profiles.hpc.scheduler_options]
    default_partition = "compute"
    default_account = "proj42"
    extra_sbatch_args = ["--constraint=skylake"]
    binaries = { sbatch = "/opt/slurm/bin/sbatch" }
    env = { SLURM_CONF = "/etc/slurm/alt.conf" }
"""

from __future__ import annotations

import attrs
from molq.batch import BatchOptions
from molq.errors import ConfigError
from molq.scheduler import optional_name, string_list, string_map

__all__ = ["SlurmOptions", "SLURM_COMMANDS"]

#: The SLURM client commands molq runs; ``binaries`` may point any of them elsewhere.
SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "scancel")


@attrs.frozen
class SlurmOptions(BatchOptions):
    """Settings of one SLURM cluster.

    * ``binaries`` -- paths of the client commands on the cluster, e.g.
      ``{"sbatch": "/opt/slurm/bin/sbatch"}`` (keys: sbatch, squeue, sacct, scontrol, scancel).
    * ``extra_sbatch_args`` -- arguments placed before the script on every ``sbatch`` call,
      e.g. ``("--constraint=skylake",)``.
    * ``default_partition`` / ``default_account`` -- used when a job names none.
    * ``env`` -- environment of every SLURM command (``SLURM_CONF``, ...).
    * ``use_accounting`` -- ``True``: final states come from ``sacct``; ``False``: never call
      ``sacct`` (use ``scontrol`` and the wrapper's exit-code file); ``None`` (default):
      try ``sacct`` and fall back when the cluster reports accounting as disabled.
    * ``mail_type`` -- ``--mail-type`` used when a job sets ``scheduling.email``.
    * ``private_outputs`` -- ``True`` (default): the job's output and error files are created
      0600 wherever they are, while the user's command keeps the user's umask; ``False``:
      SLURM's own behaviour, the files follow the submitting umask (for outputs shared with a
      group). A ``SLURM_UMASK`` in ``env`` is used as given instead.
    * ``max_array_size`` -- the cluster's ``MaxArraySize`` (largest array index + 1) instead of
      the value ``scontrol show config`` reports; arrays reaching it are split into several.
    * the settings every batch cluster has (:class:`~molq.batch.BatchOptions`): command
      timeout and retries, shared polling limits, the circuit breaker.
    """

    binaries: dict[str, str] = attrs.field(factory=dict, converter=lambda v: string_map("SlurmOptions.binaries")(v), hash=False)
    extra_sbatch_args: tuple[str, ...] = attrs.field(default=(), converter=lambda v: string_list("SlurmOptions.extra_sbatch_args")(v))
    default_partition: str | None = attrs.field(default=None, validator=optional_name("SlurmOptions.default_partition"))
    default_account: str | None = attrs.field(default=None, validator=optional_name("SlurmOptions.default_account"))
    env: dict[str, str] = attrs.field(factory=dict, converter=lambda v: string_map("SlurmOptions.env")(v), hash=False)
    use_accounting: bool | None = None
    mail_type: str = attrs.field(default="END,FAIL", validator=optional_name("SlurmOptions.mail_type"))
    private_outputs: bool = True
    max_array_size: int | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.max_array_size is not None and (isinstance(self.max_array_size, bool) or not isinstance(
                self.max_array_size, int) or self.max_array_size < 1):
            raise ConfigError(f"SlurmOptions.max_array_size must be a whole number >= 1, got {self.max_array_size!r}")
        unknown = sorted(set(self.binaries) - set(SLURM_COMMANDS))
        if unknown:
            raise ConfigError(
                f"SlurmOptions.binaries: unknown command(s) {', '.join(unknown)}; "
                f"molq runs {', '.join(SLURM_COMMANDS)}"
            )
        if not isinstance(self.private_outputs, bool):
            raise ConfigError(f"SlurmOptions.private_outputs must be true or false, got {self.private_outputs!r}")
        if self.use_accounting is not None and not isinstance(self.use_accounting, bool):
            raise ConfigError(f"SlurmOptions.use_accounting must be true, false or unset, got {self.use_accounting!r}")

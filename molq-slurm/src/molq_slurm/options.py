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
from molq.errors import ConfigError
from molq.pacing import PacingPolicy
from molq.scheduler import SchedulerOptions, optional_name, positive_number, string_list, string_map

__all__ = ["SlurmOptions", "SLURM_COMMANDS"]

#: The SLURM client commands molq runs; ``binaries`` may point any of them elsewhere.
SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "scancel")






@attrs.frozen
class SlurmOptions(SchedulerOptions):
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
    * ``command_timeout`` -- seconds one SLURM command may take.
    * ``retry_attempts``, ``retry_initial_delay``, ``retry_factor`` -- how a command that
      failed transiently (controller not answering, socket timeout) is retried.
    * ``poll_interval`` / ``poll_interval_max`` -- seconds between two status polls of the
      cluster by all molq processes on the store together: the shortest (after submissions
      and changes) and the longest (while nothing moves).
    * ``commands_per_minute`` -- status commands all molq processes on the store may run per
      minute against this cluster.
    * ``max_array_size`` -- the cluster's ``MaxArraySize`` (largest array index + 1) instead of
      the value ``scontrol show config`` reports; arrays reaching it are split into several.
    """

    binaries: dict[str, str] = attrs.field(factory=dict, converter=lambda v: string_map("SlurmOptions.binaries")(v), hash=False)
    extra_sbatch_args: tuple[str, ...] = attrs.field(default=(), converter=lambda v: string_list("SlurmOptions.extra_sbatch_args")(v))
    default_partition: str | None = attrs.field(default=None, validator=optional_name("SlurmOptions.default_partition"))
    default_account: str | None = attrs.field(default=None, validator=optional_name("SlurmOptions.default_account"))
    env: dict[str, str] = attrs.field(factory=dict, converter=lambda v: string_map("SlurmOptions.env")(v), hash=False)
    use_accounting: bool | None = None
    mail_type: str = attrs.field(default="END,FAIL", validator=optional_name("SlurmOptions.mail_type"))
    private_outputs: bool = True
    command_timeout: float = attrs.field(default=60.0, validator=positive_number("SlurmOptions.command_timeout"))
    retry_attempts: int = attrs.field(default=3)
    retry_initial_delay: float = attrs.field(default=0.5)
    retry_factor: float = attrs.field(default=2.0)
    poll_interval: float = attrs.field(default=2.0, validator=positive_number("SlurmOptions.poll_interval"))
    poll_interval_max: float = attrs.field(default=30.0, validator=positive_number("SlurmOptions.poll_interval_max"))
    commands_per_minute: int = attrs.field(default=60, validator=positive_number("SlurmOptions.commands_per_minute"))
    max_array_size: int | None = attrs.field(default=None)

    def pacing(self) -> PacingPolicy:
        """These options' polling limits (:mod:`molq.pacing`)."""
        try:
            return PacingPolicy(self.poll_interval, self.poll_interval_max, self.commands_per_minute)
        except ConfigError as exc:
            raise ConfigError(f"SlurmOptions: {exc}") from None

    def __attrs_post_init__(self) -> None:
        self.pacing()  # refuse an inconsistent pair of intervals when the profile is read
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
        if isinstance(self.retry_attempts, bool) or not isinstance(self.retry_attempts, int) or self.retry_attempts < 1:
            raise ConfigError(f"SlurmOptions.retry_attempts must be a whole number >= 1, got {self.retry_attempts!r}")
        if not isinstance(self.retry_initial_delay, (int, float)) or self.retry_initial_delay < 0:
            raise ConfigError(f"SlurmOptions.retry_initial_delay must be >= 0, got {self.retry_initial_delay!r}")
        if not isinstance(self.retry_factor, (int, float)) or self.retry_factor < 1:
            raise ConfigError(f"SlurmOptions.retry_factor must be >= 1, got {self.retry_factor!r}")

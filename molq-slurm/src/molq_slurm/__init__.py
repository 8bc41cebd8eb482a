"""molq backend: SLURM.

``pip install molq-core molq-slurm``, then ``Cluster("hpc", "slurm", host="login1")``.
The pieces, for plugin authors and tests: :class:`SlurmDialect` (pure: script, command lines,
parsers), :class:`SlurmOptions` (profile settings), :func:`SlurmScheduler` (builds core's runner
for SLURM).
"""

from molq_slurm._version import __version__
from molq_slurm.dialect import SlurmDialect
from molq_slurm.options import SlurmOptions
from molq_slurm.scheduler import SlurmScheduler

__all__ = ["__version__", "SlurmDialect", "SlurmOptions", "SlurmScheduler"]

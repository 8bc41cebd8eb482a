"""molq backend: SLURM."""

from molq_slurm._version import __version__

__all__ = ["__version__"]

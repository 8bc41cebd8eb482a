"""molq backend: PBS."""

from molq_pbs._version import __version__

__all__ = ["__version__"]

"""molq backend: SSH."""

from molq_ssh._version import __version__

__all__ = ["__version__"]

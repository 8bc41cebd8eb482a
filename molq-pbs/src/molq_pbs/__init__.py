"""molq backend for PBS: PBS Professional / OpenPBS and Torque.

>>> from molq_pbs import PbsOptions
>>> PbsOptions(flavor="torque").flavor
'torque'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from molq_pbs._version import __version__
from molq_pbs.options import PbsOptions

if TYPE_CHECKING:
    from molq_pbs.dialect import PbsDialectBase, PbsProDialect, TorqueDialect
    from molq_pbs.scheduler import PBSScheduler, PbsScheduler

__all__ = [
    "__version__",
    "PbsOptions",
    "PbsDialectBase",
    "PbsProDialect",
    "TorqueDialect",
    "PbsScheduler",
    "PBSScheduler",
]

_LAZY = {
    "PbsDialectBase": "molq_pbs.dialect",
    "PbsProDialect": "molq_pbs.dialect",
    "TorqueDialect": "molq_pbs.dialect",
    "PbsScheduler": "molq_pbs.scheduler",
    "PBSScheduler": "molq_pbs.scheduler",
}


def __getattr__(name: str) -> Any:
    # Dialects load on first use so that plugin discovery stays cheap.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'molq_pbs' has no attribute {name!r}")


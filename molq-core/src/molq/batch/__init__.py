"""The shared batch runner: one engine for every batch scheduler, driven by an I/O-free dialect.

A backend (SLURM, PBS, LSF...) subclasses :class:`BatchDialect` with pure functions: render the
job script, build command lines, parse ``(returncode, stdout, stderr)``. :class:`BatchScheduler`
executes those command lines through the cluster's transport, batching many jobs into one
command, retrying transient failures, and falling back to the wrapper's exit-code file when the
scheduler has no accounting.

Import the names from here (``from molq.batch import BatchDialect``); each concept has its module:

- :mod:`molq.batch.dialect`: the dialect protocol (:class:`BatchDialect`,
  :class:`AccountingUnavailable`)
- :mod:`molq.batch.options`: the options every batch backend shares (:class:`BatchOptions`)
- :mod:`molq.batch.runner`: the scheduler runner (:class:`BatchScheduler`, :class:`RetrySettings`)
- :mod:`molq.batch.bulk`: many submissions in one command (the program and its answers)
- :mod:`molq.batch.packing`: like jobs of a bulk submission as one array (``pack_bulk``)
- :mod:`molq.batch.chunking`: splitting ids into command lines within a length budget
- :mod:`molq.batch.exit_files`: final states from the wrapper's exit-code files
- :mod:`molq.batch.site_limits`: the site's limits, read once per scheduler object
  (:class:`PartitionLimits`, :class:`SubmitLimits`)
"""

from __future__ import annotations

from molq.batch.chunking import chunk_ids
from molq.batch.dialect import AccountingUnavailable, BatchDialect
from molq.batch.exit_files import read_exit_files as read_exit_files
from molq.batch.options import BatchOptions
from molq.batch.packing import PACK_TAG_PREFIX
from molq.batch.runner import BatchScheduler, RetrySettings
from molq.batch.runner import options_kwargs as options_kwargs
from molq.batch.site_limits import PartitionLimits, SubmitLimit, SubmitLimits

__all__ = ["BatchDialect", "BatchOptions", "BatchScheduler", "RetrySettings", "chunk_ids", "AccountingUnavailable",
           "PartitionLimits", "SubmitLimit", "SubmitLimits", "PACK_TAG_PREFIX"]

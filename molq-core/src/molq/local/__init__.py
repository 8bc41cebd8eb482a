"""The local scheduler (``Cluster(name, "local")``): jobs run as detached processes.

Jobs start in their own session (so they outlive the submitting process and cancel can stop
the whole process group, grandchildren included), inside molq's wrapper. The scheduler keeps
a spool on the target host (``~/.molq/local-spool``); its layout is described in ``sh/lib.sh``.

- A job starts at most once: a queued job is claimed by renaming its entry to ``claimed/``
  under the spool lock before it is started, and its wrapper creates ``begun`` exclusively
  before anything runs, so of two wrappers of one job only the first runs it. A claim whose
  claimer died before the job began goes back to its place in the queue. A job whose running
  entry could not be written (a full disk) is known by the identity its wrapper recorded in
  ``started``. Identity is pid plus process start time, never pid alone.
- The queue advances by itself: when a job ends, its wrapper runs the spool's ``advance``
  pass, which starts the queued jobs that now fit and whose dependencies are satisfied, and
  ends those whose dependencies never can be. Nothing stays resident. Refreshes and cancels
  run the same pass (after a job killed with SIGKILL, nobody else would).
- Over a remote transport the same spool and scripts live on the remote host.

Modules: :mod:`~molq.local.options`, :mod:`~molq.local.queue` (decisions without I/O),
:mod:`~molq.local.host` (this machine), :mod:`~molq.local.remote` (over a transport),
:mod:`~molq.local.scripts` (the shell scripts, package data in ``sh/``),
:mod:`~molq.local.scheduler` (the Scheduler protocol).
"""

from __future__ import annotations

from molq.local.options import LocalSchedulerOptions
from molq.local.queue import CANCELLED_FILE, NEVER_RAN_FILE
from molq.local.scheduler import ShellScheduler, make_local_scheduler

__all__ = ["ShellScheduler", "LocalSchedulerOptions", "make_local_scheduler", "CANCELLED_FILE", "NEVER_RAN_FILE"]

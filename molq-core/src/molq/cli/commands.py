"""The built-in ``molq`` subcommands, re-exported from their modules.

Each command group has its own module (``submit_cmd``, ``view_cmd`` for list/show/watch,
``cancel_cmd``, ``logs_cmd``, ``queue_cmd``, ``cleanup_cmd``, ``plugins_cmd``,
``completion_cmd``; ``daemon_cmd``, ``profiles`` and ``store_cmd`` already had theirs), with the
shared helpers in :mod:`molq.cli.common` and :mod:`molq.cli.freshness`. This module only keeps
imports written against the former single module working; the CLI itself does not import it
(see ``BUILTIN_COMMANDS`` in :mod:`molq.cli`).
"""

from __future__ import annotations

from molq.cli.cancel_cmd import cancel
from molq.cli.cleanup_cmd import cleanup
from molq.cli.common import (
    Session,
    cluster_options,
    complete_job_ids,
    complete_profiles,
    json_option,
    open_store,
    parse_when,
    resolve_cluster,
    resolve_target,
)
from molq.cli.completion_cmd import completion
from molq.cli.freshness import confirmed_json, fresh_state
from molq.cli.logs_cmd import logs
from molq.cli.plugins_cmd import plugins
from molq.cli.queue_cmd import queue
from molq.cli.submit_cmd import StoreWaitNotice, submit
from molq.cli.view_cmd import dashboard, last_reason, list_cmd, pending_reasons, show, watch

__all__ = [
    "Session", "StoreWaitNotice", "cancel", "cleanup", "cluster_options", "complete_job_ids", "complete_profiles",
    "completion", "confirmed_json", "dashboard", "fresh_state", "json_option", "last_reason", "list_cmd", "logs",
    "open_store", "parse_when", "pending_reasons", "plugins", "queue", "resolve_cluster", "resolve_target", "show",
    "submit", "watch",
]

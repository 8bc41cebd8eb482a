"""``molq logs``: print (or follow) a job's output or error through the cluster's transport."""

from __future__ import annotations

import time
from typing import Any

import click

from molq.cli import render
from molq.cli.common import Session, complete_job_ids
from molq.errors import ConfigError


def _log_path(sub: Any, rec: Any, stderr: bool) -> str:
    from molq import wrapper

    spec = sub.store.get_internal(sub.cluster_name, rec.job_id)["spec"]
    execution = spec.get("execution") or {}
    name = execution.get("error_file" if stderr else "output_file")
    if name:
        return wrapper.join_path(rec.cwd or rec.job_dir, name)
    return wrapper.join_path(rec.job_dir, wrapper.STDERR_FILE if stderr else wrapper.STDOUT_FILE)


def _finished(rec: Any) -> bool:
    return bool(rec.is_terminal and not (rec.next_retry_at is not None and rec.retried_by is None))


@click.command()
@click.argument("job_id", shell_complete=complete_job_ids)
@click.option("--stderr", "use_stderr", is_flag=True, help="Standard error instead of output.")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing as the job writes, until it ends; then exit 0 if it succeeded, 1 if not.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=None, help="Only the last N lines.")
def logs(job_id: str, use_stderr: bool, follow: bool, lines: int | None) -> int:
    """Print a job's output (through the cluster's transport, so remote jobs work too)."""
    sess = Session()
    sub, rec = sess.find(job_id)
    rec = sess.store.latest_attempts(sub.cluster_name, [rec.root_job_id])[rec.root_job_id]
    what = "error" if use_stderr else "output"
    if rec.cleaned_at is not None:
        raise ConfigError(f"the {what} of {rec.job_id[:8]} is gone: cleanup removed its job directory "
                          f"{render.ago(rec.cleaned_at)} ({rec.job_dir})")
    transport = sub.target.transport
    path = _log_path(sub, rec, use_stderr)
    content = transport.read_many([path]).get(path)
    if not content and not follow and rec.state.value in ("created", "submitted", "queued"):
        # The file may exist already (created private at submission), but nothing ran yet.
        raise ConfigError(f"no {what} file yet for {rec.job_id[:8]}, which is {rec.state.value} ({path})")
    if content is None and not follow:
        if rec.job_dir and _finished(rec) and not transport.exists(rec.job_dir):
            raise ConfigError(f"the {what} of {rec.job_id[:8]} is gone: its job directory {rec.job_dir} "
                              f"no longer exists")
        if _finished(rec):
            raise ConfigError(f"{rec.job_id[:8]} ended {rec.state.value} without writing an {what} file ({path})")
        raise ConfigError(f"no {what} file yet for {rec.job_id[:8]}, which is {rec.state.value} ({path})")
    content = content or ""
    if lines is not None:
        content = "".join(content.splitlines(keepends=True)[-lines:]) if lines else ""
    click.echo(content, nl=False)
    if not follow:
        return 0
    printed = len(transport.read_many([path]).get(path) or "")
    while True:
        sub.refresh_jobs()
        current = transport.read_many([path]).get(path) or ""
        if len(current) > printed:
            click.echo(current[printed:], nl=False)
            printed = len(current)
        rec = sess.store.latest_attempts(sub.cluster_name, [rec.root_job_id])[rec.root_job_id]
        if _finished(rec):
            current = transport.read_many([path]).get(path) or ""
            click.echo(current[printed:], nl=False)
            return 0 if rec.state.value == "succeeded" else 1
        time.sleep(0.5)

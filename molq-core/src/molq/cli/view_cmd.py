"""Looking at jobs: ``molq list``, ``molq show`` and ``molq watch``."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import click

from molq.cli import render
from molq.cli.common import Session, complete_job_ids, json_option, parse_when, store_url
from molq.cli.freshness import Warnings, age_text, confirmed_json, fresh_state, needs_refresh
from molq.errors import MolqError

_SORT_KEYS = ("submitted", "created", "state", "name", "cluster", "elapsed", "id")
_STATE_ORDER = {s: i for i, s in enumerate(render.STATE_COLOURS)}


def _sort_key(field: str, now: float) -> Any:
    if field == "state":
        return lambda r: (_STATE_ORDER.get(r.state.value, 99), -(r.submitted_at or r.created_at or 0))
    if field == "name":
        return lambda r: ((r.job_name or "").lower(), r.job_id)
    if field == "cluster":
        return lambda r: (r.cluster_name, -(r.created_at or 0))
    if field == "elapsed":
        return lambda r: -(render.elapsed(r, now) or -1)
    if field == "id":
        return lambda r: r.job_id
    if field == "created":
        return lambda r: -(r.created_at or 0)
    return lambda r: -(r.submitted_at or r.created_at or 0)


@click.command("list")
@click.option("-a", "--all", "show_all", is_flag=True, help="Include finished jobs.")
@click.option("--state", "states", multiple=True,
              type=click.Choice(["created", "submitted", "queued", "running", "succeeded", "failed",
                                 "cancelled", "timed_out", "lost"]), help="Only jobs in this state (repeatable).")
@click.option("-c", "--cluster", "cluster_name", default=None, help="Only this cluster.")
@click.option("--name", "name_pattern", metavar="PATTERN", default=None,
              help="Only jobs whose name matches this shell pattern, e.g. 'train-*'.")
@click.option("--since", metavar="WHEN", default=None,
              help="Only jobs created since WHEN: a duration ago (2h, 30m, 1d) or an ISO date/time.")
@click.option("--until", metavar="WHEN", default=None, help="Only jobs created before WHEN (same forms as --since).")
@click.option("--sort", "sort_field", type=click.Choice(_SORT_KEYS), default="submitted",
              help="Order of the rows (newest first for times, longest first for elapsed).")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None, help="At most this many rows.")
@click.option("-w", "--wide", is_flag=True, help="Full ids and commands; do not fit the terminal width.")
@click.option("--columns", metavar="LIST", default=None,
              help=f"Comma-separated columns to show, in order, from: {', '.join(render.ALL_COLUMNS)}.")
@click.option("--refresh", is_flag=True,
              help="Ask the schedulers of every cluster first, even when their state is fresh (slower).")
@click.option("--no-refresh", is_flag=True,
              help="Show the stored state without asking any scheduler (says how old it is).")
@json_option
def list_cmd(show_all: bool, states: tuple[str, ...], cluster_name: str | None, name_pattern: str | None,
             since: str | None, until: str | None, sort_field: str, limit: int | None, wide: bool,
             columns: str | None, refresh: bool, no_refresh: bool, as_json: bool) -> int:
    """List jobs: active ones by default, newest first.

    On a terminal the table fits its width (-w shows everything) and ends with a count per
    state. ELAPSED is the running time so far, or the total of a finished job; REASON is why
    a queued job waits, or why a job failed.

    Active jobs are refreshed first when their stored state is stale (always on the local
    scheduler; at most every few seconds elsewhere).
    """
    from molq._states import JobState
    from molq.store.lite import list_jobs as lite_list
    from molq.store.lite import lite_location, store_absent

    chosen = None
    if columns is not None:
        chosen = [c.strip().lower().replace("-", "_") for c in columns.split(",") if c.strip()]
        unknown = [c for c in chosen if c not in render.ALL_COLUMNS]
        if unknown or not chosen:
            raise click.BadParameter(f"unknown column(s) {', '.join(unknown) or '(none given)'}; "
                                     f"choose from {', '.join(render.ALL_COLUMNS)}", param_hint="--columns")
    now = time.time()
    lower = parse_when(since, "--since", now) if since else None
    upper = parse_when(until, "--until", now) if until else None
    filtered = bool(name_pattern or lower or upper or sort_field != "submitted")
    url = store_url()
    path = None if refresh else lite_location(url)
    query: dict[str, Any] = dict(include_terminal=show_all or bool(states), states=[JobState(s) for s in states] or None,
                 limit=None if filtered else limit, newest_first=True)
    if refresh and no_refresh:
        raise click.UsageError("--refresh and --no-refresh contradict each other")
    records: Any
    lite = path is not None
    confirmed: dict[str, float | None] = {}
    if path is not None and store_absent(path):
        records = []  # nothing was ever submitted: no store to create just to list it
    elif path is not None:
        import sqlite3

        from molq.errors import StoreError

        try:
            # A plain listing imports neither SQLAlchemy nor the model: LiteRecord rows.
            records = lite_list(path, cluster_name, lite=True, **query)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the job store {url}: {exc}") from None
    else:
        sess = Session()
        if refresh:
            from molq.daemon import daemon_files, note_refreshed

            for name, *_ in sess.store.list_clusters():
                if cluster_name in (None, name):
                    sess.submitor(name).refresh_jobs()
                    confirmed[name] = time.time()
                    note_refreshed(daemon_files(url), name, confirmed[name])
        records = sess.store.list_jobs(cluster_name, **query)
    if not refresh:
        stale = [r.cluster_name for r in records if needs_refresh(r)]
        if stale:
            if no_refresh:
                confirmed = fresh_state(None, stale, no_refresh=True)
            else:
                # Only now is the full store opened: a listing of finished jobs stays model-free.
                if lite:
                    sess = Session()
                    lite = False
                confirmed = fresh_state(sess, stale)
                records = sess.store.list_jobs(cluster_name, **query)
    if name_pattern:
        import fnmatch

        records = [r for r in records if fnmatch.fnmatchcase(r.job_name or "", name_pattern)]
    if lower is not None:
        records = [r for r in records if (r.created_at or 0) >= lower]
    if upper is not None:
        records = [r for r in records if (r.created_at or 0) < upper]
    if sort_field != "submitted":
        records = sorted(records, key=_sort_key(sort_field, now))
    if limit is not None:
        records = records[:limit]
    if as_json:
        render.dump_json([confirmed_json(render.record_json(r, now=now), r, confirmed) for r in records])
        return 0
    if not records:
        click.echo("no jobs" + ("" if show_all or states else " active (use --all to include finished ones)"), err=True)
        return 0
    # Pending reasons live in the transitions; the lite path reads only job rows, so they are
    # shown when the full store is open anyway (--refresh, or a store other than SQLite).
    reasons = {} if lite else pending_reasons(sess.store, records)
    click.echo(render.jobs_table(records, now=now, max_width=render.terminal_width(), wide=wide, reasons=reasons,
                                 columns=chosen))
    if render.is_tty():
        click.echo(render.summary(records))
    return 0


def pending_reasons(store: Any, records: Any) -> dict[str, str]:
    """Why each queued job waits: the reason of the transition that made it queued (SLURM's
    Priority, Resources, Dependency ...)."""
    out: dict[str, str] = {}
    for rec in records:
        if rec.state.value != "queued":
            continue
        reason = last_reason(store.get_transitions(rec.cluster_name, rec.job_id), "queued")
        if reason:
            out[rec.job_id] = reason
    return out


def last_reason(transitions: Any, state: str) -> str | None:
    """The scheduler's reason on the latest transition into ``state``, unless it is only the
    generic "scheduler reports ..." note."""
    for tr in reversed(list(transitions)):
        if tr.new_state.value == state:
            reason = tr.reason or ""
            return None if not reason or reason.startswith("scheduler reports") else reason
    return None


@click.command()
@click.argument("job_id", shell_complete=complete_job_ids)
@click.option("--no-refresh", is_flag=True,
              help="Show the stored state without asking the scheduler (says how old it is).")
@json_option
def show(job_id: str, no_refresh: bool, as_json: bool) -> int:
    """Show a job: its record, transitions, retry family and dependencies.

    An active job is refreshed first when its stored state is stale."""
    sess = Session()
    sub, rec = sess.find(job_id)
    confirmed: dict[str, float | None] = {}
    if needs_refresh(rec):
        confirmed = fresh_state(sess, [sub.cluster_name], no_refresh=no_refresh)
        rec = sub.get_job(rec.job_id)
    transitions = sub.get_transitions(rec.job_id)
    family = sub.get_retry_family(rec.job_id)
    deps = sub.get_dependencies(rec.job_id)
    dependents = sub.get_dependents(rec.job_id)
    if as_json:
        data = confirmed_json(render.record_json(rec), rec, confirmed)
        data["pending_reason"] = last_reason(transitions, "queued") if rec.state.value == "queued" else None
        data["transitions"] = [render.transition_json(t) for t in transitions]
        data["retry_family"] = [{"job_id": r.job_id, "attempt": r.attempt, "state": r.state.value} for r in family]
        data["dependencies"] = [render.dependency_json(d) for d in deps]
        data["dependents"] = [render.dependency_json(d) for d in dependents]
        render.dump_json(data)
        return 0
    fields = [
        ("job id", rec.job_id), ("cluster", rec.cluster_name), ("scheduler", rec.scheduler),
        ("state", _state_line(rec, transitions)),
        ("scheduler id", rec.scheduler_job_id or "-"), ("name", rec.job_name or "-"),
        ("command", rec.command_display), ("cwd", rec.cwd or "-"), ("job dir", rec.job_dir or "-"),
        ("attempt", f"{rec.attempt} (root {rec.root_job_id[:8]})"),
        ("resources", render.resources_text(sub.store.internals(rec.cluster_name, rec.job_id).spec)),
        ("exit code", "-" if rec.exit_code is None else str(rec.exit_code)),
        ("end cause", render.cause_text(rec) or "-"),
        ("reason", rec.failure_reason or "-"),
        ("submitted", f"{render.iso(rec.submitted_at)} ({render.ago(rec.submitted_at)})" if rec.submitted_at else "-"),
        ("started", render.iso(rec.started_at) or "-"), ("finished", render.iso(rec.finished_at) or "-"),
    ]
    if rec.next_retry_at:
        fields.append(("next retry", f"{render.iso(rec.next_retry_at)} ({render.ago(rec.next_retry_at)})"))
    if rec.metadata:
        fields.append(("metadata", ", ".join(f"{k}={v}" for k, v in rec.metadata.items())))
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        click.echo(f"{key.rjust(width)}: {render.safe(value)}")
    render.echo_usage(rec)
    click.echo("\ntransitions:")
    for t in transitions:
        old = t.old_state.value if t.old_state else "-"
        click.echo(f"  {render.iso(t.timestamp)}  {old} -> {t.new_state.value}"
                   + (f"  ({render.safe(t.reason)})" if t.reason else ""))
    if len(family) > 1:
        click.echo("\nretry family:")
        for r in family:
            marker = " *" if r.job_id == rec.job_id else ""
            click.echo(f"  attempt {r.attempt}: {r.job_id[:8]} {r.state.value}{marker}")
    if deps:
        click.echo("\ndepends on:")
        for d in deps:
            click.echo(f"  {d.dependency_type} {d.dependency_job_id[:8]}" + (f" ({d.scheduler_dependency})" if d.scheduler_dependency else ""))
    if dependents:
        click.echo("\nneeded by:")
        for d in dependents:
            click.echo(f"  {d.job_id[:8]} ({d.dependency_type})")
    return 0


def _state_line(rec: Any, transitions: Any) -> str:
    """The state, with the scheduler's own word and reason while the job is active. A finished
    job's raw state is left out: it is the last one polled (``RUNNING`` of a job cancelled
    since, ``PENDING`` of one whose dependency failed), and the reason line says how it ended."""
    text = render.state_text(rec.state.value)
    if rec.state.value in render.TERMINAL_STATES:
        return text
    details = [d for d in (rec.raw_state, last_reason(transitions, rec.state.value)) if d]
    text += f" ({': '.join(details)})" if details else ""
    if rec.sub_state is not None:  # e.g. "queued (PENDING), held: JobHeldUser"
        text += f", {rec.sub_state.label}" + (f": {rec.sub_state_reason}" if rec.sub_state_reason else "")
    return text


_RELEVANCE = {"running": 0, "queued": 1, "submitted": 2, "created": 3, "failed": 4, "timed_out": 4, "lost": 4,
              "cancelled": 5, "succeeded": 6}


def dashboard(records: list[Any], clusters: list[str], *, width: int, height: int, now: float | None = None,
              reasons: dict[str, str] | None = None) -> str:
    """One frame of ``molq watch`` on a terminal: a header (clusters, clock, counts) and the
    most relevant jobs (running, then queued, then finished) that fit ``height`` rows, with
    "+N more" for the rest."""
    now = time.time() if now is None else now
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    header = f"molq watch  {', '.join(clusters)}  {clock}  {render.summary(records)}"
    ordered = sorted(records, key=lambda r: (_RELEVANCE.get(r.state.value, 9),
                                             -(r.finished_at or r.started_at or r.submitted_at or r.created_at or 0)))
    room = max(height - 4, 1)  # header, blank line, column titles, and the "+N more" line
    shown = ordered if len(ordered) <= room + 1 else ordered[:room]
    lines = [render.truncate(header, width), "", render.jobs_table(shown, now=now, max_width=width, reasons=reasons)]
    if len(shown) < len(ordered):
        lines.append(f"+{len(ordered) - len(shown)} more (molq list --all)")
    return "\n".join(lines)


@click.command()
@click.argument("job_ids", nargs=-1, shell_complete=complete_job_ids)
@click.option("--interval", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds between refreshes (default: from 0.2 s, growing to 5 s).")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="Give up after this many seconds (exit 124).")
@click.option("--no-refresh", is_flag=True,
              help="Only read the store (a daemon advances the jobs); ask no scheduler.")
@json_option
def watch(job_ids: tuple[str, ...], interval: float | None, timeout: float | None, no_refresh: bool,
          as_json: bool) -> int:
    """Follow jobs (default: every active job) until all are finished.

    On a terminal it is a dashboard redrawn in place: the clusters, the time, a count per
    state, and as many jobs as the window holds (running first). Piped, it prints one line
    per state change. Exits 0 if every job succeeded, 1 otherwise.
    """
    sess = Session()
    roots: dict[str, list[str]] = defaultdict(list)
    if job_ids:
        for j in job_ids:
            sub, rec = sess.find(j)
            if rec.root_job_id not in roots[sub.cluster_name]:
                roots[sub.cluster_name].append(rec.root_job_id)
    else:
        for rec in sess.store.list_jobs(None):
            if rec.root_job_id not in roots[rec.cluster_name]:
                roots[rec.cluster_name].append(rec.root_job_id)
    if not roots:
        click.echo("no active jobs", err=True)
        return 0
    deadline = None if timeout is None else time.monotonic() + timeout
    tty = render.is_tty() and not as_json
    seen: dict[str, str] = {}
    confirmed: dict[str, float | None] = {}
    if no_refresh:
        confirmed = fresh_state(None, list(roots), no_refresh=True)
    unreachable: dict[str, str] = {}
    delay = interval or 0.2
    drawn = False
    try:
        while True:
            latest = []
            pending = False
            for cluster_name, ids in roots.items():
                if not no_refresh:
                    _watch_refresh(sess, cluster_name, confirmed, unreachable)
                found = sess.store.latest_attempts(cluster_name, ids)
                for root in ids:
                    rec = found[root]
                    latest.append(rec)
                    if not rec.is_terminal or (rec.next_retry_at is not None and rec.retried_by is None):
                        pending = True
            if tty:
                size = render.terminal_size()
                frame = dashboard(latest, list(roots), width=size.columns, height=size.lines,
                                  reasons=pending_reasons(sess.store, latest))
                # Home and clear to the end: the frame replaces the previous one instead of
                # adding a copy to the scrollback.
                click.echo(("\x1b[H\x1b[J" if drawn else "\x1b[2J\x1b[H") + frame)
                drawn = True
            elif not as_json:
                for rec in latest:
                    key = f"{rec.job_id}:{rec.state.value}"
                    if seen.get(rec.root_job_id) != key:
                        seen[rec.root_job_id] = key
                        click.echo(f"{render.iso(time.time())} {rec.root_job_id[:8]} attempt {rec.attempt} {rec.state.value}"
                                   + (f" exit={rec.exit_code}" if rec.exit_code is not None else ""))
            if not pending:
                if as_json:
                    render.dump_json([confirmed_json(render.record_json(r), r, confirmed) for r in latest])
                return 0 if all(r.state.value == "succeeded" for r in latest) else 1
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"jobs still active after {timeout:g} s")
            time.sleep(delay)
            if interval is None:
                delay = min(delay * 1.5, 5.0)
    except KeyboardInterrupt:
        click.echo("\nmolq: stopped watching; the jobs keep running (`molq list` shows them)", err=True)
        return 130


def _watch_refresh(sess: Session, name: str, confirmed: dict[str, float | None], unreachable: dict[str, str]) -> None:
    """One refresh of ``name`` for ``molq watch``; an unreachable cluster is said once (and
    when it answers again), and the watch goes on with the stored state."""
    from molq.cli.errors import one_line
    from molq.daemon import daemon_files, note_refreshed, refreshed_at

    files = daemon_files(store_url())
    now = time.time()
    with Warnings() as warned:
        try:
            sess.submitor(name).refresh_jobs()
            problem = warned.messages[0] if warned.messages else None
        except MolqError as exc:
            problem = str(exc)
    if problem is None:
        confirmed[name] = now
        note_refreshed(files, name, now)
        if unreachable.pop(name, None) is not None:
            click.echo(f"molq: {name}: refreshed again", err=True)
    elif name not in unreachable:
        unreachable[name] = problem
        last = confirmed.get(name) or refreshed_at(files).get(name)
        click.echo(f"molq: {name}: could not refresh ({one_line(problem)}); {age_text(last)}; "
                   f"still trying", err=True)

"""The built-in ``molq`` subcommands."""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import click

from molq.cli import render
from molq.errors import ConfigError, MolqError

# -- shared helpers -------------------------------------------------------------------------


def open_store() -> Any:
    """The job store, with a missing database driver or an unusable directory said in one
    line (the store URL named)."""
    from molq.cli.errors import describe_oserror, missing_driver
    from molq.errors import StoreError

    url = _store_url()
    try:
        from molq.store import open_store as _open

        return _open()
    except ModuleNotFoundError as exc:
        message = missing_driver(exc, url)
        if message is None:
            raise
        raise StoreError(message) from None
    except OSError as exc:
        raise StoreError(f"cannot open the job store {url}: {describe_oserror(exc)}") from None


def _store_url() -> str:
    env = os.environ.get("MOLQ_STORE_URL")
    if env:
        return env
    from molq.identity import molq_home_dir

    return f"sqlite:///{os.path.join(molq_home_dir(), 'jobs.db')}"


def resolve_target(cluster_name: str | None, profile: str | None, store: Any = None) -> tuple[Any, str | None]:
    """(cluster, profile name or None) named on the command line: ``-p`` a profile, ``-c`` a
    profile or a cluster known to the store, neither the default profile (or the local
    scheduler when no profile is the default). The profile, when there is one, is what
    supplies a submission's defaults."""
    from molq.cluster import Cluster
    from molq.config import load_config

    if profile:
        return Cluster.from_profile(profile), profile
    config = load_config()
    if not cluster_name:
        if config.default_profile:
            return Cluster.from_profile(config.default_profile), config.default_profile
        return Cluster("local"), None
    if cluster_name in config.profiles:
        return Cluster.from_profile(cluster_name), cluster_name
    for prof in config.profiles.values():
        if prof.effective_cluster_name == cluster_name:
            return Cluster.from_profile(prof.name), prof.name
    if store is not None:
        targets = store.cluster_targets()
        if cluster_name in targets:
            target, prof_name = targets[cluster_name]
            return Cluster.from_target(cluster_name, target, prof_name), None
    if cluster_name == "local":
        return Cluster("local"), None
    raise ConfigError(
        f"unknown cluster {cluster_name!r}: no profile and no job in the store names it "
        f"(add one with `molq profile add`)"
    )


def resolve_cluster(cluster_name: str | None, profile: str | None, store: Any = None) -> Any:
    """The cluster of :func:`resolve_target`."""
    return resolve_target(cluster_name, profile, store)[0]


class Session:
    """One store and the Submitors built on it, one per cluster touched by a command."""

    def __init__(self) -> None:
        self.store = open_store()
        self._submitors: dict[str, Any] = {}
        self._targets: dict[str, Any] | None = None

    def submitor(self, cluster_name: str) -> Any:
        from molq.cluster import Cluster
        from molq.submitor import Submitor

        if cluster_name not in self._submitors:
            if self._targets is None:
                self._targets = self.store.cluster_targets()
            target, profile = self._targets.get(cluster_name, (None, None))
            cluster = Cluster.from_target(cluster_name, target, profile)
            self._submitors[cluster_name] = Submitor(cluster, store=self.store, profile_name=profile)
        return self._submitors[cluster_name]

    def find(self, job_id: str) -> tuple[Any, Any]:
        """(submitor, record) for an id or unique prefix, in any cluster."""
        cluster_name, full = self.store.resolve_job_id(None, job_id)
        sub = self.submitor(cluster_name)
        return sub, sub.get_job(full)


def complete_job_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    try:
        store = open_store()
        records = store.list_jobs(None, include_terminal=True, limit=200, newest_first=True)
    except Exception:  # noqa: BLE001 - completion must never fail loudly
        return []
    return [CompletionItem(r.job_id[:8], help=f"{r.state.value} {r.command_display[:40]}")
            for r in records if r.job_id.startswith(incomplete)]


def complete_profiles(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    try:
        from molq.config import load_config

        return [name for name in load_config().profiles if name.startswith(incomplete)]
    except Exception:  # noqa: BLE001
        return []


def cluster_options(fn: Any) -> Any:
    fn = click.option("-p", "--profile", default=None, shell_complete=complete_profiles,
                      help="Use this profile (from ~/.molq/config.toml).")(fn)
    fn = click.option("-c", "--cluster", "cluster_name", default=None,
                      help="Cluster name (a profile or a cluster the store knows). Default: local.")(fn)
    return fn


def json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True,
                        help='Print JSON instead of text (versioned: every object has "schema": 1; see the CLI page).')(fn)


# -- submit ---------------------------------------------------------------------------------


def _parse_env(values: Iterable[str]) -> dict[str, str] | None:
    env = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env needs KEY=VALUE, got {item!r}")
        env[key] = value
    return env or None


@click.command(context_settings={"ignore_unknown_options": False})
@cluster_options
@click.option("--cpus", type=int, help="CPUs (per task).")
@click.option("--mem", help="Memory, e.g. 4G or 512M.")
@click.option("--gpus", type=int, help="Number of GPUs.")
@click.option("--gpu-type", help="GPU model, e.g. a100.")
@click.option("--time", "time_limit", help="Time limit, e.g. 2h30m or 04:00:00.")
@click.option("--partition", "--queue", "partition", help="Partition (SLURM) or queue (PBS, LSF).")
@click.option("--account", help="Account / project to charge.")
@click.option("--qos", help="Quality of service.")
@click.option("--nodes", type=int, help="Number of nodes.")
@click.option("--array", "array_spec", help="Array spec, e.g. 1-10%2.")
@click.option("--name", help="Job name.")
@click.option("--cwd", help="Working directory (on the cluster); it must exist.")
@click.option("--env", "env", multiple=True, metavar="K=V", help="Environment variable (repeatable).")
@click.option("--after-success", multiple=True, metavar="ID", shell_complete=complete_job_ids,
              help="Start after this job succeeded (repeatable).")
@click.option("--after-failure", multiple=True, metavar="ID", shell_complete=complete_job_ids,
              help="Start after this job failed.")
@click.option("--after-started", multiple=True, metavar="ID", shell_complete=complete_job_ids,
              help="Start once this job started.")
@click.option("--after", multiple=True, metavar="ID", shell_complete=complete_job_ids,
              help="Start after this job ended, whatever the result.")
@click.option("--retries", type=click.IntRange(min=0), default=0, help="Extra attempts on failure.")
@click.option("--retry-on", metavar="CAUSES",
              help="Retry only these end causes, e.g. oom,timeout (implies one retry without --retries).")
@click.option("--grow-memory", type=float, metavar="FACTOR",
              help="Retry an out-of-memory job with its memory times FACTOR (default 1.5, at most 64G).")
@click.option("--command", "shell_command", metavar="TEXT",
              help="Run this shell command line (pipes, redirections, $VARS), e.g. 'make && ./run > out'.")
@click.option("--script", "script_file", type=click.Path(exists=True, dir_okay=False, readable=True),
              help="Run this script file (its text is copied at submission, as sbatch does).")
@click.option("--dry-run", is_flag=True, help="Print the job script as it would be submitted; submit nothing.")
@click.option("--wait", is_flag=True, help="Follow the job to its end; exit with its exit code.")
@click.option("--json", "as_json", is_flag=True,
              help='Print the submitted job as JSON (the shape of `molq show --json`, "schema": 1).')
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def submit(cluster_name: str | None, profile: str | None, cpus: int | None, mem: str | None,
           gpus: int | None, gpu_type: str | None, time_limit: str | None, partition: str | None,
           account: str | None, qos: str | None, nodes: int | None, array_spec: str | None,
           name: str | None, cwd: str | None, env: tuple[str, ...], after_success: tuple[str, ...],
           after_failure: tuple[str, ...], after_started: tuple[str, ...], after: tuple[str, ...],
           retries: int, retry_on: str | None, grow_memory: float | None, shell_command: str | None, script_file: str | None, dry_run: bool, wait: bool,
           as_json: bool, command: tuple[str, ...]) -> int:
    """Submit a job and print its id.

    What runs is one of: a program and its arguments after `--` (`molq submit -- python
    run.py --fast`), a shell command line (`--command 'echo $HOME > out'`) or a script file
    (`--script run.sh`). Without -p/-c the job goes to the default profile, whose defaults
    (partition, time, ...) apply; options given here override them.
    """
    from molq.model import JobExecution, JobResources, JobScheduling, Script
    from molq.retry_rules import policy_from_options
    from molq.submitor import Submitor

    given = [what for what, value in (("a command after --", command), ("--command", shell_command),
                                      ("--script", script_file)) if value]
    if len(given) != 1:
        raise click.UsageError(
            "give exactly one of: a command after --, --command TEXT or --script FILE"
            + (f" (got {' and '.join(given)})" if given else ""))
    resources = JobResources(cpu_count=cpus, memory=mem, gpu_count=gpus, gpu_type=gpu_type, time_limit=time_limit)
    scheduling = JobScheduling(partition=partition, account=account, qos=qos, node_count=nodes, array_spec=array_spec)
    execution = JobExecution(env=_parse_env(env), cwd=cwd, job_name=name)
    script = None
    if script_file:
        with open(script_file) as fh:
            script = Script.inline(fh.read(), name=script_file)
    with StoreWaitNotice(_store_url()):
        store = open_store()  # may wait too: opening checks the schema in a write transaction
    cluster, profile_name = resolve_target(cluster_name, profile, store)
    if cwd is not None:
        _check_cwd(cluster, cwd)
    if profile_name:
        submitor = Submitor.from_profile(profile_name, target=cluster, store=store)
    else:
        submitor = Submitor(cluster, store=store)
    deps: dict[str, list[str]] = {}
    for cond, ids in (("after_success", after_success), ("after_failure", after_failure),
                      ("after_started", after_started), ("after", after)):
        if ids:
            deps[cond] = [_full_id(store, cluster.name, i) for i in ids]
    job: dict[str, Any] = dict(
        argv=list(command) if command else None, command=shell_command, script=script,
        resources=resources, scheduling=scheduling, execution=execution,
        retry=policy_from_options(retries, retry_on, grow_memory), **deps,
    )
    if dry_run:
        click.echo(_job_script(submitor, job), nl=False)
        return 0
    with StoreWaitNotice(_store_url()):
        handle = submitor.submit_job(**job)
    if (retries or deps) and cluster.scheduler != "local":
        _ensure_daemon(store, cluster.name)
    if as_json:
        submitted = submitor.get_job(handle.job_id)
        render.dump_json(confirmed_json(render.record_json(submitted), submitted, {}))
    else:
        click.echo(handle.job_id)
    if not wait:
        return 0
    try:
        record = handle.wait()
    except KeyboardInterrupt:
        state = submitor.get_job(handle.job_id).state.value
        click.echo(f"\nmolq: stopped waiting; job {handle.job_id[:8]} is still {state} "
                   f"(follow it with `molq watch {handle.job_id[:8]}`, cancel it with "
                   f"`molq cancel {handle.job_id[:8]}`)", err=True)
        return 130
    if not as_json:
        click.echo(f"{handle.job_id[:8]} {render.state_text(record.state.value)}"
                   + (f": {record.failure_reason}" if record.failure_reason else ""), err=True)
    if record.exit_code is not None:
        return record.exit_code if 0 <= record.exit_code < 256 else 1
    return 0 if record.state.value == "succeeded" else 1


def _ensure_daemon(store: Any, cluster_name: str) -> None:
    """Retries and dependency releases on a batch cluster need a process that refreshes it
    once the submitter is gone: start a daemon unless one already reconciles the cluster."""
    from molq.daemon import ensure_running

    try:
        pid = ensure_running(store, cluster_name)
    except MolqError as exc:
        click.echo(f"molq: could not start a daemon for retries and dependencies ({exc}); "
                   f"run `molq daemon start`", err=True)
        return
    if pid is not None:
        click.echo(f"molq: started a daemon (pid {pid}) that submits retries and releases dependent jobs "
                   f"of {cluster_name} when they are due; it exits when no work is left "
                   f"(`molq daemon status` shows it)", err=True)


def _check_cwd(cluster: Any, cwd: str) -> None:
    """Refuse a working directory that does not exist (sbatch refuses one too), before
    anything is persisted; a relative one is relative to here, or to the home directory on
    a remote cluster."""
    transport = cluster.transport
    if transport.is_remote:
        path = cwd if cwd.startswith("/") else f"{transport.home().rstrip('/')}/{cwd}"
        exists = transport.exists(path)
        where = f" on {cluster.host}"
    else:
        path = os.path.abspath(os.path.expanduser(cwd))
        exists = os.path.isdir(path)
        where = ""
        if os.path.exists(path) and not exists:
            raise ConfigError(f"--cwd {cwd}: {path} is not a directory")
    if not exists:
        raise ConfigError(f"--cwd {cwd}: no such directory{where} ({path}); create it first")


def _job_script(submitor: Any, job: dict[str, Any]) -> str:
    """The job script exactly as the scheduler would be given it, rendered by the scheduler's
    own code for a job directory that is not created."""
    return str(submitor.render_job_script(**job))


class StoreWaitNotice:
    """Say so on stderr when an operation waits for the job store's write lock (held by another
    process) for more than ``after`` seconds, instead of hanging silently."""

    def __init__(self, url: str, after: float = 2.0) -> None:
        import threading

        from molq.store_lite import sqlite_path

        self._path = sqlite_path(url)
        self._done = threading.Event()
        self._after = after
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _locked(self) -> bool:
        import sqlite3

        assert self._path is not None
        try:
            conn = sqlite3.connect(self._path, timeout=0, isolation_level=None)
        except sqlite3.Error:
            return False
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError as exc:
            return "locked" in str(exc) or "busy" in str(exc)
        finally:
            conn.close()

    def _watch(self) -> None:
        if self._done.wait(self._after) or self._path is None:
            return
        if self._locked():
            click.echo(f"molq: waiting for the job store {self._path}: another process holds its write lock "
                       f"(a long `molq daemon` pass or a big submission?); giving up after 60 s", err=True)

    def __enter__(self) -> StoreWaitNotice:
        if self._path is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()


def _full_id(store: Any, cluster_name: str, prefix: str) -> str:
    from molq.errors import JobNotFoundError

    try:
        return store.resolve_job_id(cluster_name, prefix)[1]
    except JobNotFoundError as exc:
        raise ConfigError(str(exc)) from None


# -- fresh state ----------------------------------------------------------------------------


def _needs_refresh(rec: Any) -> bool:
    """Whether the scheduler may know more than the stored record: an active job, or one
    whose retry is still to come."""
    return rec.state.value not in render.TERMINAL_STATES or (rec.next_retry_at is not None and rec.retried_by is None)


class _Warnings:
    """Collects what the engine warns about during one refresh (an unanswered scheduler
    query), instead of letting Python print it raw."""

    def __init__(self) -> None:
        import logging

        self.messages: list[str] = []
        self._handler = logging.Handler(logging.WARNING)
        self._handler.emit = lambda record: self.messages.append(record.getMessage())  # type: ignore[method-assign]

    def __enter__(self) -> _Warnings:
        import logging

        logging.getLogger("molq").addHandler(self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        import logging

        logging.getLogger("molq").removeHandler(self._handler)


def fresh_state(sess: Any, names: Iterable[str], *, no_refresh: bool = False) -> dict[str, float | None]:
    """Bring the clusters about to be shown up to date, when their stored state is stale.

    Local jobs on this host are always refreshed (it costs a few file reads); another
    cluster is refreshed (one scheduler query) when nobody did in the last
    :data:`molq.daemon.FRESH_SECONDS` seconds, a daemon included. Returns when each cluster's
    state was last confirmed (None: not known). When a cluster is not refreshed (``no_refresh``,
    or it cannot be reached) one line on stderr says how old its state is."""
    from molq.daemon import FRESH_SECONDS, daemon_files, note_refreshed, refreshed_at

    files = daemon_files(_store_url())
    known = refreshed_at(files)
    confirmed: dict[str, float | None] = {}
    for name in dict.fromkeys(names):
        last = known.get(name)
        if no_refresh:
            confirmed[name] = last
            click.echo(f"molq: {name}: not refreshed (--no-refresh); {_age_text(last)}", err=True)
            continue
        now = time.time()
        with _Warnings() as warned:
            try:
                sub = sess.submitor(name)
                here = sub.target.scheduler == "local" and not sub.target.transport.is_remote
                if not here and last is not None and now - last < FRESH_SECONDS:
                    confirmed[name] = last
                    continue
                sub.refresh_jobs()
                problem = warned.messages[0] if warned.messages else None
            except MolqError as exc:
                problem = str(exc)
        if problem is None:
            note_refreshed(files, name, now)
            confirmed[name] = now
        else:
            from molq.cli.errors import one_line

            confirmed[name] = last
            click.echo(f"molq: {name}: could not refresh ({one_line(problem)}); {_age_text(last)}", err=True)
    return confirmed


def _age_text(last: float | None) -> str:
    if last is None:
        return "the state shown is as last recorded"
    return f"the state shown was confirmed {render.ago(last)}"


def confirmed_json(data: dict[str, Any], rec: Any, confirmed: dict[str, float | None]) -> dict[str, Any]:
    """``state_confirmed_at``: when the state in ``data`` was last known true: the last
    refresh of its cluster for a job that may still change, else its last recorded change."""
    when = rec.updated_at
    if _needs_refresh(rec):
        last = confirmed.get(rec.cluster_name)
        if last is not None:
            when = max(last, when or 0.0)
    data["state_confirmed_at"] = render.iso(when)
    return data


# -- list / show ----------------------------------------------------------------------------


_SORT_KEYS = ("submitted", "created", "state", "name", "cluster", "elapsed", "id")
_STATE_ORDER = {s: i for i, s in enumerate(render.STATE_COLOURS)}


def parse_when(text: str, option: str, now: float | None = None) -> float:
    """A point in time: a duration ago (``90s``, ``30m``, ``2h``, ``1d12h``, ``1w``) or an ISO
    date/time (``2026-03-01``, ``2026-03-01T14:00``, UTC unless it says otherwise)."""
    import datetime as dt
    import re

    now = time.time() if now is None else now
    units = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(min|[smhdw])", text.strip().lower())
    if parts and re.fullmatch(r"(?:\s*\d+(?:\.\d+)?\s*(?:min|[smhdw]))+\s*", text.lower()):
        return now - sum(float(n) * units[u] for n, u in parts)
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"expected a duration ago (2h, 30m, 1d) or an ISO date/time, got {text!r}",
                                 param_hint=option) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


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
    from molq.store_lite import list_jobs as lite_list
    from molq.store_lite import sqlite_path

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
    url = _store_url()
    path = None if refresh else sqlite_path(url)
    query: dict[str, Any] = dict(include_terminal=show_all or bool(states), states=[JobState(s) for s in states] or None,
                 limit=None if filtered else limit, newest_first=True)
    if refresh and no_refresh:
        raise click.UsageError("--refresh and --no-refresh contradict each other")
    records: Any
    lite = path is not None
    confirmed: dict[str, float | None] = {}
    if path is not None and not os.path.exists(path):
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
        stale = [r.cluster_name for r in records if _needs_refresh(r)]
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
    if _needs_refresh(rec):
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
    return text + (f" ({': '.join(details)})" if details else "")


# -- watch / cancel / logs ------------------------------------------------------------------


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

    files = daemon_files(_store_url())
    now = time.time()
    with _Warnings() as warned:
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
        click.echo(f"molq: {name}: could not refresh ({one_line(problem)}); {_age_text(last)}; "
                   f"still trying", err=True)


@click.command()
@click.argument("job_ids", nargs=-1, shell_complete=complete_job_ids)
@click.option("--state", "states", multiple=True, type=click.Choice(["created", "submitted", "queued", "running"]),
              help="Every active job in this state (repeatable), as scancel -t.")
@click.option("--name", "name_pattern", metavar="PATTERN", default=None,
              help="Every active job whose name matches this shell pattern, as scancel -n.")
@click.option("--all", "all_active", is_flag=True, help="Every active job (of -c's cluster, if given).")
@click.option("-c", "--cluster", "cluster_name", default=None, help="Only jobs of this cluster (with a filter).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation of a filter.")
def cancel(job_ids: tuple[str, ...], states: tuple[str, ...], name_pattern: str | None, all_active: bool,
           cluster_name: str | None, yes: bool) -> int:
    """Cancel jobs by id, or every active job matching --state/--name/--all (one scheduler call
    per cluster). Finished jobs keep their final state.

    A filter asks for confirmation on a terminal, and needs --yes otherwise.
    """
    import fnmatch

    filtering = bool(states or name_pattern or all_active)
    if not job_ids and not filtering:
        raise click.UsageError("give job ids, or a filter: --state, --name or --all")
    if cluster_name and not filtering:
        raise click.UsageError("-c/--cluster only narrows a filter (--state, --name, --all)")
    sess = Session()
    by_cluster: dict[str, list[str]] = defaultdict(list)
    for j in job_ids:
        sub, rec = sess.find(j)
        by_cluster[sub.cluster_name].append(rec.job_id)
    if filtering:
        matched = [r for r in sess.store.list_jobs(cluster_name)
                   if (not states or r.state.value in states)
                   and (name_pattern is None or fnmatch.fnmatchcase(r.job_name or "", name_pattern))]
        if not matched and not job_ids:
            click.echo("no active job matches", err=True)
            return 0
        if matched and not yes:
            if not (sys.stdin.isatty() and render.is_tty()):
                raise click.UsageError(f"{len(matched)} jobs match; add --yes to cancel them without a terminal")
            click.echo(render.jobs_table(matched, max_width=render.terminal_width()))
            click.confirm(f"cancel these {len(matched)} jobs?", abort=True)
        for rec in matched:
            if rec.job_id not in by_cluster[rec.cluster_name]:
                by_cluster[rec.cluster_name].append(rec.job_id)
    for name, ids in by_cluster.items():
        sub = sess.submitor(name)
        sub.cancel_jobs(ids)
        roots = {i: sub.get_job(i).root_job_id for i in ids}
        latest = sess.store.latest_attempts(name, list(set(roots.values())))
        for j in ids:
            rec = latest[roots[j]]
            click.echo(f"{rec.job_id[:8]} {render.state_text(rec.state.value)}")
    return 0


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


# -- queue / cleanup / plugins -----------------------------------------------------


@click.command()
@cluster_options
@click.option("-u", "--user", default=None, help="Whose queue (default: yours).")
@json_option
def queue(cluster_name: str | None, profile: str | None, user: str | None, as_json: bool) -> int:
    """The scheduler's own queue, including jobs not submitted by molq."""
    store = open_store()
    cluster = resolve_cluster(cluster_name, profile, store)
    entries = cluster.get_queue(user=user)
    if as_json:
        render.dump_json([render.queue_json(e) for e in entries])
        return 0
    if not entries:
        click.echo(f"the {cluster.scheduler} queue of {cluster.name} is empty", err=True)
        return 0
    rows = [[e.scheduler_job_id, e.state.value, e.raw_state, e.user or "-", e.partition or "-",
             render.ago(e.submit_time), render.truncate(e.name, 40)] for e in entries]
    click.echo(render.table(["SCHED ID", "STATE", "RAW", "USER", "PARTITION", "SUBMITTED", "NAME"], rows, colour_col=1))
    return 0


@click.command()
@click.argument("job_ids", nargs=-1, shell_complete=complete_job_ids)
@click.option("--older-than", metavar="AGE", default=None,
              help="Finished jobs that ended more than AGE ago (30d, 12h, ...), instead of the retention policy.")
@click.option("--state", "states", multiple=True,
              type=click.Choice(["succeeded", "failed", "cancelled", "timed_out", "lost"]),
              help="With --older-than or ids: only jobs that ended in this state (repeatable).")
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@click.option("-c", "--cluster", "cluster_name", default=None, help="Only this cluster.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (chosen jobs, on a terminal).")
@json_option
def cleanup(job_ids: tuple[str, ...], older_than: str | None, states: tuple[str, ...], dry_run: bool,
            cluster_name: str | None, yes: bool, as_json: bool) -> int:
    """Remove job directories and records: of the jobs given (ids or --older-than), or else
    those past each cluster's retention policy.

    Only finished jobs are removed. Chosen jobs are listed and confirmed first on a terminal.
    """
    sess = Session()
    result: dict[str, dict[str, list[str]]] = {}
    if not job_ids and older_than is None:
        if states:
            raise click.UsageError("--state needs job ids or --older-than")
        for name in sess.store.all_cluster_names():
            if cluster_name not in (None, name):
                continue
            result[name] = sess.submitor(name).cleanup_jobs(dry_run=dry_run)
    else:
        chosen = _chosen_for_cleanup(sess, job_ids, older_than, states, cluster_name)
        if chosen and not dry_run and not yes and sys.stdin.isatty() and render.is_tty() and not as_json:
            click.echo(render.jobs_table(chosen, max_width=render.terminal_width()))
            click.confirm(f"remove these {len(chosen)} jobs' directories and records?", abort=True)
        by_cluster: dict[str, list[Any]] = defaultdict(list)
        for rec in chosen:
            by_cluster[rec.cluster_name].append(rec)
        for name, recs in by_cluster.items():
            result[name] = _remove_jobs(sess.submitor(name), recs, dry_run)
    if as_json:
        render.dump_json(render.with_schema({"dry_run": dry_run, "clusters": result}))
        return 0
    verb = "would remove" if dry_run else "removed"
    if not result:
        click.echo("nothing to clean up", err=True)
    for name, res in result.items():
        click.echo(f"{name}: {verb} {len(res['job_dirs'])} job directories and {len(res['records'])} records")
        for d in res["job_dirs"]:
            click.echo(f"  {d}")
    return 0


def _chosen_for_cleanup(sess: Session, job_ids: tuple[str, ...], older_than: str | None,
                        states: tuple[str, ...], cluster_name: str | None) -> list[Any]:
    records = []
    for j in job_ids:
        _sub, rec = sess.find(j)
        if not rec.is_terminal:
            raise ConfigError(f"{rec.job_id[:8]} is {rec.state.value}: cancel it first (`molq cancel {rec.job_id[:8]}`)")
        records.append(rec)
    if older_than is not None:
        cutoff = parse_when(older_than, "--older-than")
        for rec in sess.store.list_jobs(cluster_name, include_terminal=True):
            if rec.is_terminal and (rec.finished_at or rec.updated_at or 0) < cutoff \
                    and all(rec.job_id != r.job_id for r in records):
                records.append(rec)
    records = [r for r in records if cluster_name in (None, r.cluster_name)]
    if states:
        records = [r for r in records if r.state.value in states]
    return [r for r in records if not (r.next_retry_at is not None and r.retried_by is None)]


def _remove_jobs(sub: Any, records: list[Any], dry_run: bool) -> dict[str, list[str]]:
    dirs = [r.job_dir for r in records if r.job_dir and r.cleaned_at is None]
    ids = [r.job_id for r in records]
    if not dry_run:
        transport = sub.target.transport
        forget = getattr(sub.scheduler, "forget", None)
        for rec in records:
            if rec.job_dir and rec.cleaned_at is None:
                transport.remove(rec.job_dir, recursive=True)
                if forget is not None and rec.scheduler_job_id:
                    forget(rec.scheduler_job_id)
        sub.store.delete_jobs(sub.cluster_name, ids)
    return {"job_dirs": dirs, "records": ids}


@click.command()
@json_option
def plugins(as_json: bool) -> int:
    """Every discovered plugin: name, kinds, distribution, version and load errors."""
    from molq.plugins import get_plugin_manager

    infos = get_plugin_manager().plugin_infos()
    if as_json:
        render.dump_json([{
            "schema": render.JSON_SCHEMA, "name": i.name, "distribution": i.distribution, "version": i.version, "kinds": list(i.kinds),
            "provides": list(i.provides), "blocked": i.blocked, "error": i.error,
        } for i in infos])
        return 0
    rows = []
    for i in infos:
        status = "blocked" if i.blocked else ("error" if i.error else "ok")
        rows.append([i.name, i.distribution, i.version, ", ".join(i.provides) or "-", status])
    click.echo(render.table(["PLUGIN", "DISTRIBUTION", "VERSION", "PROVIDES", "STATUS"], rows))
    for i in infos:
        if i.error:
            click.echo(f"{i.name}: {i.error}", err=True)
    return 0


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> int:
    """Print the shell completion script (completes commands, options, job ids, profiles).

    Add to your shell start-up, e.g. for bash: eval "$(molq completion bash)"
    """
    from click.shell_completion import get_completion_class

    from molq.cli.app import cli

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "molq", "_MOLQ_COMPLETE").source())
    return 0

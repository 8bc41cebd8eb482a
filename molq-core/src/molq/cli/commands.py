"""The built-in ``molq`` subcommands."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import click

from molq.cli import render
from molq.errors import ConfigError, MolqError

# -- shared helpers -------------------------------------------------------------------------


def open_store() -> Any:
    from molq.store import open_store as _open

    return _open()


def _store_url() -> str:
    env = os.environ.get("MOLQ_STORE_URL")
    if env:
        return env
    home = os.environ.get("MOLQ_HOME") or os.path.join(os.path.expanduser("~"), ".molq")
    return f"sqlite:///{os.path.join(home, 'jobs.db')}"


def default_cluster() -> Any:
    from molq.cluster import Cluster
    from molq.config import load_config

    config = load_config()
    if config.default_profile:
        return Cluster.from_profile(config.default_profile)
    return Cluster("local")


def resolve_cluster(cluster_name: str | None, profile: str | None, store: Any = None) -> Any:
    """The cluster named on the command line: a profile, a cluster known to the store, or
    (with neither) the default one."""
    from molq.cluster import Cluster
    from molq.config import load_config

    if profile:
        return Cluster.from_profile(profile)
    if not cluster_name:
        return default_cluster()
    config = load_config()
    if cluster_name in config.profiles:
        return Cluster.from_profile(cluster_name)
    for prof in config.profiles.values():
        if prof.effective_cluster_name == cluster_name:
            return Cluster.from_profile(prof.name)
    if store is not None:
        targets = store.cluster_targets()
        if cluster_name in targets:
            target, prof_name = targets[cluster_name]
            return Cluster.from_target(cluster_name, target, prof_name)
    if cluster_name == "local":
        return Cluster("local")
    raise ConfigError(
        f"unknown cluster {cluster_name!r}: no profile and no job in the store names it "
        f"(add one with `molq profile add`)"
    )


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
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (documented, stable shape).")(fn)


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
@click.option("--cwd", help="Working directory (on the cluster).")
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
@click.option("--script", "script_file", type=click.Path(dir_okay=False), help="Run this script file.")
@click.option("--wait", is_flag=True, help="Follow the job to its end; exit with its exit code.")
@click.option("--json", "as_json", is_flag=True, help="Print the submitted job as JSON.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def submit(cluster_name: str | None, profile: str | None, cpus: int | None, mem: str | None,
           gpus: int | None, gpu_type: str | None, time_limit: str | None, partition: str | None,
           account: str | None, qos: str | None, nodes: int | None, array_spec: str | None,
           name: str | None, cwd: str | None, env: tuple[str, ...], after_success: tuple[str, ...],
           after_failure: tuple[str, ...], after_started: tuple[str, ...], after: tuple[str, ...],
           retries: int, script_file: str | None, wait: bool, as_json: bool,
           command: tuple[str, ...]) -> int:
    """Submit a job: `molq submit [OPTIONS] -- CMD ARGS...` or `--script FILE`. Prints the job id."""
    from molq.model import JobExecution, JobResources, JobScheduling, RetryPolicy, Script
    from molq.submitor import Submitor

    if bool(command) == bool(script_file):
        raise click.UsageError("give either a command after -- or --script FILE (exactly one)")
    resources = JobResources(cpu_count=cpus, memory=mem, gpu_count=gpus, gpu_type=gpu_type, time_limit=time_limit)
    scheduling = JobScheduling(partition=partition, account=account, qos=qos, node_count=nodes, array_spec=array_spec)
    execution = JobExecution(env=_parse_env(env), cwd=cwd, job_name=name)
    store = open_store()
    cluster = resolve_cluster(cluster_name, profile, store)
    if profile:
        submitor = Submitor.from_profile(profile, target=cluster, store=store)
    else:
        submitor = Submitor(cluster, store=store)
    sess = Session()
    sess.store = store
    deps: dict[str, list[str]] = {}
    for cond, ids in (("after_success", after_success), ("after_failure", after_failure),
                      ("after_started", after_started), ("after", after)):
        if ids:
            deps[cond] = [_full_id(store, cluster.name, i) for i in ids]
    script = None
    if script_file:
        with open(script_file) as fh:
            script = Script.inline(fh.read())
    handle = submitor.submit_job(
        argv=list(command) if command else None,
        script=script,
        resources=resources,
        scheduling=scheduling,
        execution=execution,
        retry=RetryPolicy(max_attempts=retries + 1) if retries else None,
        **deps,
    )
    if as_json:
        render.dump_json(render.record_json(submitor.get_job(handle.job_id)))
    else:
        click.echo(handle.job_id)
    if not wait:
        return 0
    record = handle.wait()
    if not as_json:
        click.echo(f"{handle.job_id[:8]} {render.state_text(record.state.value)}"
                   + (f": {record.failure_reason}" if record.failure_reason else ""), err=True)
    if record.exit_code is not None:
        return record.exit_code if 0 <= record.exit_code < 256 else 1
    return 0 if record.state.value == "succeeded" else 1


def _full_id(store: Any, cluster_name: str, prefix: str) -> str:
    from molq.errors import JobNotFoundError

    try:
        return store.resolve_job_id(cluster_name, prefix)[1]
    except JobNotFoundError as exc:
        raise ConfigError(str(exc)) from None


# -- list / show ----------------------------------------------------------------------------


@click.command("list")
@click.option("-a", "--all", "show_all", is_flag=True, help="Include finished jobs.")
@click.option("--state", "states", multiple=True,
              type=click.Choice(["created", "submitted", "queued", "running", "succeeded", "failed",
                                 "cancelled", "timed_out", "lost"]), help="Only jobs in this state (repeatable).")
@click.option("-c", "--cluster", "cluster_name", default=None, help="Only this cluster.")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None, help="At most this many (newest first).")
@click.option("--refresh", is_flag=True, help="Ask the schedulers first (slower).")
@json_option
def list_cmd(show_all: bool, states: tuple[str, ...], cluster_name: str | None, limit: int | None,
             refresh: bool, as_json: bool) -> int:
    """List jobs: active ones by default, newest first."""
    from molq._states import JobState
    from molq.store_lite import list_jobs as lite_list
    from molq.store_lite import sqlite_path

    path = None if refresh else sqlite_path(_store_url())
    query = dict(include_terminal=show_all, states=[JobState(s) for s in states] or None, limit=limit,
                 newest_first=True)
    records: Any
    if path is not None and os.path.exists(path):
        # A plain listing imports neither SQLAlchemy nor the model: LiteRecord rows.
        records = lite_list(path, cluster_name, lite=True, **query)
    else:
        sess = Session()
        if refresh:
            for name, *_ in sess.store.list_clusters():
                if cluster_name in (None, name):
                    sess.submitor(name).refresh_jobs()
        records = sess.store.list_jobs(cluster_name, **query)
    if as_json:
        render.dump_json([render.record_json(r) for r in records])
    elif records:
        click.echo(render.jobs_table(records))
    else:
        click.echo("no jobs" + ("" if show_all else " active (use --all to include finished ones)"), err=True)
    return 0


@click.command()
@click.argument("job_id", shell_complete=complete_job_ids)
@json_option
def show(job_id: str, as_json: bool) -> int:
    """Show a job: its record, transitions, retry family and dependencies."""
    sess = Session()
    sub, rec = sess.find(job_id)
    transitions = sub.get_transitions(rec.job_id)
    family = sub.get_retry_family(rec.job_id)
    deps = sub.get_dependencies(rec.job_id)
    dependents = sub.get_dependents(rec.job_id)
    if as_json:
        data = render.record_json(rec)
        data["transitions"] = [render.transition_json(t) for t in transitions]
        data["retry_family"] = [{"job_id": r.job_id, "attempt": r.attempt, "state": r.state.value} for r in family]
        data["dependencies"] = [render.dependency_json(d) for d in deps]
        data["dependents"] = [render.dependency_json(d) for d in dependents]
        render.dump_json(data)
        return 0
    fields = [
        ("job id", rec.job_id), ("cluster", rec.cluster_name), ("scheduler", rec.scheduler),
        ("state", render.state_text(rec.state.value) + (f" ({rec.raw_state})" if rec.raw_state else "")),
        ("scheduler id", rec.scheduler_job_id or "-"), ("name", rec.job_name or "-"),
        ("command", rec.command_display), ("cwd", rec.cwd or "-"), ("job dir", rec.job_dir or "-"),
        ("attempt", f"{rec.attempt} (root {rec.root_job_id[:8]})"),
        ("exit code", "-" if rec.exit_code is None else str(rec.exit_code)),
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
        click.echo(f"{key.rjust(width)}: {value}")
    click.echo("\ntransitions:")
    for t in transitions:
        old = t.old_state.value if t.old_state else "-"
        click.echo(f"  {render.iso(t.timestamp)}  {old} -> {t.new_state.value}" + (f"  ({t.reason})" if t.reason else ""))
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


# -- watch / cancel / logs ------------------------------------------------------------------


@click.command()
@click.argument("job_ids", nargs=-1, shell_complete=complete_job_ids)
@click.option("--interval", type=float, default=None, help="Seconds between refreshes.")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds (exit 124).")
@json_option
def watch(job_ids: tuple[str, ...], interval: float | None, timeout: float | None, as_json: bool) -> int:
    """Follow jobs (default: every active job) until all are finished.

    Exits 0 if every job succeeded, 1 otherwise.
    """
    sess = Session()
    roots: dict[str, list[str]] = defaultdict(list)
    if job_ids:
        for j in job_ids:
            sub, rec = sess.find(j)
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
    delay = interval or 0.2
    while True:
        latest = []
        pending = False
        for cluster_name, ids in roots.items():
            sub = sess.submitor(cluster_name)
            sub.refresh_jobs()
            for root in ids:
                rec = sub._latest_attempt(root)
                latest.append(rec)
                if not rec.is_terminal or (rec.next_retry_at is not None and rec.retried_by is None):
                    pending = True
        if tty:
            click.echo("\x1b[2J\x1b[H" + render.jobs_table(latest))
        elif not as_json:
            for rec in latest:
                key = f"{rec.job_id}:{rec.state.value}"
                if seen.get(rec.root_job_id) != key:
                    seen[rec.root_job_id] = key
                    click.echo(f"{render.iso(time.time())} {rec.root_job_id[:8]} attempt {rec.attempt} {rec.state.value}"
                               + (f" exit={rec.exit_code}" if rec.exit_code is not None else ""))
        if not pending:
            if as_json:
                render.dump_json([render.record_json(r) for r in latest])
            return 0 if all(r.state.value == "succeeded" for r in latest) else 1
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"jobs still active after {timeout} s")
        time.sleep(delay)
        if interval is None:
            delay = min(delay * 1.5, 5.0)


@click.command()
@click.argument("job_ids", nargs=-1, required=True, shell_complete=complete_job_ids)
def cancel(job_ids: tuple[str, ...]) -> int:
    """Cancel jobs (one scheduler call per cluster). Finished jobs keep their final state."""
    sess = Session()
    by_cluster: dict[str, list[str]] = defaultdict(list)
    for j in job_ids:
        sub, rec = sess.find(j)
        by_cluster[sub.cluster_name].append(rec.job_id)
    for cluster_name, ids in by_cluster.items():
        sub = sess.submitor(cluster_name)
        sub.cancel_jobs(ids)
        for j in ids:
            rec = sub._latest_attempt(j)
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


@click.command()
@click.argument("job_id", shell_complete=complete_job_ids)
@click.option("--stderr", "use_stderr", is_flag=True, help="Standard error instead of output.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the job writes, until it ends.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=None, help="Only the last N lines.")
def logs(job_id: str, use_stderr: bool, follow: bool, lines: int | None) -> int:
    """Print a job's output (through the cluster's transport, so remote jobs work too)."""
    sess = Session()
    sub, rec = sess.find(job_id)
    rec = sub._latest_attempt(rec.job_id)
    transport = sub.target.transport
    path = _log_path(sub, rec, use_stderr)
    content = transport.read_many([path]).get(path)
    if content is None and not follow:
        raise ConfigError(f"no {'error' if use_stderr else 'output'} file yet for {rec.job_id[:8]} ({path})")
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
        rec = sub._latest_attempt(rec.job_id)
        if rec.is_terminal and not (rec.next_retry_at is not None and rec.retried_by is None):
            current = transport.read_many([path]).get(path) or ""
            click.echo(current[printed:], nl=False)
            return 0
        time.sleep(0.5)


# -- queue / cleanup / daemon / plugins -----------------------------------------------------


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
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@click.option("-c", "--cluster", "cluster_name", default=None, help="Only this cluster.")
@json_option
def cleanup(dry_run: bool, cluster_name: str | None, as_json: bool) -> int:
    """Remove job directories and records older than the retention policy."""
    sess = Session()
    result: dict[str, dict[str, list[str]]] = {}
    for name in sess.store.all_cluster_names():
        if cluster_name not in (None, name):
            continue
        result[name] = sess.submitor(name).cleanup_jobs(dry_run=dry_run)
    if as_json:
        render.dump_json({"dry_run": dry_run, "clusters": result})
        return 0
    verb = "would remove" if dry_run else "removed"
    for name, res in result.items():
        click.echo(f"{name}: {verb} {len(res['job_dirs'])} job directories and {len(res['records'])} records")
        for d in res["job_dirs"]:
            click.echo(f"  {d}")
    return 0


@click.command()
@click.option("--once", is_flag=True, help="One reconciliation pass, then exit.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, help="Seconds between passes.")
@click.option("--no-cleanup", is_flag=True, help="Do not apply retention policies.")
def daemon(once: bool, interval: float, no_cleanup: bool) -> int:
    """Reconcile every cluster in the store (only one daemon per store at a time)."""
    import socket
    import uuid

    sess = Session()
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    ttl = max(interval * 4, 30.0)
    if not sess.store.acquire_lease("daemon", owner, ttl):
        holder = sess.store.lease_owner("daemon")
        raise MolqError(f"another molq daemon is running on this store ({holder[0] if holder else '?'})")
    last_cleanup = 0.0
    try:
        while True:
            for name, *_ in sess.store.list_clusters():
                try:
                    sess.submitor(name).refresh_jobs()
                except MolqError as exc:
                    click.echo(f"molq daemon: {name}: {exc}", err=True)
            if not no_cleanup and time.time() - last_cleanup > 3600:
                for name in sess.store.all_cluster_names():
                    try:
                        sess.submitor(name).cleanup_jobs()
                    except MolqError as exc:
                        click.echo(f"molq daemon: cleanup {name}: {exc}", err=True)
                last_cleanup = time.time()
            if once:
                return 0
            time.sleep(interval)
            if not sess.store.acquire_lease("daemon", owner, ttl):
                raise MolqError("another daemon took over this store")
    finally:
        sess.store.release_lease("daemon", owner)


@click.command()
@json_option
def plugins(as_json: bool) -> int:
    """Every discovered plugin: name, kinds, distribution, version and load errors."""
    from molq.plugins import get_plugin_manager

    infos = get_plugin_manager().plugin_infos()
    if as_json:
        render.dump_json([{
            "name": i.name, "distribution": i.distribution, "version": i.version, "kinds": list(i.kinds),
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

    from molq.cli import cli

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "molq", "_MOLQ_COMPLETE").source())
    return 0

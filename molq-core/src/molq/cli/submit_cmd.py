"""``molq submit``: build a submission from the command line, persist and submit it, and
optionally follow it to its end."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import click

from molq.cli import render
from molq.cli.common import cluster_options, complete_job_ids, open_store, resolve_target, store_url
from molq.cli.freshness import confirmed_json
from molq.cli.retry_options import retry_options, retry_policy
from molq.errors import ConfigError, MolqError


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
@click.option("--rerunnable/--no-rerunnable", "rerunnable", default=None,
              help="Let the scheduler run the job again after a node failure or preemption, or forbid it "
                   "(default: the cluster's).")
@click.option("--directive", "directives", multiple=True, metavar="OPTION",
              help="Extra scheduler option for this job, written without its prefix, e.g. "
                   "--directive=--constraint=avx2 (repeatable; one #SBATCH/#PBS line each, bsub options on LSF).")
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
@retry_options
@click.option("--command", "shell_command", metavar="TEXT",
              help="Run this shell command line (pipes, redirections, $VARS), e.g. 'make && ./run > out'.")
@click.option("--script", "script_file", type=click.Path(exists=True, dir_okay=False, readable=True),
              help="Run this script file (its text is copied at submission, as sbatch does).")
@click.option("--from", "from_file", metavar="FILE",
              help="Submit every job of FILE (one command per line, a TOML [[job]] list or a JSON list; - for stdin).")
@click.option("--concurrency", type=click.IntRange(min=1), metavar="N",
              help="With --from: submissions in flight at once (default 4).")
@click.option("--dry-run", is_flag=True, help="Print the job script as it would be submitted; submit nothing.")
@click.option("--wait", is_flag=True, help="Follow the job to its end; exit with its exit code.")
@click.option("--json", "as_json", is_flag=True,
              help='Print the submitted job as JSON (the shape of `molq show --json`, "schema": 1).')
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def submit(cluster_name: str | None, profile: str | None, cpus: int | None, mem: str | None,
           gpus: int | None, gpu_type: str | None, time_limit: str | None, partition: str | None,
           account: str | None, qos: str | None, nodes: int | None, array_spec: str | None,
           rerunnable: bool | None, directives: tuple[str, ...], name: str | None, cwd: str | None, env: tuple[str, ...], after_success: tuple[str, ...],
           after_failure: tuple[str, ...], after_started: tuple[str, ...], after: tuple[str, ...],
           retries: int, retry_on: str | None, grow_memory: float | None, grow_max_memory: str | None,
           grow_time: float | None, grow_max_time: str | None,
           shell_command: str | None, script_file: str | None, from_file: str | None, concurrency: int | None,
           dry_run: bool, wait: bool, as_json: bool, command: tuple[str, ...]) -> int:
    """Submit a job and print its id.

    What runs is one of: a program and its arguments after `--` (`molq submit -- python
    run.py --fast`), a shell command line (`--command 'echo $HOME > out'`) or a script file
    (`--script run.sh`). Without -p/-c the job goes to the default profile, whose defaults
    (partition, time, ...) apply; options given here override them.

    `--from FILE` submits many jobs at once: one shell command per line, or a TOML file of
    `[[job]]` tables / a JSON list of objects whose keys are these options' names (`command`,
    `argv` or `script`; `cpus`, `mem`, `time`, `array`, `name`...). Options given here are every
    job's defaults. Every job is checked before any is stored; the ids are printed in order,
    and a job whose submission failed is reported on stderr (exit status 1).
    """
    from molq.submitor import Submitor

    given = [what for what, value in (("a command after --", command), ("--command", shell_command),
                                      ("--script", script_file)) if value]
    if from_file is not None and given:
        raise click.UsageError(f"--from FILE says what each job runs; drop {' and '.join(given)}")
    if from_file is None and len(given) != 1:
        raise click.UsageError(
            "give exactly one of: a command after --, --command TEXT, --script FILE or --from FILE"
            + (f" (got {' and '.join(given)})" if given else ""))
    if from_file is None and concurrency is not None:
        raise click.UsageError("--concurrency goes with --from FILE")
    if from_file is not None and dry_run:
        raise click.UsageError("--dry-run shows one job's script; it does not take --from FILE")
    # The options given here, by the names a jobs file uses: every job's defaults.
    values: dict[str, Any] = {key: value for key, value in (
        ("cpus", cpus), ("mem", mem), ("gpus", gpus), ("gpu_type", gpu_type), ("time", time_limit),
        ("partition", partition), ("account", account), ("qos", qos), ("nodes", nodes), ("array", array_spec),
        ("rerunnable", rerunnable), ("directives", list(directives)), ("name", name), ("cwd", cwd),
        ("env", list(env)), ("after_success", list(after_success)), ("after_failure", list(after_failure)),
        ("after_started", list(after_started)), ("after", list(after)), ("retries", retries),
        ("retry_on", retry_on), ("grow_memory", grow_memory), ("grow_max_memory", grow_max_memory),
        ("grow_time", grow_time), ("grow_max_time", grow_max_time),
        ("argv", list(command)), ("command", shell_command), ("script", script_file),
    ) if value is not None and value != []}
    entries = None
    if from_file is not None:
        from molq.cli.jobs_file import read_jobs_file

        entries = read_jobs_file(from_file)  # every job checked before the store is opened
    with StoreWaitNotice(store_url()):
        store = open_store()  # may wait too: opening checks the schema in a write transaction
    cluster, profile_name = resolve_target(cluster_name, profile, store)
    if profile_name:
        submitor = Submitor.from_profile(profile_name, target=cluster, store=store)
    else:
        submitor = Submitor(cluster, store=store)
    if entries is not None:
        return _submit_many(submitor, store, cluster, values, entries, concurrency, wait, as_json)
    job = _job_keywords(values, store, cluster)
    if dry_run:
        click.echo(_job_script(submitor, job), nl=False)
        return 0
    with StoreWaitNotice(store_url()):
        handle = submitor.submit_job(**job)
    if (job["retry"] is not None or _has_deps(job)) and cluster.scheduler != "local":
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


_DEPENDENCIES = ("after_success", "after_failure", "after_started", "after")


def _has_deps(job: dict[str, Any]) -> bool:
    return any(job.get(cond) for cond in _DEPENDENCIES)


def _job_keywords(values: dict[str, Any], store: Any, cluster: Any) -> dict[str, Any]:
    """``submit_job`` keywords from option values by their jobs-file names (see
    :mod:`molq.cli.jobs_file`); a bad value raises :class:`ConfigError` before anything is stored."""
    from molq.model import JobExecution, JobResources, JobScheduling, Script

    resources = JobResources(cpu_count=values.get("cpus"), memory=values.get("mem"), gpu_count=values.get("gpus"),
                             gpu_type=values.get("gpu_type"), time_limit=values.get("time"))
    # Only given directives count as the job's own: an empty tuple would replace the profile's
    # default directives instead of inheriting them.
    directives = tuple(values.get("directives") or ())
    native: dict[str, Any] = {"extra_directives": directives} if directives else {}
    array = values.get("array")
    scheduling = JobScheduling(partition=values.get("partition"), account=values.get("account"), qos=values.get("qos"),
                               node_count=values.get("nodes"), array_spec=None if array is None else str(array),
                               rerunnable=values.get("rerunnable"), **native)
    env = values.get("env")
    execution = JobExecution(env=env if isinstance(env, dict) else _parse_env(env or ()), cwd=values.get("cwd"),
                             job_name=values.get("name"))
    if values.get("cwd") is not None:
        _check_cwd(cluster, values["cwd"])
    script = None
    if values.get("script"):
        try:
            with open(values["script"]) as fh:
                script = Script.inline(fh.read(), name=values["script"])
        except OSError as exc:
            raise ConfigError(f"script {values['script']}: cannot read it ({exc})") from None
    retry_on = values.get("retry_on")
    deps = {cond: [_full_id(store, cluster.name, i) for i in values[cond]] for cond in _DEPENDENCIES
            if values.get(cond)}
    return dict(
        argv=list(values["argv"]) if values.get("argv") else None, command=values.get("command"), script=script,
        resources=resources, scheduling=scheduling, execution=execution,
        retry=retry_policy(values.get("retries"), ",".join(retry_on) if isinstance(retry_on, list) else retry_on,
                           values.get("grow_memory"), values.get("grow_max_memory"), values.get("grow_time"),
                           values.get("grow_max_time")),
        **deps,
    )


def _submit_many(submitor: Any, store: Any, cluster: Any, defaults: dict[str, Any], entries: list[Any],
                 concurrency: int | None, wait: bool, as_json: bool) -> int:
    """``molq submit --from FILE``: every job checked, then ``submit_jobs``; ids in order."""
    jobs = []
    base = {key: value for key, value in defaults.items() if key not in ("command", "argv", "script")}
    for entry in entries:
        values = {**base, **entry}
        if "env" in entry and base.get("env"):  # the job's variables on top of the command line's
            own = entry["env"] if isinstance(entry["env"], dict) else _parse_env(entry["env"]) or {}
            values["env"] = {**(_parse_env(base["env"]) or {}), **own}
        try:
            jobs.append(_job_keywords(values, store, cluster))
        except ConfigError as exc:
            raise ConfigError(f"{entry.where}: {exc}") from None
    with StoreWaitNotice(store_url()):
        handles = submitor.submit_jobs(jobs, concurrency=concurrency)
    failed = [(entries[i], h) for i, h in enumerate(handles) if h.error is not None]
    if any(job["retry"] is not None or _has_deps(job) for job in jobs) and cluster.scheduler != "local":
        _ensure_daemon(store, cluster.name)
    if as_json:
        render.dump_json([confirmed_json(render.record_json(r), r, {}) for r in
                          (submitor.get_job(h.job_id) for h in handles)])
    else:
        for handle in handles:
            click.echo(handle.job_id)
    for entry, handle in failed:
        click.echo(f"molq: {entry.where}: job {handle.job_id[:8]} was not submitted: {handle.error}", err=True)
    if not wait:
        return 1 if failed else 0
    records = submitor.watch_jobs([h.job_id for h in handles if h.error is None])
    ok = all(r.state.value == "succeeded" for r in records)
    if not as_json:
        click.echo(f"molq: {sum(r.state.value == 'succeeded' for r in records)} of {len(handles)} jobs succeeded",
                   err=True)
    return 0 if ok and not failed else 1


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

        from molq.store.lite import sqlite_path

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

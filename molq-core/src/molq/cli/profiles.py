"""``molq profile list|show|add|remove``."""

from __future__ import annotations

from typing import Any

import attrs
import click

from molq.cli import render
from molq.cli.common import complete_profiles
from molq.cli.retry_options import retry_options, retry_policy


@click.group()
def profile() -> None:
    """Manage profiles in ~/.molq/config.toml (or $MOLQ_CONFIG)."""


@profile.command("list")
@click.option("--json", "as_json", is_flag=True, help='Print JSON: one object per profile ("schema": 1).')
def list_profiles(as_json: bool) -> int:
    """List profiles; the default one is marked with *."""
    from molq.config import load_config

    config = load_config()
    if as_json:
        render.dump_json([{"schema": render.JSON_SCHEMA, "name": p.name, "scheduler": p.scheduler, "cluster": p.effective_cluster_name,
                           "host": p.host, "default": p.name == config.default_profile}
                          for p in config.profiles.values()])
        return 0
    if not config.profiles:
        click.echo("no profiles (add one with `molq profile add NAME --scheduler ...`)", err=True)
        return 0
    rows = [[("* " if p.name == config.default_profile else "  ") + p.name, p.scheduler,
             p.effective_cluster_name, p.host or "-"] for p in config.profiles.values()]
    click.echo(render.table(["PROFILE", "SCHEDULER", "CLUSTER", "HOST"], rows))
    return 0


@profile.command("show")
@click.argument("name", shell_complete=complete_profiles)
@click.option("--json", "as_json", is_flag=True, help='Print JSON instead of TOML ("schema": 1).')
def show_profile(name: str, as_json: bool) -> int:
    """Show one profile as TOML (or JSON)."""
    import tomli_w

    from molq import serde
    from molq.config import load_config

    config = load_config()
    prof = config.get(name)
    data = serde.prune(serde.unstructure(prof, human=True))
    if as_json:
        data["default"] = name == config.default_profile
        render.dump_json(render.with_schema(data))
    else:
        data.pop("name", None)
        if name == config.default_profile:
            click.echo("# the default profile")
        click.echo(tomli_w.dumps({"profiles": {name: data}}).rstrip())
    return 0


def _toml_value(text: str) -> Any:
    """``3`` -> 3, ``true`` -> True, ``["-v"]`` -> ["-v"]; anything else stays a string."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _kv(values: tuple[str, ...], what: str) -> dict[str, Any]:
    """KEY=VALUE pairs; dotted keys build tables (``env.SLURM_CONF=/etc/slurm.conf``)."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=what)
        *parents, leaf = key.split(".")
        table = out
        for part in parents:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise click.BadParameter(f"{key!r} conflicts with an earlier value", param_hint=what)
        # Values inside a table (env, binaries) are always strings.
        table[leaf] = value if parents else _toml_value(value)
    return out


@profile.command("add")
@click.argument("name")
@click.option("--scheduler", default="local", show_default=True, help="local, slurm, pbs, lsf, ...")
@click.option("--cluster-name", default=None, help="Cluster name for records (default: the profile name).")
@click.option("--host", default=None, help="SSH destination (needs molq-ssh).")
@click.option("--option", "options", multiple=True, metavar="K=V",
              help="Scheduler option (repeatable); dotted keys set tables, e.g. env.SLURM_CONF=/etc/slurm.conf.")
@click.option("--transport-option", "transport_options", multiple=True, metavar="K=V",
              help="SSH transport option (repeatable), e.g. config_file=~/.ssh/config.")
@click.option("--cpus", type=int, default=None, help="Default CPUs per job.")
@click.option("--mem", default=None, help="Default memory per job.")
@click.option("--time", "time_limit", default=None, help="Default time limit.")
@click.option("--partition", "--queue", "partition", default=None, help="Default partition / queue.")
@click.option("--account", default=None, help="Default account.")
@click.option("--retries", type=click.IntRange(min=0), default=None, help="Default extra attempts.")
@retry_options
@click.option("--rerunnable/--no-rerunnable", "rerunnable", default=None,
              help="Default: let the scheduler rerun jobs after a node failure, or forbid it.")
@click.option("--directive", "directives", multiple=True, metavar="OPTION",
              help="Default extra scheduler option, without its prefix (repeatable).")
@click.option("--jobs-dir", default=None, help="Where job directories go.")
@click.option("--default/--no-default", "make_default", default=None, show_default=False,
              help="Make this the default profile, or not. Without either, the first profile added "
                   "becomes the default and later ones do not.")
@click.option("--force", is_flag=True, help="Replace an existing profile of that name.")
def add_profile(name: str, scheduler: str, cluster_name: str | None, host: str | None, options: tuple[str, ...],
                transport_options: tuple[str, ...],
                cpus: int | None, mem: str | None, time_limit: str | None, partition: str | None,
                account: str | None, retries: int | None, retry_on: str | None, grow_memory: float | None,
                grow_max_memory: str | None, grow_time: float | None, grow_max_time: str | None,
                rerunnable: bool | None,
                directives: tuple[str, ...], jobs_dir: str | None, make_default: bool | None,
                force: bool) -> int:
    """Add (or with --force replace) a profile. The scheduler plugin must be installed.

    The default profile is where `molq submit` sends jobs without -p/-c, with its defaults
    (--cpus, --partition, --time, ...) applied. The first profile added becomes the default
    unless --no-default is given; the output says so.
    """
    from molq.cluster import Cluster
    from molq.config import MolqProfile, load_config, save_config
    from molq.errors import ConfigError
    from molq.model import JobResources, JobScheduling, SubmitorDefaults

    config = load_config()
    if name in config.profiles and not force:
        raise ConfigError(f"profile {name!r} already exists (use --force to replace it)")
    resources = JobResources(cpu_count=cpus, memory=mem, time_limit=time_limit)
    scheduling = JobScheduling(partition=partition, account=account, rerunnable=rerunnable,
                               extra_directives=directives)
    defaults = SubmitorDefaults(
        resources=resources if resources != JobResources() else None,
        scheduling=scheduling if scheduling != JobScheduling() else None,
    )
    prof = MolqProfile(
        name=name, scheduler=scheduler, cluster_name=cluster_name, host=host,
        defaults=defaults if (defaults.resources or defaults.scheduling) else None,
        scheduler_options=_kv(options, "--option"),
        transport_options=_kv(transport_options, "--transport-option"),
        retry=retry_policy(retries, retry_on, grow_memory, grow_max_memory, grow_time, grow_max_time),
        jobs_dir=jobs_dir,
    )
    # Validate before writing: the scheduler exists and its options parse.
    _check_options(prof.scheduler, prof.scheduler_options)
    Cluster(prof.effective_cluster_name, prof.scheduler, host=None,
            scheduler_options=prof.scheduler_options or None)
    first = not config.profiles or set(config.profiles) == {name}
    becomes_default = make_default if make_default is not None else (first or config.default_profile == name)
    new = config.with_profile(prof, make_default=becomes_default)
    if make_default is False and config.default_profile == name:
        new = attrs.evolve(new, default_profile=None)
    path = save_config(new)
    click.echo(f"profile {name!r} saved to {path}")
    if becomes_default and config.default_profile != name:
        why = "the first profile" if make_default is None else "--default"
        click.echo(f"{name!r} is now the default profile ({why}): `molq submit` without -p/-c sends jobs "
                   f"to it, with its defaults; `molq profile add NAME --default` picks another one")
    return 0


def _check_options(scheduler: str, options: dict[str, Any]) -> None:
    """Name an unknown scheduler option and list the valid ones (instead of cattrs' terse
    "extra fields found")."""
    from molq.errors import ConfigError, PluginNotFoundError
    from molq.plugins import get_plugin_manager

    if not options:
        return
    try:
        options_type = get_plugin_manager().get_scheduler(scheduler).options_type
    except PluginNotFoundError:
        return  # the Cluster check below says why
    if options_type is None:
        raise ConfigError(f"the {scheduler!r} scheduler takes no --option")
    known = [f.name for f in attrs.fields(options_type)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                          f"for the {scheduler!r} scheduler; its options are: {', '.join(known)}")


@profile.command("remove")
@click.argument("name", shell_complete=complete_profiles)
def remove_profile(name: str) -> int:
    """Remove a profile."""
    from molq.config import load_config, save_config

    path = save_config(load_config().without_profile(name))
    click.echo(f"profile {name!r} removed from {path}")
    return 0


@profile.command("detect")
@click.option("--host", default=None, help="Probe this SSH destination (needs molq-ssh) instead of this machine.")
@click.option("--transport-option", "transport_options", multiple=True, metavar="K=V",
              help="SSH transport option (repeatable), e.g. config_file=~/.ssh/config.")
@click.option("--save", "save_as", metavar="NAME", default=None,
              help="Write a profile of this name for what was found (with --scheduler if several were).")
@click.option("--scheduler", "pick", default=None, help="Which of the schedulers found --save uses.")
@click.option("--json", "as_json", is_flag=True, help='Print what was found as JSON ("schema": 1).')
@click.pass_context
def detect_profile(ctx: click.Context, host: str | None, transport_options: tuple[str, ...], save_as: str | None,
                   pick: str | None, as_json: bool) -> int:
    """Find which schedulers a machine has (SLURM, PBS Pro or Torque, LSF, at), their versions
    and default partition or queue, and offer to write a profile.

    Only read-only client commands run (sbatch --version, sinfo, qstat --version, lsid, ...),
    in one shell round trip, locally or over SSH.
    """
    import os

    from molq.cli import detect
    from molq.errors import ConfigError

    if host:
        from molq.cluster import Cluster

        transport = Cluster("detect", "local", host=host,
                            transport_options=_kv(transport_options, "--transport-option") or None).transport
    else:
        from molq.transport import LocalTransport

        transport = LocalTransport()
    result = transport.run(["sh", "-c", detect.PROBE], timeout=120)
    if result.returncode != 0 and "@@molq end" not in result.stdout:
        where = host or "this machine"
        raise ConfigError(f"probing {where} failed: {(result.stderr or result.stdout).strip()[:200] or result.returncode}")
    found = detect.interpret(result.stdout)
    if as_json:
        render.dump_json([render.with_schema({
            "scheduler": f.scheduler, "version": f.version, "flavor": f.flavor, "default_queue": f.default_queue,
            "usable": f.usable, "notes": f.notes, "host": host}) for f in found])
    elif not found:
        click.echo(f"no scheduler found on {host or 'this machine'} (jobs can still run with the local scheduler)",
                   err=True)
    else:
        rows = [[f.scheduler + (f" ({f.flavor})" if f.flavor else ""), f.version or "?", f.default_queue or "-",
                 "yes" if f.usable else "no", "; ".join(f.notes)] for f in found]
        click.echo(render.table(["SCHEDULER", "VERSION", "DEFAULT QUEUE", "USABLE", "NOTES"], rows,
                                max_width=render.terminal_width(), shrink=[(4, 10)]))
    usable = [f for f in found if f.usable]
    if save_as is None and usable and not as_json and render.is_tty() and os.isatty(0):
        save_as = click.prompt("save a profile for it? name (empty: no)", default="", show_default=False) or None
    if save_as is None:
        if usable and not as_json:
            f = usable[0]
            suggestion = f"molq profile detect{f' --host {host}' if host else ''} --save NAME"
            click.echo(f"write a profile with: {suggestion}" + ("" if len(usable) == 1 else f" --scheduler {f.scheduler}"),
                       err=True)
        return 0
    chosen = [f for f in usable if pick in (None, f.scheduler)]
    if len(chosen) != 1:
        names = ", ".join(f.scheduler for f in usable) or "none usable"
        raise ConfigError(f"--save needs exactly one usable scheduler (found: {names}); choose with --scheduler")
    f = chosen[0]
    options = []
    if f.flavor == "torque":
        options.append("flavor=torque")
    if f.scheduler == "slurm" and not host and os.environ.get("SLURM_CONF"):
        options.append(f"env.SLURM_CONF={os.environ['SLURM_CONF']}")
    ctx.invoke(add_profile, name=save_as, scheduler=f.scheduler, host=host, options=tuple(options),
               transport_options=transport_options, partition=f.default_queue)
    return 0

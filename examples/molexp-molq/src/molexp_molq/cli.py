"""``molexp-molq``: create run directories, submit them through molq, show their status.

    molexp-molq init runs/r1 --config '{"n": 100}'
    molexp-molq submit runs/r1 --scheduler slurm --partition gpu --gpus 1 --cpus 8 --block
    molexp-molq status runs/r1
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from molexp_molq.handler import (
    DEFAULT_WORKER_PYTHON,
    BackendMissingError,
    SubmitFlags,
    SubmitHandler,
    SubmitInputError,
)
from molexp_molq.runs import RunDirError, check_run, create_run


def user_error_types() -> tuple[type[BaseException], ...]:
    """Errors that are the user's input or environment: shown as one line, never a traceback."""
    kinds: list[type[BaseException]] = [BackendMissingError, SubmitInputError, RunDirError]
    try:
        from molq import MolqError
    except ImportError:  # without molq, BackendMissingError says so
        pass
    else:
        kinds.append(MolqError)
    return tuple(kinds)


def fail(exc: BaseException | str) -> click.ClickException:
    # One line: a scheduler's multi-line stderr would otherwise spill over several.
    return click.ClickException(" ".join(str(exc).split()))


def scheduler_flags(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The scheduler flags of ``molexp run``, added to a click command."""
    options = [
        click.option("--scheduler", default="local", show_default=True,
                     help="molq scheduler: local, slurm, pbs, lsf, or any installed plugin."),
        click.option("--partition", "--queue", "partition", help="Partition (SLURM) or queue (PBS, LSF)."),
        click.option("--account", help="Account or project to charge."),
        click.option("--qos", help="Quality of service."),
        click.option("--cluster", help="molq cluster name; a molq profile of that name is used if it exists."),
        click.option("--cpus", type=click.IntRange(min=1), help="CPUs for the run."),
        click.option("--mem", help="Memory, e.g. 8G."),
        click.option("--gpus", type=click.IntRange(min=1), help="Number of GPUs."),
        click.option("--gpu-type", help="GPU model, e.g. a100 (needs --gpus)."),
        click.option("--time", "time_limit", help="Time limit, e.g. 2h or 04:00:00."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def flags_from(kwargs: dict[str, Any]) -> SubmitFlags:
    return SubmitFlags(
        scheduler=kwargs["scheduler"], partition=kwargs["partition"], account=kwargs["account"],
        qos=kwargs["qos"], cluster=kwargs["cluster"], cpus=kwargs["cpus"], mem=kwargs["mem"],
        gpus=kwargs["gpus"], gpu_type=kwargs["gpu_type"], time=kwargs["time_limit"],
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Run experiment run directories on a molq scheduler."""


@cli.command()
@click.argument("run_dir")
@click.option("--config", "config_json", default="{}", help="The run's configuration, as JSON.")
def init(run_dir: str, config_json: str) -> None:
    """Create a run directory with its run.json."""
    try:
        config = json.loads(config_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--config") from None
    if not isinstance(config, dict):
        raise click.BadParameter("must be a JSON object, e.g. '{\"n\": 3}'", param_hint="--config")
    try:
        path = create_run(run_dir, config)
    except OSError as exc:  # FileExistsError included: the run already exists
        raise fail(exc) from None
    click.echo(str(path))


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True)
@scheduler_flags
@click.option("--python", "python", envvar="MOLEXP_MOLQ_PYTHON", default=DEFAULT_WORKER_PYTHON, show_default=True,
              help="Interpreter that runs the worker on the cluster (a command on its PATH, or a path there).")
@click.option("--block", is_flag=True, help="Follow the runs until they finish; exit 1 if any failed.")
@click.option("--timeout", type=float, default=None, help="With --block: give up after this many seconds.")
def submit(run_dirs: tuple[str, ...], python: str, block: bool, timeout: float | None, **kwargs: Any) -> None:
    """Submit the worker of each run directory through molq.

    Every run and flag is checked first: if one is wrong, none is submitted."""
    user_errors = user_error_types()
    try:
        handler = SubmitHandler(flags_from(kwargs), python=python)
    except user_errors as exc:
        raise fail(exc) from None
    with handler:
        try:
            planned = handler.validate(run_dirs)
        except user_errors as exc:
            raise fail(exc) from None
        for done, (path, run) in enumerate(planned):
            run_dir = run_dirs[done]
            try:
                info = handler.submit_validated(path, run)
            except user_errors as exc:
                left = ", ".join(run_dirs[done:])
                raise fail(f"{run_dir}: {exc} (not submitted: {left})") from None
            click.echo(f"{run_dir}: {info['scheduler']} job {info['scheduler_job_id']} (molq {info['job_id']})")
        if block:
            runs = handler.wait(run_dirs, timeout=timeout)
            for run_dir, run in zip(run_dirs, runs, strict=True):
                click.echo(f"{run_dir}: {run['status']}")
            if any(run["status"] != "succeeded" for run in runs):
                sys.exit(1)


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True)
def status(run_dirs: tuple[str, ...]) -> None:
    """Print each run's status and executor, from run.json (no scheduler query)."""
    for run_dir in run_dirs:
        try:
            run = check_run(run_dir)
        except RunDirError as exc:
            raise fail(exc) from None
        ex = run.get("executor") or {}
        click.echo(f"{run_dir}: {run.get('status', '-')} {ex.get('scheduler', '-')} {ex.get('scheduler_job_id', '-')}")


@cli.command("ui-plugins")
def ui_plugins() -> None:
    """Print the UI plugin descriptors this environment offers, as JSON."""
    from molexp_molq.plugins import discover_ui_plugins

    click.echo(json.dumps([d.to_dict() for d in discover_ui_plugins()], indent=2))


def main() -> None:
    cli(prog_name="molexp-molq")

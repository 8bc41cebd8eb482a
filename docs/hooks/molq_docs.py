"""MkDocs hook: tables and reference blocks generated from the code, so the docs cannot drift.

A page asks for generated content with an HTML comment on a line of its own:

``<!-- molq:states NAME -->``
    the native-state table of a backend (``slurm``, ``pbspro``, ``torque``, ``lsf``, ``at``),
    read from the backend's ``states`` module.
``<!-- molq:mapping NAME -->``
    what a backend emits for each molq field, found by rendering a sample job with that one
    field set and comparing with a job without it (``slurm``, ``pbspro``, ``torque``, ``lsf``,
    ``at``). Fields a scheduler refuses show the ConfigError it raises.
``<!-- molq:capabilities -->``
    which fields each installed scheduler honours.
``<!-- molq:dependencies -->``
    the native spelling of each dependency condition, per scheduler.
``<!-- molq:api -->``
    a mkdocstrings block for every public name of ``molq`` (``molq.__all__``).
``<!-- molq:cli -->``
    the command-line reference: every command (plugin commands included) with its usage,
    help and a table of its options, their types and defaults as ``--help`` shows them.

An unknown marker or a backend that cannot be imported is an error, which fails
``mkdocs build --strict``.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import re
import shlex
from collections.abc import Callable
from typing import Any

log = logging.getLogger("mkdocs.plugins.molq_docs")

_MARKER = re.compile(r"^<!-- molq:(\w+)(?: ([\w-]+))? -->$", re.MULTILINE)

JOB_ID = "0123456789abcdef0123456789abcdef"
CWD = "/home/me/project"
JOB_DIR = f"{CWD}/.molq/jobs/{JOB_ID}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    text = _cell(text)
    return f"`{text}`" if "`" not in text else f"<code>{text}</code>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


# -- states --------------------------------------------------------------------------------


def _states(name: str) -> str:
    if name == "slurm":
        from molq_slurm.states import FAILURE_DESCRIPTIONS, SHORT_TO_LONG, STATE_MAP

        short = {v: k for k, v in SHORT_TO_LONG.items()}
        rows = [[_code(short.get(state, "")), _code(state), f"**{molq.value}**", FAILURE_DESCRIPTIONS.get(state, "")]
                for state, molq in STATE_MAP.items()]
        return _table(["code", "SLURM state", "molq state", "reason recorded"], rows)
    if name in ("pbspro", "torque"):
        from molq_pbs import states

        table = states.PBSPRO_STATES if name == "pbspro" else states.TORQUE_STATES
        rows = []
        for letter, (molq, meaning) in sorted(table.items()):
            final = states.is_finished_state(letter, name)
            shown = "from the exit status (below)" if final else f"**{molq.value}**"
            rows.append([_code(letter), meaning, shown])
        return _table(["job_state", "what PBS means", "molq state"], rows)
    if name == "lsf":
        from molq_lsf.states import LSF_STATES

        rows = [[_code(stat), meaning, f"**{molq.value}**" if stat != "EXIT" else "from the exit reason (below)"]
                for stat, (molq, meaning) in LSF_STATES.items()]
        return _table(["STAT", "what LSF means", "molq state"], rows)
    if name == "at":
        from molq_at.states import AT_STATES

        rows = [[_code(queue), meaning, f"**{molq.value}**"] for queue, (molq, meaning) in AT_STATES.items()]
        return _table(["atq queue column", "what at means", "molq state"], rows)
    raise ValueError(f"no state table for {name!r}")


# -- field mapping -------------------------------------------------------------------------


def _samples() -> list[tuple[str, str, dict[str, Any]]]:
    from molq.model import CompiledDependency, JobExecution, JobResources, JobScheduling

    def res(**kw: Any) -> dict[str, Any]:
        return {"resources": JobResources(**kw)}

    def sch(**kw: Any) -> dict[str, Any]:
        return {"scheduling": JobScheduling(**kw)}

    def exe(**kw: Any) -> dict[str, Any]:
        return {"execution": JobExecution(**kw)}

    return [
        ("resources.cpu_count", "4", res(cpu_count=4)),
        ("resources.memory", '"16G"', res(memory="16G")),
        ("resources.gpu_count", "2", res(gpu_count=2)),
        ("resources.gpu_type", '"a100" (with gpu_count=1)', res(gpu_count=1, gpu_type="a100")),
        ("resources.time_limit", '"2h30m"', res(time_limit="2h30m")),
        ("scheduling.partition", '"gpu"', sch(partition="gpu")),
        ("scheduling.account", '"proj42"', sch(account="proj42")),
        ("scheduling.qos", '"high"', sch(qos="high")),
        ("scheduling.priority", '"10"', sch(priority="10")),
        ("scheduling.node_count", "2", sch(node_count=2)),
        ("scheduling.exclusive_node", "True", sch(exclusive_node=True)),
        ("scheduling.array_spec", '"1-10%2"', sch(array_spec="1-10%2")),
        ("scheduling.email", '"me@example.org"', sch(email="me@example.org")),
        ("scheduling.reservation", '"maint"', sch(reservation="maint")),
        ("scheduling.rerunnable", "True", sch(rerunnable=True)),
        ("scheduling.rerunnable", "False", sch(rerunnable=False)),
        # A placeholder: each scheduler takes its own options here.
        ("scheduling.extra_directives", '("-O value",) (any option of the scheduler)',
         sch(extra_directives=("-O value",))),
        ("dependencies", "after_success on a job with scheduler id 1234",
         {"dependencies": (CompiledDependency("after_success", "f" * 32, "1234"),)}),
        ("execution.job_name", '"train"', exe(job_name="train")),
        ("execution.output_file", '"train.log"', exe(output_file="train.log")),
        ("execution.env", '{"OMP_NUM_THREADS": "4"}', exe(env={"OMP_NUM_THREADS": "4"})),
        ("execution.cwd", '"/scratch/run1"', {"cwd": "/scratch/run1"}),
    ]


def _scheduler(name: str) -> Any:
    from molq.plugins import get_plugin_manager
    from molq.transport import LocalTransport

    kind = {"pbspro": "pbs", "torque": "pbs"}.get(name, name)
    plugin = get_plugin_manager().get_scheduler(kind)
    options = None
    if name == "torque":
        options = plugin.options_type(flavor="torque")
    return kind, plugin.factory(LocalTransport(), options)


def _directive_lines(script: str) -> list[str]:
    # Everything before molq's wrapper, without plain comments (dialects note things there).
    head = script.split("\n# molq job ", 1)[0].splitlines()[1:]
    return [line for line in head if line.strip() and not line.startswith("# ")]


def _emitted(sched: Any, spec: Any) -> tuple[list[str], list[str]]:
    dialect = sched.dialect
    script = dialect.render_script(spec, JOB_DIR)
    argv = dialect.submit_argv(f"{JOB_DIR}/job.sh", spec)
    return _directive_lines(script), argv


def _diff_tokens(base: list[str], new: list[str]) -> list[str]:
    out: list[str] = []
    matcher = difflib.SequenceMatcher(a=base, b=new, autojunk=False)
    for op, _a0, _a1, b0, b1 in matcher.get_opcodes():
        if op in ("insert", "replace"):
            # A changed value after an unchanged option: show the option with it.
            start = b0 - 1 if op == "replace" and b0 > 0 and new[b0 - 1].startswith("-") else b0
            out.append(shlex.join(new[start:b1]))
    return out


def _mapping(name: str) -> str:
    import attrs
    from molq.errors import ConfigError
    from molq.model import JobSpec

    kind, sched = _scheduler(name)
    base_spec = JobSpec(job_id=JOB_ID, command_type="argv", argv=("python", "train.py"), cwd=CWD)
    base_lines, base_argv = _emitted(sched, base_spec)
    rows = []
    for field, shown, change in _samples():
        spec = attrs.evolve(base_spec, **change)
        try:
            sched.capabilities().check(spec, kind)
            lines, argv = _emitted(sched, spec)
        except ConfigError as exc:
            rows.append([_code(field), _code(shown), f"refused: {_cell(str(exc))}"])
            continue
        parts = [_code(line) for line in lines if line not in base_lines]
        parts += [_code(tok) for tok in _diff_tokens(base_argv, argv)]
        if not parts:
            parts = ["set by molq's job wrapper"]
        rows.append([_code(field), _code(shown), "<br>".join(parts)])
    where = "script lines and command-line arguments"
    return f"What molq adds to the job ({where}) for each field, given the example value:\n\n" + _table(
        ["molq field", "example", "emitted"], rows
    )


# -- capabilities and dependencies ------------------------------------------------------------


def _installed_schedulers() -> dict[str, Any]:
    from molq.plugins import get_plugin_manager
    from molq.transport import LocalTransport

    out = {}
    for name, plugin in sorted(get_plugin_manager().schedulers().items()):
        out[name] = plugin.factory(LocalTransport(), None)
    return out


def _capabilities(_arg: str | None) -> str:
    from molq.model import CAPABILITY_FIELDS

    scheds = _installed_schedulers()
    rows = []
    for field, path in CAPABILITY_FIELDS.items():
        rows.append([_code(path)] + ["yes" if s.capabilities().supports(field) else "—" for s in scheds.values()])
    return _table(["field", *scheds], rows)


def _dependencies(_arg: str | None) -> str:
    from molq.model import DEPENDENCY_CONDITIONS

    scheds = _installed_schedulers()
    rows = []
    for condition in DEPENDENCY_CONDITIONS:
        row = [_code(condition)]
        for sched in scheds.values():
            caps = sched.capabilities()
            if "dependencies" not in caps.supported or condition not in caps.dependency_conditions:
                row.append("—")
            else:
                row.append(_code(sched.native_condition(condition, "1234")))
        rows.append(row)
    return _table(["condition", *scheds], rows)


# -- API -----------------------------------------------------------------------------------


def _api(_arg: str | None) -> str:
    molq = importlib.import_module("molq")
    groups: dict[str, list[str]] = {}
    for name in molq.__all__:
        if name == "__version__":
            continue
        module = molq._EXPORTS[name]
        groups.setdefault(module, []).append(name)
    out = []
    for module, names in groups.items():
        out.append(f"## `{module}`\n")
        for name in names:
            out.append(f"::: {module}.{name}\n    options:\n      heading_level: 3\n")
    return "\n".join(out)


GENERATORS: dict[str, Callable[[str | None], str]] = {
    "states": lambda arg: _states(arg or ""),
    "mapping": lambda arg: _mapping(arg or ""),
    "capabilities": _capabilities,
    "dependencies": _dependencies,
    "api": _api,
    "cli": lambda arg: _cli(arg),  # defined below with the other CLI helpers
}


# -- command line -------------------------------------------------------------------------


def _param_type(param: Any) -> str:
    import click

    if getattr(param, "is_flag", False):
        return "flag"
    if isinstance(param.type, click.Choice):
        return " \\| ".join(_code(str(c)) for c in param.type.choices)
    if param.metavar:
        return _code(param.metavar)
    name = param.type.name
    return {"text": "text", "integer": "integer", "float": "number", "path": "path", "file": "path"}.get(
        name, name.replace(" ", "&nbsp;"))


def _param_default(ctx: Any, param: Any) -> str:
    """The default as ``--help`` states it: nothing for unset values, off flags and empty
    repeatable options."""
    import click.core

    value = param.get_default(ctx, call=False)
    if value is getattr(click.core, "UNSET", None) or value is None or value is False or value == () or value == []:
        return ""
    if value is True:
        return "on"
    return _code(str(value))


def _command_section(cmd: Any, ctx: Any, level: int) -> list[str]:
    import click

    path = ctx.command_path
    out = [f"{'#' * level} {path}", ""]
    usage = " ".join([path, *cmd.collect_usage_pieces(ctx)])
    out += ["```text", usage, "```", ""]
    if cmd.help:
        out += [cmd.help.strip(), ""]
    rows = []
    for param in cmd.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        if isinstance(param, click.Argument):
            rows.append([_code(param.human_readable_name), "argument", "", ""])
            continue
        names = ", ".join(_code(o) for o in param.opts)
        if param.secondary_opts:
            names += " / " + ", ".join(_code(o) for o in param.secondary_opts)
        help_text = param.help or ""
        if not help_text:
            raise ValueError(f"{path} {param.opts[0]} has no help text")
        rows.append([names, _param_type(param), _cell(help_text), _param_default(ctx, param)])
    if rows:
        out += [_table(["option", "type", "what it does", "default"], rows), ""]
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None:
                out += _command_section(sub, click.Context(sub, info_name=name, parent=ctx), level + 1)
    return out


def _cli(_arg: str | None) -> str:
    import click
    from molq.cli.app import cli

    root = click.Context(cli, info_name="molq")
    out: list[str] = []
    for name in cli.list_commands(root):
        cmd = cli.get_command(root, name)
        if cmd is not None:
            out += _command_section(cmd, click.Context(cmd, info_name=name, parent=root), 2)
    return "\n".join(out)


def render_markers(markdown: str) -> str:
    """Replace every ``<!-- molq:... -->`` marker of ``markdown`` with generated content."""

    def replace(match: re.Match[str]) -> str:
        kind, arg = match.group(1), match.group(2)
        if kind not in GENERATORS:
            raise ValueError(f"unknown docs marker molq:{kind}")
        return GENERATORS[kind](arg)

    return _MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: expand the markers of one page."""
    try:
        return render_markers(markdown)
    except Exception as exc:
        raise RuntimeError(f"{page.file.src_path}: generating docs content failed: {exc}") from exc

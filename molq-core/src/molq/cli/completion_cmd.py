"""``molq completion``: the shell completion script."""

from __future__ import annotations

import click


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

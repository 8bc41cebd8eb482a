"""Start-up paths of the command line: the cached `molq --help` and the model-free `molq list`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest


@pytest.fixture
def env(molq_home):
    env = dict(os.environ, MOLQ_HOME=str(molq_home))
    env.pop("COLUMNS", None)
    return env


def molq(env, *args, extra_env=None):
    proc = subprocess.run([sys.executable, "-m", "molq", *args], env={**env, **(extra_env or {})},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


NO_CLICK = textwrap.dedent("""
    import sys
    sys.modules["click"] = None  # any `import click` now fails
    from molq.cli import main
    sys.argv = ["molq", "--help"]
    raise SystemExit(main())
""")


def help_via(code, env):
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_cached_help_needs_no_click(env):
    # The same interpreter command line both times (sys.path is part of the cache key).
    first = help_via(NO_CLICK.replace('sys.modules["click"] = None', "pass"), env)
    assert first.returncode == 0, first.stderr  # click rendered it, and the text was cached
    rendered = first.stdout
    cached = help_via(NO_CLICK, env)
    assert cached.returncode == 0, cached.stderr
    assert cached.stdout == rendered
    assert "Usage: molq" in rendered and "submit" in rendered


def test_cached_help_is_not_used_for_another_environment(env):
    assert help_via(NO_CLICK.replace('sys.modules["click"] = None', "pass"), env).returncode == 0
    # A different plugin block list may change the command list: the cache does not apply,
    # and without click nothing can render the help.
    other = {**env, "MOLQ_BLOCK_PLUGINS": "something-else"}
    proc = help_via(NO_CLICK, other)
    assert proc.returncode != 0 and "click" in proc.stderr


def test_help_follows_the_terminal_width(env):
    narrow = molq(env, "--help", extra_env={"COLUMNS": "60"})
    wide = molq(env, "--help", extra_env={"COLUMNS": "100"})
    assert narrow != wide
    assert max(len(line) for line in narrow.splitlines()) <= 58
    # Asked again (now from the cache), each width gets its own text.
    assert molq(env, "--help", extra_env={"COLUMNS": "60"}) == narrow
    assert molq(env, "--help", extra_env={"COLUMNS": "100"}) == wide


def test_list_reads_the_store_without_model_or_sqlalchemy(env):
    molq(env, "submit", "--wait", "--", "true")
    code = textwrap.dedent("""
        import json, sys
        from molq.cli import main
        sys.argv = ["molq", "list", "--all", "--json"]
        try:
            main()
        finally:
            print(json.dumps(sorted(m for m in ("molq.model", "sqlalchemy", "attrs") if m in sys.modules)),
                  file=sys.stderr)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []
    (job,) = json.loads(proc.stdout)
    assert job["state"] == "succeeded" and job["exit_code"] == 0

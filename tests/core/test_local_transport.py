"""LocalTransport.run / start (the standard library's subprocess) as every scheduler command takes it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from molq.errors import TransportError
from molq.transport import LocalTransport


@pytest.fixture
def t() -> LocalTransport:
    return LocalTransport()


def test_large_input_and_output_do_not_deadlock(t):
    data = "".join(f"line {i} ü\n" for i in range(200_000))  # several MB each way
    result = t.run(["sh", "-c", "cat; cat >&2 </dev/null; echo tail >&2"], input=data, timeout=60)
    assert result.returncode == 0
    assert result.stdout == data
    assert result.stderr == "tail\n"


def test_empty_input_closes_stdin(t):
    assert t.run(["cat"], input="", timeout=10).stdout == ""


def test_no_input_reads_dev_null(t):
    assert t.run(["cat"], timeout=10).stdout == ""


def test_exit_status_signal_and_missing_command(t):
    assert t.run(["sh", "-c", "exit 3"]).returncode == 3
    assert t.run(["sh", "-c", "kill -TERM $$"]).returncode == -15
    missing = t.run(["molq-no-such-command-xyz"])
    assert missing.returncode == 127 and "not found" in missing.stderr


def test_timeout_kills_the_command_and_raises(t, tmp_path):
    pidfile = tmp_path / "pid"
    with pytest.raises(TransportError, match="timed out"):
        t.run(["sh", "-c", f'echo $$ > {pidfile}; exec sleep 30'], timeout=0.5)
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped: not even a zombie of ours


def test_timeout_applies_to_a_command_that_keeps_printing(t):
    with pytest.raises(TransportError, match="timed out"):
        # No pause in the output: there is always something to read when the deadline passes.
        t.run(["sh", "-c", "while :; do echo tick; echo tock >&2; done"], timeout=0.5)


def test_env_overrides_and_the_childs_path_is_searched(t, tmp_path):
    tool = tmp_path / "molq-private-tool"
    tool.write_text("#!/bin/sh\necho \"tool:$MOLQ_X\"\n")
    tool.chmod(0o755)
    result = t.run(["molq-private-tool"], env={"PATH": f"{tmp_path}:/usr/bin:/bin", "MOLQ_X": "a b ü"})
    assert result.stdout == "tool:a b ü\n"
    assert t.run(["molq-private-tool"]).returncode == 127  # not on this process's PATH


def test_start_returns_while_the_command_runs(t, tmp_path):
    flag = tmp_path / "go"
    running = t.start(["sh", "-c", f'while [ ! -e {flag} ]; do sleep 0.01; done; echo seen'], timeout=20)
    flag.touch()  # only reachable if start() did not wait for the command
    result = running.wait()
    assert (result.returncode, result.stdout) == (0, "seen\n")
    assert running.wait() is result


def test_cwd_is_honoured(t, tmp_path):
    assert t.run(["pwd"], cwd=str(tmp_path)).stdout.strip() == str(tmp_path)


def test_closed_standard_streams_fall_back_to_subprocess(tmp_path):
    # With 0, 1 and 2 closed, the transport's own pipes would land on them: subprocess does it.
    code = textwrap.dedent("""
        import os, sys
        result_fd = int(sys.argv[1])
        for fd in (0, 1, 2):
            os.close(fd)
        from molq.transport import LocalTransport
        r = LocalTransport().run(["sh", "-c", "cat; echo err >&2"], input="in")
        os.write(result_fd, (r.stdout + "|" + r.stderr).encode())
    """)
    out = tmp_path / "out"
    with open(out, "wb") as fh:
        proc = subprocess.run([sys.executable, "-c", code, str(fh.fileno())], pass_fds=(fh.fileno(),), timeout=60)
    assert proc.returncode == 0
    assert out.read_text() == "in|err\n"

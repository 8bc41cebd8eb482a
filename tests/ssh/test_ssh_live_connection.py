"""The shared master connection: reuse across calls, instances and processes; recovery.

These tests use their own control directory (``private_control_dir``), so killing or closing
a master never disturbs other tests.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from molq.errors import TransportError
from molq_ssh import SshTransport, SshTransportOptions
from ssh_support import Sshd, unavailable

pytestmark = pytest.mark.sshd

BOUND = 15.0


def _client_port(t: SshTransport) -> str:
    """The local TCP port of the connection a command ran over (from the server's SSH_CLIENT)."""
    result = t.run(["sh", "-c", 'printf %s "$SSH_CLIENT"'])
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[1]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def mux(make_transport, private_control_dir: str):
    """Build transports that share this test's private control directory."""
    return lambda **kw: make_transport(control_dir=private_control_dir, **kw)


def test_one_connection_for_many_calls_instances_and_processes(
    mux, sshd: Sshd, private_control_dir: str
) -> None:
    t1 = mux()
    port = _client_port(t1)
    master = t1.master_pid()
    assert master is not None and _alive(master)
    assert os.listdir(private_control_dir) == [os.path.basename(t1.control_path())]
    assert {_client_port(t1) for _ in range(3)} == {port}
    t2 = mux()
    assert _client_port(t2) == port and t2.master_pid() == master
    # Another process reuses the master too (ControlPersist keeps it beyond any one process).
    script = textwrap.dedent(f"""
        from molq_ssh import SshTransport, SshTransportOptions
        t = SshTransport(SshTransportOptions(host={sshd.host!r}, config_file={sshd.config!r},
                                             control_dir={private_control_dir!r}))
        print(t.run(["sh", "-c", 'printf %s "$SSH_CLIENT"']).stdout.split()[1], t.master_pid())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [port, str(master)]


def test_each_run_is_one_ssh_process(mux, tmp_path: Path, monkeypatch) -> None:
    import shutil

    real_ssh = shutil.which("ssh")
    log = tmp_path / "ssh.log"
    wrapper = tmp_path / "bin" / "ssh"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho ssh >> "{log}"\nexec "{real_ssh}" "$@"\n')
    wrapper.chmod(0o755)
    t = mux()
    t.run(["true"])  # master up (and `ssh -G` answered) before counting
    t.control_path()
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    for i in range(5):
        assert t.run(["echo", str(i)]).stdout == f"{i}\n"
    t.exists("/tmp")
    t.write_text("/tmp/molq-ssh-one-exec", "x")
    t.read_text("/tmp/molq-ssh-one-exec")
    t.remove("/tmp/molq-ssh-one-exec")
    assert len(log.read_text().splitlines()) == 9


def test_master_killed_between_calls(mux) -> None:
    t = mux()
    t.run(["true"])
    first = t.master_pid()
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _alive(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(t.control_path())  # a stale socket is left behind
    start = time.monotonic()
    assert t.run(["echo", "again"]).stdout == "again\n"
    assert time.monotonic() - start < BOUND
    second = t.master_pid()
    assert second not in (None, first)


def test_master_killed_during_a_command(mux, remote_dir: str) -> None:
    t = mux()
    t.run(["true"])
    master = t.master_pid()
    counter = f"{remote_dir}/runs"
    killer = threading.Timer(1.0, os.kill, (master, signal.SIGKILL))
    killer.start()
    start = time.monotonic()
    try:
        with pytest.raises(TransportError, match="lost") as info:
            t.run(["sh", "-c", f"echo run >> '{counter}'; sleep 8"])
    finally:
        killer.cancel()
    assert time.monotonic() - start < 8  # noticed when it happened, not when the command ended
    assert t.host in str(info.value)
    # The command had started, so it was not run a second time; the next call reconnects.
    assert t.read_text(counter) == "run\n"
    assert t.master_pid() not in (None, master)


def test_close_and_context_manager(mux) -> None:
    with mux() as t:
        t.run(["true"])
        master = t.master_pid()
        assert master is not None
    deadline = time.monotonic() + 5
    while _alive(master) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(master) and t.master_pid() is None
    assert t.run(["echo", "reopened"]).stdout == "reopened\n"  # a closed transport reconnects
    t.close()


def test_without_multiplexing_each_call_connects(make_transport) -> None:
    t = make_transport(multiplex=False)
    assert t.run(["echo", "x"]).stdout == "x\n"
    assert _client_port(t) != _client_port(t)
    assert t.master_pid() is None


def test_spawn_detached_survives_the_call_and_the_master(mux, remote_dir: str) -> None:
    t = mux()
    pid = t.spawn_detached(
        ["sleep", "47.25"], cwd=remote_dir, stdout=f"{remote_dir}/o", stderr=f"{remote_dir}/e"
    )
    try:
        assert t.run(["kill", "-0", str(pid)]).returncode == 0
        master = t.master_pid()
        t.close()
        deadline = time.monotonic() + 5
        while _alive(master) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(master)
        time.sleep(0.5)
        assert t.run(["kill", "-0", str(pid)]).returncode == 0
        assert "sleep 47.25" in t.run(["ps", "-o", "args=", "-p", str(pid)]).stdout
    finally:
        t.run(["kill", str(pid)])


def _fake_master(path: str) -> socket.socket:
    """A unix socket at ``path`` that speaks the start of the mux protocol, then hangs up."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(4096)  # client hello
                    conn.sendall(struct.pack(">III", 8, 1, 4))  # MUX_MSG_HELLO, version 4
                    conn.recv(4096)
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_broken_master_is_bypassed_then_replaced(mux) -> None:
    t = mux()
    path = t.control_path()
    srv = _fake_master(path)
    try:
        result = t.run(["sh", "-c", "echo out; echo err >&2"])
        # ssh fell back to a direct connection; its own complaints are not the command's stderr
        assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "err\n")
        t.run(["true"])
        master = t.master_pid()
        assert master is not None and master != os.getpid()  # a real ssh master took over
        assert _client_port(t) == _client_port(t)
    finally:
        srv.close()


# -- a private sshd that can be stopped and restarted ---------------------------------------


class PrivateSshd:
    """An sshd of this test only, on a free loopback port, stopped with all its sessions."""

    def __init__(self, directory: str, client_key: str) -> None:
        self.dir = directory
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        host_key = os.path.join(directory, "host_key")
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key],
            check=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
        Path(directory, "authorized_keys").write_text(Path(client_key + ".pub").read_text())
        pub = " ".join(Path(host_key + ".pub").read_text().split()[:2])
        self.known_hosts = os.path.join(directory, "known_hosts")
        Path(self.known_hosts).write_text(f"[127.0.0.1]:{self.port} {pub}\n")
        self.config = os.path.join(directory, "sshd_config")
        Path(self.config).write_text(
            textwrap.dedent(f"""\
            Port {self.port}
            ListenAddress 127.0.0.1
            HostKey {host_key}
            PidFile {directory}/sshd.pid
            AuthorizedKeysFile {directory}/authorized_keys
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no
            LogLevel ERROR
        """)
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(os.path.join(self.dir, "sshd.log"), "ab")
        self.proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", self.config],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(Path(self.dir, "sshd.log").read_text())
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("private sshd did not start listening")

    def _descendants(self, pid: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as fh:
                        ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [pid]
        while todo:
            for child in children.get(todo.pop(), []):
                out.append(child)
                todo.append(child)
        return out

    def stop(self) -> None:
        """Kill the listener and every session it forked (what a crash or reboot does)."""
        if self.proc is None:
            return
        victims = [self.proc.pid, *self._descendants(self.proc.pid)]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def private_sshd(sshd: Sshd) -> Iterator[PrivateSshd]:
    if not os.path.exists("/usr/sbin/sshd") or os.geteuid() != 0:
        unavailable("a private sshd needs /usr/sbin/sshd and root")
    directory = tempfile.mkdtemp(prefix="mqsshd-", dir="/tmp")
    server = PrivateSshd(directory, sshd.key)
    try:
        server.start()
    except RuntimeError as exc:
        unavailable(f"cannot start a private sshd: {exc}")
    yield server
    server.stop()
    import shutil

    shutil.rmtree(directory, ignore_errors=True)


def test_reconnects_after_the_server_restarts(
    private_sshd: PrivateSshd, sshd: Sshd, private_control_dir: str
) -> None:
    t = SshTransport(
        SshTransportOptions(
            host="root@127.0.0.1",
            port=private_sshd.port,
            identity_file=sshd.key,
            config_file=os.devnull,
            control_dir=private_control_dir,
            connect_timeout=5,
            ssh_opts=(
                "-o",
                f"UserKnownHostsFile={private_sshd.known_hosts}",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
            ),
        )
    )
    assert t.run(["echo", "one"]).stdout == "one\n"
    first = t.master_pid()
    assert first is not None

    private_sshd.stop()
    start = time.monotonic()
    with pytest.raises(TransportError, match="127.0.0.1"):
        t.run(["true"])  # the server is down: a clear error, quickly
    assert time.monotonic() - start < BOUND

    private_sshd.start()
    start = time.monotonic()
    assert t.run(["echo", "two"]).stdout == "two\n"
    assert time.monotonic() - start < BOUND
    assert t.master_pid() not in (None, first)
    t.close()

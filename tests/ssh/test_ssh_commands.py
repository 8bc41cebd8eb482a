"""The SSH transport's command building, checked against real local programs (no sshd needed).

The remote command string is executed by the local ``sh`` and ``bash`` exactly as the remote
login shell would execute it; ssh's own parser (``ssh -G``) and rsync's ``-e`` parser are used
to check option quoting.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from molq.errors import ConfigError, TransportError
from molq_ssh import SshTransport, SshTransportOptions
from molq_ssh.commands import (
    Markers,
    escape_remote_glob,
    parse_master_pid,
    remote_command,
    remote_spec,
    rsync_rsh,
    split_output,
    ssh_option_value,
    ssh_percent_escape,
)
from molq_ssh.transport import default_control_dir

MARKERS = Markers("0123456789abcdef")

# Anything a str argv element can hold on POSIX: no NUL, no lone surrogates.
arg_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
env_names = st.from_regex(r"\AMOLQ_[A-Z0-9_]{1,8}\Z")
# Login shells molq supports; the ones installed here are exercised.
SHELLS = [s for s in ("sh", "bash", "dash", "zsh", "ksh", "mksh") if shutil.which(s)]


def _run_as_login_shell(shell: str, command: str, **kw) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([shell, "-c", command], capture_output=True, timeout=20, **kw)


@pytest.mark.parametrize("shell", SHELLS)
@settings(max_examples=60, deadline=None)
@given(args=st.lists(arg_text, min_size=0, max_size=6))
def test_argv_survives_the_login_shell(shell: str, args: list[str]) -> None:
    command = remote_command(["printf", "%s\\0", *args], MARKERS)
    proc = _run_as_login_shell(shell, command)
    out = split_output(proc.stdout, MARKERS)
    assert out.started and out.status == 0 == proc.returncode
    expected = b"".join(a.encode() + b"\0" for a in args) if args else b"\0"
    assert out.stdout == expected


@pytest.mark.parametrize("shell", SHELLS)
@settings(max_examples=40, deadline=None)
@given(env=st.dictionaries(env_names, arg_text, max_size=4))
def test_env_values_survive_the_login_shell(shell: str, env: dict[str, str]) -> None:
    names = sorted(env)
    script = 'for n do eval "printf \'%s\\0\' \\"\\${$n}\\""; done'
    command = remote_command(["sh", "-c", script, "sh", *names], MARKERS, env=env)
    proc = _run_as_login_shell(shell, command)
    out = split_output(proc.stdout, MARKERS)
    assert out.status == 0, proc.stderr
    assert out.stdout.split(b"\0")[:-1] == [env[n].encode() for n in names]


@pytest.mark.parametrize("name", ["plain", "with space", "-dash", "it's", "$(id)", "ü ★", "*", "-"])
def test_cwd_is_entered_literally(tmp_path, name: str) -> None:
    (tmp_path / name).mkdir()
    for cwd in (str(tmp_path / name), name):  # absolute, and relative to the shell's directory
        command = remote_command(["pwd", "-P"], MARKERS, cwd=cwd)
        proc = subprocess.run(
            ["sh", "-c", command],
            capture_output=True,
            cwd=tmp_path,
            env={**os.environ, "CDPATH": "/"},
            timeout=20,
        )
        out = split_output(proc.stdout, MARKERS)
        assert out.status == 0, proc.stderr
        assert out.stdout.decode().rstrip("\n") == os.path.realpath(tmp_path / name)


def test_missing_cwd_fails_without_running_the_command(tmp_path) -> None:
    marker = tmp_path / "ran"
    command = remote_command(["touch", str(marker)], MARKERS, cwd=str(tmp_path / "nope"))
    proc = _run_as_login_shell("sh", command)
    out = split_output(proc.stdout, MARKERS)
    assert out.status not in (None, 0)
    assert not marker.exists()


@pytest.mark.parametrize("word", ["if", "A=b", "{", "!", "until"])
def test_command_word_is_never_a_keyword_or_assignment(word: str) -> None:
    # Quoted, these are plain command names: "not found" (127), not a syntax error or a no-op.
    proc = _run_as_login_shell("bash", remote_command([word], MARKERS))
    assert split_output(proc.stdout, MARKERS).status == 127


def test_stdin_reaches_the_command() -> None:
    proc = subprocess.run(
        ["sh", "-c", remote_command(["cat"], MARKERS)],
        input=b"\x00\xffdata\n",
        capture_output=True,
        timeout=20,
    )
    assert split_output(proc.stdout, MARKERS).stdout == b"\x00\xffdata\n"


def test_remote_exit_255_is_reported_by_the_end_marker() -> None:
    proc = _run_as_login_shell("sh", remote_command(["sh", "-c", "echo out; exit 255"], MARKERS))
    out = split_output(proc.stdout, MARKERS)
    assert (out.started, out.status, out.stdout) == (True, 255, b"out\n")


def test_bad_env_names_and_empty_argv_are_rejected() -> None:
    with pytest.raises(ValueError, match="environment variable name"):
        remote_command(["true"], MARKERS, env={"A B": "x"})
    with pytest.raises(ValueError, match="environment variable name"):
        remote_command(["true"], MARKERS, env={"X;rm -rf /": "x"})
    with pytest.raises(ValueError):
        remote_command([], MARKERS)


def test_split_output_drops_login_noise_and_keeps_late_bytes() -> None:
    raw = b"motd noise\n" + MARKERS.start + b"payload\x1e" + MARKERS.end_prefix + b"3\x1e" + b"late"
    out = split_output(raw, MARKERS)
    assert (out.started, out.status, out.stdout) == (True, 3, b"payload\x1elate")


def test_split_output_without_markers_means_nothing_ran() -> None:
    out = split_output(b"ssh noise", MARKERS)
    assert (out.started, out.status, out.stdout) == (False, None, b"ssh noise")
    # A marker of another transport (another nonce) is just data.
    other = Markers("ffffffffffffffff")
    raw = MARKERS.start + other.end_prefix + b"0\x1e"
    out = split_output(raw, MARKERS)
    assert out.status is None and out.stdout == other.end_prefix + b"0\x1e"


@settings(max_examples=50, deadline=None)
@given(
    path=st.text(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00"), min_size=1, max_size=30
    )
)
def test_option_values_are_parsed_back_by_ssh(path: str) -> None:
    value = "/tmp/" + path
    argv = [
        "ssh",
        "-F",
        "/dev/null",
        "-G",
        "-o",
        "ControlMaster=auto",
        "-o",
        f"ControlPath={ssh_option_value(ssh_percent_escape(value))}",
        "example.invalid",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    got = [
        line[len("controlpath ") :] for line in proc.stdout.splitlines() if line.startswith("controlpath ")
    ]
    assert got == [value]


def test_rsync_rsh_is_split_back_into_the_same_words(tmp_path) -> None:
    if shutil.which("rsync") is None:
        pytest.skip("rsync not installed")
    dump = tmp_path / "argv"
    fake_ssh = tmp_path / "fake ssh's"
    fake_ssh.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" > '{dump}'\nexit 1\n")
    fake_ssh.chmod(0o755)
    words = [str(fake_ssh), "-o", 'ControlPath="/a b/c\'d"', "-i", '/k e y/it\'s "x"', "plain"]
    subprocess.run(
        ["rsync", "-e", rsync_rsh(words), "somehost:/x", str(tmp_path / "dst")],
        capture_output=True,
        timeout=20,
    )
    received = dump.read_bytes().split(b"\0")[:-1]
    assert [w.decode() for w in received[: len(words) - 1]] == words[1:]
    assert b"somehost" in received[len(words) - 1 :]


def test_escape_remote_glob() -> None:
    assert escape_remote_glob("/d/a*b?[c]\\d") == "/d/a\\*b\\?\\[c\\]\\\\d"
    assert escape_remote_glob("plain name ü") == "plain name ü"


def test_remote_spec_brackets_ipv6() -> None:
    assert remote_spec("login", "/x") == "login:/x"
    assert remote_spec("me@::1", "/x") == "me@[::1]:/x"
    assert remote_spec("[::1]", "/x") == "[::1]:/x"


def test_parse_master_pid() -> None:
    assert parse_master_pid("Master running (pid=4242)\r\n") == 4242
    assert parse_master_pid("Control socket connect(/x): No such file or directory") is None


# -- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": ""},
        {"host": "-oProxyCommand=touch /tmp/pwned"},
        {"host": "a b"},
        {"host": "h", "port": 0},
        {"host": "h", "port": 70000},
        {"host": "h", "connect_timeout": 0},
        {"host": "h", "control_persist": 1.5},
        {"host": "h", "ssh_opts": "-v"},
        {"host": "h", "file_transfer": "ftp"},
    ],
)
def test_invalid_options_are_config_errors(kwargs) -> None:
    with pytest.raises(ConfigError):
        SshTransportOptions(**kwargs)


def test_options_from_profile_lists() -> None:
    o = SshTransportOptions(host="h", ssh_opts=["-o", "Compression=yes"], rsync_opts=["-a"])
    assert o.ssh_opts == ("-o", "Compression=yes") and o.rsync_opts == ("-a",)
    assert SshTransportOptions(host="h").rsync_opts == ("-a", "--partial", "--inplace")


def _effective(transport: SshTransport) -> dict[str, str]:
    """What ssh itself makes of the transport's options (``ssh -G``; no connection).

    Keys that ssh lists several times (identityfile) are joined with newlines."""
    proc = subprocess.run(
        ["ssh", *transport.connection_args(), "-G", "--", transport.host],
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    cfg: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        cfg[key] = f"{cfg[key]}\n{value}" if key in cfg else value
    return cfg


def test_effective_ssh_configuration(tmp_path) -> None:
    cfg_file = tmp_path / "ssh_config"
    cfg_file.write_text(
        textwrap.dedent("""\
        Host alias
            HostName 192.0.2.7
            User someone
            ConnectTimeout 99
            BatchMode no
            LocalForward 8080 localhost:80
    """)
    )
    key = tmp_path / "my key"
    key.write_text("")  # ssh ignores an -i file that does not exist
    t = SshTransport(
        SshTransportOptions(
            host="alias",
            port=2200,
            identity_file=str(key),
            config_file=str(cfg_file),
            connect_timeout=7,
            control_persist=123,
            control_dir=str(tmp_path / "cm"),
            ssh_opts=("-o", "BatchMode=no", "-o", "ServerAliveInterval=5"),
        )
    )
    cfg = _effective(t)
    assert cfg["hostname"] == "192.0.2.7" and cfg["user"] == "someone"  # the config file is used
    assert cfg["batchmode"] == "yes"  # never waits for a password, whatever the options say
    assert cfg["connecttimeout"] == "7"  # molq's option beats the config file
    assert cfg["serveraliveinterval"] == "5"  # the user's ssh_opts beat molq's defaults
    assert cfg["port"] == "2200"
    assert cfg["identitiesonly"] == "yes" and str(key) in cfg["identityfile"].splitlines()
    assert cfg["controlmaster"] == "auto" and cfg["controlpersist"] == "123"
    assert (
        cfg["controlpath"].startswith(str(tmp_path / "cm" / "cm-"))
        and len(cfg["controlpath"].rsplit("cm-", 1)[1]) == 40
    )
    assert cfg["clearallforwardings"] == "yes"
    assert cfg["controlpath"] == t.control_path()


def test_multiplexing_can_be_disabled(tmp_path) -> None:
    t = SshTransport(SshTransportOptions(host="h.invalid", multiplex=False, config_file="/dev/null"))
    cfg = _effective(t)
    assert cfg["controlmaster"] == "false"
    assert "controlpath" not in cfg or cfg["controlpath"] == "none"
    assert t.control_path() is None and t.master_pid() is None


def test_control_dir_is_private(tmp_path) -> None:
    wide = tmp_path / "cm"
    wide.mkdir(mode=0o755)
    wide.chmod(0o755)
    t = SshTransport(SshTransportOptions(host="h", control_dir=str(wide)))
    t.connection_args()
    assert stat.S_IMODE(os.stat(wide).st_mode) == 0o700
    fresh = tmp_path / "a" / "b"
    SshTransport(SshTransportOptions(host="h", control_dir=str(fresh))).connection_args()
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700


def test_default_control_dir_fits_a_unix_socket(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("MOLQ_HOME", raising=False)
    monkeypatch.setenv("HOME", "/home/u")
    assert default_control_dir() == "/home/u/.molq/ssh"
    monkeypatch.setenv("MOLQ_HOME", "/srv/molq")
    assert default_control_dir() == "/srv/molq/ssh"
    long_home = "/" + "h" * 90
    monkeypatch.setenv("MOLQ_HOME", long_home)
    fallback = default_control_dir()
    assert not fallback.startswith(long_home)
    assert len(os.path.join(fallback, "cm-" + "0" * 40)) <= 100


def test_control_dir_must_not_be_a_symlink(tmp_path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    t = SshTransport(SshTransportOptions(host="h", control_dir=str(tmp_path / "link")))
    with pytest.raises(TransportError, match="not a directory owned"):
        t.connection_args()


def test_transport_accepts_a_host_string() -> None:
    t = SshTransport("user@login.example.org")
    assert t.host == "user@login.example.org" and t.options.port is None
    assert t.name == "ssh" and t.is_remote
    assert repr(t) == "SshTransport(host='user@login.example.org')"

"""Every Transport operation of SshTransport against the real test sshd.

The test sshd runs on this machine, so what a remote operation did can also be checked
independently on the local filesystem (the "remote" paths are local paths here).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from molq.errors import TransportError
from molq.testing import TransportConformance
from molq_ssh import SshTransport

pytestmark = pytest.mark.sshd

WEIRD_NAMES = [
    "with space",
    "ünïcødé ✓",
    'it\'s "quoted"',
    "$(id) `x` ;|&<>",
    "-leading dash",
    "a*b?[c]",
    "back\\slash",
    "new\nline",
]


class TestSshTransportConformance(TransportConformance):
    """The molq.testing kit every transport passes (fixtures come from conftest.py)."""


def test_run_result_fields(transport: SshTransport) -> None:
    result = transport.run(["sh", "-c", "printf out; printf err >&2; exit 7"])
    assert result.argv == ("sh", "-c", "printf out; printf err >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out", "err")
    assert result.duration > 0


def test_remote_exit_255_is_a_result_not_a_connection_error(transport: SshTransport) -> None:
    result = transport.run(["sh", "-c", "echo before; exit 255"])
    assert (result.returncode, result.stdout) == (255, "before\n")


def test_command_killed_by_a_signal_reports_128_plus_signal(transport: SshTransport) -> None:
    result = transport.run(["sh", "-c", "kill -TERM $$"])
    assert result.returncode == 128 + 15


def test_missing_program_is_127(transport: SshTransport) -> None:
    result = transport.run(["molq-no-such-program-xyz"])
    assert result.returncode == 127 and "molq-no-such-program-xyz" in result.stderr


def test_timeout_raises_transport_error_naming_the_host(transport: SshTransport) -> None:
    with pytest.raises(TransportError, match=transport.host):
        transport.run(["sleep", "10"], timeout=1)
    assert transport.run(["true"]).returncode == 0


def test_check_failure_carries_remote_stderr(transport: SshTransport, remote_dir: str) -> None:
    with pytest.raises(TransportError, match="No such file") as info:
        transport.read_bytes(f"{remote_dir}/missing")
    assert transport.host in str(info.value)
    with pytest.raises(TransportError, match="(?i)nonexistent|no such file|not a directory"):
        transport.write_text(f"{remote_dir}/missing/dir/file", "x")


@pytest.mark.parametrize("name", WEIRD_NAMES)
def test_file_operations_with_awkward_names(transport: SshTransport, remote_dir: str, name: str) -> None:
    path = f"{remote_dir}/{name}"
    assert not transport.exists(path)
    transport.write_text(path, "hello ü\n", mode=0o640)
    assert Path(path).read_bytes() == "hello ü\n".encode()  # independently, on disk
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert transport.exists(path)
    assert transport.read_text(path) == "hello ü\n"
    assert transport.read_many([path]) == {path: "hello ü\n"}
    transport.chmod(path, 0o600)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    transport.remove(path)
    assert not transport.exists(path) and not os.path.lexists(path)


def test_write_is_atomic_and_leaves_no_temporary_files(transport: SshTransport, remote_dir: str) -> None:
    path = f"{remote_dir}/f"
    transport.write_text(path, "one")
    transport.write_text(path, "two")
    assert os.listdir(remote_dir) == ["f"] and transport.read_text(path) == "two"
    # A write that fails (the target is a directory) keeps the old state and cleans up.
    os.mkdir(f"{remote_dir}/d")
    with pytest.raises(TransportError):
        transport.write_text(f"{remote_dir}/d", "x")
    assert sorted(os.listdir(remote_dir)) == ["d", "f"]


def test_binary_data_is_byte_exact(transport: SshTransport, remote_dir: str) -> None:
    blob = bytes(range(256)) * 16 + b"\x00\r\n\x1e\xff" + os.urandom(8192) + b"\x1eEdeadbeef:0\x1e"
    transport.write_bytes(f"{remote_dir}/blob", blob)
    assert Path(f"{remote_dir}/blob").read_bytes() == blob
    assert transport.read_bytes(f"{remote_dir}/blob") == blob
    transport.write_bytes(f"{remote_dir}/empty", b"")
    assert transport.read_bytes(f"{remote_dir}/empty") == b""


def test_large_file_write_read_upload_download(
    transport: SshTransport, remote_dir: str, tmp_path: Path
) -> None:
    blob = os.urandom(20 * 1024 * 1024)
    digest = hashlib.sha256(blob).hexdigest()
    transport.write_bytes(f"{remote_dir}/big", blob)
    assert transport.run(["sha256sum", f"{remote_dir}/big"]).stdout.split()[0] == digest
    assert hashlib.sha256(transport.read_bytes(f"{remote_dir}/big")).hexdigest() == digest
    local = tmp_path / "big local"
    local.write_bytes(blob)
    transport.upload(local, f"{remote_dir}/up/big copy")
    assert transport.run(["sha256sum", f"{remote_dir}/up/big copy"]).stdout.split()[0] == digest
    transport.download(f"{remote_dir}/up/big copy", tmp_path / "down" / "big")
    assert hashlib.sha256((tmp_path / "down" / "big").read_bytes()).hexdigest() == digest


def test_mkdir_matches_local_semantics(transport: SshTransport, remote_dir: str) -> None:
    d = f"{remote_dir}/x y/z"
    with pytest.raises(TransportError):
        transport.mkdir(d, parents=False)
    transport.mkdir(d, mode=0o750)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o750
    transport.mkdir(d, mode=0o700)  # existing: fine, mode applied
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    transport.mkdir(f"{remote_dir}/x y/w", parents=False)
    assert os.path.isdir(f"{remote_dir}/x y/w")


def test_remove_matches_local_semantics(transport: SshTransport, remote_dir: str) -> None:
    transport.remove(f"{remote_dir}/never existed")  # missing: fine
    os.makedirs(f"{remote_dir}/empty")
    transport.remove(f"{remote_dir}/empty")
    assert not os.path.exists(f"{remote_dir}/empty")
    os.makedirs(f"{remote_dir}/full/sub")
    with pytest.raises(TransportError):
        transport.remove(f"{remote_dir}/full")
    transport.remove(f"{remote_dir}/full", recursive=True)
    assert not os.path.exists(f"{remote_dir}/full")
    os.symlink(remote_dir, f"{remote_dir}/link")
    transport.remove(f"{remote_dir}/link", recursive=True)  # removes the link, not the target
    assert os.path.isdir(remote_dir) and not os.path.lexists(f"{remote_dir}/link")


def test_home_and_relative_paths(transport: SshTransport) -> None:
    home = transport.home()
    assert home == transport.run(["sh", "-c", 'printf %s "$HOME"']).stdout and home.startswith("/")
    assert transport.run(["pwd"]).stdout.strip() == home  # commands start in the home directory


def _tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            out[os.path.relpath(os.path.join(dirpath, f), root)] = Path(dirpath, f).read_bytes()
    return out


def _make_tree(root: Path) -> None:
    (root / "sub dir" / "ünï").mkdir(parents=True)
    (root / "empty dir").mkdir()
    for i, name in enumerate(WEIRD_NAMES):
        (root / "sub dir" / "ünï" / name).write_bytes(os.urandom(100 + i))
    (root / ".hidden").write_text("h")
    (root / "top.txt").write_text("top\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)


@pytest.mark.parametrize("mode", ["auto", "rsync", "scp"])
def test_recursive_upload_and_download(make_transport, remote_dir: str, tmp_path: Path, mode: str) -> None:
    t = make_transport(file_transfer=mode)
    src = tmp_path / "src tree"
    _make_tree(src)
    target = f"{remote_dir}/new/parent dirs/tree"
    t.upload(src, target, recursive=True)
    assert _tree(Path(target)) == _tree(src)
    assert os.stat(f"{target}/run.sh").st_mode & 0o100  # modes are kept
    # Uploading again merges into the existing directory.
    (src / "second.txt").write_text("2")
    t.upload(src, target, recursive=True)
    assert Path(target, "second.txt").read_text() == "2"

    back = tmp_path / "back" / "tree"
    t.download(target, back, recursive=True)
    assert _tree(back) == _tree(src)
    with pytest.raises(TransportError, match="recursive"):
        t.download(target, tmp_path / "nope")
    with pytest.raises(TransportError, match="recursive"):
        t.upload(src, f"{remote_dir}/nope")


@pytest.mark.parametrize("mode", ["auto", "rsync", "scp"])
def test_single_file_transfer_with_awkward_names(
    make_transport, remote_dir: str, tmp_path: Path, mode: str
) -> None:
    t = make_transport(file_transfer=mode)
    for i, name in enumerate(WEIRD_NAMES):
        data = os.urandom(1000 + i)
        local = tmp_path / name
        local.write_bytes(data)
        remote = f"{remote_dir}/up {i}/{name}"
        t.upload(local, remote)
        assert os.listdir(f"{remote_dir}/up {i}") == [name]
        assert Path(remote).read_bytes() == data
        into = tmp_path / f"into {i}"
        into.mkdir()
        t.download(remote, into)  # into an existing local directory: keeps the name
        assert os.listdir(into) == [name]
        assert (into / name).read_bytes() == data


@pytest.mark.parametrize("mode", ["auto", "rsync", "scp"])
def test_single_file_transfer_targets(make_transport, remote_dir: str, tmp_path: Path, mode: str) -> None:
    t = make_transport(file_transfer=mode)
    local = tmp_path / "f.bin"
    local.write_bytes(b"payload")
    # to a new remote name under missing parents
    t.upload(local, f"{remote_dir}/a/b/renamed")
    assert Path(f"{remote_dir}/a/b/renamed").read_bytes() == b"payload"
    # into an existing remote directory, or one named with a trailing slash: keeps the name
    t.upload(local, f"{remote_dir}/a")
    t.upload(local, f"{remote_dir}/new dir/")
    assert (
        Path(f"{remote_dir}/a/f.bin").read_bytes()
        == Path(f"{remote_dir}/new dir/f.bin").read_bytes()
        == b"payload"
    )
    # to a new local name under missing parents; overwriting an existing file
    t.download(f"{remote_dir}/a/b/renamed", tmp_path / "x" / "y" / "z")
    assert (tmp_path / "x" / "y" / "z").read_bytes() == b"payload"
    Path(f"{remote_dir}/a/b/renamed").write_bytes(b"changed")
    t.download(f"{remote_dir}/a/b/renamed", tmp_path / "x" / "y" / "z")
    assert (tmp_path / "x" / "y" / "z").read_bytes() == b"changed"


def test_transfer_errors(transport: SshTransport, remote_dir: str, tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="no such file"):
        transport.download(f"{remote_dir}/missing", tmp_path / "x")
    with pytest.raises(TransportError, match="no such file"):
        transport.upload(tmp_path / "missing", f"{remote_dir}/x")
    (tmp_path / "f").write_text("x")
    Path(remote_dir, "plain").write_text("x")
    with pytest.raises(TransportError, match="(?i)exists|not a directory"):
        transport.upload(tmp_path / "f", f"{remote_dir}/plain/sub/x")  # a remote parent is a file
    with pytest.raises(TransportError, match="(?i)exists|not a directory"):
        transport.upload(tmp_path, f"{remote_dir}/plain", recursive=True)
    assert Path(remote_dir, "plain").read_text() == "x"


def test_run_with_cwd_env_and_input_together(transport: SshTransport, remote_dir: str) -> None:
    d = f"{remote_dir}/wörk dir"
    os.mkdir(d)
    result = transport.run(
        ["sh", "-c", 'cat > "in put"; printf "%s|%s|" "$A" "$B"; pwd'],
        cwd=d,
        env={"A": "x'y\"z", "B": ""},
        input="données\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"x'y\"z||{d}\n"
    assert Path(d, "in put").read_text() == "données\n"

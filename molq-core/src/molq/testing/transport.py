"""Transport conformance tests: every operation of the Transport protocol."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from molq.errors import TransportError
from molq.transport import Transport, make_dirs


class TransportConformance:
    """Behaviour every transport plugin must show.

    Required fixtures: ``transport`` (the transport under test) and ``remote_dir`` (an absolute,
    writable directory on the transport's side).
    """

    def test_run_argv_round_trip(self, transport: Transport) -> None:
        args = ["plain", "with space", "it's", '"dq"', "$HOME", "`id`", "a;b", "x|y", "ü€", "*", ""]
        result = transport.run(["printf", "%s\\n", *args])
        assert result.returncode == 0
        assert result.stdout.split("\n")[:-1] == args

    def test_run_reports_failure_and_stderr(self, transport: Transport) -> None:
        result = transport.run(["sh", "-c", "echo oops >&2; exit 3"])
        assert result.returncode == 3
        assert "oops" in result.stderr

    def test_run_env_cwd_and_input(self, transport: Transport, remote_dir: str) -> None:
        value = "a b 'c' $d ü"
        result = transport.run(["sh", "-c", 'printf "%s|" "$MOLQ_T"; pwd; cat'], env={"MOLQ_T": value},
                               cwd=remote_dir, input="from stdin")
        assert result.returncode == 0, result.stderr
        first, rest = result.stdout.split("|", 1)
        assert first == value
        assert rest.splitlines()[0].rstrip("/") == remote_dir.rstrip("/")
        assert rest.endswith("from stdin")

    def test_text_and_bytes_round_trip(self, transport: Transport, remote_dir: str) -> None:
        name = f"{remote_dir}/file with spaces ü {uuid.uuid4().hex[:6]}.txt"
        transport.write_text(name, "line one\nzwei: ü\n")
        assert transport.read_text(name) == "line one\nzwei: ü\n"
        blob = bytes(range(256)) * 64 + os.urandom(4096)
        bname = f"{remote_dir}/blob.bin"
        transport.write_bytes(bname, blob, mode=0o600)
        assert transport.read_bytes(bname) == blob

    def test_exists_mkdir_chmod_remove(self, transport: Transport, remote_dir: str) -> None:
        d = f"{remote_dir}/a/b/c"
        assert not transport.exists(d)
        transport.mkdir(d, parents=True, mode=0o700)
        assert transport.exists(d)
        transport.write_text(f"{d}/f", "x")
        transport.chmod(f"{d}/f", 0o600)
        mode = transport.run(["stat", "-c", "%a", f"{d}/f"]).stdout.strip()
        assert mode == "600"
        transport.remove(f"{remote_dir}/a", recursive=True)
        assert not transport.exists(f"{remote_dir}/a")

    def test_make_dirs_creates_each_and_reports_each_failure(self, transport: Transport, remote_dir: str) -> None:
        # The transport's own make_dirs when it has one, else one mkdir per path: same answer.
        transport.write_text(f"{remote_dir}/file", "")
        wanted = [f"{remote_dir}/m/it's $(x)/one", f"{remote_dir}/m/two words", f"{remote_dir}/file/sub"]
        failed = make_dirs(transport, wanted, mode=0o700)
        assert list(failed) == [f"{remote_dir}/file/sub"]
        for path in wanted[:2]:
            assert transport.run(["stat", "-c", "%a", path]).stdout.strip() == "700"
        assert make_dirs(transport, wanted[:2]) == {}  # existing directories are fine

    def test_write_onto_directory_raises(self, transport: Transport, remote_dir: str) -> None:
        transport.mkdir(f"{remote_dir}/adir")
        with pytest.raises(TransportError):
            transport.write_text(f"{remote_dir}/adir", "x")
        assert transport.run(["ls", "-A", f"{remote_dir}/adir"]).stdout == ""

    def test_read_missing_file_raises(self, transport: Transport, remote_dir: str) -> None:
        with pytest.raises(TransportError):
            transport.read_text(f"{remote_dir}/does-not-exist")

    def test_read_many(self, transport: Transport, remote_dir: str) -> None:
        transport.write_text(f"{remote_dir}/one", "1\n")
        transport.write_text(f"{remote_dir}/two words", "")
        got = transport.read_many([f"{remote_dir}/one", f"{remote_dir}/missing", f"{remote_dir}/two words"])
        assert got == {f"{remote_dir}/one": "1\n", f"{remote_dir}/missing": None, f"{remote_dir}/two words": ""}

    def test_upload_download_recursive(self, transport: Transport, remote_dir: str, tmp_path: Any) -> None:
        src = Path(tmp_path) / "src dir"
        (src / "sub ü").mkdir(parents=True)
        (src / "sub ü" / "data.bin").write_bytes(os.urandom(10000))
        (src / "top.txt").write_text("top\n")
        transport.upload(src, f"{remote_dir}/up", recursive=True)
        assert transport.read_text(f"{remote_dir}/up/top.txt") == "top\n"
        back = Path(tmp_path) / "back"
        transport.download(f"{remote_dir}/up", back, recursive=True)
        assert (back / "sub ü" / "data.bin").read_bytes() == (src / "sub ü" / "data.bin").read_bytes()

    def test_spawn_detached_outlives_call(self, transport: Transport, remote_dir: str) -> None:
        out = f"{remote_dir}/spawned.out"
        pid = transport.spawn_detached(["sh", "-c", "sleep 0.5; echo spawned"], cwd=remote_dir,
                                       stdout=out, stderr=f"{remote_dir}/spawned.err")
        assert pid > 0
        import time

        deadline = time.monotonic() + 20
        while transport.read_many([out])[out] != "spawned\n":
            assert time.monotonic() < deadline
            time.sleep(0.1)

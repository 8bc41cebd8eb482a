"""`pip install molq`: the workspace root's distribution installs molq-core and every backend.

Seed 001 tells users ``pip install molq``; the root ``pyproject.toml`` builds that distribution
(metadata only, no code). Read from the artefacts tests/build_dists.sh produced and installed
from them into a fresh environment, like every other packaging test.
"""

from __future__ import annotations

import email.parser
import json
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from pkgtools import BACKENDS, DISTRIBUTIONS, PYTHON_VERSIONS, REPO, Venv, sdist_of, source_version, wheel_of

pytestmark = pytest.mark.slow

UMBRELLA = "molq"


def umbrella_version() -> str:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def umbrella_metadata(dist_dir: Path) -> email.message.Message:
    info = f"{UMBRELLA}-{umbrella_version()}.dist-info"
    with zipfile.ZipFile(wheel_of(dist_dir, UMBRELLA)) as zf:
        return email.parser.Parser().parsestr(zf.read(f"{info}/METADATA").decode("utf-8"))


def test_umbrella_version_moves_with_core(dist_dir: Path) -> None:
    version = source_version("molq-core")
    assert umbrella_version() == version
    assert wheel_of(dist_dir, UMBRELLA).name == f"molq-{version}-py3-none-any.whl"
    assert sdist_of(dist_dir, UMBRELLA).name == f"molq-{version}.tar.gz"
    meta = umbrella_metadata(dist_dir)
    assert (meta["Name"], meta["Version"]) == ("molq", version)


def test_umbrella_requires_core_and_every_backend_in_this_minor_series(dist_dir: Path) -> None:
    meta = umbrella_metadata(dist_dir)
    reqs = {Requirement(r).name: Requirement(r) for r in meta.get_all("Requires-Dist") or []}
    assert set(reqs) == set(DISTRIBUTIONS), reqs
    for dist, req in reqs.items():
        current = Version(source_version(dist))
        assert req.marker is None and not req.extras, req
        assert req.specifier.contains(current), f"molq requires {req}; {dist} is {current}"
        next_minor = Version(f"{current.major}.{current.minor + 1}.0")
        assert not req.specifier.contains(next_minor, prereleases=True), f"{req} has no upper bound"


def test_umbrella_wheel_and_sdist_hold_no_code(dist_dir: Path) -> None:
    info = f"{UMBRELLA}-{umbrella_version()}.dist-info/"
    with zipfile.ZipFile(wheel_of(dist_dir, UMBRELLA)) as zf:
        names = set(zf.namelist())
    assert names and all(n.startswith(info) for n in names), sorted(names)
    with tarfile.open(sdist_of(dist_dir, UMBRELLA)) as tf:
        members = {m.name.split("/", 1)[1] for m in tf.getmembers() if m.isfile()}
    assert {"pyproject.toml", "PKG-INFO", "README.md", "LICENSE"} <= members
    assert members <= {"pyproject.toml", "PKG-INFO", "README.md", "LICENSE", ".gitignore"}, sorted(members)


def test_umbrella_license_and_python_versions(dist_dir: Path) -> None:
    meta = umbrella_metadata(dist_dir)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    classifiers = meta.get_all("Classifier") or []
    declared = {c.rsplit(" :: ", 1)[1] for c in classifiers if c.startswith("Programming Language :: Python :: 3.")}
    assert declared == set(PYTHON_VERSIONS)
    assert meta["Requires-Python"] == f">={min(PYTHON_VERSIONS, key=Version)}"


def test_pip_install_molq_installs_everything(make_venv: Callable[..., Venv]) -> None:
    venv = make_venv("molq")
    dists = {name: version for name, version in venv.installed().items() if name.startswith("molq")}
    assert dists == {UMBRELLA: umbrella_version(), **{d: source_version(d) for d in DISTRIBUTIONS}}
    venv.pip("check")
    plugins = venv.plugins()
    assert {p["distribution"] for p in plugins} == {"molq-core", *BACKENDS}
    assert all(p["error"] is None and not p["blocked"] for p in plugins), plugins
    script = """
import json
from molq import Cluster, SshTransport, SshTransportOptions
from molq_lsf import LSFScheduler
from molq_pbs import PBSScheduler
from molq_slurm import SlurmScheduler
from molq import ShellScheduler

out = {kind: type(Cluster("x", kind).scheduler_impl).__name__ for kind in ("local", "slurm", "pbs", "lsf")}
remote = Cluster("r", "slurm", host="user@login.example.org")
out["ssh"] = isinstance(remote.transport, SshTransport)
out["ssh_host"] = SshTransportOptions(host="h").host
print(json.dumps(out))
"""
    out = json.loads(venv.python_script(script).stdout)
    assert out["ssh"] is True and out["ssh_host"] == "h"
    assert out["local"] == "ShellScheduler"
    assert set(out) == {"local", "slurm", "pbs", "lsf", "ssh", "ssh_host"}


def test_ssh_names_without_molq_ssh_give_the_install_hint(core_slurm_venv: Venv) -> None:
    """`from molq import SshTransport` with only molq-core and molq-slurm installed."""
    script = """
import json, sys
import molq
out = {"light": "molq.cluster" not in sys.modules and "molq.model" not in sys.modules}
for name in ("SshTransport", "SshTransportOptions"):
    try:
        exec(f"from molq import {name}")
    except Exception as exc:
        out[name] = [type(exc).__name__, str(exc)]
    else:
        out[name] = None
from molq import SchedulerOptions
out["SchedulerOptions"] = SchedulerOptions.__module__
print(json.dumps(out))
"""
    out = json.loads(core_slurm_venv.python_script(script).stdout)
    assert out["light"] is True
    assert out["SchedulerOptions"] == "molq.scheduler"
    for name in ("SshTransport", "SshTransportOptions"):
        assert out[name] is not None, f"{name} imported without molq-ssh"
        kind, message = out[name]
        assert kind == "PluginNotFoundError"
        assert "pip install molq-ssh" in message

"""molq installed from the built wheels into fresh virtual environments works as users install it.

No editable install and no source tree: every environment is new, gets only wheels from this
build (and molq-core's dependencies from a wheelhouse), and every check runs in a subprocess
from a folder outside the repository with PYTHONPATH unset.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from pkgtools import BACKENDS, PYTHON_VERSIONS, REPO, Venv, find_python, missing, source_version

pytestmark = pytest.mark.slow

INSPECT_SCRIPT = """
import importlib, importlib.metadata as md, json, sys, sysconfig

from molq import Cluster

report = {
    "prefix": sys.prefix,
    "purelib": sysconfig.get_path("purelib"),
    "sys_path": sys.path,
    "modules": {},
    "direct_url": {},
    "missing": {},
}
for name in ("molq", "molq_slurm"):
    report["modules"][name] = importlib.import_module(name).__file__
for dist in ("molq-core", "molq-slurm"):
    report["direct_url"][dist] = json.loads(md.distribution(dist).read_text("direct_url.json") or "null")
cluster = Cluster("hpc", "slurm", scheduler_options={"default_partition": "compute"})
impl = cluster.scheduler_impl
report["scheduler"] = f"{type(impl).__module__}.{type(impl).__qualname__}"
report["options"] = [type(cluster.scheduler_options).__qualname__, cluster.scheduler_options.default_partition]
for label, args, kwargs in (
    ("pbs", ("x", "pbs"), {}),
    ("lsf", ("x", "lsf"), {}),
    ("ssh", ("x", "slurm"), {"host": "login.example.org"}),
):
    try:
        Cluster(*args, **kwargs)
    except Exception as exc:
        report["missing"][label] = [type(exc).__name__, str(exc)]
    else:
        report["missing"][label] = None
print(json.dumps(report))
"""


def inside(path: str | Path, folder: str | Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def molq_dists(venv: Venv) -> dict[str, str]:
    return {name: version for name, version in venv.installed().items() if name.startswith("molq")}


def test_core_and_slurm_come_from_the_wheels_only(core_slurm_venv: Venv) -> None:
    venv = core_slurm_venv
    report = json.loads(venv.python_script(INSPECT_SCRIPT).stdout)
    assert inside(report["prefix"], venv.path)
    assert inside(report["purelib"], venv.path)
    for name, file in report["modules"].items():
        assert inside(file, report["purelib"]), f"{name} imported from {file}, not the venv"
    on_path = [p for p in report["sys_path"] if p and inside(p, REPO)]
    assert not on_path, f"source tree on sys.path: {on_path}"
    for dist, direct_url in report["direct_url"].items():
        # pip writes direct_url.json for an editable or folder install ("dir_info"); a wheel
        # resolved by name from an index or --find-links has none.
        assert direct_url is None, (dist, direct_url)
    # An editable install would also leave a .pth file that points into the repository.
    for pth in Path(report["purelib"]).glob("*.pth"):
        assert str(REPO) not in pth.read_text(), f"{pth} points into the source tree"
    assert molq_dists(venv) == {
        "molq-core": source_version("molq-core"),
        "molq-slurm": source_version("molq-slurm"),
    }
    venv.pip("check")


def test_slurm_cluster_builds_from_the_wheels(core_slurm_venv: Venv) -> None:
    report = json.loads(core_slurm_venv.python_script(INSPECT_SCRIPT).stdout)
    assert report["scheduler"] == "molq.batch.runner.BatchScheduler"
    assert report["options"] == ["SlurmOptions", "compute"]


@pytest.mark.parametrize(("name", "hint"), [
    ("pbs", "pip install molq-pbs"),
    ("lsf", "pip install molq-lsf"),
    ("ssh", "pip install molq-ssh"),
])
def test_missing_backend_is_reported_with_its_install_hint(core_slurm_venv: Venv, name: str, hint: str) -> None:
    report = json.loads(core_slurm_venv.python_script(INSPECT_SCRIPT).stdout)
    error = report["missing"][name]
    assert error is not None, f"Cluster(...) with {name} worked without its distribution"
    kind, message = error
    assert kind == "PluginNotFoundError"
    assert hint in message


def test_molq_cli_from_the_wheel(core_slurm_venv: Venv) -> None:
    venv = core_slurm_venv
    help_text = venv.molq("--help").stdout
    for command in ("submit", "list", "plugins", "queue"):
        assert command in help_text
    plugins = venv.plugins()
    assert {p["name"]: p["distribution"] for p in plugins} == {"molq-core": "molq-core", "slurm": "molq-slurm"}
    assert all(p["error"] is None and not p["blocked"] for p in plugins), plugins
    by_name = {p["name"]: p for p in plugins}
    assert by_name["slurm"]["version"] == source_version("molq-slurm")
    assert by_name["molq-core"]["version"] == source_version("molq-core")
    assert by_name["slurm"]["provides"] == ["scheduler:slurm"]
    table = venv.molq("plugins")
    assert "molq-slurm" in table.stdout and "error" not in table.stdout


def test_cli_reports_a_missing_backend_with_its_install_hint(core_slurm_venv: Venv) -> None:
    venv = core_slurm_venv
    (venv.home / "config.toml").write_text('[profiles.pbsq]\nscheduler = "pbs"\n')
    try:
        proc = venv.molq("submit", "-p", "pbsq", "--", "true", check=False)
    finally:
        (venv.home / "config.toml").unlink()
    assert proc.returncode != 0
    assert "pip install molq-pbs" in proc.stderr
    assert "Traceback" not in proc.stderr


def slurm_conf() -> str | None:
    """SLURM_CONF of the test cluster without accounting (tests/services/slurm.sh), if it runs."""
    conf = os.environ.get("MOLQ_TEST_SLURM_NOACCT_CONF")
    env_file = Path(os.environ.get("MOLQ_TEST_DIR", "/var/lib/molq-test")) / "slurm" / "env.sh"
    if not conf and env_file.exists():
        for line in env_file.read_text().splitlines():
            key, _, value = line.strip().removeprefix("export ").partition("=")
            if key == "MOLQ_TEST_SLURM_NOACCT_CONF":
                conf = value.strip().strip('"').strip("'")
    if not conf or not Path(conf).exists():
        return None
    try:
        probe = subprocess.run(["sinfo", "--noheader"], env=dict(os.environ, SLURM_CONF=conf),
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return conf if probe.returncode == 0 else None


def test_slurm_job_runs_from_the_wheels(core_slurm_venv: Venv) -> None:
    """`pip install molq-core molq-slurm`, a profile, `molq submit --wait`: a real SLURM job."""
    conf = slurm_conf()
    if conf is None:
        missing("the SLURM test cluster", "start it with tests/services/slurm.sh")
    venv = core_slurm_venv
    (venv.home / "config.toml").write_text(
        f'[profiles.hpc]\nscheduler = "slurm"\n\n[profiles.hpc.scheduler_options]\nenv = {{ SLURM_CONF = "{conf}" }}\n'
    )
    try:
        proc = venv.molq("submit", "-p", "hpc", "--wait", "--", "sh", "-c", "echo hello from $SLURM_JOB_ID",
                         timeout=180)
        job_id = proc.stdout.split()[0]
        shown = json.loads(venv.molq("show", job_id, "--json").stdout)
        logs = venv.molq("logs", job_id).stdout
    finally:
        (venv.home / "config.toml").unlink()
    assert shown["state"] == "succeeded"
    assert shown["scheduler_job_id"]
    assert logs.strip() == f"hello from {shown['scheduler_job_id']}"


@pytest.mark.parametrize("dist", BACKENDS)
def test_each_backend_installs_alone_beside_core(make_venv: Callable[..., Venv], dist: str) -> None:
    venv = make_venv("molq-core", dist)
    assert molq_dists(venv) == {"molq-core": source_version("molq-core"), dist: source_version(dist)}
    venv.pip("check")
    plugins = venv.plugins()
    assert {p["distribution"] for p in plugins} == {"molq-core", dist}
    assert all(p["error"] is None and not p["blocked"] for p in plugins), plugins
    (backend,) = [p for p in plugins if p["distribution"] == dist]
    assert backend["provides"], f"{dist} registered nothing"
    # Everything the backend says it provides is usable in a Cluster.
    script = f"""
import json
from molq import Cluster
out = {{}}
for item in {backend["provides"]!r}:
    kind, name = item.split(":", 1)
    if kind == "scheduler":
        impl = Cluster("x", name).scheduler_impl
        out[item] = type(impl).__module__
    elif kind == "transport":
        out[item] = type(Cluster("x", host="user@login.example.org").transport).__module__
print(json.dumps(out))
"""
    built = json.loads(venv.python_script(script).stdout)
    assert set(built) == set(backend["provides"])
    for item, module in built.items():
        assert module.startswith(("molq.", dist.replace("-", "_") + ".")), (item, module)


def fake_plugin_wheel(folder: Path, *, api: int) -> Path:
    """A third-party plugin distribution ``molq-future`` built for plugin API ``api``."""
    name, version = "molq_future", "1.0.0"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": (
            '"""A plugin from the future."""\n'
            "from molq.hookspecs import hookimpl\n"
            "from molq.plugin_types import SchedulerPlugin\n\n"
            f"MOLQ_PLUGIN_API = {api}\n\n\n"
            "@hookimpl\n"
            "def molq_register_schedulers():\n"
            '    yield SchedulerPlugin(name="future", factory=lambda transport, options: None)\n'
        ),
        f"{info}/METADATA": (
            "Metadata-Version: 2.1\nName: molq-future\nVersion: 1.0.0\nRequires-Dist: molq-core\n"
        ),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: molq-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[molq]\nfuture = {name}\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def test_plugin_for_an_incompatible_core_is_reported_and_breaks_nothing(
    make_venv: Callable[..., Venv], tmp_path: Path
) -> None:
    fake_plugin_wheel(tmp_path, api=999)
    venv = make_venv("molq-core", "molq-slurm", "molq-future", find_links=[tmp_path])
    plugins = {p["name"]: p for p in venv.plugins()}
    assert set(plugins) == {"molq-core", "slurm", "future"}
    future = plugins["future"]
    assert future["distribution"] == "molq-future"
    assert future["provides"] == []
    api = "was built for molq plugin API 999"
    assert api in future["error"]
    assert f"molq-core {source_version('molq-core')} provides API 1" in future["error"]
    assert plugins["slurm"]["error"] is None and plugins["molq-core"]["error"] is None

    table = venv.molq("plugins")
    assert api in table.stderr
    assert venv.molq("--help").returncode == 0

    script = """
import json
from molq import Cluster
out = {"slurm": type(Cluster("hpc", "slurm").scheduler_impl).__name__}
try:
    Cluster("x", "future")
except Exception as exc:
    out["future"] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""
    out = json.loads(venv.python_script(script).stdout)
    assert out["slurm"] == "BatchScheduler"
    kind, message = out["future"]
    assert kind == "PluginNotFoundError"
    assert "failed to load" in message and api in message

    # Other commands run as usual: a local job from the CLI.
    proc = venv.molq("submit", "--wait", "--", "sh", "-c", "exit 3", check=False, timeout=120)
    assert proc.returncode == 3, proc.stderr
    listed = json.loads(venv.molq("list", "--all", "--json").stdout)
    assert [job["state"] for job in listed] == ["failed"]


def test_conformance_kit_runs_from_the_installed_wheel(make_venv: Callable[..., Venv]) -> None:
    """A plugin author's setup: `pip install molq-core[testing]`, subclass the kit, run pytest."""
    venv = make_venv("molq-core[testing]")
    (venv.workdir / "test_kit.py").write_text(
        "import pytest\n"
        "from molq import Cluster, JobScheduling, LocalTransport\n"
        "from molq.testing import SchedulerConformance, TransportConformance\n\n\n"
        "class TestLocal(SchedulerConformance):\n"
        "    @pytest.fixture\n"
        "    def cluster(self):\n"
        '        return Cluster("kit")\n\n'
        "    @pytest.fixture\n"
        "    def unsupported_field(self):\n"
        '        return {"scheduling": JobScheduling(partition="gpu")}\n\n\n'
        "class TestLocalTransport(TransportConformance):\n"
        "    @pytest.fixture\n"
        "    def transport(self):\n"
        "        return LocalTransport()\n\n"
        "    @pytest.fixture\n"
        "    def remote_dir(self, tmp_path):\n"
        "        return str(tmp_path)\n"
    )
    proc = venv.run([str(venv.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_kit.py"],
                    check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "failed" not in proc.stdout


@pytest.mark.parametrize("version", PYTHON_VERSIONS)
def test_wheels_install_and_run_on_each_supported_python(make_venv: Callable[..., Venv], version: str) -> None:
    python = find_python(version)
    if python is None:
        missing(f"Python {version}", f"install python{version} (e.g. pyenv install {version})")
    venv = make_venv(*["molq-core", *BACKENDS], python=python)
    script = """
import json, sys
from molq import Cluster, Submitor
from molq.plugins import get_plugin_manager

handle = Submitor(Cluster("laptop")).submit_job(argv=[sys.executable, "-c", "print(6 * 7)"])
record = handle.wait(timeout=60)
infos = get_plugin_manager().plugin_infos()
print(json.dumps({
    "version": "%d.%d" % sys.version_info[:2],
    "state": record.state.value,
    "exit_code": record.exit_code,
    "errors": {i.name: i.error for i in infos if i.error},
    "distributions": sorted(i.distribution for i in infos),
}))
"""
    out = json.loads(venv.python_script(script).stdout)
    assert out["version"] == version
    assert (out["state"], out["exit_code"]) == ("succeeded", 0)
    assert out["errors"] == {}
    assert out["distributions"] == sorted(["molq-core", *BACKENDS])
    listed = json.loads(venv.molq("list", "--all", "--json").stdout)
    assert len(listed) == 1 and listed[0]["state"] == "succeeded"
    assert "submit" in venv.molq("--help").stdout

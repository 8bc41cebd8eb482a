"""Helpers of the packaging tests: where the distributions are, and fresh virtual environments.

The sdists and wheels are built once per session with ``tests/build_dists.sh`` into a temporary
folder (fixture ``dist_dir``). The dependencies of molq-core (attrs, SQLAlchemy...) are downloaded once per Python
version into a wheelhouse; after that every virtual environment installs offline
(``--no-index``) from the built wheels and that wheelhouse, so no molq distribution can come
from anywhere but this build. The environments are made without pip (``--without-pip``, ten
times faster than ``ensurepip``) and filled by the creating interpreter's pip (``--python``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = sorted(p.parent.name for p in REPO.glob("molq-*/pyproject.toml"))
BACKENDS = [d for d in DISTRIBUTIONS if d != "molq-core"]
#: The Python versions the classifiers promise; each gets an install-and-run test.
PYTHON_VERSIONS = ("3.10", "3.11", "3.12", "3.13")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str, hint: str) -> None:
    """Skip outside CI; with CI=true a missing prerequisite is a failure."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI (CI=true) but is not available: {hint}", pytrace=False)
    pytest.skip(f"{what} is not available: {hint}")


def import_package(dist: str) -> str:
    """The import package of a distribution: molq-core -> molq, molq-slurm -> molq_slurm."""
    return "molq" if dist == "molq-core" else dist.replace("-", "_")


def source_version(dist: str) -> str:
    """``__version__`` from the distribution's ``_version.py`` (its one version source)."""
    text = (REPO / dist / "src" / import_package(dist) / "_version.py").read_text()
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    assert match, f"no __version__ in {dist}'s _version.py"
    return match.group(1)


def run_checked(argv: Sequence[str], *, what: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        raise AssertionError(
            f"{what} failed ({proc.returncode}): {' '.join(map(str, argv))}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def wheel_of(dist_dir: Path, dist: str) -> Path:
    found = sorted(dist_dir.glob(f"{dist.replace('-', '_')}-*.whl"))
    assert len(found) == 1, f"expected one wheel of {dist} in {dist_dir}, found {found}"
    return found[0]


def sdist_of(dist_dir: Path, dist: str) -> Path:
    found = sorted(dist_dir.glob(f"{dist.replace('-', '_')}-*.tar.gz"))
    assert len(found) == 1, f"expected one sdist of {dist} in {dist_dir}, found {found}"
    return found[0]


def find_python(version: str) -> str | None:
    """An interpreter of this exact ``major.minor`` with pip, or None."""
    candidates: list[str] = []
    if sys.version_info[:2] == tuple(map(int, version.split("."))):
        candidates.append(sys.executable)
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p) for p in sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"), reverse=True)]
    for name in (f"python{version}",):
        path = shutil.which(name)
        if path:
            candidates.append(path)
    for candidate in candidates:
        try:
            proc = subprocess.run(
                [candidate, "-c", "import sys, venv, pip; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True, text=True, timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0 and proc.stdout.strip() == version:
            return candidate
    return None


class Wheelhouses:
    """molq-core's dependencies as wheels, downloaded once per interpreter (network: PyPI)."""

    def __init__(self, root: Path, dist_dir: Path) -> None:
        self.root = root
        self.dist_dir = dist_dir
        self._done: dict[str, Path] = {}

    def for_python(self, python: str) -> Path:
        if python not in self._done:
            house = self.root / f"wh-{len(self._done)}"
            core = wheel_of(self.dist_dir, "molq-core")
            # The core wheel is named by its file, so pip never asks an index for molq-core;
            # the [testing] extra adds pytest for the conformance-kit test.
            run_checked(
                [python, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(house),
                 f"{core}[testing]"],
                what=f"downloading molq-core's dependencies for {python}",
            )
            for leftover in house.glob("molq_*"):
                leftover.unlink()
            self._done[python] = house
        return self._done[python]


class Venv:
    """A fresh virtual environment with molq installed from the built wheels only."""

    def __init__(self, path: Path, base_python: str, dist_dir: Path, wheelhouse: Path, home: Path) -> None:
        self.path = path
        self.base_python = base_python
        self.dist_dir = dist_dir
        self.wheelhouse = wheelhouse
        self.home = home
        self.workdir = path.parent / f"{path.name}-work"
        self.workdir.mkdir(exist_ok=True)
        run_checked([base_python, "-m", "venv", "--without-pip", str(path)], what="python -m venv")

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        proc = self.run([str(self.python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
        return Path(proc.stdout.strip())

    def pip(self, *args: str) -> subprocess.CompletedProcess[str]:
        # --isolated: no pip configuration or PIP_* variables of this machine (extra indexes,
        # find-links) take part; with --no-index below, the build is the only source of molq.
        return run_checked(
            [self.base_python, "-m", "pip", "--isolated", "--python", str(self.python), *args],
            what="pip", env=self.env(),
        )

    def install(self, *requirements: str, find_links: Sequence[Path] = ()) -> None:
        links: list[str] = []
        for folder in (self.dist_dir, self.wheelhouse, *find_links):
            links += ["--find-links", str(folder)]
        self.pip("install", "--quiet", "--no-index", *links, *requirements)

    def installed(self) -> dict[str, str]:
        """Distribution name -> version, as pip sees this environment."""
        out = self.pip("list", "--format=json").stdout
        return {item["name"].lower(): item["version"] for item in json.loads(out)}

    def env(self) -> dict[str, str]:
        """The environment of a user's shell: no PYTHONPATH or other interpreter settings."""
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_", "MOLQ_", "CONDA"))
        }
        env["PATH"] = f"{self.path / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"
        env["MOLQ_HOME"] = str(self.home)
        return env

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 120,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command from a folder outside the repository, with this venv's environment."""
        env = self.env()
        env.update(extra_env or {})
        if check:
            return run_checked(argv, what=argv[0], cwd=self.workdir, env=env, timeout=timeout)
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              cwd=self.workdir, env=env)

    def molq(self, *args: str, check: bool = True, timeout: float = 120,
             extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The installed ``molq`` console script."""
        return self.run([str(self.path / "bin" / "molq"), *args], check=check, timeout=timeout,
                        extra_env=extra_env)

    def python_script(self, code: str, *, check: bool = True, timeout: float = 120,
                      extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``code`` as a script file in the work folder (so sys.path[0] is that folder)."""
        script = self.workdir / "check_script.py"
        script.write_text(textwrap.dedent(code))
        return self.run([str(self.python), str(script)], check=check, timeout=timeout, extra_env=extra_env)

    def plugins(self) -> list[dict]:
        """``molq plugins --json``, parsed."""
        return json.loads(self.molq("plugins", "--json").stdout)

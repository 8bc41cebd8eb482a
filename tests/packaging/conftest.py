"""Fixtures of the packaging tests (see pkgtools for how environments are made)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from pkgtools import REPO, Venv, Wheelhouses, missing, run_checked


@pytest.fixture(scope="session")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every sdist and wheel, built by the one build command into a fresh folder."""
    try:
        import build  # noqa: F401
    except ImportError:
        missing("the 'build' package", "pip install -r tests/requirements.txt")
    out = tmp_path_factory.mktemp("dist")
    env = dict(os.environ, MOLQ_BUILD_PYTHON=sys.executable)
    run_checked(["bash", str(REPO / "tests" / "build_dists.sh"), str(out)], what="tests/build_dists.sh", env=env)
    return out


@pytest.fixture(scope="session")
def wheelhouses(dist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Wheelhouses:
    return Wheelhouses(tmp_path_factory.mktemp("wheelhouse"), dist_dir)


@pytest.fixture(scope="session")
def make_venv(
    dist_dir: Path, wheelhouses: Wheelhouses, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Venv]]:
    """Factory: ``make_venv(*requirements, python=...)`` -> a fresh Venv with them installed."""
    made: list[Path] = []

    def make(*requirements: str, python: str | None = None, find_links: Sequence[Path] = ()) -> Venv:
        base = python or sys.executable
        root = tmp_path_factory.mktemp("venv")
        home = root / "molq-home"
        home.mkdir()
        venv = Venv(root / "env", base, dist_dir, wheelhouses.for_python(base), home)
        if requirements:
            venv.install(*requirements, find_links=find_links)
        made.append(root)
        return venv

    yield make
    for root in made:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def core_slurm_venv(make_venv: Callable[..., Venv]) -> Venv:
    """``pip install molq-core molq-slurm`` on the interpreter running the tests."""
    return make_venv("molq-core", "molq-slurm")

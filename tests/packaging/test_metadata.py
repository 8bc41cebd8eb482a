"""The built sdists and wheels carry complete, correct metadata.

Everything is read from the artefacts that ``tests/build_dists.sh`` produced, as a user's pip or
PyPI would read them, never from the source tree's pyproject files.
"""

from __future__ import annotations

import ast
import configparser
import email.message
import email.parser
import re
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from pkgtools import (
    BACKENDS,
    DISTRIBUTIONS,
    PYTHON_VERSIONS,
    REPO,
    import_package,
    sdist_of,
    source_version,
    wheel_of,
)

pytestmark = pytest.mark.slow


def wheel_files(dist_dir: Path, dist: str) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel_of(dist_dir, dist)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def dist_info(dist_dir: Path, dist: str) -> str:
    return f"{dist.replace('-', '_')}-{source_version(dist)}.dist-info"


def wheel_metadata(dist_dir: Path, dist: str) -> email.message.Message:
    raw = wheel_files(dist_dir, dist)[f"{dist_info(dist_dir, dist)}/METADATA"]
    # METADATA is UTF-8 (core metadata spec); the email parser's bytes API would assume ASCII.
    return email.parser.Parser().parsestr(raw.decode("utf-8"))


def entry_points(dist_dir: Path, dist: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep names' case
    raw = wheel_files(dist_dir, dist).get(f"{dist_info(dist_dir, dist)}/entry_points.txt", b"")
    parser.read_string(raw.decode())
    return parser


def core_requirement(meta: email.message.Message) -> Requirement:
    reqs = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    core = [r for r in reqs if r.name == "molq-core"]
    assert len(core) == 1, f"expected one molq-core requirement, got {reqs}"
    return core[0]


def plugin_api_declared(source: str) -> int | None:
    """``MOLQ_PLUGIN_API = N`` from a plugin module's source, without importing it."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "MOLQ_PLUGIN_API" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    return None


def core_plugin_api() -> int:
    source = (REPO / "molq-core" / "src" / "molq" / "hookspecs.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "PLUGIN_API_VERSION" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("molq.hookspecs has no PLUGIN_API_VERSION")


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_one_sdist_and_one_wheel_with_the_source_version(dist_dir: Path, dist: str) -> None:
    version = source_version(dist)
    assert wheel_of(dist_dir, dist).name == f"{dist.replace('-', '_')}-{version}-py3-none-any.whl"
    assert sdist_of(dist_dir, dist).name == f"{dist.replace('-', '_')}-{version}.tar.gz"
    meta = wheel_metadata(dist_dir, dist)
    assert meta["Name"] == dist
    assert meta["Version"] == version


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_description_is_the_distributions_own_readme(dist_dir: Path, dist: str) -> None:
    meta = wheel_metadata(dist_dir, dist)
    readme = (REPO / dist / "README.md").read_text(encoding="utf-8")
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().strip() == readme.strip()
    assert meta["Summary"] and len(meta["Summary"]) <= 120
    # The README is the PyPI page, which is shown outside the repository: a relative link
    # (../README.md, docs/x.md) would point nowhere there.
    relative = [
        target for target in re.findall(r"\]\(([^)\s]+)\)", readme)
        if not re.match(r"(https?:|mailto:|#)", target)
    ]
    assert not relative, f"{dist}/README.md has links that break on PyPI: {relative}"


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_license_expression_and_file(dist_dir: Path, dist: str) -> None:
    meta = wheel_metadata(dist_dir, dist)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    # PEP 639: with a license expression, license classifiers are not allowed (PyPI refuses them).
    assert not [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    license_text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "MIT License" in license_text and "molq developers" in license_text
    files = wheel_files(dist_dir, dist)
    assert files[f"{dist_info(dist_dir, dist)}/licenses/LICENSE"].decode() == license_text


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_python_versions_are_the_tested_ones(dist_dir: Path, dist: str) -> None:
    meta = wheel_metadata(dist_dir, dist)
    classifiers = meta.get_all("Classifier") or []
    declared = {
        c.rsplit(" :: ", 1)[1] for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    # test_install.py installs and runs the wheels on exactly these versions.
    assert declared == set(PYTHON_VERSIONS)
    lowest = min(PYTHON_VERSIONS, key=Version)
    assert meta["Requires-Python"] == f">={lowest}"
    assert "Typing :: Typed" in classifiers


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_wheel_holds_the_package_typed_and_nothing_else(dist_dir: Path, dist: str) -> None:
    pkg = import_package(dist)
    names = set(wheel_files(dist_dir, dist))
    assert f"{pkg}/py.typed" in names
    assert f"{pkg}/_version.py" in names
    stray = {n for n in names if not n.startswith((f"{pkg}/", f"{dist_info(dist_dir, dist)}/"))}
    assert not stray, f"files outside {pkg}/ in the {dist} wheel: {sorted(stray)}"
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    sources = {
        str(p.relative_to(REPO / dist / "src"))
        for p in (REPO / dist / "src" / pkg).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sources <= names, f"source files missing from the wheel: {sorted(sources - names)}"


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_sdist_is_complete_and_clean(dist_dir: Path, dist: str) -> None:
    pkg = import_package(dist)
    with tarfile.open(sdist_of(dist_dir, dist)) as tf:
        names = {m.name.split("/", 1)[1] for m in tf.getmembers() if m.isfile()}
    for needed in ("pyproject.toml", "PKG-INFO", "README.md", "LICENSE", "CHANGELOG.md", f"src/{pkg}/py.typed"):
        assert needed in names, f"{needed} missing from the {dist} sdist"
    allowed_top = {"pyproject.toml", "PKG-INFO", "README.md", "LICENSE", "CHANGELOG.md", ".gitignore"}
    stray = {n for n in names if not n.startswith(f"src/{pkg}/") and n not in allowed_top}
    assert not stray, f"unexpected files in the {dist} sdist: {sorted(stray)}"
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]


def test_core_entry_points_and_extras(dist_dir: Path) -> None:
    eps = entry_points(dist_dir, "molq-core")
    assert dict(eps["console_scripts"]) == {"molq": "molq.cli:main"}
    meta = wheel_metadata(dist_dir, "molq-core")
    assert "testing" in (meta.get_all("Provides-Extra") or [])
    testing = [
        Requirement(r) for r in meta.get_all("Requires-Dist") or []
        if Requirement(r).marker is not None and "testing" in str(Requirement(r).marker)
    ]
    assert [r.name for r in testing] == ["pytest"]
    # molq-core needs no other molq distribution.
    assert not [r for r in meta.get_all("Requires-Dist") or [] if r.startswith("molq")]


@pytest.mark.parametrize("dist", BACKENDS)
def test_backend_registers_one_plugin_module(dist_dir: Path, dist: str) -> None:
    pkg = import_package(dist)
    eps = entry_points(dist_dir, dist)
    assert eps.sections() == ["molq"], f"{dist} entry-point groups: {eps.sections()}"
    (name, target), = eps["molq"].items()
    assert target == f"{pkg}.plugin"
    assert f"{pkg}/plugin.py" in wheel_files(dist_dir, dist)


@pytest.mark.parametrize("dist", BACKENDS)
def test_backend_core_range_matches_the_compatibility_rule(dist_dir: Path, dist: str) -> None:
    """The backend accepts the core it is built with, and not the next core allowed to break it."""
    core_version = Version(source_version("molq-core"))
    req = core_requirement(wheel_metadata(dist_dir, dist))
    assert req.marker is None
    assert req.specifier.contains(core_version), f"{dist} requires {req}; molq-core is {core_version}"
    if core_version.major == 0:
        next_breaking = Version(f"0.{core_version.minor + 1}.0")
    else:
        next_breaking = Version(f"{core_version.major + 1}.0.0")
    assert not req.specifier.contains(next_breaking, prereleases=True), f"{req} has no upper bound"
    assert not req.specifier.contains(Version("0.0.1")), f"{req} has no lower bound"


@pytest.mark.parametrize("dist", BACKENDS)
def test_backend_declares_the_core_plugin_api(dist_dir: Path, dist: str) -> None:
    source = wheel_files(dist_dir, dist)[f"{import_package(dist)}/plugin.py"].decode()
    assert plugin_api_declared(source) == core_plugin_api()


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_changelog_has_a_section_for_the_current_version(dist: str) -> None:
    text = (REPO / dist / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (\S+)", text, re.M)
    assert headings, f"{dist}/CHANGELOG.md has no version sections"
    assert headings[0] in (source_version(dist), "Unreleased"), (
        f"the newest section of {dist}/CHANGELOG.md is {headings[0]}, not {source_version(dist)}"
    )
    assert source_version(dist) in headings
    versions = [Version(h) for h in headings if h != "Unreleased"]
    assert versions == sorted(versions, reverse=True), "sections are not newest first"


def test_compatibility_table_matches_the_tree() -> None:
    """docs/compatibility.md's table of current versions says what the tree builds."""
    doc = (REPO / "docs" / "compatibility.md").read_text(encoding="utf-8")
    rows = {
        cells[0]: cells[1:]
        for line in doc.splitlines()
        if line.startswith("| molq-")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert set(rows) == set(DISTRIBUTIONS)
    api = core_plugin_api()
    assert rows["molq-core"][:2] == [source_version("molq-core"), f"provides {api}"]
    for dist in BACKENDS:
        pyproject = (REPO / dist / "pyproject.toml").read_text(encoding="utf-8")
        required = re.search(r'"(molq-core[^"]*)"', pyproject).group(1)
        plugin = (REPO / dist / "src" / import_package(dist) / "plugin.py").read_text(encoding="utf-8")
        assert plugin_api_declared(plugin) == api, f"{dist}'s plugin.py is built for another API"
        assert rows[dist] == [source_version(dist), f"built for {api}", f"`{required}`"]

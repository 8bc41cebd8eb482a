"""The in-repo plugins use only the plugin surface that docs/compatibility.md promises.

A backend that imports anything else from molq (a private module, ``molq.store``...) would break
when molq-core changes it in a release that the compatibility rule allows, so the rule and the
code are checked against each other here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pkgtools import BACKENDS, REPO, import_package

DOC = REPO / "docs" / "compatibility.md"
CORE_SRC = REPO / "molq-core" / "src"


def plugin_packages() -> dict[str, Path]:
    """Every in-repo plugin's import package: the backends and the example plugins in examples/."""
    found = {dist: REPO / dist / "src" / import_package(dist) for dist in BACKENDS}
    for pyproject in sorted(REPO.glob("examples/*/pyproject.toml")):
        if "[project.entry-points.molq]" in pyproject.read_text(encoding="utf-8"):
            for package in sorted((pyproject.parent / "src").glob("*/__init__.py")):
                found[f"examples/{pyproject.parent.name}"] = package.parent
    return found


def surface_modules() -> set[str]:
    """The module list in the ```plugin-surface block of docs/compatibility.md."""
    match = re.search(r"^```plugin-surface\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)
    assert match, "docs/compatibility.md has no ```plugin-surface block"
    return {line.strip() for line in match.group(1).splitlines() if line.strip()}


def molq_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """Every (line, module, imported name) of a file that refers to molq-core's package."""
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "molq" or alias.name.startswith("molq."):
                    found.append((node.lineno, alias.name, None))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "molq" or node.module.startswith("molq."):
                for alias in node.names:
                    found.append((node.lineno, node.module, alias.name))
    return found


def is_core_module(dotted: str) -> bool:
    base = CORE_SRC.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def test_every_surface_module_exists_in_core() -> None:
    modules = surface_modules()
    assert "molq" in modules and "molq.hookspecs" in modules and "molq.testing" in modules
    for module in modules:
        assert is_core_module(module), f"docs/compatibility.md names {module}, which molq-core lacks"
        assert not any(part.startswith("_") for part in module.split(".")), module


@pytest.mark.parametrize("plugin", sorted(plugin_packages()))
def test_plugin_imports_only_the_plugin_surface(plugin: str) -> None:
    modules = surface_modules()
    outside: list[str] = []
    for path in sorted(plugin_packages()[plugin].rglob("*.py")):
        for line, module, name in molq_imports(path):
            where = f"{path.relative_to(REPO)}:{line}"
            # `from molq import wrapper` imports the module molq.wrapper.
            target = f"{module}.{name}" if module == "molq" and name and is_core_module(f"molq.{name}") else module
            if target not in modules:
                outside.append(f"{where}: {target}")
            elif name and name.startswith("_"):
                outside.append(f"{where}: private name {module}.{name}")
    assert not outside, (
        f"{plugin} uses molq-core outside the plugin surface of docs/compatibility.md: {outside}"
    )


def test_surface_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The import scan finds every form of import, so the test above cannot pass vacuously."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import molq.store\n"
        "from molq import wrapper, Cluster\n"
        "from molq._records import thing\n"
        "def f():\n"
        "    from molq.batch import _private\n"
        "from . import sibling\n"
    )
    assert molq_imports(sample) == [
        (1, "molq.store", None),
        (2, "molq", "wrapper"),
        (2, "molq", "Cluster"),
        (3, "molq._records", "thing"),
        (5, "molq.batch", "_private"),
    ]

"""Shared helpers of the documentation tests."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def docs_tooling() -> None:
    """mkdocs, Material and mkdocstrings (docs/requirements.txt)."""
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"the docs tooling is required in CI (pip install -r docs/requirements.txt): {exc}")
        pytest.skip(f"docs tooling not installed (pip install -r docs/requirements.txt): {exc}")

"""Every Python example in the documentation runs.

The ```python blocks of each page run in order, in one namespace, in a fresh working
directory with a fresh ``MOLQ_HOME`` (so they use the local scheduler and a private store).
A block that needs a real cluster is preceded by ``<!-- docs-test: skip (reason) -->``; blocks
that only quote source files (``--8<--`` includes) are not examples and are left out.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"

_FENCE = re.compile(r"^(?P<marker><!-- docs-test: skip \((?P<reason>[^)]+)\) -->\n)?```python\n(?P<code>.*?)^```$",
                    re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """(line number, code, skip reason or None) of each example on ``page``."""
    text = page.read_text()
    out = []
    for match in _FENCE.finditer(text):
        code = match.group("code")
        if code.lstrip().startswith("--8<--"):
            continue
        line = text.count("\n", 0, match.start("code")) + 1
        out.append((line, code, match.group("reason")))
    return out


PAGES = sorted(p for p in DOCS.rglob("*.md") if python_blocks(p))


def test_pages_with_examples_are_found() -> None:
    names = {str(p.relative_to(DOCS)) for p in PAGES}
    assert {"getting-started.md", "concepts.md", "profiles.md", "plugins.md", "consumer.md"} <= names


def test_skip_markers_only_on_examples_that_need_a_cluster() -> None:
    for page in PAGES:
        for line, _code, reason in python_blocks(page):
            if reason is not None:
                assert reason.startswith("needs "), f"{page}:{line}: say what the example needs"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    for line, code, reason in python_blocks(page):
        if reason is not None:
            # Still valid Python: a typo in a cluster-only example is caught too.
            compile(code, f"{page}:{line}", "exec")
            continue
        try:
            exec(compile(code, f"{page}:{line}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"example at {page.relative_to(DOCS)}:{line} failed: {exc!r}") from exc
        ran += 1
    assert ran or all(r for _l, _c, r in python_blocks(page))

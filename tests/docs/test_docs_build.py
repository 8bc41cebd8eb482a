"""The documentation site builds with ``mkdocs build --strict``, and its generated parts match
the code: the API page covers ``molq.__all__``, the CLI page every command, the state and
option tables the backends' own definitions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

pytestmark = pytest.mark.usefixtures("docs_tooling")


def build(config: Path, site: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MOLQ_HOME=str(home), NO_MKDOCS_2_WARNING="1")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=config.parent, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = build(ROOT / "mkdocs.yml", out, tmp_path_factory.mktemp("home"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def page_text(site: Path, page: str) -> str:
    html = (site / page / "index.html").read_text()
    return html[html.find("<article"):html.find("</article>")]


def test_every_page_in_nav_is_built(site: Path) -> None:
    import yaml

    def pages(nav: list) -> list[str]:
        out = []
        for item in nav:
            for value in item.values():
                out += pages(value) if isinstance(value, list) else [value]
        return out

    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    for page in pages(config["nav"]):
        target = "" if page == "index.md" else page.removesuffix(".md")
        assert (site / target / "index.html").exists(), page
    # Every markdown file is in the nav (no orphan pages).
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert on_disk == set(pages(config["nav"]))


def test_api_page_documents_every_public_name(site: Path) -> None:
    import molq

    html = (site / "api" / "index.html").read_text()
    for name in molq.__all__:
        if name == "__version__":
            continue
        anchor = f'id="{molq._EXPORTS[name]}.{name}"'
        assert anchor in html, f"API reference lacks {name}"


def test_cli_page_documents_every_command(site: Path) -> None:
    from molq.cli import BUILTIN_COMMANDS

    html = page_text(site, "cli")
    for name in BUILTIN_COMMANDS:
        assert f'id="molq-{name}"' in html, name
    assert "--after-success" in html and "--gpu-type" in html  # options of `molq submit`


def test_state_tables_match_the_backends(site: Path) -> None:
    from molq_lsf.states import LSF_STATES
    from molq_pbs.states import PBSPRO_STATES, TORQUE_STATES
    from molq_slurm.states import STATE_MAP

    slurm = page_text(site, "schedulers/slurm")
    for state, molq_state in STATE_MAP.items():
        row = re.search(rf"<code>{state}</code></td>\s*<td><strong>(\w+)</strong>", slurm)
        assert row and row.group(1) == molq_state.value, state
    lsf = page_text(site, "schedulers/lsf")
    for stat in LSF_STATES:
        assert f"<code>{stat}</code>" in lsf
    pbs = page_text(site, "schedulers/pbs")
    for letter in {*PBSPRO_STATES, *TORQUE_STATES}:
        assert f"<code>{letter}</code>" in pbs


def test_mapping_tables_show_what_the_dialects_emit(site: Path) -> None:
    slurm = page_text(site, "schedulers/slurm")
    assert "#SBATCH --cpus-per-task=4" in slurm and "#SBATCH --dependency=afterok:1234" in slurm
    plugins = page_text(site, "plugins")
    assert "refused: resources.cpu_count is not supported by the 'at' scheduler" in plugins


OPTIONS_CLASSES = {
    "schedulers/slurm.md": ("molq_slurm", "SlurmOptions"),
    "schedulers/pbs.md": ("molq_pbs", "PbsOptions"),
    "schedulers/lsf.md": ("molq_lsf", "LsfOptions"),
    "schedulers/ssh.md": ("molq_ssh", "SshTransportOptions"),
}


@pytest.mark.parametrize("page", sorted(OPTIONS_CLASSES))
def test_option_tables_list_exactly_the_options(page: str) -> None:
    import importlib

    module, cls = OPTIONS_CLASSES[page]
    options = getattr(importlib.import_module(module), cls)
    text = (DOCS / page).read_text()
    section = text.split("## Options", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE)
    assert sorted(documented) == sorted(f.name for f in attrs.fields(options))


def test_broken_reference_fails_the_strict_build(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    for sub in ("examples", "tests"):
        (copy / sub).symlink_to(ROOT / sub)  # snippets quote these
    for dist in ("molq-core", "molq-slurm", "molq-pbs", "molq-lsf", "molq-ssh"):
        (copy / dist).symlink_to(ROOT / dist)
    api = copy / "docs" / "api.md"
    api.write_text(api.read_text() + "\n::: molq.model.NoSuchThing\n")
    proc = build(copy / "mkdocs.yml", tmp_path / "site", tmp_path / "home")
    assert proc.returncode != 0
    assert "NoSuchThing" in proc.stdout + proc.stderr


def test_cli_reference_has_no_placeholders(site: Path) -> None:
    # Unset defaults and missing help used to render as "Sentinel.UNSET" and "N/A".
    html = page_text(site, "cli")
    for bad in ("Sentinel.", "N/A", "UNSET"):
        assert bad not in html, bad
    assert "<code>0</code>" in html  # a real default: submit --retries
    assert 'id="molq-profile-add"' in html and "--no-default" in html


def test_api_examples_are_code_not_blockquotes(site: Path) -> None:
    html = page_text(site, "api")
    assert "<blockquote>" not in html
    assert "&gt;&gt;&gt;" in html and '<span class="gp">&gt;&gt;&gt; </span>' in html

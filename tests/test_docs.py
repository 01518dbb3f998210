"""The documentation builds cleanly with `mkdocs build --strict`, and every nav page exists."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 120


def mkdocs_build(config: Path, site_dir: Path) -> subprocess.CompletedProcess:
    """Run `mkdocs build --strict` on `config` into `site_dir`; return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--config-file", str(config), "--site-dir", str(site_dir)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's banner about MkDocs 2.0
    )


def nav_pages(nav) -> list[str]:
    """The Markdown files named in a mkdocs `nav` tree (external links left out)."""
    if isinstance(nav, str):
        return [] if "://" in nav else [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def load_config() -> dict:
    """mkdocs.yml as plain data (it uses no custom YAML tags)."""
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def test_every_nav_page_exists():
    pages = nav_pages(load_config()["nav"])
    assert pages, "mkdocs.yml has an empty nav"
    missing = [page for page in pages if not (ROOT / "docs" / page).is_file()]
    assert not missing, f"nav pages missing under docs/: {missing}"


def test_docs_build_strict(tmp_path):
    result = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()


@pytest.mark.parametrize(
    "link",
    ["[gone](no-such-page.md)", "[gone](index.md#no-such-heading)"],
    ids=["missing-page", "missing-anchor"],
)
def test_docs_build_fails_on_broken_link(tmp_path, link):
    """The strict build is a real check: a copy of the docs with one broken link fails."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with (tmp_path / "docs" / "index.md").open("a") as page:
        page.write(f"\n\nSee {link}.\n")
    result = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0, "a broken link did not fail `mkdocs build --strict`"
    assert "no-such" in result.stderr

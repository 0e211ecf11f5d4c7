"""The documentation site works offline: it loads no script or style sheet from elsewhere, and
draws its graphs with the mermaid it ships (docs/site_hooks.py), not with a copy from a CDN.

The site is built once, as `make docs` builds it, into a directory of the test's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
MERMAID = "assets/javascripts/mermaid.min.js"


class References(HTMLParser):
    """What a page loads: its scripts and linked resources, in order, and its graphs."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.links: list[str] = []
        self.graphs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.scripts.append(attributes["src"] or "")
        elif tag == "link" and attributes.get("href"):
            self.links.append(attributes["href"] or "")
        elif tag == "pre" and "mermaid" in (attributes.get("class") or "").split():
            self.graphs += 1


def external(url: str) -> bool:
    return bool(urlsplit(url).scheme) or url.startswith("//")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site_dir = tmp_path_factory.mktemp("site")
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet"]
    done = subprocess.run(
        [*build, "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert done.returncode == 0, f"the site does not build:\n{done.stderr}"
    return site_dir


@pytest.fixture(scope="module")
def pages(site: Path) -> dict[str, References]:
    found = {}
    for page in sorted(site.rglob("*.html")):
        references = References()
        references.feed(page.read_text("utf-8"))
        found[page.relative_to(site).as_posix()] = references
    return found


def test_no_page_loads_a_script_or_style_sheet_from_elsewhere(pages: dict[str, References]):
    assert pages
    for name, page in pages.items():
        outside = [url for url in page.scripts + page.links if external(url)]
        assert not outside, f"{name} loads {outside} from outside the site"


def test_the_site_ships_mermaid_and_its_license(site: Path):
    script = site / MERMAID
    assert script.stat().st_size > 1_000_000
    assert 'globalThis["mermaid"]' in script.read_text("utf-8")[-2000:]
    assert "MIT License" in (site / "assets/javascripts/mermaid.LICENSE.txt").read_text("utf-8")


def test_a_page_with_a_graph_loads_the_sites_mermaid_before_materials_script(
    pages: dict[str, References],
):
    # Material uses a global `mermaid` if there is one when it finds a graph, and fetches mermaid
    # from a CDN only if there is none: the site's copy must come first.
    with_graphs = {name: page for name, page in pages.items() if page.graphs}
    assert "getting-started/index.html" in with_graphs

    for name, page in with_graphs.items():
        loaded = [urljoin(f"/{name}", src) for src in page.scripts]
        bundle = next(i for i, src in enumerate(loaded) if "/assets/javascripts/bundle." in src)
        assert f"/{MERMAID}" in loaded[:bundle], f"{name} does not load {MERMAID} first"


def test_a_page_without_a_graph_does_not_load_mermaid(pages: dict[str, References]):
    page = pages["faq/index.html"]
    assert page.graphs == 0
    assert not any(src.endswith("mermaid.min.js") for src in page.scripts)

"""MkDocs hooks: pages from outside docs/, and links that work both on the site and in the
repository.

The examples' README, the first-party plugins' README and the changelog live where a reader
of the repository looks for them, not in docs/. This hook adds them to the site as pages, and
rewrites each page's links as the site needs them: a link that resolves, in the repository, to
one of these files goes to its page; a link to a file of the repository that is not on the site
(LICENSE, a source file) keeps its text and loses its target. Every other link is left for
MkDocs to check.

The site also ships the mermaid script that draws its ```mermaid graphs, so that they are drawn
offline and behind a firewall. Material for MkDocs loads mermaid from a CDN unless a global
``mermaid`` is already defined when a page has a graph: each page with a graph loads the site's
own copy before Material's script. That copy is mermaid ``MERMAID_VERSION`` from the npm
registry, fetched once with ``npm pack``, checked against ``MERMAID_INTEGRITY`` and kept in
``build/mermaid/``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent

PAGES = {
    "examples.md": "examples/README.md",
    "first-party-plugins.md": "plugins/README.md",
    "changelog.md": "CHANGELOG.md",
}
"""Site page -> the repository file it is made from."""
FROM_REPOSITORY = {source: page for page, source in PAGES.items()}

MERMAID_VERSION = "11.17.2"  # Material for MkDocs styles the graphs of mermaid 11
MERMAID_INTEGRITY = (
    "sha512-"
    "V6K3C8EBdEsPFZXSKMJe6ppQOENxuHARr9GvHX4hh47lAbhMRD9qf4oEK7LoaRQxULMa80/qt5gHO73aCleBBg=="
)
"""The npm registry's integrity of the package tarball ``npm pack mermaid@MERMAID_VERSION``."""
MERMAID_CACHE = ROOT / "build" / "mermaid" / MERMAID_VERSION
MERMAID_SCRIPT = "assets/javascripts/mermaid.min.js"
MERMAID_LICENSE = "assets/javascripts/mermaid.LICENSE.txt"
"""Where the script and its license are on the site."""

_BUNDLE = re.compile(r'<script src="(?P<base>[^"]*)assets/javascripts/bundle\.[^"]*"></script>')
_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")


def on_files(files: Files, config: Any) -> Files:
    for page, source in PAGES.items():
        files.append(File.generated(config, page, content=(ROOT / source).read_text("utf-8")))
    script, license_ = mermaid()
    files.append(File.generated(config, MERMAID_SCRIPT, abs_src_path=str(script)))
    files.append(File.generated(config, MERMAID_LICENSE, abs_src_path=str(license_)))
    return files


def on_post_page(output: str, page: Any, config: Any) -> str:
    """Load the site's mermaid before Material's script on each page with a graph (on every page
    with instant navigation, which swaps pages without loading them)."""
    instant = "navigation.instant" in (config.theme.get("features") or [])
    if not instant and '<pre class="mermaid">' not in output:
        return output
    bundle = _BUNDLE.search(output)
    if bundle is None:
        raise PluginError(
            f"{page.file.src_uri}: no <script> of Material's bundle to load mermaid before; "
            "the theme changed: see how it loads mermaid now"
        )
    start = bundle.start()
    indent = output[output.rfind("\n", 0, start) + 1 : start]
    tag = f'<script src="{bundle.group("base")}{MERMAID_SCRIPT}"></script>\n{indent}'
    return output[:start] + tag + output[start:]


def mermaid() -> tuple[Path, Path]:
    """The paths of mermaid's script and license, fetched from the npm registry the first time."""
    script, license_ = MERMAID_CACHE / "mermaid.min.js", MERMAID_CACHE / "LICENSE"
    if script.is_file() and license_.is_file():
        return script, license_
    where = script.relative_to(ROOT)
    npm = shutil.which("npm")
    if npm is None:
        raise PluginError(
            f"The site ships mermaid {MERMAID_VERSION} to draw its graphs, taken from the npm "
            f"registry with npm, which is not installed: install Node.js's npm, or put mermaid's "
            f"dist/mermaid.min.js at {where} and its LICENSE beside it"
        )
    with tempfile.TemporaryDirectory() as tmp:
        pack = [npm, "pack", f"mermaid@{MERMAID_VERSION}", "--ignore-scripts"]
        done = subprocess.run(
            [*pack, "--pack-destination", tmp],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            raise PluginError(
                f"`npm pack mermaid@{MERMAID_VERSION}` failed (exit {done.returncode}), so the "
                f"site has no mermaid to draw its graphs:\n{done.stderr.strip()[-2000:]}"
            )
        blob = tarballs[0].read_bytes()
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(blob).digest()).decode()
        if integrity != MERMAID_INTEGRITY:
            raise PluginError(
                f"mermaid@{MERMAID_VERSION} from the npm registry is not the package pinned in "
                f"docs/site_hooks.py: its integrity is {integrity}, not {MERMAID_INTEGRITY}"
            )
        MERMAID_CACHE.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarballs[0]) as tar:
            # The script last: once it is there, the copy is whole.
            members = {"package/LICENSE": license_, "package/dist/mermaid.min.js": script}
            for member, path in members.items():
                try:
                    source = tar.extractfile(member)
                except KeyError:
                    source = None
                if source is None:
                    raise PluginError(f"mermaid@{MERMAID_VERSION} has no file {member}")
                partial = path.with_name(f".{path.name}.{os.getpid()}")
                partial.write_bytes(source.read())
                partial.replace(path)  # two builds at once each write a whole file
    return script, license_


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    src_uri = page.file.src_uri
    where = PAGES.get(src_uri, f"docs/{src_uri}")
    # Odd pieces are inside fenced code blocks: links there are code, not links.
    pieces = re.split(r"(^(?:```|~~~).*?^(?:```|~~~)[^\n]*$)", markdown, flags=re.M | re.S)
    for index in range(0, len(pieces), 2):
        pieces[index] = _LINK.sub(lambda m: _rewrite(m, where, src_uri), pieces[index])
    return "".join(pieces)


def _rewrite(match: re.Match[str], where: str, src_uri: str) -> str:
    text, target = match.group("text"), match.group("target")
    if "://" in target or target.startswith(("#", "mailto:")):
        return match.group(0)
    path, hash_, anchor = target.partition("#")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(where), path))
    if resolved in FROM_REPOSITORY:
        page = FROM_REPOSITORY[resolved]
    elif resolved.startswith("docs/"):
        page = resolved.removeprefix("docs/")
        if (ROOT / resolved / "README.md").is_file():
            page += "/README.md"  # a directory of the docs: its README is its page
    elif (ROOT / resolved).exists():
        return text  # in the repository, not on the site
    else:
        return match.group(0)  # a broken link: MkDocs reports it
    relative = posixpath.relpath(page, posixpath.dirname(src_uri) or ".")
    return f"[{text}]({relative}{hash_}{anchor})"

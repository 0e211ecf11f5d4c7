"""MkDocs hooks: pages from outside docs/, and links that work both on the site and in the
repository.

The examples' README, the first-party plugins' README and the changelog live where a reader
of the repository looks for them, not in docs/. This hook adds them to the site as pages, and
rewrites each page's links as the site needs them: a link that resolves, in the repository, to
one of these files goes to its page; a link to a file of the repository that is not on the site
(LICENSE, a source file) keeps its text and loses its target. Every other link is left for
MkDocs to check.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent

PAGES = {
    "examples.md": "examples/README.md",
    "first-party-plugins.md": "plugins/README.md",
    "changelog.md": "CHANGELOG.md",
}
"""Site page -> the repository file it is made from."""
FROM_REPOSITORY = {source: page for page, source in PAGES.items()}

_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")


def on_files(files: Files, config: Any) -> Files:
    for page, source in PAGES.items():
        files.append(File.generated(config, page, content=(ROOT / source).read_text("utf-8")))
    return files


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

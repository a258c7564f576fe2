"""The README and docs/ pages: relative links resolve, the README stays short and links every page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

#: ``[text](target)`` and ``![alt](target)``; the target ends at whitespace or ``)`` (an optional
#: ``"title"`` after it is ignored).
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, …


def _links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every markdown link outside fenced code blocks and inline code."""
    links, in_fence = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        links.extend((number, m.group(1)) for m in LINK.finditer(line))
    return links


def _relative(target: str) -> str | None:
    """The file part of a relative link, or None for external links and bare #anchors."""
    if EXTERNAL.match(target) or target.startswith("#"):
        return None
    return target.split("#", 1)[0].split("?", 1)[0]


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    broken = [
        f"{page.relative_to(ROOT)}:{number}: {target}"
        for number, target in _links(page)
        if (path := _relative(target)) is not None and not (page.parent / path).exists()
    ]
    assert not broken, "broken relative links:\n" + "\n".join(broken)


def test_readme_is_short():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines < 250, f"README.md has {lines} lines; move detail into docs/"


def test_docs_exist():
    assert DOCS, "docs/ has no pages"


def test_readme_links_every_docs_page():
    linked = {(README.parent / path).resolve() for _, target in _links(README) if (path := _relative(target))}
    missing = [str(p.relative_to(ROOT)) for p in DOCS if p.resolve() not in linked]
    assert not missing, f"README.md does not link: {', '.join(missing)}"

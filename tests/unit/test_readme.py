"""The README stays a short page for users whose links lead somewhere; reference material lives in docs/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_BYTES = 12 * 1024

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _links(markdown: str) -> list[str]:
    """Every link and image target outside code blocks."""
    return _LINK.findall(_FENCE.sub("", markdown))


def _anchors(markdown: str) -> set[str]:
    """The ids GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    return {
        re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        for heading in _HEADING.findall(_FENCE.sub("", markdown))
    }


def test_readme_is_at_most_12_kb() -> None:
    size = len(README.read_bytes())
    assert size <= MAX_BYTES, f"README.md is {size} bytes; move reference material into docs/"


def test_readme_relative_links_point_at_files_that_exist() -> None:
    text = README.read_text(encoding="utf-8")
    relative = [t for t in _links(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]
    assert relative, "the README links to no page of the documentation"
    broken = []
    for target in relative:
        path, _, fragment = target.partition("#")
        page = README if not path else (README.parent / path).resolve()
        if not page.exists():
            broken.append(f"{target}: no such file")
        elif fragment and page.suffix == ".md" and fragment not in _anchors(page.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, "README.md links to what does not exist:\n" + "\n".join(broken)


def test_readme_gives_the_quick_start_and_test_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text
    assert "make test" in text  # CI runs it, and a contributor looks for it here


def test_link_check_finds_a_broken_link() -> None:
    page = "See [the guide](docs/nope.md), [a section](README.md#no-such-heading).\n```\n[x](skip.md)\n```"
    assert _links(page) == ["docs/nope.md", "README.md#no-such-heading"]
    assert "no-such-heading" not in _anchors(README.read_text(encoding="utf-8"))
    assert "a-short-tour" in _anchors(README.read_text(encoding="utf-8"))

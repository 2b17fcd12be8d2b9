"""The README and docs/ name only what exists: every relative link, and every repository path in backticks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PATH = re.compile(r"`((?:jitrl_bench|tests|docs|scripts|requirements|\.ci)/[^`\s]*)`")
ROOMS = ("agents", "jitrl", "envs", "policies", "rewards", "run", "results", "configs")


def named_paths(page: Path) -> list[tuple[str, Path]]:
    text = page.read_text(encoding="utf-8")
    found = [(m, page.parent / m) for m in LINK.findall(text) if not re.match(r"^[a-z]+:", m)]
    for raw in PATH.findall(text):
        path = raw.split("::", 1)[0].rstrip(".,;:")
        if any(mark in path for mark in ("<", "*", "{", "...", "NAME")):
            continue  # a pattern or a placeholder, not one file
        found.append((raw, REPO / path))
    for room in ROOMS if page.name == "README.md" else ():  # its room table's short forms: `agents/jitrl.py`
        for short in re.findall(rf"`({room}/[\w./]+)`", text):
            found.append((short, REPO / "jitrl_bench" / short))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_path_a_page_names_exists(page: Path) -> None:
    """Mutant (tried): renaming docs/failures.md leaves the README's link to it dangling, and this fails naming it."""
    missing = [name for name, path in named_paths(page) if not path.exists()]
    assert not missing, f"{page.name} names what does not exist: {missing}"


def test_the_readme_is_a_front_door() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move detail into docs/"
    assert all(page.name in (REPO / "README.md").read_text() for page in PAGES[1:]), "a docs page the README omits"

"""The documentation site builds in MkDocs' strict mode: a broken link, a link to a missing anchor,
a page left out of the navigation or an unclosed code fence fails the build, and so this test.

mkdocs.yml sets every `validation` option to `warn`, and `--strict` turns warnings into errors. The
build uses no network (no plugin fetches fonts or images), so it runs offline in CI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_PAGES = ("this task", "session", "issue", "lent to", "DESIGN.md", "/work/")


def _config() -> dict:
    """mkdocs.yml, read with PyYAML (mkdocs' `!!python/name` tags are not used in it)."""
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def _nav_pages(nav: list) -> list[str]:
    pages: list[str] = []
    for item in nav:
        for value in item.values() if isinstance(item, dict) else [item]:
            pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_strict_mode_checks_links_and_anchors() -> None:
    config = _config()
    assert config["strict"] is True
    assert config["theme"]["name"] == "material"
    assert {key: config["validation"][key] for key in ("not_found", "anchors", "unrecognized_links")} == {
        "not_found": "warn",
        "anchors": "warn",
        "unrecognized_links": "warn",
    }
    assert [p if isinstance(p, str) else next(iter(p)) for p in config["plugins"]] == ["search"]


def test_every_page_is_in_the_navigation() -> None:
    nav = _nav_pages(_config()["nav"])
    assert sorted(nav) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert nav[0] == "index.md"


def test_pages_use_no_internal_wording() -> None:
    """The pages are read by users: they speak of the project, not of how it was written."""
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text(encoding="utf-8").lower()
        for word in FORBIDDEN_IN_PAGES:
            assert word.lower() not in text, f"docs/{page.name} says {word!r}"


def _build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_table_row_is_under_a_header() -> None:
    """A run of `|` lines is a table only after a blank line, with a header and its `| --- |` line;
    rows glued to a paragraph render as one line of pipes."""
    import re

    orphans = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # code is not a table
        lines = text.split("\n")
        for at, line in enumerate(lines):
            starts_run = line.startswith("|") and (at == 0 or not lines[at - 1].startswith("|"))
            if starts_run:
                after_blank = at == 0 or not lines[at - 1].strip()
                has_header = at + 1 < len(lines) and re.match(r"\|\s*:?-", lines[at + 1])
                if not (after_blank and has_header):
                    orphans.append(f"{page.name}:{at + 1}: {line[:80]}")
    assert not orphans, orphans


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    done = _build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "WARNING" not in done.stderr, done.stderr[-4000:]
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "Kohya users start here" in home
    assert "fonts.googleapis.com" not in home  # theme.font: false, the pages load nothing from outside
    for page in (ROOT / "docs").glob("*.md"):
        built = "index.html" if page.name == "index.md" else f"{page.stem}/index.html"
        assert (tmp_path / "site" / built).is_file(), built


def test_broken_links_fail_the_build(tmp_path: Path) -> None:
    """The same configuration on a copy of the pages, with three broken links added to the front
    page: a missing page, a missing heading of another page, a missing heading of the page itself.
    Each is reported (strict mode collects every warning, then aborts)."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    index = tmp_path / "docs" / "index.md"
    broken = "[the CLI](command-line.md), [verbs](cli.md#no-such-verbs), [up](#no-such-heading-here)"
    index.write_text(index.read_text(encoding="utf-8") + f"\nSee {broken}.\n", encoding="utf-8")
    done = _build(tmp_path, tmp_path / "site")
    assert done.returncode == 1
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING") and "index.md" in line]
    for target in ("command-line.md", "no-such-verbs", "no-such-heading-here"):
        assert any(target in line for line in warnings), (target, done.stderr[-3000:])

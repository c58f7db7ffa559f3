"""Every shell command the documentation shows is either run here, its shown output compared, or
carries an explicit marker saying why it is not run.

The rules, for whoever writes a page in docs/:

- A command shown with its output goes in a ```console block: each command on a line starting
  with `$ `, followed by what it prints (stderr and stdout together, as a terminal shows them).
  The test runs each command with bash, in a fresh folder per block that holds links to the
  repository's `configs/`, `tests/`, `bench/`, `tools/`, `notebooks/` and `lora_sched/` (so what a
  command writes lands in that temporary folder, never in the checkout), with this interpreter's
  `bin/` first on PATH, and compares the lines exactly.
- Volatile text (timings, a temporary path) is marked in an output line in one of two ways, each
  matching any run of characters within that line: `«20.8»` shows the value one run printed (the
  benchmarks page shows its measured figures this way), `<...>` shows none. In a line holding a
  marker, a run of spaces matches any run of spaces, so right-aligned columns of wider numbers
  still match. A line that is `<...>` alone matches any number of whole lines, none included (for
  example a list of notices that changes as the code grows).
- `$ echo $?` shows the exit status of the command before it. A command that exits non-zero must be
  followed by it, so a failure is never shown as if it were a success. A benchmark whose status
  depends on the machine's load shows it as `«0»`.
- A ```bash (or sh, shell) block is shown but not run. It must be directly preceded by a line
  `<!-- docs-test: not run: REASON -->`: the install and test commands, long training runs and
  benchmarks, or usage examples whose file names stand for the reader's own files. The marker is
  an HTML comment, invisible on the site and on GitHub.

Each console block is one test (`page.md:LINE`); the benchmarks page's blocks, which take up to
half a minute each, are marked slow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SHELL_LANGUAGES = {"console", "bash", "sh", "shell"}
NOT_RUN = re.compile(r"^<!-- docs-test: not run: (?P<reason>\S.*\S) -->$")
ELIDED_LINES = "<...>"
#: a volatile part of an output line: `«shown value»` or `<...>`
VOLATILE = re.compile(r"«[^»]*»|<\.\.\.>")
#: what a page's commands see in their working folder (links into the checkout)
LINKED = ("configs", "tests", "bench", "tools", "notebooks", "lora_sched")
#: pages whose commands take long enough to belong to the slow tests
SLOW_PAGES = {"benchmarks.md"}


class Block(NamedTuple):
    """One fenced code block of a page: its language, first line number, text lines and the
    non-blank line just before its opening fence."""

    page: str
    line: int
    language: str
    lines: list[str]
    before: str


class Shown(NamedTuple):
    """One `$ command` of a console block and the output lines the page shows for it."""

    command: str
    output: list[str]


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced block of a markdown page, indented ones (inside a list) included."""
    blocks: list[Block] = []
    current: Block | None = None
    indent = 0
    before = ""
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.lstrip()
        if current is None:
            if stripped.startswith("```"):
                current = Block(page.name, number, stripped[3:].strip(), [], before)
                indent = len(line) - len(stripped)
            elif stripped:
                before = stripped.rstrip()
        elif stripped.startswith("```"):
            assert stripped.rstrip("`").strip() == "", (
                f"{page.name}:{number}: text after a closing fence: markdown reads it as code, not as a close"
            )
            blocks.append(current)
            current, before = None, ""
        else:
            current.lines.append(line[indent:])
    assert current is None, f"{page.name}:{current.line}: a code fence is never closed"
    return blocks


def shell_blocks(page: Path) -> list[Block]:
    return [b for b in fenced_blocks(page) if b.language in SHELL_LANGUAGES]


def console_commands(block: Block) -> list[Shown]:
    """The `$ ` commands of a console block, each with the output lines shown under it."""
    shown: list[Shown] = []
    for line in block.lines:
        if line.startswith("$ "):
            shown.append(Shown(line[2:], []))
        else:
            assert shown, f"{block.page}:{block.line}: a console block must start with a `$ ` command"
            shown[-1].output.append(line)
    return shown


def output_pattern(expected: list[str]) -> re.Pattern[str]:
    """A regex for the whole output: text literal, a volatile marker any characters of its line
    (spaces there any run of spaces), a `<...>` line any number of whole lines."""
    parts = []
    for line in expected:
        if line == ELIDED_LINES:
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        pieces = VOLATILE.split(line)
        if len(pieces) == 1:
            parts.append(re.escape(line) + r"\n")
        else:
            literal = [r" +".join(re.escape(word) for word in re.split(" +", piece)) for piece in pieces]
            parts.append(".*?".join(literal) + r"\n")
    return re.compile("".join(parts))


def output_matches(expected: list[str], actual: str) -> bool:
    text = "".join(line + "\n" for line in actual.splitlines())
    return output_pattern(expected).fullmatch(text) is not None


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def console_block_params() -> list:
    """One test per console block (`page.md:LINE`); the benchmarks' blocks are slow."""
    params = []
    for page in pages():
        for block in shell_blocks(page):
            if block.language == "console":
                marks = [pytest.mark.slow] if page.name in SLOW_PAGES else []
                params.append(pytest.param(block, id=f"{page.name}:{block.line}", marks=marks))
    return params


def run_shown(command: str, cwd: Path) -> tuple[int, str]:
    """Run one shown command as a reader would in a terminal: bash, stderr and stdout interleaved."""
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "100",
    }
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600
    )
    return done.returncode, done.stdout.decode("utf-8", errors="replace")


def test_every_shell_block_is_run_or_says_why_not() -> None:
    unmarked = []
    for page in pages():
        for block in shell_blocks(page):
            if block.language == "console":
                assert NOT_RUN.match(block.before) is None, f"{page.name}:{block.line}: a console block is run"
            elif NOT_RUN.match(block.before) is None:
                unmarked.append(f"{page.name}:{block.line}")
    assert unmarked == [], (
        "show these commands with their output in a ```console block, or put "
        "`<!-- docs-test: not run: REASON -->` on the line before the fence: " + ", ".join(unmarked)
    )


def test_the_markers_match_what_they_should_and_no_more() -> None:
    assert output_matches(["took <...> s", "done"], "took 1.25 s\ndone\n")
    assert output_matches(["took «0.9» s", "done"], "took 1.25 s\ndone\n")
    assert not output_matches(["took «0.9» s", "done"], "took 1.25 s\nfailed\n")
    assert output_matches(["  cosine    «7.54» ms"], "  cosine   17.54 ms\n")  # a wider right-aligned number
    assert not output_matches(["  cosine    «7.54» ms"], "  cosine 7.54 s\n")
    assert output_matches(["first", ELIDED_LINES, "last"], "first\nlast\n")
    assert output_matches(["first", ELIDED_LINES, "last"], "first\na\nb\nlast\n")
    assert not output_matches(["first", ELIDED_LINES, "last"], "first\na\n")
    assert not output_matches(["exact"], "exact\nand more\n")
    assert not output_matches(["a  (b)"], "a (b)\n")  # without a marker, spaces are literal too


def test_every_page_closes_its_code_fences() -> None:
    for page in pages():
        fenced_blocks(page)


def test_a_fence_closed_with_text_after_it_is_refused(tmp_path: Path) -> None:
    """A line such as "``` The quick start takes..." does not close a block in markdown: the prose
    after it would render as code, up to the next fence."""
    page = tmp_path / "page.md"
    page.write_text("```text\nan error message\n``` The quick start takes 10 s\n", encoding="utf-8")
    with pytest.raises(AssertionError, match=r"page\.md:3: text after a closing fence"):
        fenced_blocks(page)


@pytest.mark.parametrize("block", console_block_params())
def test_console_blocks_show_what_the_commands_print(block: Block, tmp_path: Path) -> None:
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    status: int | None = None
    for shown in console_commands(block):
        where = f"{block.page}:{block.line}: $ {shown.command}"
        if shown.command == "echo $?":
            assert status is not None, f"{where}: no command before it"
            assert output_matches(shown.output, f"{status}\n"), where
            status = None
            continue
        assert status in (None, 0), f"{where}: the command before exited with {status}: show `$ echo $?`"
        status, output = run_shown(shown.command, tmp_path)
        shown_text = "\n".join(shown.output)
        assert output_matches(shown.output, output), f"{where}\n--- shown:\n{shown_text}\n--- printed:\n{output}"
    assert status in (None, 0), f"{block.page}:{block.line}: the last command exited with {status}"

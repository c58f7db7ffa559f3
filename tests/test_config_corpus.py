"""The invalid-config corpus: every file in tests/invalid_configs/ fails `lora-sched validate` with
exactly the errors (line and key path) its entry in expected.toml lists.

Most files go through the CLI entry point in-process (fast); a handful through a real
`python -m lora_sched validate` subprocess.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the package depends on tomli there
    import tomli as tomllib

from lora_sched.cli import main

CORPUS = Path(__file__).parent / "invalid_configs"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text(encoding="utf-8"))
FILES = sorted(p.name for p in CORPUS.glob("*.toml") if p.name != "expected.toml")
SUBPROCESS_CASES = ["lr_string.toml", "binary_garbage.toml", "many_errors.toml", "args_item_no_equals.toml"]


def parse_messages(path: str, stderr: str) -> list[tuple[str, int | None, str]]:
    """(severity, line, key) of every message about `path`, as the CLI prints them."""
    pattern = re.compile(rf"^{re.escape(path)}(?::(\d+))?: (?:(warning|notice): )?(?:(.+?): )?expected ")
    found = []
    for text in stderr.splitlines():
        m = pattern.match(text)
        if m:
            found.append((m.group(2) or "error", int(m.group(1)) if m.group(1) else None, m.group(3) or ""))
    return found


def run_inprocess(path: Path, strict: bool, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    argv = ["validate", str(path)] + (["--strict"] if strict else [])
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def check(name: str, code: int, stdout: str, stderr: str, path: str) -> None:
    entry = EXPECTED[name]
    assert code == entry["exit"], stderr
    errors = {(line, key) for severity, line, key in parse_messages(path, stderr) if severity == "error"}
    want = {(e["line"], e["key"]) for e in entry["errors"]}
    assert errors == want, stderr
    if "message" in entry:
        assert entry["message"] in stderr
    assert "Traceback" not in stderr
    assert f"{path}: ok" not in stdout


def test_corpus_is_large_and_indexed() -> None:
    assert len(FILES) >= 60
    assert sorted(EXPECTED) == FILES


@pytest.mark.parametrize("name", FILES)
def test_invalid_config(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = CORPUS / name
    if name.startswith("custom_class") and importlib.util.find_spec("torch") is None:
        pytest.skip("no torch here: validate checks a custom torch class by building it (the train extra)")
    entry = EXPECTED[name]
    code, out, err = run_inprocess(path, entry.get("strict", False), capsys)
    check(name, code, out, err, str(path))


def test_strict_case_is_only_a_warning_without_strict(capsys: pytest.CaptureFixture[str]) -> None:
    for name, entry in EXPECTED.items():
        if entry.get("strict"):
            path = CORPUS / name
            code, out, err = run_inprocess(path, False, capsys)
            assert code == 0, err
            assert f"{path}: ok" in out
            warnings = {(line, key) for sev, line, key in parse_messages(str(path), err) if sev == "warning"}
            assert warnings == {(e["line"], e["key"]) for e in entry["errors"]}


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_invalid_config_subprocess(name: str) -> None:
    path = CORPUS / name
    proc = subprocess.run(
        [sys.executable, "-m", "lora_sched", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    check(name, proc.returncode, proc.stdout, proc.stderr, str(path))


def test_several_files_report_each(capsys: pytest.CaptureFixture[str]) -> None:
    good = Path(__file__).parent.parent / "configs" / "quickstart.toml"
    bad = CORPUS / "lr_nan.toml"
    code = main(["validate", str(good), str(bad)])
    out = capsys.readouterr()
    assert code == 1
    assert f"{good}: ok (" in out.out
    assert parse_messages(str(bad), out.err) == [("error", 2, "optimizer_arguments.learning_rate")]


def test_missing_file_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    assert main(["validate", str(missing)]) == 1
    assert f"{missing}: expected an existing file" in capsys.readouterr().err
    assert main(["validate", str(tmp_path)]) == 1
    assert f"{tmp_path}: expected a file, got a directory" in capsys.readouterr().err

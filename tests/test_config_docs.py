"""The config reference in the docs is generated from the key table and the specs: it cannot drift."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_md", ROOT / "tools" / "gen_config_md.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_config_reference_matches_the_generator() -> None:
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert text == _generator().render(), "run: python tools/gen_config_md.py --write"


def test_reference_lists_every_key_and_schedule() -> None:
    from lora_sched.config.keys import KEYS
    from lora_sched.schedules import all_specs

    text = _generator().render()
    for key in KEYS:
        assert f"| `{key.name}` |" in text
    for spec in all_specs():
        assert f"| {spec.name}" in text


def _console_blocks(text: str) -> list[tuple[str, list[str]]]:
    """($ command, expected output lines) pairs from the ```console blocks of a markdown text."""
    pairs: list[tuple[str, list[str]]] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```console"
            continue
        if not inside:
            continue
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        elif pairs:
            pairs[-1][1].append(line)
    return pairs


def test_cli_section_shows_real_output(capsys, monkeypatch) -> None:
    import shlex

    from lora_sched.cli import main

    monkeypatch.chdir(ROOT)
    text = (ROOT / "docs" / "kohya-users.md").read_text(encoding="utf-8")
    pairs = _console_blocks(text)
    assert len(pairs) >= 3
    code = 0
    for command, expected in pairs:
        if command == "echo $?":
            assert expected == [str(code)]
            continue
        argv = shlex.split(command)
        assert argv[0] == "lora-sched"
        code = main(argv[1:])
        out = capsys.readouterr()
        assert (out.err + out.out).splitlines() == expected, command

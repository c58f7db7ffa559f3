"""`lora-sched list` and `lora-sched describe NAME`, run as a user runs them (python -m lora_sched)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lora_sched.schedules import all_specs


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lora_sched", *args], capture_output=True, text=True, timeout=120, check=False
    )


def flat(text: str) -> str:
    """Whitespace collapsed, so wrapped lines compare with the one-line spec text."""
    return " ".join(text.split())


def test_list_shows_every_schedule_with_its_aliases():
    out = run("list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for spec in all_specs():
        (line,) = [x for x in lines if x.split() and x.split()[0] == spec.name]
        assert spec.summary in line
        for alias in spec.aliases:
            assert alias in line
    assert "lr_scheduler_type" in out.stdout  # custom torch classes are mentioned


@pytest.mark.parametrize("name", [s.name for s in all_specs()])
def test_describe_every_schedule(name):
    spec = next(s for s in all_specs() if s.name == name)
    out = run("describe", name)
    assert out.returncode == 0, out.stderr
    text = flat(out.stdout)
    assert text.startswith(f"{spec.name}: {flat(spec.summary)}")
    for p in spec.params:
        assert f"{p.name} ({p.field.kind}): {flat(p.doc)}" in text
        assert f"default {p.default_text()}" in text
        if p.range_text():
            assert p.range_text() in text
        if p.kohya_key:
            assert f"kohya key {p.kohya_key}" in text
    assert flat(spec.formula) in text
    assert f"reference: {flat(spec.reference)}" in text
    for gotcha in spec.gotchas:
        assert flat(gotcha) in text
    if not spec.accepts_warmup:
        assert flat(spec.warmup_note) in text


def test_describe_cosine_with_restarts_says_three_cycles_are_two_restarts():
    text = flat(run("describe", "cosine_with_restarts").stdout)
    assert "3 cycles = 2 restarts" in text
    assert "num_cycles = 3 means three cosine cycles, i.e. two restarts" in text


def test_describe_an_alias_shows_its_defaults():
    out = run("describe", "cosine_schedule_with_warmup")
    assert out.returncode == 0
    assert "cosine_schedule_with_warmup is an alias of cosine" in out.stdout
    assert "default 0.1 (this alias)" in out.stdout


def test_describe_unknown_name_is_a_usage_error_with_did_you_mean():
    out = run("describe", "cosine_with_restart")
    assert out.returncode == 2  # 1 is for invalid configs, 2 for usage errors
    assert "did you mean `cosine_with_restarts`?" in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == ""


def test_no_arguments_is_a_usage_error():
    out = run()
    assert out.returncode == 2
    assert "usage:" in out.stderr
    out = run("describe")
    assert out.returncode == 2


def test_catalogue_docs_section_is_generated_from_the_specs():
    """docs/catalogue.md must equal `python tools/gen_catalogue_md.py` (run --write to update)."""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, str(root / "tools" / "gen_catalogue_md.py")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for spec in all_specs():
        assert f"| `{spec.name}`" in text
    assert (root / "docs" / "catalogue.md").read_text(encoding="utf-8") == text, (
        "stale docs: run python tools/gen_catalogue_md.py --write"
    )

"""Adding a schedule is one spec module plus its tests (docs/adding-a-schedule.md).

The fast tests check what the generic tests rely on: every schedule has its example config and
its example makes a valid config. The slow test follows the documented steps in a copy of the
repository: it writes a new spec module, runs `python tools/regenerate.py`, and runs the tests
that enumerate the catalogue there; they must pick the new schedule up and pass, with nothing else
edited.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lora_sched.config import loads_config
from lora_sched.schedules import all_specs

ROOT = Path(__file__).resolve().parent.parent
NAME = "reciprocal"
SAMPLE = '''"""A schedule added by tests/test_adding_a_schedule.py, exactly as the docs say."""

from __future__ import annotations

from typing import Any

from lora_sched.schedules.evaluate import progress
from lora_sched.schedules.fields import Float
from lora_sched.schedules.spec import REQUIRED, Param, ScheduleSpec, register


def reciprocal_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = 1 / (1 + k p)"""
    return 1.0 / (1.0 + resolved.params["k"] * progress(steps, resolved))


register(
    ScheduleSpec(
        name="reciprocal",
        summary="reciprocal decay 1 / (1 + k p)",
        params=(Param("k", Float(low=0.0), "how fast the LR falls", default=REQUIRED),),
        curve=reciprocal_curve,
        reference="its formula",
        example={"k": 3.0},
    )
)
'''
#: What `tools/regenerate.py` must rewrite for a new schedule (plus its new example config).
REGENERATED = {
    "configs/lora_sched.schema.json",
    "docs/catalogue.md",
    "docs/config.md",
    "notebooks/lora_sched_colab.ipynb",
}
#: The tests that enumerate the catalogue, each with the test ids the new schedule must appear in.
GENERIC_TESTS = (
    "tests/test_resolve.py",
    "tests/test_torch_scheduler.py",
    "tests/test_imports.py",
    "tests/test_cli_catalogue.py",
    "tests/test_config_docs.py",
    "tests/test_notebook_colab.py",
    "tests/test_readme.py",
    "tests/test_adding_a_schedule.py",
    "tests/test_spec_register.py",
    "tests/test_config_cli.py",
    "tests/test_notebook_form.py",
)


def _generator():
    spec = importlib.util.spec_from_file_location("gen_schedule_configs", ROOT / "tools" / "gen_schedule_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_schedule_has_its_example_config():
    assert [s.name for s in _generator().missing()] == [], "run: python tools/gen_schedule_configs.py --write"


def test_every_example_makes_a_valid_config_of_its_schedule():
    generator = _generator()
    # adafactor is Adafactor's own step size: it runs only with optimizer_type = "Adafactor", which
    # its hand-written example config sets
    for spec in (s for s in all_specs() if s.name != "adafactor"):
        cfg = loads_config(generator.render(spec), source=f"{spec.name}.toml")
        assert cfg.resolve().name == spec.name
        assert [w for w in cfg.warnings if w.severity != "notice"] == [], spec.name


def _copy_of_the_checkout(dst: Path) -> Path:
    """The checkout's files as they are now (committed or not), without caches and build outputs."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for rel in filter(None, listed.decode().split("\0")):
        if (ROOT / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)
    return dst


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.slow
def test_a_new_schedule_is_one_module_and_the_documented_commands(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("this test copies the checkout with git ls-files: run it in a git checkout")
    copy = _copy_of_the_checkout(tmp_path / "repo")
    (copy / "lora_sched" / "schedules" / "catalogue" / f"{NAME}.py").write_text(SAMPLE, encoding="utf-8")
    before = _digests(copy)
    env = {**os.environ, "PYTHONPATH": str(copy)}
    done = subprocess.run([sys.executable, "tools/regenerate.py"], cwd=copy, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = _digests(copy)
    changed = {p for p in after if before.get(p) != after[p]}
    assert changed == REGENERATED | {f"configs/schedules/{NAME}.toml"}

    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", *GENERIC_TESTS]
    collected = subprocess.run([*run, "--collect-only", "-k", NAME], cwd=copy, env=env, capture_output=True, text=True)
    ids = [line for line in collected.stdout.splitlines() if f"[{NAME}" in line or f"-{NAME}" in line]
    assert len(ids) >= 12, collected.stdout[-3000:]  # the edges, stepping, the form ... each run the new schedule
    tested = subprocess.run(run, cwd=copy, env=env, capture_output=True, text=True, timeout=900)
    assert tested.returncode == 0, tested.stdout[-4000:]

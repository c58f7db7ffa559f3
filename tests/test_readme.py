"""The README is assembled from docs/sections; a stale README means someone edited the wrong file."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_is_assembled_from_sections():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "build_readme.py"), "--check"], cwd=ROOT)
    assert result.returncode == 0, "README.md is stale: run `python tools/build_readme.py`"


def test_readme_opens_with_install_and_test_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = text.split("```bash", 1)[1].split("```", 1)[0]
    assert "pip install -c constraints.txt" in first_block
    assert "lora-sched train" in first_block
    assert "python -m pytest" in first_block


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_line = next(line for line in readme.splitlines() if line.startswith("python -m pytest"))
    assert test_line in ci

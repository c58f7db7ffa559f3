"""`lora-sched validate` starts fast (bench/bench_validate.py measures it against a bare Python).

Tests never time anything; they pin what keeps it fast: the modules a clean validate never loads.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEVER_ON_THE_VALIDATE_PATH = ("numpy", "torch", "dataclasses", "inspect", "ast", "argparse", "difflib")


def imported_modules(*args: str) -> set[str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lora_sched", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return {
        line.split("|")[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_clean_validate_loads_no_heavy_or_slow_module():
    modules = imported_modules("validate", "configs/quickstart.toml")
    toml_reader = "tomllib" if sys.version_info >= (3, 11) else "tomli"
    assert toml_reader in modules and "lora_sched.config.loader" in modules  # the check sees real imports
    loaded = sorted(m for m in modules if m.split(".")[0] in NEVER_ON_THE_VALIDATE_PATH)
    assert loaded == []

"""Importing any module of lora_sched has no side effect, and a config cannot make the loader run one.

A config naming `lora_sched.__main__.X` as lr_scheduler_type once made `load_config()` run the CLI
and exit the host program; these tests import every module in a fresh interpreter and check that
nothing is printed, nothing exits and no file is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lora_sched

ROOT = Path(lora_sched.__file__).resolve().parent


def every_module() -> list[str]:
    """Every module file of the package (lora_sched.train is a namespace package: walk the files)."""
    names = []
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return sorted(names)


def test_every_module_is_listed():
    names = every_module()
    assert len(names) > 40
    assert {"lora_sched", "lora_sched.__main__", "lora_sched.train.loop", "lora_sched.torch.custom"} <= set(names)


#: Modules that import only the standard library and the base install (numpy, tomli-w): never skipped.
CORE = ("lora_sched", "lora_sched.__main__", "lora_sched.cli", "lora_sched.config", "lora_sched.schedules")


def _import_all(tmp_path: Path, names: list[str]) -> tuple[subprocess.CompletedProcess, list[str], list[str]]:
    """Import `names` in a fresh interpreter whose working folder and HOME are empty folders.

    -> (the process, modules skipped because an optional package is not installed, other failures)."""
    work, report = tmp_path / "work", tmp_path / "report.json"
    work.mkdir()
    code = (
        "import importlib, importlib.util, json, sys\n"
        f"names = json.loads({json.dumps(json.dumps(names))})\n"
        "skipped, failed = [], []\n"
        "for name in names:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as exc:\n"
        "        missing = (exc.name or '').split('.')[0]\n"
        "        optional = missing and missing != 'lora_sched' and importlib.util.find_spec(missing) is None\n"
        "        (skipped if optional else failed).append(f'{name}: {exc!r}')\n"
        f"open({str(report)!r}, 'w').write(json.dumps([skipped, failed]))\n"
    )
    path = os.pathsep.join(filter(None, [str(ROOT.parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "HOME": str(work), "MPLCONFIGDIR": str(work / "mpl")}
    out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    skipped, failed = json.loads(report.read_text()) if report.exists() else ([], ["no report: the import exited"])
    return out, skipped, failed


def test_importing_every_module_prints_nothing_exits_nothing_writes_nothing(tmp_path):
    names = every_module()
    out, skipped, failed = _import_all(tmp_path, names)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    assert "usage" not in out.stderr and "lora-sched" not in out.stderr, out.stderr
    assert failed == []
    # only a module needing an optional package that is not installed here (torch, ipywidgets, ...) may be
    # skipped; where every extra is installed, none is
    assert not [s for s in skipped if s.split(":")[0] in CORE], skipped
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [], "an import wrote files"


def test_a_config_naming_the_cli_module_does_not_run_it(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('lr_scheduler_type = "lora_sched.__main__.X"\n')
    code = (
        "import sys\n"
        "from lora_sched.config import load_config\n"
        "from lora_sched.errors import ConfigError\n"
        "try:\n"
        f"    load_config({str(config)!r})\n"
        "except ConfigError as exc:\n"
        "    print('refused:', exc.problems[0].hint)\n"
        "print('host alive;', 'lora_sched.__main__' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert out.stdout.splitlines()[-1] == "host alive; False"
    assert "`__main__` module runs a program" in out.stdout


MAIN_OR_NOT_SCHEDULERS = [
    "lora_sched.__main__.X",
    "__main__.X",
    "pkg.__main__.S",
    "lora_sched.cli.main",
    "lora_sched.loop.X",
]


@pytest.mark.parametrize("trust", [False, True])
@pytest.mark.parametrize("path", MAIN_OR_NOT_SCHEDULERS)
def test_main_modules_and_non_scheduler_packages_are_never_imported(path, trust):
    pytest.importorskip("torch")
    code = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "from lora_sched.torch.custom import check_scheduler_type\n"
        "before = set(sys.modules)\n"
        f"p = check_scheduler_type({path!r}, {{}}, trust={trust})\n"
        "print(json.dumps([len(p), p[0].hint, sorted(set(sys.modules) - before)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    count, hint, new_modules = json.loads(out.stdout)
    assert count == 1
    assert "__main__" in hint or "lora_sched.torch" in hint
    assert new_modules == []


def test_the_exported_class_path_still_loads():
    pytest.importorskip("torch")
    from lora_sched.torch.custom import resolve_class
    from lora_sched.torch.scheduler import LoraSchedLR

    assert resolve_class("lora_sched.torch.LoraSchedLR") == (LoraSchedLR, [])
    assert resolve_class("lora_sched.torch.scheduler.LoraSchedLR") == (LoraSchedLR, [])

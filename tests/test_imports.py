"""Import cost: the schedule layer imports no torch, diffusers or ipywidgets,
and validation (specs + resolution) imports no NumPy; only evaluating a curve does."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import edge_args

from lora_sched.schedules import all_specs

HEAVY = ("torch", "diffusers", "transformers", "ipywidgets", "matplotlib", "numpy")


def imported_modules(code: str) -> set[str]:
    """Top-level packages imported by `code` in a fresh interpreter, read from -X importtime."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    names = set()
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name.split(".")[0])
    return names


def test_importtime_parser_sees_numpy_when_it_is_imported():
    assert "numpy" in imported_modules("import numpy")


def test_import_schedules_is_light():
    mods = imported_modules("import lora_sched.schedules")
    assert "lora_sched" in mods
    assert not mods & set(HEAVY), mods & set(HEAVY)


def test_specs_and_resolution_of_every_schedule_import_no_numpy():
    every = {s.name: edge_args(s.name) for s in all_specs()}
    code = (
        "import json, sys\n"
        "import lora_sched.schedules\n"
        "from lora_sched.schedules import ScheduleRequest, resolve\n"
        "specs = lora_sched.schedules.all_specs()\n"
        "[s.formula for s in specs]\n"
        f"for name, args in json.loads({json.dumps(json.dumps(every))}).items():\n"
        "    warmup = 10 if lora_sched.schedules.get_spec(name).accepts_warmup else 0\n"
        "    resolve(ScheduleRequest(name, args, warmup=warmup, max_train_steps=1000, base_lr=1e-4))\n"
        "try:\n"
        "    resolve(ScheduleRequest('cosine', {'power': 2}, warmup=50.0, max_train_steps=10))\n"
        "except ValueError:\n"
        "    pass\n"
    )
    mods = imported_modules(code)
    assert not mods & set(HEAVY), mods & set(HEAVY)


def test_catalogue_cli_imports_no_numpy():
    code = (
        "import sys, io, contextlib\n"
        "from lora_sched.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['list']); main(['describe', 'cosine_with_restarts'])\n"
    )
    mods = imported_modules(code)
    assert not mods & set(HEAVY), mods & set(HEAVY)


def test_evaluating_a_curve_imports_numpy_but_not_torch():
    code = (
        "from lora_sched.schedules import ScheduleRequest, resolve\n"
        "resolve(ScheduleRequest('cosine', max_train_steps=10)).multipliers()\n"
    )
    mods = imported_modules(code)
    assert "numpy" in mods
    assert not mods & {"torch", "diffusers", "transformers", "ipywidgets", "matplotlib"}

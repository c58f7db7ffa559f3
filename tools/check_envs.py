#!/usr/bin/env python3
"""Build the dependency environments the package declares it supports, and test each one.

    python tools/check_envs.py [LEG ...] [--root DIR] [--fresh]

Dependency legs (on Python 3.11 with torch==2.13.0, the one CPU wheel pip serves locally; any other
torch, or torch for another Python, would download several GB of CUDA packages):

  newest  the newest releases pip resolves for the `train` extra, no constraints but torch's
  oldest  every floor of pyproject's `train` extra and base dependencies, pinned exactly (read from
          pyproject.toml, so a raised or lowered floor is what gets tested)
  colab   the set Google Colab shipped in late 2025: transformers 4.57, diffusers 0.35, peft 0.17,
          accelerate 1.10, numpy 2.0

Python legs (python3.10, python3.12, python3.13; each where the machine has that interpreter, on
PATH or under pyenv): the package with the plot, notebook and test extras, no torch; the whole
fast suite (tests needing torch skip, each with its reason) and `lora-sched validate`.

Each leg gets its own virtual environment under --root (default: $LORA_SCHED_ENVS or
.venv-matrix/), reused while its requirements are unchanged. In each: the package (editable, from
this checkout) with the `train` extra and pytest, then the core tests (config, schedules, the
transformers / diffusers parity, the training units) and a 4-step training with the text encoder
(text_encoder_lr > 0) whose LoRA file must hold text-encoder tensors. Prints one line per leg with
the versions it got; exits 1 if any leg failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"
COLAB = ["transformers==4.57.*", "diffusers==0.35.*", "peft==0.17.*", "accelerate==1.10.*", "numpy==2.0.*"]
#: Test tooling, unpinned in every leg (it is not what the legs compare).
TOOLING = ["pytest", "pytest-xdist", "hypothesis", "jsonschema"]
CORE_TESTS = [
    "tests/test_imports.py",
    "tests/test_validate_startup.py",
    "tests/test_config_load.py",
    "tests/test_resolve.py",
    "tests/test_torch_scheduler.py",
    "tests/test_parity_transformers.py",
    "tests/test_parity_diffusers.py",
    "tests/test_train_unit.py",
]
PYTHONS = ["python3.10", "python3.12", "python3.13"]
REPORTED = ["torch", "numpy", "transformers", "diffusers", "peft", "accelerate", "tokenizers", "huggingface_hub"]
TRAIN_CONFIG = """\
pretrained_model_name_or_path = "builtin:tiny-sd"
train_data_dir = "builtin:shapes"
output_dir = "{out}"
resolution = 64
train_batch_size = 2
max_train_steps = 4
learning_rate = 1e-3
unet_lr = 1e-3
text_encoder_lr = 5e-4
lr_scheduler = "cosine"
lr_warmup_steps = 1
network_dim = 4
network_alpha = 4
seed = 1
"""


def floors() -> list[str]:
    """pyproject's `train` extra and base dependencies with every `>=` floor turned into `==`."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = []
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["train"]]:
        if ";" in requirement and not _marker_applies(requirement.split(";", 1)[1]):
            continue
        name, _, floor = requirement.split(";", 1)[0].partition(">=")
        name = re.split(r"[<=!~ ]", name.strip())[0]
        if name == "torch" or not floor:
            continue
        pins.append(f"{name}=={floor.split(',')[0].strip()}")
    return pins


def _marker_applies(marker: str) -> bool:
    match = re.fullmatch(r"\s*python_version\s*<\s*'(\d+)\.(\d+)'\s*", marker)
    if not match:
        raise SystemExit(f"tools/check_envs.py: cannot read the marker {marker!r}")
    return sys.version_info[:2] < (int(match[1]), int(match[2]))


def leg_pins(leg: str) -> list[str]:
    return {"newest": [], "oldest": floors(), "colab": COLAB}[leg]


def interpreter(leg: str) -> str | None:
    """The Python a leg runs on: this one for the dependency legs, else a working pythonX.Y (pyenv's
    versions, /usr/bin, PATH; a pyenv shim for a version that is not selected does not run)."""
    if leg not in PYTHONS:
        return sys.executable
    version = leg.removeprefix("python")
    candidates = [
        *sorted(map(str, Path.home().glob(f".pyenv/versions/{version}.*/bin/python3")), reverse=True),
        f"/usr/bin/{leg}",
        shutil.which(leg),
    ]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    return None


def build(leg: str, root: Path, fresh: bool, python: str) -> Path:
    """The leg's virtual environment, (re)built unless one with the same requirements exists."""
    venv = root / leg
    if leg in PYTHONS:
        pins, target = [], f"{REPO}[plot,notebook,test]"
    else:
        pins, target = [TORCH, *leg_pins(leg)], f"{REPO}[train]"
    version = subprocess.run([python, "--version"], capture_output=True, text=True, check=True).stdout
    stamp = hashlib.sha256(json.dumps([pins, target, TOOLING, version]).encode()).hexdigest()
    marker = venv / "lora_sched_requirements.sha256"
    # the newest leg is rebuilt on every run: a new release is exactly what it is there to catch
    if not fresh and leg != "newest" and marker.is_file() and marker.read_text() == stamp:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write("\n".join(pins) + "\n")
    env = {**os.environ, "PIP_CONSTRAINT": constraints.name}  # replaces any constraints file from the caller
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-e", target, *pins, *TOOLING]
    try:
        subprocess.run(command, check=True, env=env)
    finally:
        os.unlink(constraints.name)
    marker.write_text(stamp)
    return venv


def versions(python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, platform\n"
        "def v(n):\n    try: return m.version(n)\n    except m.PackageNotFoundError: return '-'\n"
        f"print(json.dumps({{'python': platform.python_version(), **{{n: v(n) for n in {REPORTED!r}}}}}))"
    )
    return json.loads(subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout)


def run_leg(leg: str, root: Path, fresh: bool) -> bool | None:
    """True / False: the leg passed / failed; None: this machine has no interpreter for it."""
    base = interpreter(leg)
    if base is None:
        print(f"[{leg}] not run: no {leg} on PATH or under pyenv", flush=True)
        return None
    start = time.monotonic()
    try:
        venv = build(leg, root, fresh, base)
    except subprocess.CalledProcessError as exc:
        print(f"[{leg}] FAIL  pip could not install {exc.cmd[6:]} (its message is above)", flush=True)
        return False
    python = venv / "bin" / "python"
    built = time.monotonic() - start
    got = versions(python)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "VIRTUAL_ENV": str(venv)}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    selection = [] if leg in PYTHONS else CORE_TESTS  # a Python leg runs the whole fast suite
    tests = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", "-m", "not slow", *selection],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    summary = (tests.stdout.strip().splitlines() or ["(no output)"])[-1]
    second = _validate(python, env) if leg in PYTHONS else _train_with_text_encoder(python, env)
    ok = tests.returncode == 0 and second == "ok"
    what = "lora-sched validate" if leg in PYTHONS else "training with the text encoder"
    print(
        f"[{leg}] {'PASS' if ok else 'FAIL'}  build {built:.0f}s, total {time.monotonic() - start:.0f}s  "
        f"{' '.join(f'{k}={v}' for k, v in got.items() if v != '-')}\n"
        f"[{leg}]   tests: {summary}\n[{leg}]   {what}: {second}",
        flush=True,
    )
    if tests.returncode != 0:
        print(tests.stdout[-6000:], tests.stderr[-2000:], sep="\n", flush=True)
    return ok


def _validate(python: Path, env: dict[str, str]) -> str:
    run = subprocess.run(
        [str(python), "-m", "lora_sched", "validate", "configs/quickstart.toml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    return "ok" if run.returncode == 0 else f"exit {run.returncode}: {(run.stdout + run.stderr)[-2000:]}"


def _train_with_text_encoder(python: Path, env: dict[str, str]) -> str:
    """4 steps with text_encoder_lr > 0; "ok" when the LoRA file has UNet and text-encoder tensors."""
    with tempfile.TemporaryDirectory(prefix="lora_sched_envcheck_") as tmp:
        config = Path(tmp, "config.toml")
        config.write_text(TRAIN_CONFIG.format(out=Path(tmp, "out").as_posix()), encoding="utf-8")
        run = subprocess.run(
            [str(python), "-m", "lora_sched", "train", str(config)], env=env, capture_output=True, text=True
        )
        if run.returncode != 0:
            return f"exit {run.returncode}: {(run.stdout + run.stderr)[-3000:]}"
        check = (
            "import sys; from safetensors import safe_open\n"
            "keys = list(safe_open(sys.argv[1], 'pt').keys())\n"
            "print(sum(k.startswith('lora_te_') for k in keys), sum(k.startswith('lora_unet_') for k in keys))"
        )
        lora = Path(tmp, "out", "lora.safetensors")
        counted = subprocess.run([str(python), "-c", check, str(lora)], env=env, capture_output=True, text=True)
        te, unet = (int(n) for n in counted.stdout.split()) if counted.returncode == 0 else (0, 0)
        return "ok" if te and unet else f"no text-encoder/UNet tensors in {lora.name}: {counted.stderr[-500:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    legs = ["newest", "oldest", "colab", *PYTHONS]
    parser.add_argument("legs", nargs="*", choices=legs, default=legs, help="default: all")
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("LORA_SCHED_ENVS", REPO / ".venv-matrix")))
    parser.add_argument("--fresh", action="store_true", help="rebuild every environment")
    args = parser.parse_args(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    ran = [r for r in (run_leg(leg, args.root, args.fresh) for leg in args.legs) if r is not None]
    print(f"environments: {sum(ran)} of {len(ran)} passed")
    return 0 if all(ran) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Cold start of `lora-sched validate` against a bare `python -c pass` (target: <= 1.5x).

Every command runs as a fresh process, alternating, with bytecode caches on (in a temporary
PYTHONPYCACHEPREFIX, as an installed package has them); the figures are medians and their ratios to
the bare start measured in the same environment.

Two environments are measured. "installed" is a new virtual environment (no pip) with this checkout
on its path through a plain `.pth` line: it starts as a wheel install does. "this environment" is
the interpreter running the script; in a development checkout that is an editable install, whose
finder imports pathlib, re and importlib.util at every start, so its bare start is slower and its
ratios look better than a user's. The verdict is the installed one. Run from the repository root:

    python bench/bench_validate.py [--runs 21] [--config configs/quickstart.toml]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.5
BARE = "python -c pass"
FLOOR = "python -c 'import tomllib'"


def bytecode_env(cache: str) -> dict[str, str]:
    """Bytecode caches on, kept out of the source tree: an installed package always has its .pyc
    files, so a run that recompiles every module (PYTHONDONTWRITEBYTECODE) is not a cold start."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV", "PYTHONPATH")}
    env["PYTHONPYCACHEPREFIX"] = cache
    return env


def installed_python(folder: Path) -> str:
    """The interpreter of a new virtual environment whose only addition is this checkout on its
    path (a `.pth` line that site reads without importing anything), as after `pip install` of a wheel.
    """
    venv.create(folder, with_pip=False)
    python = folder / "bin" / "python"
    purelib = sysconfig.get_path("purelib", vars={"base": str(folder), "platbase": str(folder)})
    Path(purelib).mkdir(parents=True, exist_ok=True)
    (Path(purelib) / "lora_sched_checkout.pth").write_text(f"{ROOT}\n", encoding="utf-8")
    return str(python)


def console_script(python: str) -> Path:
    """The `lora-sched` entry point pip writes into an environment's bin folder (pip's template:
    import re and sys, then the [project.scripts] target), next to `python`."""
    script = Path(python).with_name("lora-sched")
    script.write_text(
        f"#!{python}\nimport re\nimport sys\nfrom lora_sched.cli import main\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        "    sys.exit(main())\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def commands_for(python: str, config: str, console_script: Path | None) -> dict[str, list[str]]:
    """The bare start, the floor (tomllib, the standard module validation cannot do without) and
    validate itself, all started by `python`."""
    commands = {
        BARE: [python, "-c", "pass"],
        FLOOR: [python, "-c", "import tomllib"],
        "python -m lora_sched validate": [python, "-m", "lora_sched", "validate", config],
    }
    if console_script is not None and console_script.exists():
        commands["lora-sched validate (console script)"] = [str(console_script), "validate", config]
    return commands


def wall(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one run of `cmd`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def report(title: str, times: dict[str, list[tuple[float, float]]]) -> dict[str, float]:
    """Print one environment's table; return each command's wall-clock ratio to its bare start."""
    print(f"  {title:<52} {'wall':>9} {'ratio':>6}  {'CPU':>9} {'ratio':>6}")
    base_wall = statistics.median(t[0] for t in times[BARE])
    base_cpu = statistics.median(t[1] for t in times[BARE])
    ratios = {}
    for name, values in times.items():
        w = statistics.median(t[0] for t in values)
        c = statistics.median(t[1] for t in values)
        ratios[name] = w / base_wall
        print(f"    {name:<50} {w * 1000:6.1f} ms {w / base_wall:5.2f}x  {c * 1000:6.1f} ms {c / base_cpu:5.2f}x")
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--config", default="configs/quickstart.toml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lora-sched-bench-") as scratch:
        environments = {
            "installed": commands_for(
                python := installed_python(Path(scratch) / "venv"), args.config, console_script(python)
            ),
            "this environment": commands_for(sys.executable, args.config, Path(sys.executable).with_name("lora-sched")),
        }
        env = bytecode_env(str(Path(scratch) / "pycache"))
        runs = [(where, name, cmd) for where, commands in environments.items() for name, cmd in commands.items()]
        for _, _, cmd in runs:  # write the bytecode caches and warm the OS file cache once
            wall(cmd, env)
        times: dict[str, dict[str, list[tuple[float, float]]]] = {where: {} for where in environments}
        for _ in range(args.runs):
            for where, name, cmd in runs:
                times[where].setdefault(name, []).append(wall(cmd, env))
    print(
        f"{args.runs} alternating runs each, medians (python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}):"
    )
    installed = report("installed (a new venv, no editable finder)", times["installed"])
    report("this environment", times["this environment"])
    worst = max(ratio for name, ratio in installed.items() if "validate" in name)
    verdict = "ok" if worst <= TARGET else "MISSED"
    print(f"validate / bare python, installed (wall): {worst:.2f}x (target <= {TARGET:.1f}x) -> {verdict}")
    print(f"  of which the floor, import tomllib: {installed[FLOOR]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

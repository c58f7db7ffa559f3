"""Cold start of `lora-sched validate` against a bare `python -c pass` (target: <= 1.5x).

Both commands run as fresh processes, alternating, with the same interpreter and bytecode caches
(in a temporary PYTHONPYCACHEPREFIX, as an installed package has them); the figure is the ratio of
the medians. Run from the repository root:

    python bench/bench_validate.py [--runs 21] [--config configs/quickstart.toml]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.5


def bytecode_env(cache: str) -> dict[str, str]:
    """Bytecode caches on, kept out of the source tree: an installed package always has its .pyc
    files, so a run that recompiles every module (PYTHONDONTWRITEBYTECODE) is not a cold start."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    return env


def wall(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one run of `cmd`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--config", default="configs/quickstart.toml")
    args = parser.parse_args()
    bare = [sys.executable, "-c", "pass"]
    validate = [sys.executable, "-m", "lora_sched", "validate", args.config]
    script = Path(sys.executable).with_name("lora-sched")
    # the floor: the standard module validation cannot do without (tomllib, which the design requires)
    floor = [sys.executable, "-c", "import tomllib"]
    commands = {
        "python -c pass": bare,
        "python -c 'import tomllib'": floor,
        "python -m lora_sched validate": validate,
    }
    if script.exists():
        commands["lora-sched validate (console script)"] = [str(script), "validate", args.config]
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory(prefix="lora-sched-pycache-") as cache:
        env = bytecode_env(cache)
        for cmd in commands.values():  # write the bytecode caches and warm the OS file cache once
            wall(cmd, env)
        for _ in range(args.runs):
            for name, cmd in commands.items():
                times[name].append(wall(cmd, env))
    print(
        f"{args.runs} alternating runs each, medians (python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}):"
    )
    print(f"  {'command':<52} {'wall':>9} {'ratio':>6}  {'CPU':>9} {'ratio':>6}")
    base_wall = statistics.median(t[0] for t in times["python -c pass"])
    base_cpu = statistics.median(t[1] for t in times["python -c pass"])
    worst = 0.0
    for name, values in times.items():
        w = statistics.median(t[0] for t in values)
        c = statistics.median(t[1] for t in values)
        if "validate" in name:
            worst = max(worst, w / base_wall)
        print(f"  {name:<52} {w * 1000:6.1f} ms {w / base_wall:5.2f}x  {c * 1000:6.1f} ms {c / base_cpu:5.2f}x")
    verdict = "ok" if worst <= TARGET else "MISSED"
    print(f"validate / bare python (wall): {worst:.2f}x (target <= {TARGET:.1f}x) -> {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

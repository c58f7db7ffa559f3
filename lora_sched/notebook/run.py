"""Run `python -m lora_sched ...` from a notebook cell with live output, raising on failure.

A `!lora-sched train` shell escape would ignore the exit code (a failed run would look done) and
may find another Python's entry point on PATH; this uses the kernel's own interpreter.
"""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str) -> None:
    """Run the CLI with `args`, printing its output line by line; RuntimeError on a non-zero exit."""
    command = [sys.executable, "-m", "lora_sched", *map(str, args)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
        code = proc.wait()
    if code != 0:
        raise RuntimeError(f"`lora-sched {' '.join(map(str, args))}` exited with status {code}")

"""Regenerate every file derived from the schedule specs and the key table, in order.

    python tools/regenerate.py

Runs, each with this checkout's lora_sched:

    python tools/gen_catalogue_md.py --write        docs/catalogue.md
    python tools/gen_config_md.py --write           docs/config.md
    python -m lora_sched schema -o configs/lora_sched.schema.json
    python tools/gen_schedule_configs.py --write    configs/schedules/NAME.toml of a new schedule
    python tools/gen_colab_catalogue.py --write     the Colab notebook's schedule dropdown
    python tools/gen_refused_md.py --write          docs/training.md's table of refused options
    python tools/build_readme.py                    README.md, from docs/index.md
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STEPS = (
    ("tools/gen_catalogue_md.py", "--write"),
    ("tools/gen_config_md.py", "--write"),
    ("-m", "lora_sched", "schema", "-o", "configs/lora_sched.schema.json"),
    ("tools/gen_schedule_configs.py", "--write"),
    ("tools/gen_colab_catalogue.py", "--write"),
    ("tools/gen_refused_md.py", "--write"),
    ("tools/build_readme.py",),
)


def main() -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for step in STEPS:
        print("python", *step, file=sys.stderr)
        done = subprocess.run([sys.executable, *step], cwd=ROOT, env=env)
        if done.returncode:
            print(f"failed ({done.returncode}): python {' '.join(step)}", file=sys.stderr)
            return done.returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

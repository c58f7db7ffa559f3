"""Developer check: run `lora-sched validate` over the TOML that public kohya repositories ship.

    python tools/check_public_configs.py CHECKOUT [CHECKOUT ...] [--details]

For each checkout (sd-scripts, musubi-tuner, kohya_ss, ...) it collects every `*.toml` file and every
```toml block of its Markdown docs, sorts them into training configs and dataset configs
(`[[datasets]]`), validates each with the lora-sched found on PYTHONPATH (a dataset config together
with a minimal epoch-based training config, through --dataset-config), and prints one table: per
repository and kind, how many were accepted and rejected, then each rejection's first error.
Nothing is copied into this repository: the files are read where they are and validated from a
temporary folder.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import tomllib

SKIP_NAMES = {"pyproject.toml", "_typos.toml", "uv.lock", "Cargo.toml", ".ruff.toml", "ruff.toml"}
FENCE = re.compile(r"^```toml[^\n]*\n(.*?)^```", re.S | re.M)
MINIMAL_TRAINING = 'learning_rate = 1e-4\nlr_scheduler = "cosine"\nmax_train_epochs = 2\n'


def snippets(checkout: Path) -> list[tuple[str, str]]:
    """(where, text) of every TOML file and ```toml block in the checkout."""
    found = []
    for path in sorted(checkout.rglob("*.toml")):
        if ".git" in path.parts or path.name in SKIP_NAMES:
            continue
        found.append((str(path.relative_to(checkout)), path.read_text(encoding="utf-8", errors="replace")))
    for doc in sorted(checkout.rglob("*.md")):
        if ".git" in doc.parts:
            continue
        text = doc.read_text(encoding="utf-8", errors="replace")
        for i, match in enumerate(FENCE.finditer(text), 1):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{doc.relative_to(checkout)}:{line} (block {i})", match.group(1)))
    return found


def kind_of(text: str) -> str:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return "not TOML"
    if "datasets" in doc:
        return "dataset config"
    if not doc:
        return "empty"
    if all(isinstance(v, list) and v and all(isinstance(i, dict) for i in v) for v in doc.values()):
        return "other"  # e.g. LECO prompt lists: arrays of tables, no training options
    return "training config"


def validate(text: str, kind: str, work: Path, supports_dataset_option: bool) -> tuple[int, str]:
    target = work / "snippet.toml"
    target.write_text(text, encoding="utf-8")
    if kind == "dataset config":
        if not supports_dataset_option:
            return -1, "not checked: this lora-sched has no --dataset-config"
        training = work / "training.toml"
        training.write_text(MINIMAL_TRAINING, encoding="utf-8")
        argv = ["validate", str(training), "--dataset-config", str(target)]
    else:
        argv = ["validate", str(target)]
    done = subprocess.run([sys.executable, "-m", "lora_sched", *argv], capture_output=True, text=True)
    found = [ln.replace(str(work) + "/", "") for ln in (done.stderr + done.stdout).splitlines()]
    located = [ln for ln in found if re.match(r"\S+\.toml(:\d+)?: ", ln)]
    errors = [ln for ln in located if not re.search(r": (warning|notice): |: ok \(", ln)]
    if done.returncode:
        return done.returncode, (errors or located or found or [""])[0]
    return 0, next((ln for ln in located if ": ok (" in ln), "")


def dataset_option_supported() -> bool:
    help_text = subprocess.run(
        [sys.executable, "-m", "lora_sched", "validate", "--help"], capture_output=True, text=True
    ).stdout
    return "--dataset-config" in help_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="+", type=Path)
    parser.add_argument("--details", action="store_true", help="list every file and its result")
    opts = parser.parse_args(argv)
    supports = dataset_option_supported()
    table: Counter = Counter()
    rejections: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for checkout in opts.checkouts:
            repo = checkout.name
            for where, text in snippets(checkout):
                kind = kind_of(text)
                if kind in ("not TOML", "empty", "other"):
                    table[(repo, kind, "skipped")] += 1
                    continue
                code, first = validate(text, kind, Path(tmp), supports)
                verdict = "accepted" if code == 0 else "not checked" if code < 0 else "rejected"
                table[(repo, kind, verdict)] += 1
                if verdict == "rejected":
                    rejections.append((repo, where, first))
                if opts.details:
                    print(f"{verdict:9} {repo}: {where}: {first}")
    print(f"\n{'repository':48} {'kind':16} {'total':>5} {'accepted':>8} {'rejected':>8} {'other':>5}")
    for repo, kind in sorted({(r, k) for r, k, _ in table}):
        counts = {v: table[(repo, kind, v)] for v in ("accepted", "rejected", "not checked", "skipped")}
        other = counts["not checked"] + counts["skipped"]
        total = sum(counts.values())
        print(f"{repo:48} {kind:16} {total:5} {counts['accepted']:8} {counts['rejected']:8} {other:5}")
    if rejections:
        print("\nrejected (first error):")
        for repo, where, first in rejections:
            print(f"  {repo}: {where}\n      {first}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The command line shared by the golden-file generators that read a kohya-ss/sd-scripts checkout:
write the file, or with --check compare it with what the checkout gives."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_golden(
    doc: str | None, output: Path, generate: Callable[[Path], Any], dumps: Callable[[Any], str], argv: list[str] | None
) -> int:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="a kohya-ss/sd-scripts checkout")
    parser.add_argument("--output", type=Path, default=output)
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = parser.parse_args(argv)
    text = dumps(generate(args.checkout))
    if args.check:
        same = args.output.read_text(encoding="utf-8") == text
        print("up to date" if same else f"{args.output} differs from what the checkout gives")
        return 0 if same else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0

"""What the golden-file generators that read a kohya-ss/sd-scripts checkout share: reading a file
and the commit of the checkout (a work tree or a bare git directory), and the command line that
writes the file, or with --check compares it with what the checkout gives."""

from __future__ import annotations

import argparse
import subprocess
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


def checkout_file(checkout: Path, path: str) -> str:
    """A file of the checkout: from its work tree, else (a bare git directory) from HEAD."""
    if (checkout / path).is_file():
        return (checkout / path).read_text(encoding="utf-8")
    return subprocess.run(
        ["git", "-C", str(checkout), "show", f"HEAD:{path}"], capture_output=True, text=True, check=True
    ).stdout


def checkout_commit(checkout: Path) -> str:
    """The commit the checkout is at ("unknown" for a folder outside git)."""
    found = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip() or "unknown"

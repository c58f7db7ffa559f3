"""What the golden-file generators that read a kohya-ss/sd-scripts checkout share: reading a file
and the commit of the checkout (a work tree or a bare git directory), and the command line that
writes the file, or with --check compares it with what the checkout gives."""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _arguments(doc: str | None, output: Path, argv: list[str] | None) -> argparse.Namespace:
    """CHECKOUT [--output PATH] [--check], as every generator takes them."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="a kohya-ss/sd-scripts checkout or bare git directory")
    parser.add_argument("--output", type=Path, default=output)
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    return parser.parse_args(argv)


def run_golden(
    doc: str | None, output: Path, generate: Callable[[Path], Any], dumps: Callable[[Any], str], argv: list[str] | None
) -> int:
    args = _arguments(doc, output, argv)
    text = dumps(generate(args.checkout))
    if args.check:
        same = args.output.read_text(encoding="utf-8") == text
        print("up to date" if same else f"{args.output} differs from what the checkout gives")
        return 0 if same else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


def read_tensor_golden(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """A safetensors golden's tensors and its metadata (where and from which commit it came)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata()  # noqa: SIM118 (not a mapping)


def run_tensor_golden(
    doc: str | None,
    output: Path,
    generate: Callable[[Path], tuple[dict[str, Any], dict[str, str]]],
    argv: list[str] | None,
) -> int:
    """run_golden for a safetensors golden: `generate` gives (tensors, metadata); --check compares
    both bit for bit with the committed file."""
    from safetensors.torch import save

    args = _arguments(doc, output, argv)
    tensors, metadata = generate(args.checkout)
    if args.check:
        import torch

        stored, stored_meta = read_tensor_golden(args.output)
        same = stored.keys() == tensors.keys() and all(torch.equal(stored[k], tensors[k]) for k in tensors)
        same = same and stored_meta == metadata
        print("up to date" if same else f"{args.output} differs from what the checkout gives")
        return 0 if same else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(save(tensors, metadata=metadata))  # (save_file would make it private: mode 600)
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

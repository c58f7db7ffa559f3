"""Regenerate lora_sched/data/kohya_keys.json: every key the kohya tools read or write in a training TOML.

    python tools/gen_kohya_keys.py CHECKOUT... [--output PATH] [--check]

Each CHECKOUT is a git checkout of one of the repositories below (recognised by its layout, in any
order). The sources are parsed with `ast`, never imported or run:

- kohya-ss/sd-scripts and kohya-ss/musubi-tuner: every `add_argument("--name", ...)` of the training
  scripts (`*train*.py`, `fine_tune.py`, musubi's `training/` package) and of the helpers they call
  (functions named `add_*arg*` anywhere else); the key is argparse's `dest`, the
  name `read_config_from_file` matches a TOML key against. Also the keys of the dataset config
  schemas (`*_SCHEMA` tables of `config_util.py` / `config_utils.py`).
- bmaltais/kohya_ss (the GUI): the keys of the `config_toml_data` dict it writes as the TOML.
- hollowstrawberry/kohya-colab: the keys of the config dicts its notebooks write (sections skipped).
- derrian-distro/LoRA_Easy_Training_scripts_Backend: the keys its validation step adds to the args
  it writes as the TOML.

For argparse options the first definition (sd-scripts' `library/train_util.py` first) also gives
`type`, `default`, `nargs`, `choices` and `action` where they are literals. The output records the
commit of every checkout. `--check` compares with the committed file instead of writing it.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "lora_sched" / "data" / "kohya_keys.json"
FORMAT = 1

#: repository -> a path only its checkout has (how a checkout is recognised).
MARKERS = {
    "kohya-ss/sd-scripts": "library/train_util.py",
    "kohya-ss/musubi-tuner": "src/musubi_tuner/training/parser_common.py",
    "bmaltais/kohya_ss": "kohya_gui/lora_gui.py",
    "hollowstrawberry/kohya-colab": "Lora_Trainer.ipynb",
    "derrian-distro/LoRA_Easy_Training_scripts_Backend": "utils/validation.py",
}
#: Read first, so their argparse attributes win (sd-scripts is what runs the files lora_sched exports).
ORDER = list(MARKERS)
ARGPARSE_FIELDS = ("type", "default", "nargs", "choices", "action")


# ---- argparse ----------------------------------------------------------------------------------
def _literal(node: ast.AST) -> tuple[bool, Any]:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None
    if isinstance(value, float) and value != value:  # NaN cannot be written as JSON
        return False, None
    return True, list(value) if isinstance(value, (tuple, set)) else value


def _type_name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_type_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Lambda):
        return "lambda"
    return "call"


def option(call: ast.Call) -> tuple[str, dict[str, Any]] | None:
    """(dest, literal attributes) of one `add_argument(...)` call, or None for a positional argument."""
    flags = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    longs = [f for f in flags if f.startswith("--")]
    shorts = [f for f in flags if f.startswith("-")]
    if not shorts:
        return None
    attrs: dict[str, Any] = {}
    dest = (longs or shorts)[0].lstrip("-").replace("-", "_")
    for kw in call.keywords:
        if kw.arg == "dest":
            ok, value = _literal(kw.value)
            if ok and isinstance(value, str):
                dest = value
        elif kw.arg == "type":
            attrs["type"] = _type_name(kw.value)
        elif kw.arg in ARGPARSE_FIELDS:
            ok, value = _literal(kw.value)
            if ok:
                attrs[kw.arg] = value
    return dest, attrs


def _is_add_argument(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"


def _helper(name: str) -> bool:
    return name.startswith("add_") and "arg" in name


def argparse_options(tree: ast.Module, whole_file: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """Options of a training script (whole_file) or of the argument helpers in a library module."""
    roots: list[ast.AST] = [tree]
    if not whole_file:
        roots = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and _helper(n.name)]
    for root in roots:
        for node in ast.walk(root):
            if _is_add_argument(node):
                found = option(node)  # type: ignore[arg-type]
                if found:
                    yield found


# ---- dict literals -----------------------------------------------------------------------------
def _dict_keys(node: ast.Dict) -> Iterator[tuple[str, ast.AST]]:
    for key, value in zip(node.keys, node.values):
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            yield key.value, value
        elif isinstance(key, ast.Call) and key.args and isinstance(getattr(key.args[0], "value", None), str):
            yield key.args[0].value, value  # type: ignore[attr-defined]  # voluptuous Required("image_dir")


def schema_keys(tree: ast.Module) -> Iterator[str]:
    """Keys of the voluptuous tables assigned to *_SCHEMA names (module or class level)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if any(n.endswith("_SCHEMA") for n in names):
                yield from (k for k, _ in _dict_keys(node.value))


def _tables(value: ast.AST) -> list[ast.Dict] | None:
    """The tables a value holds when it is a section: a table, a list of tables (an empty list
    literal is one filled with tables later), either branch of `a if c else b`; None otherwise."""
    if isinstance(value, ast.Dict):
        return [value]
    if isinstance(value, ast.List) and all(isinstance(e, ast.Dict) for e in value.elts):
        return list(value.elts)  # type: ignore[arg-type]
    if isinstance(value, ast.IfExp):
        branches = [_tables(value.body), _tables(value.orelse)]
        if any(b is not None for b in branches):
            return [t for b in branches for t in (b or [])]
    return None


def written_keys(tree: ast.Module, target: str) -> Iterator[str]:
    """Keys of the dict literals assigned to names containing `target`, and of `name["key"] = ...`;
    a key whose value is itself a section (a table, [[datasets]]) is descended into, not listed."""

    def leaves(node: ast.Dict) -> Iterator[str]:
        for key, value in _dict_keys(node):
            tables = _tables(value)
            if tables is None:
                yield key
            for table in tables or ():
                yield from leaves(table)

    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        for t in node.targets:
            if isinstance(t, ast.Name) and target in t.id and isinstance(node.value, ast.Dict):
                yield from leaves(node.value)
            elif (
                isinstance(t, ast.Subscript)
                and isinstance(t.value, ast.Name)
                and target in t.value.id
                and isinstance(t.slice, ast.Constant)
                and isinstance(t.slice.value, str)
            ):
                yield t.slice.value


def _python_lines(source: str) -> list[str]:
    """IPython shell and magic lines (with their backslash continuations) -> `pass` / blank."""
    lines, continued = [], False
    for line in source.splitlines():
        stripped = line.lstrip()
        if continued:
            lines.append("")
        elif stripped.startswith(("!", "%")):
            lines.append(line[: len(line) - len(stripped)] + "pass")
        else:
            lines.append(line)
            continue
        continued = line.rstrip().endswith("\\")
    return lines


def notebook_code(path: Path) -> str:
    """A notebook's code cells as one module: IPython lines (!cmd, %magic) become `pass`."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    out = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        lines = _python_lines("".join(cell["source"]))
        try:
            ast.parse("\n".join(lines))
        except SyntaxError:
            continue  # a cell that is not Python: nothing to read from it
        out.append("\n".join(lines))
    return "\n\n".join(out)


# ---- per repository ----------------------------------------------------------------------------
Found = tuple[str, str, str, dict[str, Any]]  # (key, path, kind, argparse attributes)


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _training_script(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    top = "/" not in rel or (rel.startswith("src/musubi_tuner/") and rel.count("/") == 2)
    return (top and ("train" in name or name == "fine_tune.py")) or "/training/" in rel


def scan_kohya(checkout: Path, package: str) -> Iterator[Found]:
    """sd-scripts / musubi-tuner: argparse options and dataset config schema keys."""
    base = checkout / package if package else checkout
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(checkout).as_posix()
        if "/tests/" in f"/{rel}" or "/tools/" in f"/{rel}" or rel.startswith("finetune/"):
            continue
        tree = _parse(path)
        for dest, attrs in argparse_options(tree, whole_file=_training_script(rel)):
            yield dest, rel, "argparse", attrs
        if path.name in ("config_util.py", "config_utils.py"):
            for key in schema_keys(tree):
                yield key, rel, "dataset_config", {}


def scan_gui(checkout: Path) -> Iterator[Found]:
    for path in sorted((checkout / "kohya_gui").glob("*.py")):
        for key in written_keys(_parse(path), "config_toml_data"):
            yield key, path.relative_to(checkout).as_posix(), "written", {}


def scan_colab(checkout: Path) -> Iterator[Found]:
    for path in sorted(checkout.glob("*.ipynb")):
        tree = ast.parse(notebook_code(path))
        for key in written_keys(tree, "config"):
            yield key, path.name, "written", {}


def scan_lora_easy(checkout: Path) -> Iterator[Found]:
    path = checkout / "utils" / "validation.py"
    for key in written_keys(_parse(path), "args"):
        yield key, "utils/validation.py", "written", {}


SCANNERS = {
    "kohya-ss/sd-scripts": lambda c: scan_kohya(c, ""),
    "kohya-ss/musubi-tuner": lambda c: scan_kohya(c, "src/musubi_tuner"),
    "bmaltais/kohya_ss": scan_gui,
    "hollowstrawberry/kohya-colab": scan_colab,
    "derrian-distro/LoRA_Easy_Training_scripts_Backend": scan_lora_easy,
}


def identify(checkout: Path) -> str:
    for repo, marker in MARKERS.items():
        if (checkout / marker).is_file():
            return repo
    raise SystemExit(f"{checkout}: not a checkout of any of {', '.join(MARKERS)}")


def commit_of(checkout: Path) -> str:
    result = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{checkout}: not a git checkout ({result.stderr.strip()})")
    return result.stdout.strip()


def build(checkouts: list[Path]) -> dict[str, Any]:
    by_repo = {}
    for checkout in checkouts:
        repo = identify(checkout)
        if repo in by_repo:
            raise SystemExit(f"{checkout}: a second checkout of {repo}")
        by_repo[repo] = checkout
    files: list[list[str]] = []
    file_index: dict[tuple[str, str, str], int] = {}
    keys: dict[str, dict[str, Any]] = {}
    for repo in ORDER:
        if repo not in by_repo:
            continue
        for key, rel, kind, attrs in SCANNERS[repo](by_repo[repo]):
            where = (repo, rel, kind)
            if where not in file_index:
                file_index[where] = len(files)
                files.append(list(where))
            entry = keys.setdefault(key, {"in": []})
            if file_index[where] not in entry["in"]:
                entry["in"].append(file_index[where])
            if attrs and "type" not in entry and "action" not in entry and "default" not in entry:
                entry.update(attrs)  # the first definition's attributes
    return {
        "format": FORMAT,
        "generated_by": "tools/gen_kohya_keys.py",
        "sources": {repo: commit_of(by_repo[repo]) for repo in ORDER if repo in by_repo},
        "files": files,
        "keys": dict(sorted(keys.items())),
    }


def render(data: dict[str, Any]) -> str:
    """One key per line: compact, and a regeneration diffs line by line."""
    head = {k: v for k, v in data.items() if k != "keys"}
    lines = ["{"]
    for name, value in head.items():
        lines.append(f"{json.dumps(name)}: {json.dumps(value, separators=(',', ':'))},")
    lines.append('"keys": {')
    items = list(data["keys"].items())
    for i, (name, entry) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines.append(f"{json.dumps(name)}: {json.dumps(entry, separators=(',', ':'), sort_keys=True)}{comma}")
    lines.append("}}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 when the output file differs")
    args = parser.parse_args(argv)
    text = render(build(args.checkouts))
    if args.check:
        same = args.output.is_file() and args.output.read_text(encoding="utf-8") == text
        print(f"{args.output}: {'up to date' if same else 'differs from the sources'}")
        return 0 if same else 1
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The package's layers: no module imports a higher layer, and no import cycle between packages.

Every module of lora_sched is parsed (not imported) and every import is collected, including
imports inside functions, under ``if TYPE_CHECKING`` and ``importlib.import_module("lora_sched...")``
calls with a literal name. From bottom to top:

    base (errors, builtins, _lazy, dependencies, the package root)
    -> schedules -> config -> torch -> trainers -> train / notebook / analysis -> cli
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lora_sched"

#: The layer of each top-level module or package of lora_sched (a new one must be placed here).
LAYERS = {
    "": -1,  # the package root (lora_sched/__init__.py): the version, nothing else
    "errors": -1,
    "builtins": -1,
    "_lazy": -1,
    "dependencies": -1,
    "schedules": 0,
    "config": 1,
    "torch": 2,
    "trainers": 3,
    "train": 4,
    "notebook": 4,
    "analysis": 4,
    "cli": 5,
    "api": 5,
    "cli_catalogue": 5,
    "__main__": 5,
}


def _module_name(path: Path) -> str:
    parts = ["lora_sched", *path.relative_to(PACKAGE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    """Every lora_sched module `path` imports, wherever the import statement is."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            names = [".".join([*base, node.module] if node.module else base)]
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            first = node.args[0]
            names = [first.value] if isinstance(first, ast.Constant) and isinstance(first.value, str) else []
        else:
            continue
        yield from (n for n in names if n == "lora_sched" or n.startswith("lora_sched."))


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id == "import_module"
    )


def _unit(module: str) -> str:
    """The top-level module or package of lora_sched a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _edges() -> list[tuple[str, str]]:
    return [(_module_name(p), target) for p in sorted(PACKAGE.rglob("*.py")) for target in _imports(p)]


def test_every_module_has_a_layer():
    unplaced = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")} - set(LAYERS)
    assert not unplaced, f"place these in LAYERS: {sorted(unplaced)}"


def test_no_module_imports_a_higher_layer():
    upward = sorted((m, t) for m, t in _edges() if LAYERS[_unit(t)] > LAYERS[_unit(m)])
    assert not upward, "imports of a higher layer:\n" + "\n".join(f"  {m} -> {t}" for m, t in upward)


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for module, target in _edges():
        if _unit(module) != _unit(target):
            graph.setdefault(_unit(module), set()).add(_unit(target))
    for start in graph:
        cycle = _path_back(graph, start)
        assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _path_back(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path start -> ... -> start, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from lora_sched.torch import custom", {"lora_sched.torch"}),
        ("def f():\n    from ..torch.custom import x", {"lora_sched.torch.custom"}),
        ("def f():\n    from . import keys", {"lora_sched.config"}),
        ("import importlib\nimportlib.import_module('lora_sched.train.loop')", {"lora_sched.train.loop"}),
        ("import numpy\nfrom typing import Any", set()),
    ],
)
def test_imports_are_collected_wherever_they_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source, found):
    fake = tmp_path / "lora_sched"
    (fake / "config").mkdir(parents=True)
    (fake / "config" / "mod.py").write_text(source, encoding="utf-8")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert set(_imports(fake / "config" / "mod.py")) == found


def _module_edges() -> dict[str, set[str]]:
    """module -> the lora_sched modules it imports; `from package import submodule` counts as an
    import of the submodule (not of the package)."""
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                name = ".".join([*base, node.module] if node.module else base)
                for alias in node.names:
                    sub = f"{name}.{alias.name}"
                    as_path = PACKAGE.parent / sub.replace(".", "/")
                    targets.add(sub if as_path.with_suffix(".py").exists() or as_path.is_dir() else name)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        edges[module] = {t for t in targets if t.startswith("lora_sched.") and t != module}
    return edges


def test_no_import_circle_between_modules():
    """No module imports one that (directly or not) imports it back, inside a package included;
    imports inside functions count."""
    edges = _module_edges()
    for start in edges:
        seen, todo = set(), [(start, (start,))]
        while todo:
            node, path = todo.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    pytest.fail(" -> ".join((*path, start)))
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append((nxt, (*path, nxt)))


#: The longest function a reader should meet: past it, a function does more than one thing.
MAX_FUNCTION_LINES = 60


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these by what they do:\n" + "\n".join(long)

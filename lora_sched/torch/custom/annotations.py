"""Whether a TOML value fits a parameter annotation written as a string (``"int | None"``,
``"list[int]"``, ``"Literal['min', 'max']"``...): the type check of custom class arguments.

Pure Python: the annotations are read as text (``from __future__ import annotations`` leaves them
so), never evaluated.
"""

from __future__ import annotations

import ast
import math
from typing import Any


def split_top(text: str, sep: str) -> list[str]:
    """Split at `sep` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def fits(value: Any, ann: str) -> bool | None:
    """Whether a TOML value fits a string annotation; None when the annotation is not understood."""
    ann = ann.strip().strip("'\"")
    for prefix in ("Optional[", "typing.Optional["):
        if ann.startswith(prefix):
            ann = ann[len(prefix) : -1] + " | None"
    for prefix in ("Union[", "typing.Union["):
        if ann.startswith(prefix):
            ann = " | ".join(split_top(ann[len(prefix) : -1], ","))
    options = split_top(ann, "|")
    if len(options) > 1:
        results = [fits(value, o) for o in options]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False
    head, _, inner = ann.partition("[")
    inner = inner[:-1] if inner.endswith("]") else inner
    head = head.rsplit(".", 1)[-1]
    if head == "Literal":
        try:
            choices = ast.literal_eval(f"[{inner}]")
        except (ValueError, SyntaxError):
            return None
        return value in choices
    if head == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if head == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if head == "bool":
        return isinstance(value, bool)
    if head == "str":
        return isinstance(value, str)
    if head == "None":
        return value is None
    if head in ("list", "List", "Iterable", "Sequence", "tuple", "Tuple"):
        if not isinstance(value, (list, tuple)):
            return False
        if not inner or head in ("tuple", "Tuple"):
            return True
        items = [fits(v, inner) for v in value]
        return False if any(r is False for r in items) else (True if all(items) else None)
    if head in ("Callable", "Optimizer", "LRScheduler", "Tensor"):
        return False
    return None


def expected_text(ann: str | None, default: Any) -> str:
    if ann:
        return ann.replace("Iterable[int]", "list[int]")
    return type(default).__name__


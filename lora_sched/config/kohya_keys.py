"""What the kohya tools know: every key sd-scripts, musubi-tuner, the kohya_ss GUI, kohya-colab and
LoRA_Easy read or write in a training TOML.

The table is data generated from their sources (lora_sched/data/kohya_keys.json, by
tools/gen_kohya_keys.py, which records the commit of each repository it read). Keys lora_sched does
not use load with a notice, so a kohya file stays portable: the same file still runs in sd-scripts.
The file is read on first need: a config holding only lora_sched's keys never loads it.
"""

from __future__ import annotations

import os
from typing import Any

#: The generated table (installed with the package as package data).
DATA_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "kohya_keys.json")
_DATA: dict[str, Any] | None = None


def _data() -> dict[str, Any]:
    global _DATA
    if _DATA is None:
        import json  # only when a config holds a key that is not lora_sched's

        with open(DATA_FILE, encoding="utf-8") as f:
            _DATA = json.load(f)
    return _DATA


def kohya_key_names() -> frozenset[str]:
    """Every key the kohya tools define or write (lora_sched's shared keys included)."""
    return frozenset(_data()["keys"])


def is_kohya_key(name: str) -> bool:
    return name in _data()["keys"]


def kohya_key(name: str) -> dict[str, Any] | None:
    """A key's record: `sources` as "repo:path" strings, plus sd-scripts' argparse `type`, `default`,
    `nargs`, `choices`, `action` where the source gives them as literals; None if no tool knows it."""
    data = _data()
    entry = data["keys"].get(name)
    if entry is None:
        return None
    record = {k: v for k, v in entry.items() if k != "in"}
    record["sources"] = [f"{data['files'][i][0]}:{data['files'][i][1]}" for i in entry["in"]]
    return record


def sources() -> dict[str, str]:
    """repository -> the commit the table was generated from."""
    return dict(_data()["sources"])

"""Golden processed captions computed by sd-scripts' own caption code: tests/data/caption_goldens.json.

    python tools/gen_caption_goldens.py SD_SCRIPTS_CHECKOUT [--output PATH] [--check]

Only the standard library is needed: ``BaseDataset.process_caption`` of the checkout's
``library/train_util.py`` is parsed with ``ast`` and run on its own (nothing of sd-scripts is
imported), with a stand-in subset carrying the caption options and Python's ``random`` seeded
before each call. lora_sched's process_caption draws from a ``random.Random`` in the same order,
so with the same seed the two must give the same caption.
"""

from __future__ import annotations

import ast
import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from golden_cli import run_golden

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "tests" / "data" / "caption_goldens.json"

CAPTIONS = [
    "1girl, solo, long hair, smile, outdoors, blue sky",
    "sks dog, sitting, grass, ,  tree , sunny day",
    "a photo of sks person\nsecond line is ignored",
    "trigger ||| red, green, blue, yellow ||| masterpiece, best quality",
    "ohwx ||| only flex, tags here",
    "single",
    "",
]
#: caption options (the rest take sd-scripts' defaults), each run with several seeds and epochs.
OPTIONS = [
    {},
    {"shuffle_caption": True},
    {"shuffle_caption": True, "keep_tokens": 1},
    {"shuffle_caption": True, "keep_tokens": 3},
    {"shuffle_caption": True, "keep_tokens_separator": "|||"},
    {"caption_tag_dropout_rate": 0.3},
    {"shuffle_caption": True, "keep_tokens": 2, "caption_tag_dropout_rate": 0.5},
    {"caption_dropout_rate": 0.4},
    {"caption_dropout_every_n_epochs": 3},
    {"caption_prefix": "pre", "caption_suffix": "post", "shuffle_caption": True},
    {"shuffle_caption": True, "caption_separator": ";"},
]
SEEDS = [0, 1, 2, 3, 17]
EPOCHS = [1, 3]
DEFAULTS = {
    "shuffle_caption": False,
    "keep_tokens": 0,
    "keep_tokens_separator": None,
    "caption_separator": ",",
    "caption_prefix": None,
    "caption_suffix": None,
    "caption_dropout_rate": 0.0,
    "caption_dropout_every_n_epochs": 0,
    "caption_tag_dropout_rate": 0.0,
    "enable_wildcard": False,
    "token_warmup_step": 0,
    "token_warmup_min": 1,
    "secondary_separator": None,
}


def load_process_caption(checkout: Path) -> Any:
    tree = ast.parse((checkout / "library/train_util.py").read_text(encoding="utf-8"))
    base = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "BaseDataset")
    method = next(n for n in base.body if isinstance(n, ast.FunctionDef) and n.name == "process_caption")
    namespace: dict[str, Any] = {"random": random, "math": math, "re": re}
    exec(compile(ast.Module(body=[method], type_ignores=[]), "train_util", "exec"), namespace)
    return namespace["process_caption"]


def generate(checkout: Path) -> dict[str, Any]:
    process = load_process_caption(checkout)
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    rows = []
    for options in OPTIONS:
        for caption in CAPTIONS:
            for seed in SEEDS:
                for epoch in EPOCHS:
                    subset = SimpleNamespace(**{**DEFAULTS, **options})
                    dataset = SimpleNamespace(current_epoch=epoch, current_step=0, max_train_steps=100, replacements={})
                    random.seed(seed)
                    rows.append([options, caption, seed, epoch, process(dataset, subset, caption)])
    return {
        "provenance": {
            "repository": "kohya-ss/sd-scripts",
            "commit": commit or "unknown",
            "paths": ["library/train_util.py (BaseDataset.process_caption)"],
            "generator": "tools/gen_caption_goldens.py",
        },
        "row": "[options, caption, seed, epoch (from 1), processed caption]",
        "rows": rows,
    }


def dumps(golden: dict[str, Any]) -> str:
    head = {k: v for k, v in golden.items() if k != "rows"}
    rows = ",\n".join("  " + json.dumps(row, ensure_ascii=False) for row in golden["rows"])
    return json.dumps(head, ensure_ascii=False)[:-1] + ',\n "rows": [\n' + rows + "\n ]}\n"


def main(argv: list[str] | None = None) -> int:
    return run_golden(__doc__, OUTPUT, generate, dumps, argv)


if __name__ == "__main__":
    sys.exit(main())

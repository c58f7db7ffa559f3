"""Training-test helpers shared by the training test modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomli_w

ROOT = Path(__file__).resolve().parent.parent

#: A short, cheap run on the built-in model and data; each test module overrides what it needs.
TRAIN_DEFAULTS: dict[str, Any] = {
    "pretrained_model_name_or_path": "builtin:tiny-sd",
    "train_data_dir": "builtin:shapes",
    "resolution": 64,
    "train_batch_size": 2,
    "learning_rate": 1e-3,
    "text_encoder_lr": 5e-4,
    "lr_scheduler": "cosine",
    "lr_warmup_steps": 3,
    "max_train_steps": 10,
    "seed": 7,
    "output_name": "lora",
}


def write_train_config(
    path: Path, output_dir: Path, defaults: dict[str, Any], section: str | None = "training_arguments", **values: Any
) -> Path:
    """A config: TRAIN_DEFAULTS, then `defaults`, then `values` (None drops a key), in `section`
    (None: top-level keys, which messages show without a section prefix)."""
    flat = {**TRAIN_DEFAULTS, "output_dir": str(output_dir), **defaults, **values}
    flat = {k: v for k, v in flat.items() if v is not None}
    path.write_text(tomli_w.dumps({section: flat} if section else flat), encoding="utf-8")
    return path


def logged_text(caplog: Any) -> str:
    """The log records so far (train's notices are log records; the command line prints them), then
    clear them, so the next check reads only what comes after."""
    text = caplog.text
    caplog.clear()
    return text


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`lora-sched ARGS...` in a process of its own (a run with another mixed precision than this test
    process's earlier runs must be one: accelerate keeps the mixed precision for a process's life)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "lora_sched", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd
    )

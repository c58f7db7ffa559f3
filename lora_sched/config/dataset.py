"""How many samples an epoch holds, without loading a single image (so validation stays cheap).

kohya's DreamBooth layout: `train_data_dir/N_concept/` folders whose images each count N times
(N = repeats). Images directly in `train_data_dir` count once (the built-in loader accepts a
flat folder too). `builtin:shapes` has a fixed size.
"""

from __future__ import annotations

import os
import re

from lora_sched.builtins import BUILTIN_DATA, BUILTIN_SHAPES_SIZE

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_REPEATS_DIR = re.compile(r"^(\d+)_.+")


def _images_in(folder: str) -> int:
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))


def count_samples(train_data_dir: str) -> int | None:
    """Samples per epoch (images x repeats), or None when the folder cannot be read or holds no image."""
    if train_data_dir == BUILTIN_DATA:
        return BUILTIN_SHAPES_SIZE
    try:
        if not os.path.isdir(train_data_dir):
            return None
        total = _images_in(train_data_dir)
        with os.scandir(train_data_dir) as entries:
            for entry in entries:
                match = _REPEATS_DIR.match(entry.name)
                if match and entry.is_dir():
                    total += int(match.group(1)) * _images_in(entry.path)
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return None
    return total or None

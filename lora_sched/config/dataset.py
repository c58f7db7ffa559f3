"""The kohya folder layout, read once for everyone: counting an epoch's samples and training.

kohya's DreamBooth layout: `train_data_dir/N_concept/` folders whose images each count N times
(N = repeats); images directly in `train_data_dir` are not read (sd-scripts ignores them too).
Counting lists files only (no image is opened), so validation stays cheap; the training loader
walks the same folders through `scan_concepts`, so the preview counts exactly what training reads.
`builtin:shapes` has a fixed size.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from lora_sched.builtins import BUILTIN_DATA, BUILTIN_SHAPES_SIZE

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CONCEPT_DIR = re.compile(r"^(\d+)_(.+)$")


class ConceptFolder(NamedTuple):
    """One `N_concept/` folder: its path, name, repeats, concept words and sorted image paths."""

    path: str
    name: str
    repeats: int
    concept: str
    images: list[str]


def scan_concepts(train_data_dir: str) -> tuple[list[ConceptFolder], list[str]]:
    """The usable concept folders (sorted by name) and one notice per subfolder skipped.

    Raises OSError when the folder cannot be listed.
    """
    root = os.path.expanduser(train_data_dir)
    folders: list[ConceptFolder] = []
    skipped: list[str] = []
    subdirs = sorted(e.path for e in os.scandir(root) if e.is_dir())
    for path in subdirs:
        name = os.path.basename(path)
        match = CONCEPT_DIR.match(name)
        if match is None:
            skipped.append(f"{path}: not in the N_concept form (e.g. 10_shapes); skipped")
            continue
        repeats = int(match.group(1))
        if repeats < 1:
            skipped.append(f"{path}: 0 repeats; skipped")
            continue
        with os.scandir(path) as entries:
            images = sorted(e.path for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
        folders.append(ConceptFolder(path, name, repeats, match.group(2).replace("_", " "), images))
    return folders, skipped


def count_samples(train_data_dir: str) -> int | None:
    """Samples per epoch (images x repeats), or None when the folder cannot be read or holds no image."""
    if train_data_dir == BUILTIN_DATA:
        return BUILTIN_SHAPES_SIZE
    try:
        if not os.path.isdir(os.path.expanduser(train_data_dir)):
            return None
        folders, _ = scan_concepts(train_data_dir)
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return None
    return sum(f.repeats * len(f.images) for f in folders) or None

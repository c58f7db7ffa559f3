"""Golden bucket choices computed by sd-scripts' own bucket code: tests/data/bucket_goldens.json.

    python tools/gen_bucket_goldens.py SD_SCRIPTS_CHECKOUT [--output PATH] [--check]

Needs NumPy (sd-scripts' BucketManager uses it), nothing else of sd-scripts' environment: the
checkout's ``library/model_util.py`` (``make_bucket_resolutions``) and ``library/train_util.py``
(``BucketManager`` and ``BaseDataset.adjust_min_max_bucket_reso_by_steps``) are parsed with ``ast``
and only those definitions are run, so torch, transformers and the rest are never imported.

For each bucket setting of SETTINGS and every image size of sizes() it records what sd-scripts'
dataset does (DreamBoothDataset.__init__ and make_buckets): min/max adjusted to the steps, then
BucketManager(...).make_buckets() (not with bucket_no_upscale) and select_bucket(width, height),
or without enable_bucket the one-bucket manager of the resolution; the bucket, the resized size,
get_crop_ltrb of the bucket and the original size, or the error sd-scripts raises. It also records
the batches per epoch of a few image sets (each bucket batched apart, as make_buckets counts).
"""

from __future__ import annotations

import ast
import json
import math
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from golden_cli import run_golden

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "tests" / "data" / "bucket_goldens.json"

#: (name, resolution (w, h), enable_bucket, min_bucket_reso, max_bucket_reso, bucket_reso_steps, no_upscale)
SETTINGS = [
    ("sd15_512_defaults", (512, 512), True, 256, 1024, 64, False),
    ("sd15_512x768", (512, 768), True, 256, 1024, 64, False),
    ("sdxl_1024", (1024, 1024), True, 256, 2048, 64, False),
    ("sdxl_1024_steps32", (1024, 1024), True, 512, 2048, 32, False),
    ("odd_min_max_adjusted", (640, 640), True, 300, 1000, 64, False),
    ("res_not_on_steps", (512, 650), True, 256, 1024, 64, False),
    ("no_upscale_512", (512, 512), True, 256, 1024, 64, True),
    ("no_upscale_1024_steps32", (1024, 1024), True, 256, 2048, 32, True),
    ("no_bucket_512", (512, 512), False, 256, 1024, 64, False),
    ("no_bucket_512x768", (512, 768), False, 256, 1024, 64, False),
]

#: Seeds the random sizes and image sets (the file is the same on every run).
COUNT_SEED = 14
#: The fields of an image row of the output.
IMAGE_ROW = "[width, height, bucket_w, bucket_h, resized_w, resized_h, crop_left, crop_top, crop_right, crop_bottom]"


def sizes() -> list[tuple[int, int]]:
    """A fixed list of typical and edge sizes, then seeded random ones (wide, tall, tiny and huge)."""
    fixed = [
        (512, 512),
        (768, 512),
        (512, 768),
        (1024, 1024),
        (640, 448),
        (448, 640),
        (1920, 1080),
        (1080, 1920),
        (3000, 2000),
        (2000, 3000),
        (4032, 3024),
        (300, 200),
        (200, 300),
        (100, 100),
        (64, 64),
        (63, 200),
        (5000, 500),
        (500, 5000),
        (8000, 64),
        (64, 8000),
        (1000, 999),
        (999, 1000),
        (1234, 567),
        (257, 1025),
        (384, 640),
        (576, 448),
        (832, 1216),
        (1216, 832),
        (20, 4000),
        (4000, 20),
        (700, 700),
        (1, 1),
        (2, 3000),
    ]
    rng = random.Random(COUNT_SEED)
    drawn = [(rng.randint(16, 4096), rng.randint(16, 4096)) for _ in range(150)]
    ratios = [(rng.randint(300, 3000), rng.choice([1, 2, 3, 4])) for _ in range(50)]
    shaped = [(w, max(1, w // k)) if i % 2 else (max(1, w // k), w) for i, (w, k) in enumerate(ratios)]
    return fixed + drawn + shaped


def load_sd_scripts(checkout: Path) -> SimpleNamespace:
    """sd-scripts' bucket definitions, run from their parsed source (only these, nothing imported)."""
    import numpy as np

    def pick(path: Path, names: set[str], within: str | None = None) -> list[ast.AST]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = tree.body
        if within is not None:
            nodes = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == within).body
        found = [n for n in nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in names]
        assert {n.name for n in found} == names, f"{path}: {names - {n.name for n in found}} not found"
        return found

    namespace: dict[str, Any] = {"math": math, "np": np, "Tuple": tuple, "logger": SimpleNamespace(warning=print)}
    model_util = pick(checkout / "library/model_util.py", {"make_bucket_resolutions"})
    exec(compile(ast.Module(body=model_util, type_ignores=[]), "model_util", "exec"), namespace)
    namespace["model_util"] = SimpleNamespace(make_bucket_resolutions=namespace["make_bucket_resolutions"])
    train_util = checkout / "library/train_util.py"
    manager = pick(train_util, {"BucketManager"})
    adjust = pick(train_util, {"adjust_min_max_bucket_reso_by_steps"}, within="BaseDataset")
    exec(compile(ast.Module(body=manager + adjust, type_ignores=[]), "train_util", "exec"), namespace)
    return SimpleNamespace(
        BucketManager=namespace["BucketManager"], adjust=namespace["adjust_min_max_bucket_reso_by_steps"]
    )


def manager_for(sd: SimpleNamespace, setting: tuple) -> Any:
    """The BucketManager a DreamBoothDataset with this setting builds (make_buckets)."""
    _, resolution, enable, low, high, steps, no_upscale = setting
    if not enable:
        manager = sd.BucketManager(False, resolution, None, None, None)
        manager.set_predefined_resos([resolution])
        return manager
    low, high = sd.adjust(None, resolution, low, high, steps)
    manager = sd.BucketManager(no_upscale, resolution, low, high, steps)
    if not no_upscale:
        manager.make_buckets()
    return manager


def place(sd: SimpleNamespace, manager: Any, size: tuple[int, int]) -> list[Any]:
    """[width, height, bucket_w, bucket_h, resized_w, resized_h, crop l, t, r, b], or [width, height, error]."""
    try:
        bucket, resized, _ = manager.select_bucket(*size)
        crop = sd.BucketManager.get_crop_ltrb(bucket, size)
    except Exception as exc:  # sd-scripts fails on this size: recorded as such
        return [*size, f"{type(exc).__name__}: {exc}"]
    return [*size, int(bucket[0]), int(bucket[1]), int(resized[0]), int(resized[1]), *(float(x) for x in crop)]


def counts(sd: SimpleNamespace) -> list[dict[str, Any]]:
    """Batches per epoch of seeded image sets under a few settings, counted as make_buckets does."""
    rng = random.Random(COUNT_SEED + 1)
    out = []
    for setting in SETTINGS:
        for batch in (1, 2, 3, 4, 7):
            images = [(rng.randint(200, 3000), rng.randint(200, 3000), rng.randint(1, 5)) for _ in range(25)]
            manager = manager_for(sd, setting)
            buckets: dict[tuple, int] = {}
            for w, h, repeats in images:
                bucket, _, _ = manager.select_bucket(w, h)
                buckets[tuple(bucket)] = buckets.get(tuple(bucket), 0) + repeats
            batches = sum(math.ceil(n / batch) for n in buckets.values())
            out.append({"setting": setting[0], "batch_size": batch, "images": images, "batches": batches})
    return out


def generate(checkout: Path) -> dict[str, Any]:
    sd = load_sd_scripts(checkout)
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    cases = []
    for setting in SETTINGS:
        manager = manager_for(sd, setting)
        cases.append(
            {
                "setting": dict(
                    zip(
                        (
                            "name",
                            "resolution",
                            "enable_bucket",
                            "min_bucket_reso",
                            "max_bucket_reso",
                            "bucket_reso_steps",
                            "bucket_no_upscale",
                        ),
                        setting,
                    )
                ),
                "predefined": [list(r) for r in getattr(manager, "predefined_resos", [])],
                "images": [place(sd, manager, size) for size in sizes()],
            }
        )
    return {
        "provenance": {
            "repository": "kohya-ss/sd-scripts",
            "commit": commit or "unknown",
            "paths": [
                "library/model_util.py (make_bucket_resolutions)",
                "library/train_util.py (BucketManager, "
                "BaseDataset.adjust_min_max_bucket_reso_by_steps, DreamBoothDataset.make_buckets)",
            ],
            "generator": "tools/gen_bucket_goldens.py",
        },
        "cases": cases,
        "counts": counts(sd),
    }


def dumps(golden: dict[str, Any]) -> str:
    """JSON with one line per image row or count (a diff shows which changed)."""
    lines = [
        "{",
        f' "provenance": {json.dumps(golden["provenance"])},',
        ' "image_row": ' + json.dumps(IMAGE_ROW) + ",",
        ' "cases": [',
    ]
    for i, case in enumerate(golden["cases"]):
        rows = ",\n".join("   " + json.dumps(row) for row in case["images"])
        head = json.dumps({k: v for k, v in case.items() if k != "images"})[:-1]
        lines.append(f'  {head}, "images": [\n{rows}\n  ]}}' + ("," if i < len(golden["cases"]) - 1 else ""))
    lines.append(" ],")
    lines.append(' "counts": [\n' + ",\n".join("  " + json.dumps(c) for c in golden["counts"]) + "\n ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return run_golden(__doc__, OUTPUT, generate, dumps, argv)


if __name__ == "__main__":
    sys.exit(main())

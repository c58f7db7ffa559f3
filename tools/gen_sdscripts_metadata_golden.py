"""Golden LoRA-file hashes and tag counts computed by sd-scripts' own functions:
tests/data/sdscripts_metadata/goldens.json (and the small LoRA file they describe).

    python tools/gen_sdscripts_metadata_golden.py SD_SCRIPTS_CLONE_OR_GIT_DIR [--output PATH] [--check]

The argument is a kohya-ss/sd-scripts working tree or a bare git directory (its HEAD is read).
Nothing of sd-scripts is imported (its library imports heavy things at top level): from
``library/train_util.py`` the functions ``precalculate_safetensors_hashes``,
``addnet_hash_safetensors``, ``addnet_hash_legacy``, ``model_hash``, ``calculate_sha256`` and the
method ``BaseDataset.set_tag_frequency`` are parsed with ``ast`` and run on their own, with the
modules they use (hashlib, io.BytesIO, safetensors.torch). The inputs are fixed here: tensors whose
values are small integers / 64 (exact in float32, float16 and bfloat16), metadata with ``ss_*`` keys
and keys the hashes must ignore, captions with the cases the tag counting must get right.

safetensors writes the metadata of a file in no fixed order, so the same tensors and metadata make
files whose headers differ (same length) from one run to the next: the hashes over the tensor bytes
and the 64 KiB at 1 MiB do not change, a whole-file SHA-256 does. So the LoRA file is written only
when it is missing, and its whole-file hashes are computed from the stored bytes.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from golden_cli import checkout_commit, checkout_file, run_golden

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "tests" / "data" / "sdscripts_metadata" / "goldens.json"
LORA_FILE = "lora_with_metadata.safetensors"
FUNCTIONS = (
    "precalculate_safetensors_hashes",
    "addnet_hash_legacy",
    "addnet_hash_safetensors",
    "model_hash",
    "calculate_sha256",
)

#: name -> (shape, dtype, start): values ((i * 7 + start) % 251 - 125) / 64 for i = 0, 1, ... (row-major).
SMALL_TENSORS = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight": ([4, 32], "float32", 0),
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight": ([32, 4], "float32", 3),
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha": ([], "float32", 189),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": ([4, 16], "float16", 11),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": ([16, 4], "bfloat16", 17),
}
#: Over 1 MiB + 64 KiB of tensor data, so that the legacy hash reads tensor bytes (not an empty tail).
LARGE_TENSORS = {
    "lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": ([16, 10240], "float32", 5),
    "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight": ([10240, 16], "float32", 9),
    "lora_unet_mid_block_attentions_0_proj_in.alpha": ([], "float32", 130),
    "lora_te_text_model_encoder_layers_1_mlp_fc1.lora_down.weight": ([8, 4096], "float16", 23),
}
METADATA = {
    "ss_network_module": "networks.lora",
    "ss_network_dim": "4",
    "ss_network_alpha": "1.0",
    "ss_tag_frequency": json.dumps({"10_shapes": {"red": 2, "circle": 1}}),
    "ss_training_comment": "café ✓ — unicode kept",
    "modelspec.title": "not hashed: a user may edit it",
    "sshs_model_hash": "stale, not hashed",
    "lora_sched_schedule": "{}",
}
HASH_CASES = [
    ("small_lora", SMALL_TENSORS, METADATA),
    ("large_lora", LARGE_TENSORS, METADATA),
    ("no_metadata", SMALL_TENSORS, {}),
    ("only_non_ss_metadata", SMALL_TENSORS, {"modelspec.title": "x", "sshs_legacy_hash": "y"}),
]
#: (folder, captions) in the order a dataset reads its subsets; a folder named twice adds up.
TAG_CASES = [
    [("10_shapes", ["a red circle, white background", "A Red Circle,   white background ,", "square"])],
    [("1_person", ["1girl, solo, long hair,, , smile", "", "  ", "1girl,solo", "Long Hair, SMILE, café"])],
    [
        ("5_dog", ["sks dog, grass", "sks dog, sitting\nsecond line"]),
        ("1_reg_dog", ["dog", "dog, grass"]),
        ("5_dog", ["sks dog, tree"]),
    ],
    [("2_empty", [])],
]


def load_sdscripts(checkout: Path) -> dict[str, Any]:
    """sd-scripts' hash functions and set_tag_frequency, taken out of library/train_util.py."""
    import safetensors.torch

    tree = ast.parse(checkout_file(checkout, "library/train_util.py"))
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in FUNCTIONS]
    base = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "BaseDataset")
    method = next(n for n in base.body if isinstance(n, ast.FunctionDef) and n.name == "set_tag_frequency")
    namespace: dict[str, Any] = {"hashlib": hashlib, "BytesIO": io.BytesIO, "safetensors": safetensors}
    exec(compile(ast.Module(body=[*functions, method], type_ignores=[]), "train_util", "exec"), namespace)
    missing = [name for name in (*FUNCTIONS, "set_tag_frequency") if name not in namespace]
    if missing:
        raise SystemExit(f"library/train_util.py of {checkout} has no {', '.join(missing)}")
    return namespace


def make_tensors(spec: dict[str, Any]) -> dict[str, Any]:
    """The tensors a recipe (name -> (shape, dtype, start)) describes; the test builds them alike."""
    import torch

    out = {}
    for name, (shape, dtype, start) in spec.items():
        count = 1
        for side in shape:
            count *= side
        values = (torch.arange(count, dtype=torch.int64) * 7 + start) % 251 - 125
        out[name] = (values.to(torch.float32) / 64).reshape(shape).to(getattr(torch, dtype))
    return out


def stored_lora(sd: dict[str, Any], folder: Path) -> Path:
    """The small LoRA file with metadata (written once: see the module docstring)."""
    from safetensors.torch import save_file

    path = folder / LORA_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tensors = make_tensors(SMALL_TENSORS)
        metadata = {k: v for k, v in METADATA.items() if not k.startswith("sshs_")}
        model_hash, legacy_hash = sd["precalculate_safetensors_hashes"](tensors, metadata)
        save_file(tensors, str(path), {**metadata, "sshs_model_hash": model_hash, "sshs_legacy_hash": legacy_hash})
    return path


def hash_case(sd: dict[str, Any], name: str, spec: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
    """sd-scripts' hashes of one recipe: the precalculated sshs_* pair, and model_hash of a file it
    writes (the 64 KiB at 1 MiB: the same whatever order the header takes)."""
    import tempfile

    from safetensors.torch import save_file

    tensors = make_tensors(spec)
    model_hash, legacy_hash = sd["precalculate_safetensors_hashes"](tensors, dict(metadata))
    with tempfile.TemporaryDirectory() as tmp:
        written = Path(tmp) / "file.safetensors"
        save_file(tensors, str(written), dict(metadata))
        file_model_hash = sd["model_hash"](str(written))
    return {
        "name": name,
        "tensors": spec,
        "metadata": metadata,
        "sshs_model_hash": model_hash,
        "sshs_legacy_hash": legacy_hash,
        "file_model_hash": file_model_hash,
    }


def tag_case(sd: dict[str, Any], folders: list[tuple[str, list[str]]]) -> dict[str, Any]:
    dataset = SimpleNamespace(tag_frequency={})
    for folder, captions in folders:
        sd["set_tag_frequency"](dataset, folder, captions)
    return {"folders": [list(f) for f in folders], "tag_frequency": dataset.tag_frequency}


def generate(checkout: Path, folder: Path = OUTPUT.parent) -> dict[str, Any]:
    sd = load_sdscripts(checkout)
    lora = stored_lora(sd, folder)
    from safetensors import safe_open
    from safetensors.torch import load

    with safe_open(str(lora), "pt") as fh:
        file_metadata = fh.metadata()
    model_hash, legacy_hash = sd["precalculate_safetensors_hashes"](load(lora.read_bytes()), file_metadata)
    return {
        "provenance": {
            "repository": "kohya-ss/sd-scripts",
            "commit": checkout_commit(checkout),
            "paths": [f"library/train_util.py ({', '.join(FUNCTIONS)}, BaseDataset.set_tag_frequency)"],
            "generator": "tools/gen_sdscripts_metadata_golden.py",
            "values": "tensor values ((i * 7 + start) % 251 - 125) / 64, row-major, cast to dtype",
        },
        "file": {
            "path": LORA_FILE,
            "sshs_model_hash": model_hash,
            "sshs_legacy_hash": legacy_hash,
            "model_hash": sd["model_hash"](str(lora)),
            "calculate_sha256": sd["calculate_sha256"](str(lora)),
        },
        "hash_cases": [hash_case(sd, *case) for case in HASH_CASES],
        "tag_cases": [tag_case(sd, case) for case in TAG_CASES],
    }


def dumps(golden: dict[str, Any]) -> str:
    return json.dumps(golden, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    return run_golden(__doc__, OUTPUT, generate, dumps, argv)


if __name__ == "__main__":
    sys.exit(main())

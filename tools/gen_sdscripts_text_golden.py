"""Golden text conditioning computed by sd-scripts' own code: tests/data/sdscripts_text/golden.safetensors.

    python tools/gen_sdscripts_text_golden.py SD_SCRIPTS_CHECKOUT_OR_GIT_DIR [--output PATH] [--check]

Runs in the project's environment (torch, transformers): nothing of sd-scripts is imported. From the
checkout (a work tree, or a bare git directory read at HEAD) it takes, with ``ast``:

- ``TokenizeStrategy._get_input_ids`` (library/strategy_base.py): a caption's ids, split into
  77-token chunks for max_token_length 150 / 225;
- ``get_hidden_states``, ``get_hidden_states_sdxl`` and ``pool_workaround`` (library/train_util.py):
  the SD 1.x / 2.x and SDXL conditioning of those ids, with clip_skip.

It runs them on lora_sched's built-in tiny text encoders and tokenizers (fixed weights, seed 0;
one character per token, so the captions below fill 0, ~100 and over 225 tokens) and stores the ids
and states. Two adapters, both faithful to what the code does on real models: sd-scripts reads the
final layer norm as ``text_encoder.text_model.final_layer_norm`` (transformers 4.x's path; 5.x
flattened CLIPTextModel), and SDXL's first encoder state as ``hidden_states[11]``, the penultimate of
CLIP-L's 13 states; the tiny encoder has 3 layers (4 states), so its states are offered at the same
distance from the end. --check regenerates and compares bit for bit.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from golden_cli import checkout_commit, checkout_file, run_tensor_golden

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUTPUT = ROOT / "tests" / "data" / "sdscripts_text" / "golden.safetensors"

#: "" (all padding), a caption of ~100 tokens (2 chunks) and one over 225 tokens (cut in 3 chunks).
CAPTIONS = [
    "",
    "a red circle on a white background, a blue square, a yellow diamond, a green triangle, hi",
    ("a black background with a red circle, a green square, a blue triangle and a yellow diamond; " * 3).strip(),
]
LENGTHS = (None, 150, 225)  #: max_token_length (None: sd-scripts' default 75)
SD_CASES = [("v1", skip, length) for skip in (1, 2) for length in LENGTHS] + [("v2", 2, 150), ("v2", 2, 225)]


def functions(text: str, names: list[str], owner: str | None = None) -> dict[str, Any]:
    """The named function definitions of a module's source (in class `owner`), executed on their own."""
    import argparse as argparse_module

    import torch
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    tree = ast.parse(text)
    body = tree.body
    if owner is not None:
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == owner).body
    picked = [n for n in body if isinstance(n, ast.FunctionDef) and n.name in names]
    assert {n.name for n in picked} == set(names), f"not found: {set(names) - {n.name for n in picked}}"
    namespace: dict[str, Any] = {
        "torch": torch,
        "argparse": argparse_module,
        "Optional": Optional,
        "CLIPTokenizer": CLIPTokenizer,
        "CLIPTextModel": CLIPTextModel,
        "CLIPTextModelWithProjection": CLIPTextModelWithProjection,
        "Accelerator": Any,
    }
    exec(compile(ast.Module(body=picked, type_ignores=[]), "sd-scripts", "exec"), namespace)
    return {name: namespace[name] for name in names}


class LegacyPaths:
    """A text encoder as sd-scripts addresses it: ``.text_model.final_layer_norm`` (transformers 4.x),
    and with `state_offset`, hidden states offered at the index a 12-layer CLIP-L has them."""

    def __init__(self, encoder: Any, state_offset: int = 0) -> None:
        self.encoder, self.state_offset = encoder, state_offset
        self.text_model = SimpleNamespace(final_layer_norm=getattr(encoder, "text_model", encoder).final_layer_norm)

    def __call__(self, ids: Any, **kwargs: Any) -> Any:
        out = self.encoder(ids, **kwargs)
        if not self.state_offset:
            return out
        return {**out, "hidden_states": (None,) * self.state_offset + tuple(out["hidden_states"])}


def generate(checkout: Path) -> tuple[dict[str, Any], dict[str, str]]:
    import torch

    from lora_sched.train.model import build_tiny_sd, build_tiny_sdxl

    strategy, train_util = (checkout_file(checkout, f"library/{name}.py") for name in ("strategy_base", "train_util"))
    get_input_ids = functions(strategy, ["_get_input_ids"], "TokenizeStrategy")
    util = functions(train_util, ["get_hidden_states", "get_hidden_states_sdxl", "pool_workaround"])
    sd, sdxl = build_tiny_sd(), build_tiny_sdxl()
    tokenizers = {"v1": sd.tokenizer, "v2": sdxl.tokenizer_2}  # v2: padding is not EOS, as SD 2.x's tokenizer

    def ids_of(tokenizer: Any, length: int | None) -> Any:
        max_length = tokenizer.model_max_length if length is None else length + 2
        rows = [get_input_ids["_get_input_ids"](None, tokenizer, c, max_length) for c in CAPTIONS]
        return torch.stack(rows)  # (3, 1, 77) or (3, chunks, 77), as sd-scripts' batches hold them

    out: dict[str, Any] = {}
    with torch.no_grad():
        for kind, tokenizer in tokenizers.items():
            for length in LENGTHS:
                out[f"ids.{kind}.{length or 75}"] = ids_of(tokenizer, length)
        for kind, skip, length in SD_CASES:
            args = SimpleNamespace(clip_skip=skip, max_token_length=length, v2=kind == "v2")
            ids = out[f"ids.{kind}.{length or 75}"]
            states = util["get_hidden_states"](args, ids, tokenizers[kind], LegacyPaths(sd.text_encoder))
            out[f"sd.{kind}.clip_skip{skip}.{length or 75}"] = states
        first_offset = 11 - (sdxl.text_encoder.config.num_hidden_layers - 1)  # [11] is CLIP-L's penultimate
        for length in LENGTHS:
            ids_1 = ids_of(sdxl.tokenizer, length)
            ids_2 = ids_of(sdxl.tokenizer_2, length)
            h1, h2, pool = util["get_hidden_states_sdxl"](
                length,
                ids_1,
                ids_2,
                sdxl.tokenizer,
                sdxl.tokenizer_2,
                LegacyPaths(sdxl.text_encoder, first_offset),
                sdxl.text_encoder_2,
            )
            out[f"sdxl.ids1.{length or 75}"], out[f"sdxl.ids2.{length or 75}"] = ids_1, ids_2
            out[f"sdxl.hidden.{length or 75}"] = torch.cat([h1, h2], dim=-1)
            out[f"sdxl.pooled.{length or 75}"] = pool
    metadata = {
        "repository": "kohya-ss/sd-scripts",
        "commit": checkout_commit(checkout),
        "paths": "library/strategy_base.py (TokenizeStrategy._get_input_ids); library/train_util.py "
        "(get_hidden_states, get_hidden_states_sdxl, pool_workaround)",
        "generator": "tools/gen_sdscripts_text_golden.py",
        "captions": "\n".join(CAPTIONS),
        "models": "builtin:tiny-sd (v1; v2: its encoder with tiny-sdxl's second tokenizer, which pads with '!'), "
        "builtin:tiny-sdxl",
    }
    return {k: v.contiguous() for k, v in out.items()}, metadata


def main(argv: list[str] | None = None) -> int:
    return run_tensor_golden(__doc__, OUTPUT, generate, argv)


if __name__ == "__main__":
    sys.exit(main())

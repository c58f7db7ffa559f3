"""Golden sample-prompt encodings computed by sd-scripts' own code: tests/data/sdscripts_prompts/golden.safetensors.

    python tools/gen_sdscripts_prompt_golden.py SD_SCRIPTS_CHECKOUT_OR_GIT_DIR [--output PATH] [--check]

Runs in the project's environment (torch, transformers): nothing of sd-scripts is imported. From the
checkout (a work tree, or a bare git directory read at HEAD) it takes, with ``ast``, the prompt
parser and the long-prompt weighting of the SD 1.x / 2.x sampling pipeline
(library/lpw_stable_diffusion.py: ``re_attention``, ``parse_prompt_attention``,
``get_prompts_with_weights``, ``pad_tokens_and_weights``, ``get_unweighted_text_embeddings``,
``get_weighted_text_embeddings``) and runs them as the pipeline's ``_encode_prompt`` does
(max_embeddings_multiples 3, the negative prompt "" when none is given and only with guidance).

It stores the parse of each prompt of PROMPTS (in the metadata, as JSON) and the prompt and negative
prompt states of each case, on lora_sched's built-in tiny text encoder (fixed weights; one character
per token, so the long prompts below fill two windows and more than three): "v1" with tiny-sd's
tokenizer, "v2" with tiny-sdxl's second one, which pads with its own token as SD 2.x's does. The
encoder is offered through ``.text_model.final_layer_norm``, the path sd-scripts reads (transformers
4.x). --check regenerates and compares bit for bit.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional, Union

from gen_sdscripts_text_golden import LegacyPaths
from golden_cli import checkout_commit, checkout_file, run_tensor_golden

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUTPUT = ROOT / "tests" / "data" / "sdscripts_prompts" / "golden.safetensors"
SOURCE = "library/lpw_stable_diffusion.py"
NAMES = [
    "parse_prompt_attention",
    "get_prompts_with_weights",
    "pad_tokens_and_weights",
    "get_unweighted_text_embeddings",
    "get_weighted_text_embeddings",
]

#: The syntax's cases: plain, nested, weighted, unbalanced, escaped, stray closers and colons.
PROMPTS = [
    "",
    "normal text",
    "an (important) word",
    "(unbalanced",
    "unbalanced)] closers",
    r"\(literal\] and \\ backslash \ alone",
    "(unnecessary)(parens)",
    "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
    "[[faint]] (bold:1.5) [mixed (inner:0.8) outer] x:y (z:-0.5) (w:+2)",
    "colon: (not a weight:) (odd:.5)",
]
LONG = "a (red circle:1.2) on a [white] background, a blue square, a yellow diamond, " * 2
LONGER = ("a black background with a (red:1.4) circle, a green square, a blue triangle; " * 4).strip()
#: (name, prompt, negative prompt, guided, clip_skip, tokenizer)
CASES = [
    ("plain-v1", "a red circle", None, True, 1, "v1"),
    ("weighted-v1", "a (red:1.4) circle, [blurry]", "lowres, (bad anatomy:1.3)", True, 1, "v1"),
    ("weighted-skip2-v1", "a (red:1.4) circle, [blurry]", "lowres, (bad anatomy:1.3)", True, 2, "v1"),
    ("long-v1", LONG, "lowres", True, 1, "v1"),
    ("long-negative-v1", "(a circle)", LONG, True, 2, "v1"),
    ("longer-than-225-v1", LONGER, None, True, 1, "v1"),
    ("unguided-v1", LONG, "lowres", False, 1, "v1"),
    ("weighted-v2", "a (red:1.4) circle, [blurry]", "lowres", True, 2, "v2"),
    ("long-v2", LONG, None, True, 2, "v2"),
    ("longer-than-225-v2", LONGER, "(bad:1.2)", True, 1, "v2"),
]


def lpw_functions(text: str) -> dict[str, Any]:
    """The pipeline's functions and its `re_attention` pattern, executed on their own."""
    import torch

    tree = ast.parse(text)
    picked = [
        node
        for node in tree.body
        if (isinstance(node, ast.FunctionDef) and node.name in NAMES)
        or (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "re_attention" for t in node.targets))
    ]
    namespace: dict[str, Any] = {
        "re": re,
        "torch": torch,
        "List": list,  # sd-scripts annotates List[str]
        "Optional": Optional,
        "Union": Union,
        "StableDiffusionPipeline": Any,
        "logger": logging.getLogger("sd-scripts lpw"),
    }
    exec(compile(ast.Module(body=picked, type_ignores=[]), "sd-scripts", "exec"), namespace)
    missing = [name for name in [*NAMES, "re_attention"] if name not in namespace]
    assert not missing, f"not found in {SOURCE}: {missing}"
    return namespace


def generate(checkout: Path) -> tuple[dict[str, Any], dict[str, str]]:
    import torch

    from lora_sched.train.model import build_tiny_sd, build_tiny_sdxl

    lpw = lpw_functions(checkout_file(checkout, SOURCE))
    sd = build_tiny_sd()
    tokenizers = {"v1": sd.tokenizer, "v2": build_tiny_sdxl().tokenizer_2}
    out: dict[str, Any] = {}
    with torch.no_grad():
        for name, prompt, negative, guided, clip_skip, kind in CASES:
            pipe = SimpleNamespace(
                tokenizer=tokenizers[kind], text_encoder=LegacyPaths(sd.text_encoder), device=torch.device("cpu")
            )
            states, uncond = lpw["get_weighted_text_embeddings"](
                pipe=pipe,
                prompt=prompt,
                uncond_prompt=(negative or "") if guided else None,  # _encode_prompt's [""] for None
                max_embeddings_multiples=3,
                clip_skip=clip_skip,
            )
            out[f"{name}.prompt"] = states
            if uncond is not None:
                out[f"{name}.negative"] = uncond
    parses = {text: lpw["parse_prompt_attention"](text) for text in PROMPTS}
    metadata = {
        "repository": "kohya-ss/sd-scripts",
        "commit": checkout_commit(checkout),
        "paths": f"{SOURCE} ({', '.join(NAMES)}, re_attention)",
        "generator": "tools/gen_sdscripts_prompt_golden.py",
        "cases": json.dumps(CASES),
        "parses": json.dumps(parses),
        "models": "builtin:tiny-sd's text encoder; tokenizers: v1 tiny-sd's, v2 tiny-sdxl's second",
    }
    return {k: v.contiguous() for k, v in out.items()}, metadata


def main(argv: list[str] | None = None) -> int:
    return run_tensor_golden(__doc__, OUTPUT, generate, argv)


if __name__ == "__main__":
    sys.exit(main())

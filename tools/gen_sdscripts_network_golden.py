"""Golden LoRA networks (module names, shapes, alphas) and LoRA forwards computed by sd-scripts itself.

    python tools/gen_sdscripts_network_golden.py SD_SCRIPTS_CHECKOUT_OR_GIT_DIR [--check]

Runs in the project's environment (torch, diffusers, transformers). It never imports sd-scripts'
library package (whose modules import heavy things at top level): it reads the source text of

- networks/lora.py: ``create_network`` / ``LoRANetwork`` / ``LoRAModule`` as they are;
- library/original_unet.py and library/sdxl_original_unet.py: sd-scripts' own SD 1.x and SDXL
  (SGM-named) UNets, built at the built-in tiny models' sizes: their module-level width constants
  (BLOCK_OUT_CHANNELS; MODEL_CHANNELS, ADM_IN_CHANNELS, CONTEXT_DIM, TIME_EMBED_DIM) and, for SDXL,
  the literal transformer depths (2 and 10 -> 1 and 2) and cross-attention width (2048 -> 192) are
  replaced in the parsed source, nothing else;

drops their ``from library...`` imports and ``setup_logging()`` calls (einops, used only in
forward, is a stand-in), and executes them. The text encoders are lora_sched's built-in tiny CLIP
encoders, seen in the layout of the transformers 4.x sd-scripts pins (CLIPTextModel's modules under
``text_model``; transformers 5 flattened it).

For each case, sd-scripts' ``create_network`` (a fresh copy of networks/lora.py per case: LoRANetwork
extends its class-level target list in place when conv_dim is set) builds the network and every
module's name, lora_down / lora_up shapes and alpha go to tests/data/sdscripts_network/networks.json.
forwards.safetensors holds LoRAModule.forward outputs in training mode with network_dropout,
rank_dropout and module_dropout, on fixed weights, inputs and seeds. With --check it writes nothing
and exits 1 when the stored files differ from what it computes.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import types
from pathlib import Path
from typing import Any

from golden_cli import checkout_commit, checkout_file

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))
OUT = HERE / "tests" / "data" / "sdscripts_network"
REPOSITORY = "kohya-ss/sd-scripts"

#: tiny-sd / tiny-sdxl widths (lora_sched.builtins.BUILTIN_BLOCKS) for sd-scripts' UNet sources.
SD_CONSTANTS = {"BLOCK_OUT_CHANNELS": (32, 32, 64, 64)}
SDXL_CONSTANTS = {"MODEL_CHANNELS": 64, "ADM_IN_CHANNELS": 6 * 256 + 128, "CONTEXT_DIM": 192, "TIME_EMBED_DIM": 256}
SDXL_KEYWORDS = {
    ("num_transformer_layers", 2): 1,
    ("num_transformer_layers", 10): 2,
    ("cross_attention_dim", 2048): 192,
}

BLOCKS_SD = "2,0,3,1,4,2,0,3,1,4,2,0,3,1,4,2,0,3,1,4,2,0,3,1,4"
ALPHAS_SD = ",".join(str(0.5 * (i % 4)) for i in range(25))
BLOCKS_SDXL = "1,2,0,3,1,2,0,3,1,2,0,3,1,2,0,3,1,2,0,3,1,2,0"
#: (case, model, network_dim, network_alpha, network_args).
CASES = (
    ("sd", "builtin:tiny-sd", 4, 1.0, {}),
    ("sd_conv", "builtin:tiny-sd", 4, 2.0, {"conv_dim": "2", "conv_alpha": "0.5"}),
    ("sd_conv_zero", "builtin:tiny-sd", 8, 0.0, {"conv_dim": "0"}),
    (
        "sd_blocks",
        "builtin:tiny-sd",
        4,
        1.0,
        {"block_dims": BLOCKS_SD, "block_alphas": ALPHAS_SD, "conv_block_dims": BLOCKS_SD[::-1]},
    ),
    ("sdxl", "builtin:tiny-sdxl", 4, 1.0, {}),
    ("sdxl_conv", "builtin:tiny-sdxl", 2, 1.0, {"conv_dim": "3", "conv_alpha": "0"}),
    ("sdxl_blocks", "builtin:tiny-sdxl", 4, 2.0, {"block_dims": BLOCKS_SDXL, "conv_dim": "2"}),
)
#: LoRAModule.forward cases: (name, layer, input shape, rank, alpha, dropout, rank_dropout, module_dropout, seed).
FORWARDS = (
    ("linear_dropout", "linear", (2, 5, 8), 4, 2.0, 0.25, None, None, 1),
    ("linear_rank_dropout", "linear", (3, 5, 8), 4, 1.0, None, 0.5, None, 2),
    ("linear_all", "linear", (2, 5, 8), 4, 3.0, 0.1, 0.3, 0.5, 3),
    ("linear_2d_rank_dropout", "linear", (4, 8), 4, 1.0, None, 0.5, None, 4),
    ("conv_rank_dropout", "conv", (2, 8, 6, 6), 3, 1.5, 0.2, 0.4, None, 5),
    ("conv_module_dropout", "conv", (2, 8, 6, 6), 3, 1.0, None, None, 0.5, 6),
)


class _Rewrite(ast.NodeTransformer):
    """Drop library imports and setup_logging(); set module constants and literal keyword values."""

    def __init__(self, constants: dict[str, Any], keywords: dict[tuple[str, int], int]) -> None:
        self.constants, self.keywords = constants, keywords
        self.done: set[str] = set()
        self.keyword_hits = 0

    def visit_ImportFrom(self, node: ast.ImportFrom) -> Any:
        return None if (node.module or "").startswith("library") else node

    def visit_Expr(self, node: ast.Expr) -> Any:
        call = node.value
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "setup_logging":
            return None
        return self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> Any:
        target = node.targets[0]
        if isinstance(target, ast.Name) and target.id in self.constants:
            self.done.add(target.id)
            node.value = ast.parse(repr(self.constants[target.id]), mode="eval").body
        return self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> Any:
        if isinstance(node.target, ast.Name) and node.target.id in self.constants:
            self.done.add(node.target.id)
            node.value = ast.parse(repr(self.constants[node.target.id]), mode="eval").body
        return node

    def visit_keyword(self, node: ast.keyword) -> Any:
        if isinstance(node.value, ast.Constant) and (node.arg, node.value.value) in self.keywords:
            node.value = ast.Constant(self.keywords[(node.arg, node.value.value)])
            self.keyword_hits += 1
        return node


def load_source(text: str, name: str, constants: dict[str, Any], keywords: dict, extra: dict[str, Any]) -> Any:
    """Execute sd-scripts source `text` as module `name`, rewritten as _Rewrite says."""
    rewrite = _Rewrite(constants, keywords)
    tree = ast.fix_missing_locations(rewrite.visit(ast.parse(text)))
    missing = set(constants) - rewrite.done
    if missing or (keywords and not rewrite.keyword_hits):
        raise SystemExit(f"{name}: the source changed: constants {sorted(missing)} not found")
    module = types.ModuleType(name)
    module.__dict__.update(extra)
    sys.modules[name] = module
    exec(compile(tree, f"<sd-scripts {name}>", "exec"), module.__dict__)  # sd-scripts' own code, read from its source
    return module


def install_einops_stand_in() -> None:
    """einops is used in the UNets' forward only; building them needs just the import."""
    if "einops" not in sys.modules:
        stub = types.ModuleType("einops")
        stub.rearrange = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("forward is not run here"))
        sys.modules["einops"] = stub


class TextModelLayout:
    """Wraps a transformers 5 CLIPTextModel in transformers 4's layout (modules under ``text_model``)."""

    def __new__(cls, encoder: Any) -> Any:
        import torch

        if hasattr(encoder, "text_model"):
            return encoder
        holder = torch.nn.Module()
        holder.text_model = encoder
        return holder


def sd_scripts_models(source: Path) -> tuple[Any, Any, str]:
    """(SD 1.x UNet class builder, SDXL UNet class, commit) from sd-scripts' own sources."""
    import logging

    install_einops_stand_in()
    extra = {"logging": logging}
    sd_text, commit = checkout_file(source, "library/original_unet.py"), checkout_commit(source)
    sdxl_text = checkout_file(source, "library/sdxl_original_unet.py")
    sd = load_source(sd_text, "sdscripts_original_unet", SD_CONSTANTS, {}, extra)
    sdxl = load_source(sdxl_text, "sdscripts_sdxl_original_unet", SDXL_CONSTANTS, SDXL_KEYWORDS, extra)
    return sd, sdxl, commit


def build_case(source: Path, sd: Any, sdxl: Any, model_name: str, dim: int, alpha: float, args: dict) -> dict:
    """sd-scripts' network for one case: {lora_name: {"down": shape, "up": shape, "alpha": float}}."""
    import logging

    import torch

    from lora_sched.train.model import build_builtin

    lora_text = checkout_file(source, "networks/lora.py")
    lora = load_source(lora_text, "sdscripts_networks_lora", {}, {}, {"logging": logging})
    lora.SdxlUNet2DConditionModel = sdxl.SdxlUNet2DConditionModel
    ours = build_builtin(model_name)
    torch.manual_seed(0)
    if ours.is_sdxl:
        unet = sdxl.SdxlUNet2DConditionModel()
        encoders = [TextModelLayout(ours.text_encoder), TextModelLayout(ours.text_encoder_2)]
    else:
        unet = sd.UNet2DConditionModel(sample_size=8, attention_head_dim=8, cross_attention_dim=64)
        encoders = TextModelLayout(ours.text_encoder)
    network = lora.create_network(1.0, dim, alpha, None, encoders, unet, neuron_dropout=None, **args)
    return {
        m.lora_name: {
            "down": list(m.lora_down.weight.shape),
            "up": list(m.lora_up.weight.shape),
            "alpha": float(m.alpha),
        }
        for m in network.text_encoder_loras + network.unet_loras
    }


def forwards(source: Path) -> dict[str, Any]:
    """LoRAModule.forward in training mode on fixed weights and inputs, after torch.manual_seed(seed)."""
    import logging

    import torch

    lora_text = checkout_file(source, "networks/lora.py")
    lora = load_source(lora_text, "sdscripts_networks_lora", {}, {}, {"logging": logging})
    out: dict[str, Any] = {}
    for name, layer, shape, rank, alpha, dropout, rank_dropout, module_dropout, seed in FORWARDS:
        gen = torch.Generator().manual_seed(100 + seed)
        org = torch.nn.Linear(shape[-1], 6) if layer == "linear" else torch.nn.Conv2d(shape[1], 6, 3, padding=1)
        with torch.no_grad():
            for p in org.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        module = lora.LoRAModule(name, org, 1.0, rank, alpha, dropout, rank_dropout, module_dropout)
        with torch.no_grad():
            module.lora_down.weight.copy_(torch.randn(module.lora_down.weight.shape, generator=gen))
            module.lora_up.weight.copy_(torch.randn(module.lora_up.weight.shape, generator=gen))
        x = torch.randn(shape, generator=gen)
        out[f"{name}.x"] = x
        out[f"{name}.org_weight"] = org.weight.detach().clone()
        out[f"{name}.org_bias"] = org.bias.detach().clone()
        out[f"{name}.lora_down"] = module.lora_down.weight.detach().clone()
        out[f"{name}.lora_up"] = module.lora_up.weight.detach().clone()
        module.apply_to()
        module.train()
        torch.manual_seed(seed)
        with torch.no_grad():
            out[f"{name}.y"] = torch.stack([org(x) for _ in range(4)])  # four calls: fresh draws each
    return out


def compute(source: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    sd, sdxl, commit = sd_scripts_models(source)
    cases = {}
    for case, model_name, dim, alpha, args in CASES:
        cases[case] = {
            "model": model_name,
            "network_dim": dim,
            "network_alpha": alpha,
            "network_args": [f"{k}={v}" for k, v in args.items()],
            "modules": build_case(source, sd, sdxl, model_name, dim, alpha, args),
        }
    networks = {
        "source": {
            "repository": REPOSITORY,
            "commit": commit,
            "files": ["networks/lora.py", "library/original_unet.py", "library/sdxl_original_unet.py"],
        },
        "forward_cases": [[*f[:2], list(f[2]), *f[3:]] for f in FORWARDS],
        "cases": cases,
    }
    return networks, forwards(source)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="an sd-scripts checkout or bare git directory")
    parser.add_argument("--check", action="store_true", help="compare with the stored files, write nothing")
    ns = parser.parse_args()
    from safetensors.torch import load_file, save_file

    networks, tensors = compute(ns.source)
    text = json.dumps(networks, indent=1, sort_keys=True) + "\n"
    meta = {"repository": REPOSITORY, "commit": networks["source"]["commit"]}
    if ns.check:
        same = (OUT / "networks.json").read_text(encoding="utf-8") == text
        stored = load_file(str(OUT / "forwards.safetensors"))
        same = same and stored.keys() == tensors.keys() and all(stored[k].equal(tensors[k]) for k in tensors)
        print("goldens match" if same else "goldens differ")
        return 0 if same else 1
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "networks.json").write_text(text, encoding="utf-8")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / "forwards.safetensors"), metadata=meta)
    print(f"wrote {OUT}/networks.json ({len(networks['cases'])} cases) and forwards.safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Golden outputs of sd-scripts' training-objective functions: tests/data/sdscripts_objective/golden.json.

    python tools/gen_sdscripts_objective_golden.py SD_SCRIPTS_CHECKOUT_OR_GIT_DIR [--output PATH] [--check]

Runs with the project's environment (torch, diffusers). Nothing of sd-scripts is imported: the
functions below are parsed with ``ast`` from the checkout (or, for a bare git directory, from its
HEAD) and executed on their own, with the imports they use:

- library/train_util.py: get_timesteps, get_noise_noisy_latents_and_timesteps,
  get_huber_threshold_if_needed, conditional_loss;
- library/custom_train_functions.py: prepare_scheduler_for_custom_training,
  fix_noise_scheduler_betas_for_zero_terminal_snr, apply_snr_weight,
  scale_v_prediction_loss_like_noise_prediction, get_snr_scale, add_v_prediction_like_loss,
  apply_debiased_estimation, pyramid_noise_like, apply_noise_offset;
- train_network.py: NetworkTrainer.post_process_loss, and the tail of process_batch (threshold,
  conditional_loss, mean per sample, loss_weights, post_process_loss), spelled out in `process_loss`
  in sd-scripts' order;
- networks/lora.py: LoRANetwork.apply_max_norm_regularization, on a stand-in network whose
  state_dict() holds the tensors.

Random numbers: sd-scripts draws from torch's global generator, seeded here before each call;
lora_sched draws the same numbers, in the same order, from a torch.Generator with that seed. The
one draw sd-scripts takes from Python's ``random`` (pyramid_noise_like's size ratio) is given a
stand-in ``random`` whose random() is ``torch.rand((), dtype=float64)`` from the same global
generator, so both take every number from one stream; the arithmetic is sd-scripts' own.
Tensors are stored as nested lists of Python floats (float32 values, exact).
"""

from __future__ import annotations

import ast
import json
import logging
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional, Tuple  # noqa: UP035  (sd-scripts' annotations name them)

from golden_cli import checkout_commit, checkout_file, run_golden

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "tests" / "data" / "sdscripts_objective" / "golden.json"

#: sd-scripts' noise scheduler (train_network.py get_noise_scheduler)
SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "clip_sample": False,
}
#: argparse defaults of the options read (train_util.py add_training_arguments, custom_train_functions.py)
ARG_DEFAULTS: dict[str, Any] = {
    "noise_offset": None,
    "noise_offset_random_strength": False,
    "adaptive_noise_scale": None,
    "multires_noise_iterations": None,
    "multires_noise_discount": 0.3,
    "ip_noise_gamma": None,
    "ip_noise_gamma_random_strength": False,
    "min_timestep": None,
    "max_timestep": None,
    "loss_type": "l2",
    "huber_schedule": "snr",
    "huber_c": 0.1,
    "huber_scale": 1.0,
    "min_snr_gamma": None,
    "scale_v_pred_loss_like_noise_pred": False,
    "v_pred_like_loss": None,
    "debiased_estimation_loss": False,
    "v_parameterization": False,
    "zero_terminal_snr": False,
}
LATENT_SHAPE = (2, 4, 6, 6)
NOISE_CASES: list[dict[str, Any]] = [
    {},
    {"noise_offset": 0.1},
    {"noise_offset": 0.1, "noise_offset_random_strength": True},
    {"noise_offset": 0.05, "adaptive_noise_scale": 0.5},
    {"noise_offset": 0.05, "adaptive_noise_scale": -2.0},
    {"multires_noise_iterations": 6},
    {"multires_noise_iterations": 3, "multires_noise_discount": 0.8},
    {"ip_noise_gamma": 0.1},
    {"ip_noise_gamma": 0.1, "ip_noise_gamma_random_strength": True},
    {"min_timestep": 100, "max_timestep": 900},
    {"min_timestep": 500, "max_timestep": 500},
    {"min_timestep": 600, "max_timestep": 300},
    {"min_timestep": 990},
    {
        "noise_offset": 0.1,
        "noise_offset_random_strength": True,
        "adaptive_noise_scale": 0.2,
        "multires_noise_iterations": 8,
        "multires_noise_discount": 0.4,
        "ip_noise_gamma": 0.2,
        "ip_noise_gamma_random_strength": True,
        "max_timestep": 700,
        "zero_terminal_snr": True,
    },
]
LOSS_SHAPE = (4, 2, 4, 4)
LOSS_TIMESTEPS = [0, 1, 500, 999]
LOSS_WEIGHTS = [1.0, 0.3, 1.7, 0.9]  # not powers of 2: the order of the products shows in the floats
LOSS_CASES: list[dict[str, Any]] = [
    {},
    {"loss_type": "l1"},
    {"loss_type": "huber", "huber_schedule": "constant", "huber_c": 0.3, "huber_scale": 2.0},
    {"loss_type": "huber", "huber_schedule": "exponential", "huber_c": 0.2, "huber_scale": 1.5},
    {"loss_type": "huber", "huber_schedule": "snr", "huber_c": 0.1},
    {"loss_type": "smooth_l1", "huber_schedule": "constant", "huber_c": 0.3},
    {"loss_type": "smooth_l1", "huber_schedule": "exponential", "huber_c": 0.05, "huber_scale": 0.5},
    {"loss_type": "smooth_l1", "huber_schedule": "snr", "huber_c": 0.2, "huber_scale": 3.0},
    {"min_snr_gamma": 5.0},
    {"min_snr_gamma": 5.0, "v_parameterization": True},
    {"scale_v_pred_loss_like_noise_pred": True, "v_parameterization": True},
    {"v_pred_like_loss": 0.3},
    {"debiased_estimation_loss": True},
    {"debiased_estimation_loss": True, "v_parameterization": True},
    {"min_snr_gamma": 1.0, "v_pred_like_loss": 0.5, "debiased_estimation_loss": True, "loss_type": "l1"},
    {
        "min_snr_gamma": 5.0,
        "scale_v_pred_loss_like_noise_pred": True,
        "debiased_estimation_loss": True,
        "v_parameterization": True,
        "loss_type": "huber",
        "zero_terminal_snr": True,
    },
]
#: LoRA modules (name, down shape, up shape, alpha) for apply_max_norm_regularization
NORM_MODULES: list[tuple[str, tuple[int, ...], tuple[int, ...], float]] = [
    ("lora_te_text_model_encoder_layers_0_self_attn_q_proj", (4, 8), (8, 4), 1.0),
    ("lora_unet_down_blocks_0_attentions_0_proj_in", (4, 4, 1, 1), (4, 4, 1, 1), 4.0),
    ("lora_unet_down_blocks_0_resnets_0_conv1", (2, 4, 3, 3), (4, 2, 1, 1), 2.0),
    ("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q", (4, 16), (16, 4), 4.0),
    ("lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_out_0", (4, 16), (16, 4), 0.5),
]
NORM_SCALES = [0.02, 0.3, 1.5]  #: std of the up / down weights: some modules stay under the norm, some go over
MAX_NORMS = [0.5, 1.0, 4.0]


def definitions(text: str, names: list[str], inside: str | None = None) -> list[ast.stmt]:
    """The top-level functions `names` of a module (or the methods of its class `inside`)."""
    body = ast.parse(text).body
    if inside is not None:
        body = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == inside).body
    found = {n.name: n for n in body if isinstance(n, ast.FunctionDef) and n.name in names}
    missing = set(names) - set(found)
    if missing:
        raise SystemExit(f"not in the checkout: {sorted(missing)}")
    return [found[name] for name in names]


class TorchRandom:
    """Python's `random` for sd-scripts' code, drawing from torch's global generator (see the module doc)."""

    @staticmethod
    def random() -> float:
        import torch

        return float(torch.rand((), dtype=torch.float64))


def load_functions(checkout: Path) -> dict[str, Any]:
    """sd-scripts' functions, executed in one namespace with what they import."""
    import torch
    from diffusers import DDPMScheduler

    namespace: dict[str, Any] = {
        "torch": torch,
        "math": math,
        "random": TorchRandom,
        "Optional": Optional,
        "Tuple": Tuple,  # noqa: UP006
        "Number": float,
        "DDPMScheduler": DDPMScheduler,
        "logger": logging.getLogger("sd-scripts"),
    }
    parts = [
        (
            "library/custom_train_functions.py",
            [
                "prepare_scheduler_for_custom_training",
                "fix_noise_scheduler_betas_for_zero_terminal_snr",
                "apply_snr_weight",
                "scale_v_prediction_loss_like_noise_prediction",
                "get_snr_scale",
                "add_v_prediction_like_loss",
                "apply_debiased_estimation",
                "pyramid_noise_like",
                "apply_noise_offset",
            ],
            None,
        ),
        (
            "library/train_util.py",
            [
                "get_timesteps",
                "get_noise_noisy_latents_and_timesteps",
                "get_huber_threshold_if_needed",
                "conditional_loss",
            ],
            None,
        ),
        ("train_network.py", ["post_process_loss"], "NetworkTrainer"),
        ("networks/lora.py", ["apply_max_norm_regularization"], "LoRANetwork"),
    ]
    for path, names, inside in parts:
        module = ast.Module(body=definitions(checkout_file(checkout, path), names, inside), type_ignores=[])
        exec(compile(module, path, "exec"), namespace)
    namespace["custom_train_functions"] = SimpleNamespace(
        apply_noise_offset=namespace["apply_noise_offset"], pyramid_noise_like=namespace["pyramid_noise_like"]
    )
    return namespace


def make_scheduler(sd: dict[str, Any], zero_terminal_snr: bool) -> Any:
    """sd-scripts' get_noise_scheduler: the SNR table first, then the zero-terminal-SNR betas."""
    import torch
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(**SCHEDULER)
    sd["prepare_scheduler_for_custom_training"](scheduler, torch.device("cpu"))
    if zero_terminal_snr:
        sd["fix_noise_scheduler_betas_for_zero_terminal_snr"](scheduler)
    return scheduler


def seeded(seed: int, shape: tuple[int, ...], scale: float = 1.0) -> Any:
    import torch

    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


def listed(tensor: Any) -> Any:
    """A tensor as nested lists; float32 values in their shortest repr (read back as float32: exact)."""
    import torch

    values = tensor.detach().cpu()
    if values.dtype != torch.float32:
        return values.tolist()
    return _shortest(values.numpy().tolist() if values.ndim == 0 else values.numpy())


def _shortest(array: Any) -> Any:
    import numpy as np

    if isinstance(array, float):
        return float(str(np.float32(array)))
    if array.ndim == 0:
        return float(str(array))
    return [_shortest(item) for item in array]


def noise_rows(sd: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """get_noise_noisy_latents_and_timesteps for each case, the global generator seeded with 1000 + i."""
    import torch

    rows = []
    latents = seeded(0, LATENT_SHAPE) * 0.8 + 0.3  # a mean away from 0: adaptive_noise_scale sees it
    for i, case in enumerate(NOISE_CASES):
        args = SimpleNamespace(**{**ARG_DEFAULTS, **case})
        scheduler = make_scheduler(sd, args.zero_terminal_snr)
        torch.manual_seed(1000 + i)
        noise, noisy, timesteps = sd["get_noise_noisy_latents_and_timesteps"](args, scheduler, latents.clone())
        rows.append(
            {
                "options": case,
                "seed": 1000 + i,
                "noise": listed(noise),
                "noisy": listed(noisy),
                "timesteps": listed(timesteps),
            }
        )
    return listed(latents), rows


def process_loss(sd: dict[str, Any], args: Any, scheduler: Any, pred: Any, target: Any, timesteps: Any) -> Any:
    """train_network.py process_batch after the UNet call, in its order (no weighting, no masks)."""
    import torch

    huber_c = sd["get_huber_threshold_if_needed"](args, timesteps, scheduler)
    loss = sd["conditional_loss"](pred.float(), target.float(), args.loss_type, "none", huber_c)
    loss = loss.mean(dim=list(range(1, loss.ndim)))
    loss = loss * torch.tensor(LOSS_WEIGHTS)
    return sd["post_process_loss"](None, loss, args, timesteps, scheduler)


def loss_rows(sd: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The per-sample loss of each case on one pred / target pair."""
    import torch

    pred, target = seeded(1, LOSS_SHAPE), seeded(2, LOSS_SHAPE) * 0.5
    timesteps = torch.tensor(LOSS_TIMESTEPS)
    rows = []
    for case in LOSS_CASES:
        args = SimpleNamespace(**{**ARG_DEFAULTS, **case})
        per_sample = process_loss(sd, args, make_scheduler(sd, args.zero_terminal_snr), pred, target, timesteps)
        rows.append({"options": case, "per_sample": listed(per_sample), "loss": float(per_sample.mean())})
    inputs = {"pred": listed(pred), "target": listed(target), "timesteps": LOSS_TIMESTEPS, "weights": LOSS_WEIGHTS}
    return inputs, rows


def schedule_rows(sd: dict[str, Any]) -> dict[str, Any]:
    """The SNR table and the zero-terminal-SNR schedule sd-scripts makes."""
    fixed = make_scheduler(sd, True)
    plain = make_scheduler(sd, False)
    return {
        "all_snr": listed(plain.all_snr),
        "zero_terminal_snr": {
            "betas": listed(fixed.betas),
            "alphas": listed(fixed.alphas),
            "alphas_cumprod": listed(fixed.alphas_cumprod),
        },
    }


def norm_rows(sd: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """apply_max_norm_regularization on a stand-in network, for each weight scale and max norm."""
    import torch

    rows, before = [], []
    for s, scale in enumerate(NORM_SCALES):
        state: dict[str, Any] = {}
        for m, (name, down, up, alpha) in enumerate(NORM_MODULES):
            state[f"{name}.alpha"] = torch.tensor(alpha)
            state[f"{name}.lora_down.weight"] = seeded(100 * s + 2 * m, down, scale)
            state[f"{name}.lora_up.weight"] = seeded(100 * s + 2 * m + 1, up, scale)
        before.append({k: listed(v) for k, v in state.items() if not k.endswith(".alpha")})
        for max_norm in MAX_NORMS:
            tensors = {k: v.clone() for k, v in state.items()}
            network = SimpleNamespace(state_dict=lambda tensors=tensors: tensors)
            scaled, mean, largest = sd["apply_max_norm_regularization"](network, max_norm, torch.device("cpu"))
            rows.append(
                {
                    "weights": s,
                    "max_norm": max_norm,
                    "after": {k: listed(v) for k, v in tensors.items() if not k.endswith(".alpha")},
                    "keys_scaled": scaled,
                    "mean_norm": mean,
                    "max_key_norm": largest,
                }
            )
    return before, rows


def generate(checkout: Path) -> dict[str, Any]:
    import torch

    sd = load_functions(checkout)
    inputs, losses = loss_rows(sd)
    latents, noises = noise_rows(sd)
    weights, norms = norm_rows(sd)
    return {
        "provenance": {
            "repository": "kohya-ss/sd-scripts",
            "commit": checkout_commit(checkout),
            "paths": [
                "library/train_util.py",
                "library/custom_train_functions.py",
                "train_network.py",
                "networks/lora.py",
            ],
            "generator": "tools/gen_sdscripts_objective_golden.py",
            "torch": torch.__version__.split("+")[0],
        },
        "scheduler": SCHEDULER,
        "arg_defaults": ARG_DEFAULTS,
        "schedule": schedule_rows(sd),
        "noise_latents": latents,
        "noise": noises,
        "loss_inputs": inputs,
        "loss": losses,
        "norm_modules": [[name, list(down), list(up), alpha] for name, down, up, alpha in NORM_MODULES],
        "norm_weights": weights,
        "max_norm": norms,
    }


def dumps(golden: dict[str, Any]) -> str:
    return json.dumps(golden, separators=(",", ":")) + "\n"


def main(argv: list[str] | None = None) -> int:
    return run_golden(__doc__, OUTPUT, generate, dumps, argv)


if __name__ == "__main__":
    sys.exit(main())

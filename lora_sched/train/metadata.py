"""The metadata of a trained LoRA file, with the names and value forms sd-scripts writes: its
``ss_*`` keys (train_network.py) and the Stability AI model spec's ``modelspec.*`` keys
(library/sai_model_spec.py), so that tools reading kohya files (A1111's and ComfyUI's LoRA
browsers, kohya's own scripts) show what trained it: the base model family, the network, the
schedule, the data.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from lora_sched.train.lora import kohya_metadata
from lora_sched.train.optim import parse_optimizer_args

#: sd-scripts' name of the SDXL base model family (sdxl_model_util.MODEL_VERSION_SDXL_BASE_V1_0).
SDXL_BASE_VERSION = "sdxl_base_v1-0"


@dataclass(frozen=True)
class LoraRunFacts:
    """What a LoRA file's metadata records about the run that made it."""

    cfg: Any  # the loaded config (values, scheduler_type)
    resolved: Any  # the schedule as trained (ResolvedSchedule)
    group_lrs: dict  # base LR per param group
    num_samples: int  # training samples per epoch (repeats counted)
    steps_per_epoch: int
    steps: int  # optimizer updates done
    optimizer_type: str
    width: int
    height: int
    model_kind: str  # "sd1", "sd2" or "sdxl" (lora_sched.train.model.SDModel.kind)
    v_prediction: bool  # trained to predict the velocity


def base_model_version(kind: str, v_prediction: bool) -> str:
    """ss_base_model_version as sd-scripts writes it: "sd_v1" / "sd_v2" (+ "_v" for v-prediction),
    "sdxl_base_v1-0" for any SDXL model."""
    if kind == "sdxl":
        return SDXL_BASE_VERSION
    return ("sd_v2" if kind == "sd2" else "sd_v1") + ("_v" if v_prediction else "")


def model_name(name: str) -> str:
    """ss_sd_model_name: a local model's file or folder name (sd-scripts keeps no path), else as given."""
    return os.path.basename(os.path.normpath(name)) if os.path.exists(name) else name


def lora_metadata(facts: LoraRunFacts) -> dict[str, str]:
    """The file's ``ss_*`` metadata (strings, as safetensors requires) plus lora_sched's schedule record."""
    v, resolved = facts.cfg.values, facts.resolved
    schedule = json.dumps(resolved.to_dict(), sort_keys=True)
    return kohya_metadata(
        {
            "ss_network_module": "networks.lora",
            "ss_network_dim": int(v["network_dim"]),
            "ss_network_alpha": float(v["network_alpha"]),
            "ss_learning_rate": float(v["learning_rate"]),
            "ss_unet_lr": float(facts.group_lrs["unet"]),
            "ss_text_encoder_lr": float(facts.group_lrs.get("text_encoder", 0.0)),
            "ss_lr_scheduler": resolved.name,
            "ss_lr_warmup_steps": resolved.warmup,
            "ss_max_train_steps": resolved.run_length,
            "ss_lr_scheduler_args": schedule,
            "ss_lr_scheduler_type": getattr(facts.cfg, "scheduler_type", None),
            "ss_optimizer": facts.optimizer_type,
            "ss_optimizer_args": [f"{k}={x!r}" for k, x in parse_optimizer_args(v.get("optimizer_args")).items()],
            "ss_seed": int(v["seed"]),
            "ss_steps": facts.steps,
            "ss_epoch": math.ceil(facts.steps / facts.steps_per_epoch),
            "ss_num_epochs": math.ceil(resolved.run_length / facts.steps_per_epoch),
            "ss_num_train_images": facts.num_samples,
            "ss_batch_size_per_device": int(v["train_batch_size"]),
            "ss_gradient_accumulation_steps": int(v["gradient_accumulation_steps"]),
            "ss_mixed_precision": v.get("mixed_precision") or "no",
            "ss_max_grad_norm": v.get("max_grad_norm"),
            "ss_resolution": f"({facts.width}, {facts.height})",
            "ss_sd_model_name": model_name(str(v["pretrained_model_name_or_path"])),
            "ss_base_model_version": base_model_version(facts.model_kind, facts.v_prediction),
            "ss_v2": facts.model_kind == "sd2",
            "ss_output_name": v["output_name"],
            "ss_training_finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **model_spec(facts),
            "lora_sched_schedule": schedule,
        }
    )


def model_spec(facts: LoraRunFacts) -> dict[str, str]:
    """The ``modelspec.*`` keys sd-scripts adds to a LoRA: architecture (SDXL base, SD 2 512 / 768-v,
    SD 1), implementation (SDXL LoRA names follow Stability AI's repository; SD ones diffusers'),
    title, resolution, prediction type, date."""
    kind, v_pred = facts.model_kind, facts.v_prediction
    if kind == "sdxl":
        arch = "stable-diffusion-xl-v1-base"
    elif kind == "sd2":
        arch = "stable-diffusion-v2-768-v" if v_pred else "stable-diffusion-v2-512"
    else:
        arch = "stable-diffusion-v1"
    return {
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": f"{arch}/lora",
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models"
        if kind == "sdxl"
        else "diffusers",
        "modelspec.title": str(facts.cfg.values["output_name"]),
        "modelspec.resolution": f"{facts.width}x{facts.height}",
        "modelspec.prediction_type": "v" if v_pred else "epsilon",
        "modelspec.date": datetime.now(timezone.utc).date().isoformat(),
    }

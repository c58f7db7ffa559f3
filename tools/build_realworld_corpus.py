"""Build tests/realworld/: the configs that kohya tools write, replayed from their inputs.

    python tools/build_realworld_corpus.py SRC_DIR [--out tests/realworld]

SRC_DIR holds fetched checkouts named OWNER+NAME (bmaltais+kohya_ss, hollowstrawberry+kohya-colab,
derrian-distro+LoRA_Easy_Training_scripts_Backend). Nothing is copied from them: the script reads the
kohya_ss GUI's preset JSON files (data) and re-enacts, in its own code, how each tool turns its inputs
into the TOML it hands to sd-scripts:

- kohya_ss GUI (kohya_gui/lora_gui.py ``train_model``): preset -> GUI field values (``update_my_data``
  coercions, GUI defaults for absent fields) -> the ``config_toml_data`` dict (values that are "", False,
  0 or None dropped, keys sorted) written with a TOML writer;
- kohya-colab (Lora_Trainer.ipynb, Lora_Trainer_XL.ipynb ``create_config``/``calculate_rex_steps``/
  ``validate_dataset``): the notebook's form choices -> training config + dataset config;
- LoRA_Easy backend (utils/validation.py, utils/process.py): a frontend request body -> the flat
  ``key = value`` config.toml and dataset.toml it writes.

Every generated file gets an entry in manifest.json (source, commit, choices, the synthetic data set it
is tested against) and README.md is regenerated from it.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import tomli_w

GUI = "bmaltais+kohya_ss"
COLAB = "hollowstrawberry+kohya-colab"
EASY = "derrian-distro+LoRA_Easy_Training_scripts_Backend"

# ----------------------------------------------------------------------------------------------
# shared helpers


def commit_of(checkout: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def corpus_entry(name: str, tool: str, repo: str, commit: str, *, dataset_config: bool, **facts) -> dict:
    """One file's row of manifest.json: the file names follow from `name`; nothing is hand-edited."""
    return {
        "name": name,
        "tool": tool,
        "repo": repo,
        "commit": commit,
        "source_paths": facts["source_paths"],
        "choices": facts["choices"],
        "changes": "none",
        "config": f"{name}.toml",
        "dataset_config": f"{name}.dataset.toml" if dataset_config else None,
        "script": facts["script"],
        "data_root": facts["data_root"],
        "folders": facts["folders"],
    }


def slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "_" for c in text)
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_")


def one_bucket_steps(images_times_repeats: int, batch_size: int, grad_accum: int, epochs: int) -> int:
    """sd-scripts' epoch length when every image lands in one bucket (same-size square images)."""
    batches = math.ceil(images_times_repeats / batch_size)
    return math.ceil(batches / grad_accum) * epochs


# ----------------------------------------------------------------------------------------------
# (a) kohya_ss GUI, LoRA tab

# GUI start-up values of the fields the LoRA tab feeds into the TOML (class_basic_training.py with the
# LoRA tab's learning_rate 1e-4 / cosine / warmup 10 %, class_advanced_training.py, class_source_model.py,
# class_accelerate_launch.py, lora_gui.py).
GUI_DEFAULTS = {
    "LoRA_type": "Standard",
    "LyCORIS_preset": "full",
    "adaptive_noise_scale": 0,
    "bucket_no_upscale": True,
    "bucket_reso_steps": 64,
    "cache_latents": True,
    "cache_latents_to_disk": False,
    "caption_dropout_every_n_epochs": 0,
    "caption_dropout_rate": 0,
    "caption_extension": ".txt",
    "clip_skip": 1,
    "color_aug": False,
    "conv_alpha": 1,
    "conv_dim": 1,
    "decompose_both": False,
    "dora_wd": False,
    "bypass_mode": False,
    "dynamo_backend": "no",
    "enable_bucket": True,
    "epoch": 1,
    "factor": -1,
    "flip_aug": False,
    "full_bf16": False,
    "full_fp16": False,
    "gradient_accumulation_steps": 1,
    "gradient_checkpointing": False,
    "huber_c": 0.1,
    "huber_scale": 1.0,
    "huber_schedule": "snr",
    "ip_noise_gamma": 0,
    "keep_tokens": 0,
    "learning_rate": 0.0001,
    "loss_type": "l2",
    "lr_scheduler": "cosine",
    "lr_scheduler_args": "",
    "lr_scheduler_num_cycles": 1,
    "lr_scheduler_power": 1.0,
    "lr_scheduler_type": "",
    "lr_warmup": 10,
    "lr_warmup_steps": 0,
    "max_bucket_reso": 2048,
    "max_data_loader_n_workers": 0,
    "max_grad_norm": 1.0,
    "max_resolution": "512,512",
    "max_timestep": 1000,
    "max_token_length": 75,
    "max_train_epochs": 0,
    "max_train_steps": 1600,
    "min_bucket_reso": 256,
    "min_snr_gamma": 0,
    "min_timestep": 0,
    "mixed_precision": "fp16",
    "module_dropout": 0,
    "multires_noise_discount": 0.3,
    "multires_noise_iterations": 0,
    "network_alpha": 1,
    "network_dim": 8,
    "network_dropout": 0,
    "noise_offset": 0,
    "noise_offset_type": "Original",
    "optimizer": "AdamW8bit",
    "optimizer_args": "",
    "output_name": "last",
    "persistent_data_loader_workers": False,
    "prior_loss_weight": 1.0,
    "rank_dropout": 0,
    "rank_dropout_scale": False,
    "sample_sampler": "euler_a",
    "save_every_n_epochs": 1,
    "save_model_as": "safetensors",
    "save_precision": "fp16",
    "scale_weight_norms": 0,
    "sdxl": False,
    "sdxl_cache_text_encoder_outputs": False,
    "sdxl_no_half_vae": False,
    "seed": 0,
    "shuffle_caption": False,
    "text_encoder_lr": 0.0001,
    "train_batch_size": 1,
    "train_norm": False,
    "train_on_input": True,
    "unet_lr": 0.0001,
    "use_cp": False,
    "use_scalar": False,
    "use_tucker": False,
    "v2": False,
    "v_parameterization": False,
    "xformers": "xformers",
    "flux1_checkbox": False,
}

# update_my_data (common_gui.py): string -> number coercions and what a failed conversion becomes.
GUI_INT_FIELDS_FALLBACK_0 = [
    "clip_skip",
    "epoch",
    "gradient_accumulation_steps",
    "keep_tokens",
    "lr_warmup",
    "max_data_loader_n_workers",
    "max_train_epochs",
    "save_every_n_epochs",
    "seed",
    "max_train_steps",
    "caption_dropout_every_n_epochs",
]
GUI_FLOAT_FIELDS_FALLBACK_0 = ["adaptive_noise_scale", "noise_offset", "learning_rate", "text_encoder_lr", "unet_lr"]

LYCORIS_ALGOS = {
    "LyCORIS/LoCon": "locon",
    "LyCORIS/LoHa": "loha",
    "LyCORIS/LoKr": "lokr",
    "LyCORIS/iA3": "ia3",
    "LyCORIS/GLoRA": "glora",
}


def _to_number(value, convert, fallback):
    try:
        return convert(value)
    except ValueError:
        return fallback


def gui_field_values(preset: dict) -> dict:
    """What the GUI's fields hold after 'load preset': coerced preset values over the start-up values."""
    data = dict(preset)
    data.setdefault("optimizer", "AdamW8bit" if data.get("use_8bit_adam") else "AdamW")
    for key in GUI_INT_FIELDS_FALLBACK_0:
        if data.get(key) is not None:
            data[key] = _to_number(data[key], int, 0)
    if data.get("lr_scheduler_num_cycles") is not None:
        data["lr_scheduler_num_cycles"] = _to_number(data["lr_scheduler_num_cycles"], int, 1)
    if data.get("max_token_length") is not None:
        data["max_token_length"] = _to_number(data["max_token_length"], int, 75)
    for key in GUI_FLOAT_FIELDS_FALLBACK_0:
        if data.get(key) is not None:
            data[key] = _to_number(data[key], float, 0.0)
    if data.get("lr_scheduler_power") is not None:
        data["lr_scheduler_power"] = _to_number(data["lr_scheduler_power"], float, 1.0)
    if data.get("LoRA_type") == "LoCon":
        data["LoRA_type"] = "LyCORIS/LoCon"
    if isinstance(data.get("xformers"), bool):
        data["xformers"] = "xformers" if data["xformers"] else "none"
    fields = dict(GUI_DEFAULTS)
    fields.update({k: v for k, v in data.items() if v is not None})
    return fields


def gui_network(fields: dict) -> tuple[str, list[str]]:
    """network_module and network_args as the LoRA tab composes them for the preset's LoRA type."""
    lora_type = fields["LoRA_type"]
    if lora_type in LYCORIS_ALGOS:
        algo = LYCORIS_ALGOS[lora_type]
        parts = [
            f"preset={fields['LyCORIS_preset']}",
            f"conv_dim={fields['conv_dim']}",
            f"conv_alpha={fields['conv_alpha']}",
        ]
        if algo == "ia3":
            parts += [f"train_on_input={fields['train_on_input']}"]
        elif algo == "glora":
            parts += [
                f"use_tucker={fields['use_tucker']}",
                f"rank_dropout={fields['rank_dropout']}",
                f"module_dropout={fields['module_dropout']}",
                f"rank_dropout_scale={fields['rank_dropout_scale']}",
                f"train_norm={fields['train_norm']}",
            ]
        else:
            parts += [
                f"use_tucker={fields['use_tucker']}",
                f"rank_dropout={fields['rank_dropout']}",
                f"bypass_mode={fields['bypass_mode']}",
                f"dora_wd={fields['dora_wd']}",
                f"module_dropout={fields['module_dropout']}",
            ]
            if algo == "lokr":
                parts += [
                    f"factor={fields['factor']}",
                    f"use_cp={fields['use_cp']}",
                    f"use_scalar={fields['use_scalar']}",
                    f"decompose_both={fields['decompose_both']}",
                ]
            else:
                parts += [f"use_tucker={fields['use_tucker']}", f"use_scalar={fields['use_scalar']}"]
            parts += [f"rank_dropout_scale={fields['rank_dropout_scale']}", f"train_norm={fields['train_norm']}"]
        parts.append(f"algo={algo}")
        return "lycoris.kohya", parts
    if lora_type == "Flux1":
        return "networks.lora_flux", [f"train_blocks={fields.get('train_blocks', 'all')}"]
    extras = [f"{k}={fields[k]}" for k in ("rank_dropout", "module_dropout") if fields.get(k)]
    return "networks.lora", extras


def gui_count_steps(folders: dict[str, int], fields: dict) -> int:
    """The LoRA tab's own max_train_steps estimate when its field is 0 (no dataset_config)."""
    total = sum(int(name.split("_")[0]) * count for name, count in folders.items())
    batch, accumulation = int(fields["train_batch_size"]), int(fields["gradient_accumulation_steps"])
    return math.ceil(float(total) / batch / accumulation * int(fields["epoch"]))


def gui_warmup(fields: dict) -> float | int:
    """resolve_lr_warmup_steps: an absolute override wins, else the percentage as a fraction."""
    steps = float(fields["lr_warmup_steps"] or 0)
    percent = float(fields["lr_warmup"] or 0)
    if steps > 0:
        return int(steps)
    return percent / 100 if percent != 0 else 0


def gui_toml(fields: dict, paths: dict, folders: dict[str, int]) -> dict:
    """The config dict train_model builds, after it drops "", False and None (0 == False too)."""
    flux = bool(fields.get("flux1_checkbox"))
    sdxl = bool(fields.get("sdxl"))
    te_lr, unet_lr, lr = float(fields["text_encoder_lr"]), float(fields["unet_lr"]), float(fields["learning_rate"])
    max_steps = int(fields["max_train_steps"])
    if max_steps == 0:
        max_steps = gui_count_steps(folders, fields)
    module, network_args = gui_network(fields)
    original_noise = fields["noise_offset_type"] == "Original"
    multires = fields["noise_offset_type"] == "Multires"
    num_cycles = fields["lr_scheduler_num_cycles"]
    data = {
        "adaptive_noise_scale": fields["adaptive_noise_scale"]
        if fields["adaptive_noise_scale"] and original_noise
        else None,
        "bucket_no_upscale": fields["bucket_no_upscale"],
        "bucket_reso_steps": fields["bucket_reso_steps"],
        "cache_latents": fields["cache_latents"],
        "cache_latents_to_disk": fields["cache_latents_to_disk"],
        "cache_text_encoder_outputs": True
        if (sdxl and fields["sdxl_cache_text_encoder_outputs"])
        or (flux and fields.get("flux1_cache_text_encoder_outputs"))
        else None,
        "cache_text_encoder_outputs_to_disk": True
        if flux and fields.get("flux1_cache_text_encoder_outputs_to_disk")
        else None,
        "caption_dropout_every_n_epochs": int(fields["caption_dropout_every_n_epochs"]),
        "caption_dropout_rate": fields["caption_dropout_rate"],
        "caption_extension": fields["caption_extension"],
        "clip_l": paths.get("clip_l") if flux else None,
        "clip_skip": fields["clip_skip"] if fields["clip_skip"] != 0 else None,
        "color_aug": fields["color_aug"],
        "dynamo_backend": fields["dynamo_backend"],
        "enable_bucket": fields["enable_bucket"],
        "epoch": int(fields["epoch"]),
        "flip_aug": fields["flip_aug"],
        "fp8_base": fields.get("fp8_base", False),
        "full_bf16": fields["full_bf16"],
        "full_fp16": fields["full_fp16"],
        "gradient_accumulation_steps": int(fields["gradient_accumulation_steps"]),
        "gradient_checkpointing": fields["gradient_checkpointing"],
        "huber_c": fields["huber_c"],
        "huber_scale": fields["huber_scale"],
        "huber_schedule": fields["huber_schedule"],
        "ip_noise_gamma": fields["ip_noise_gamma"] if fields["ip_noise_gamma"] != 0 else None,
        "keep_tokens": int(fields["keep_tokens"]),
        "learning_rate": lr,
        "logging_dir": paths["logging_dir"],
        "loss_type": fields["loss_type"],
        "lr_scheduler": fields["lr_scheduler"],
        "lr_scheduler_args": str(fields["lr_scheduler_args"]).replace('"', "").split(),
        "lr_scheduler_num_cycles": int(num_cycles) if num_cycles != "" else int(fields["epoch"]),
        "lr_scheduler_power": fields["lr_scheduler_power"],
        "lr_scheduler_type": fields["lr_scheduler_type"] or None,
        "lr_warmup_steps": gui_warmup(fields),
        "max_bucket_reso": fields["max_bucket_reso"],
        "max_grad_norm": fields["max_grad_norm"],
        "max_timestep": fields["max_timestep"] if fields["max_timestep"] != 0 else None,
        "max_token_length": int(fields["max_token_length"]) if not flux else None,
        "max_train_epochs": int(fields["max_train_epochs"]) if int(fields["max_train_epochs"]) != 0 else None,
        "max_train_steps": max_steps if max_steps != 0 else None,
        "min_bucket_reso": int(fields["min_bucket_reso"]),
        "min_snr_gamma": fields["min_snr_gamma"] if fields["min_snr_gamma"] != 0 else None,
        "min_timestep": fields["min_timestep"] if fields["min_timestep"] != 0 else None,
        "mixed_precision": fields["mixed_precision"],
        "multires_noise_discount": fields["multires_noise_discount"] if multires else None,
        "multires_noise_iterations": fields["multires_noise_iterations"]
        if fields["multires_noise_iterations"] != 0 and multires
        else None,
        "network_alpha": fields["network_alpha"],
        "network_args": " ".join(network_args).replace('"', "").split(),
        "network_dim": fields["network_dim"],
        "network_dropout": fields["network_dropout"],
        "network_module": module,
        "network_train_unet_only": te_lr == 0 and unet_lr != 0,
        "network_train_text_encoder_only": te_lr != 0 and unet_lr == 0,
        "no_half_vae": True if sdxl and fields["sdxl_no_half_vae"] else None,
        "noise_offset": fields["noise_offset"] if fields["noise_offset"] != 0 and original_noise else None,
        "noise_offset_type": fields["noise_offset_type"],
        "optimizer_type": fields["optimizer"],
        "optimizer_args": str(fields["optimizer_args"]).replace('"', "").split(),
        "output_dir": paths["output_dir"],
        "output_name": fields["output_name"],
        "persistent_data_loader_workers": int(fields["persistent_data_loader_workers"]),
        "pretrained_model_name_or_path": paths["pretrained_model_name_or_path"],
        "prior_loss_weight": fields["prior_loss_weight"],
        "resolution": fields["max_resolution"],
        "sample_prompts": paths["output_dir"] + "/sample/prompt.txt",
        "sample_sampler": fields["sample_sampler"],
        "save_every_n_epochs": fields["save_every_n_epochs"] or None,
        "save_model_as": fields["save_model_as"],
        "save_precision": fields["save_precision"],
        "scale_weight_norms": fields["scale_weight_norms"],
        "sdpa": True if fields["xformers"] == "sdpa" else None,
        "seed": int(fields["seed"]) if int(fields["seed"]) != 0 else None,
        "shuffle_caption": fields["shuffle_caption"],
        "text_encoder_lr": [te_lr, te_lr] if te_lr > 0 else None,
        "train_batch_size": fields["train_batch_size"],
        "train_data_dir": paths["train_data_dir"],
        "training_comment": fields.get("training_comment", ""),
        "unet_lr": unet_lr if unet_lr != 0.0 else None,
        "v2": fields["v2"],
        "v_parameterization": fields["v_parameterization"],
        "vae": paths.get("vae"),
        "wandb_run_name": fields["output_name"],
        "xformers": True if fields["xformers"] == "xformers" else None,
        "t5xxl": paths.get("t5xxl") if flux else None,
        "ae": paths.get("ae") if flux else None,
        "discrete_flow_shift": float(fields["discrete_flow_shift"]) if flux else None,
        "model_prediction_type": fields.get("model_prediction_type") if flux else None,
        "timestep_sampling": fields.get("timestep_sampling") if flux else None,
        "guidance_scale": float(fields["guidance_scale"]) if flux else None,
        "apply_t5_attn_mask": fields.get("apply_t5_attn_mask") if flux else None,
        "t5xxl_max_token_length": int(fields["t5xxl_max_token_length"]) if flux else None,
    }
    data = {
        k: v
        for k, v in data.items()
        if not (isinstance(v, (str, bool, int, float, type(None))) and v in ("", False, None))
    }
    data["max_data_loader_n_workers"] = int(fields["max_data_loader_n_workers"])
    return dict(sorted(data.items()))


def gui_dataset(name: str, sdxl: bool) -> tuple[str, dict[str, int]]:
    """The synthetic kohya folder a preset is tested with: SDXL one concept, SD 1.x a style and extras."""
    root = f"/home/user/kohya_train/{name}/img"
    folders = {"10_subject": 20} if sdxl else {"5_style": 30, "2_extra": 12}
    return root, folders


def build_gui(src: Path, out: Path) -> list[dict]:
    checkout = src / GUI
    commit = commit_of(checkout)
    entries = []
    for preset_path in sorted((checkout / "presets" / "lora").glob("*.json")):
        preset = json.loads(preset_path.read_text(encoding="utf-8"))
        fields = gui_field_values(preset)
        flux = bool(fields.get("flux1_checkbox"))
        sdxl = bool(fields.get("sdxl"))
        name = "gui_" + slug(preset_path.stem)
        data_root, folders = gui_dataset(name, sdxl)
        home = f"/home/user/kohya_train/{name}"
        paths = {
            "train_data_dir": data_root,
            "output_dir": f"{home}/model",
            "logging_dir": f"{home}/log",
            "pretrained_model_name_or_path": "/home/user/models/"
            + (
                "flux1-dev.safetensors" if flux else "sd_xl_base_1.0.safetensors" if sdxl else "v1-5-pruned.safetensors"
            ),
        }
        if flux:
            paths.update(
                clip_l="/home/user/models/clip_l.safetensors",
                t5xxl="/home/user/models/t5xxl_fp16.safetensors",
                ae="/home/user/models/ae.safetensors",
            )
        config = gui_toml(fields, paths, folders)
        (out / f"{name}.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
        script = "flux_train_network" if flux else "sdxl_train_network" if sdxl else "train_network"
        entries.append(
            corpus_entry(
                name,
                "kohya_ss GUI (LoRA tab)",
                "bmaltais/kohya_ss",
                commit,
                dataset_config=False,
                source_paths=[
                    f"presets/lora/{preset_path.name}",
                    "kohya_gui/lora_gui.py (train_model)",
                    "kohya_gui/common_gui.py (update_my_data, resolve_lr_warmup_steps)",
                ],
                choices="preset loaded as is; paths filled in; "
                + ", ".join(f"{k}: {v} images" for k, v in folders.items()),
                script=script,
                data_root=data_root,
                folders=folders,
            )
        )
    return entries


# ----------------------------------------------------------------------------------------------
# (b) kohya-colab notebooks


COLAB_ROOT = "/content/drive/MyDrive/Loras"  # both notebooks' main_dir


def colab_run(c: dict) -> tuple[int | None, int | None, list[dict]]:
    """What both notebooks read from the form alike: (epochs, steps, subsets with their image counts)."""
    epochs = c["how_many"] if c["preferred_unit"] == "Epochs" else None
    steps = c["how_many"] if c["preferred_unit"] == "Steps" else None
    images_folder = f"{COLAB_ROOT}/{c['project']}/dataset"
    subsets = c["subsets"] or [{"num_repeats": c["num_repeats"], "image_dir": images_folder, "images": c["images"]}]
    return epochs, steps, subsets


def colab_network_args(c: dict, conv_dim: int, conv_alpha: int) -> list[str] | None:
    """LoCon's conv layers (the notebooks differ only in the defaults)."""
    if c["lora_type"].lower() != "locon":
        return None
    return [f"conv_dim={c.get('conv_dim', conv_dim)}", f"conv_alpha={c.get('conv_alpha', conv_alpha)}"]


def colab_dataset(general: dict, subsets: list[dict]) -> dict:
    """The dataset_config both notebooks write: [general] and one dataset of the subsets."""
    plain = [{k: v for k, v in s.items() if k != "images"} for s in subsets]
    return {"general": general, "datasets": [{"subsets": plain}]}


def colab_sd15(choice: dict) -> tuple[dict, dict]:
    """Lora_Trainer.ipynb create_config with the form values in ``choice``."""
    c = {
        "num_repeats": 10,
        "preferred_unit": "Epochs",
        "how_many": 10,
        "train_batch_size": 2,
        "unet_lr": 5e-4,
        "text_encoder_lr": 1e-4,
        "lr_scheduler": "cosine_with_restarts",
        "lr_scheduler_number": 3,
        "lr_warmup_ratio": 0.05,
        "network_dim": 16,
        "network_alpha": 8,
        "lora_type": "LoRA",
        "optimizer": "AdamW8bit",
        "optimizer_args": None,
        "resolution": 512,
        "subsets": None,
        **choice,
    }
    project = c["project"]
    epochs, steps, subsets = colab_run(c)
    num_cycles = c["lr_scheduler_number"] if c["lr_scheduler"] == "cosine_with_restarts" else 0
    power = c["lr_scheduler_number"] if c["lr_scheduler"] == "polynomial" else 0
    # validate_dataset: the notebook's own estimate of the run for the warmup
    per_epoch = sum(s["images"] * s["num_repeats"] for s in subsets) / c["train_batch_size"]
    total = steps or int(epochs * per_epoch)
    warmup = int(total * c["lr_warmup_ratio"])
    network_args = colab_network_args(c, 8, 1)
    config = {
        "additional_network_arguments": {
            "unet_lr": c["unet_lr"],
            "text_encoder_lr": c["text_encoder_lr"],
            "network_dim": c["network_dim"],
            "network_alpha": c["network_alpha"],
            "network_module": "networks.lora",
            "network_args": network_args,
            "network_train_unet_only": True if c["text_encoder_lr"] == 0 else None,
        },
        "optimizer_arguments": {
            "learning_rate": c["unet_lr"],
            "lr_scheduler": c["lr_scheduler"],
            "lr_scheduler_num_cycles": num_cycles if c["lr_scheduler"] == "cosine_with_restarts" else None,
            "lr_scheduler_power": power if c["lr_scheduler"] == "polynomial" else None,
            "lr_warmup_steps": warmup if c["lr_scheduler"] != "constant" else None,
            "optimizer_type": c["optimizer"],
            "optimizer_args": c["optimizer_args"] or None,
        },
        "training_arguments": {
            "max_train_steps": steps,
            "max_train_epochs": epochs,
            "save_every_n_epochs": 1,
            "save_last_n_epochs": 10,
            "train_batch_size": c["train_batch_size"],
            "clip_skip": 2,
            "min_snr_gamma": 5.0,
            "weighted_captions": False,
            "seed": 42,
            "max_token_length": 225,
            "xformers": True,
            "lowram": True,
            "max_data_loader_n_workers": 8,
            "persistent_data_loader_workers": True,
            "save_precision": "fp16",
            "mixed_precision": "fp16",
            "output_dir": f"{COLAB_ROOT}/{project}/output",
            "logging_dir": f"{COLAB_ROOT}/_logs",
            "output_name": project,
            "log_prefix": project,
        },
        "model_arguments": {
            "pretrained_model_name_or_path": "/content/animefull-final-pruned-fp16.safetensors",
            "v2": False,
            "v_parameterization": None,
        },
        "saving_arguments": {"save_model_as": "safetensors"},
        "dreambooth_arguments": {"prior_loss_weight": 1.0},
        "dataset_arguments": {"cache_latents": True},
    }
    res = c["resolution"]
    general = {
        "resolution": res,
        "shuffle_caption": True,
        "keep_tokens": 1,
        "flip_aug": False,
        "caption_extension": ".txt",
        "enable_bucket": True,
        "bucket_reso_steps": 64,
        "bucket_no_upscale": False,
        "min_bucket_reso": 320 if res > 640 else 256,
        "max_bucket_reso": 1280 if res > 640 else 1024,
    }
    return drop_none_in_sections(config), drop_none_in_sections(colab_dataset(general, subsets))


def drop_none_in_sections(doc: dict) -> dict:
    return {
        k: ({kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) else v) for k, v in doc.items()
    }


def colab_xl(choice: dict) -> tuple[dict, dict]:
    """Lora_Trainer_XL.ipynb create_config (+ calculate_rex_steps for rex) with the form values."""
    c = {
        "num_repeats": 2,
        "preferred_unit": "Epochs",
        "how_many": 10,
        "train_batch_size": 4,
        "unet_lr": 3e-4,
        "text_encoder_lr": 6e-5,
        "lr_scheduler": "cosine_with_restarts",
        "lr_scheduler_number": 3,
        "lr_warmup_ratio": 0.05,
        "network_dim": 8,
        "network_alpha": 4,
        "lora_type": "LoRA",
        "optimizer": "AdamW8bit",
        "recommended_values": True,
        "cache_text_encoder_outputs": False,
        "subsets": None,
        **choice,
    }
    project = c["project"]
    epochs, steps, subsets = colab_run(c)
    unet_lr, te_lr, alpha = c["unet_lr"], c["text_encoder_lr"], c["network_alpha"]
    optimizer, optimizer_args, full_precision = c["optimizer"], [], True
    if c["recommended_values"]:
        if any(o in optimizer.lower() for o in ("dadapt", "prodigy")):
            unet_lr = te_lr = 0.75
            alpha = c["network_dim"]
            full_precision = False
        optimizer_args = {
            "Prodigy": [
                "decouple=True",
                "weight_decay=0.01",
                "betas=[0.9,0.999]",
                "d_coef=2",
                "use_bias_correction=True",
                "safeguard_warmup=True",
            ],
            "AdamW8bit": ["weight_decay=0.1", "betas=[0.9,0.99]"],
            "AdaFactor": ["scale_parameter=False", "relative_step=False", "warmup_init=False"],
            "Came": ["weight_decay=0.04"],
        }.get(optimizer, [])
    if optimizer == "Came":
        optimizer = "LoraEasyCustomOptimizer.came.CAME"
    lr_scheduler = c["lr_scheduler"]
    num_cycles = power = c["lr_scheduler_number"]
    scheduler_type, scheduler_args = None, None
    if "rex" in lr_scheduler:
        lr_scheduler = "cosine"
        scheduler_type = "LoraEasyCustomOptimizer.RexAnnealingWarmRestarts.RexAnnealingWarmRestarts"
        scheduler_args = ["min_lr=1e-9", "gamma=0.9", "d=0.9"]
    images_times_repeats = sum(s["images"] * s["num_repeats"] for s in subsets)
    total = steps or int(epochs * images_times_repeats / c["train_batch_size"])
    warmup = int(total * c["lr_warmup_ratio"])
    if scheduler_type:
        # calculate_rex_steps: sd-scripts' bucket count (one bucket here) unless a step count is set
        run = steps or one_bucket_steps(images_times_repeats, c["train_batch_size"], 1, epochs)
        scheduler_args.append(f"first_cycle_max_steps={run // (num_cycles or 1)}")
        rex_warmup = round(run * c["lr_warmup_ratio"]) // (num_cycles or 1)
        if rex_warmup > 0:
            scheduler_args.append(f"warmup_steps={rex_warmup}")
    cache_te = c["cache_text_encoder_outputs"]
    mixed = "fp16"
    network_args = colab_network_args(c, 16, 8)
    config = {
        "network_arguments": {
            "unet_lr": unet_lr,
            "text_encoder_lr": te_lr if not cache_te else 0,
            "network_dim": c["network_dim"],
            "network_alpha": alpha,
            "network_module": "networks.lora",
            "network_args": network_args,
            "network_train_unet_only": te_lr == 0 or cache_te,
            "network_weights": None,
        },
        "optimizer_arguments": {
            "learning_rate": unet_lr,
            "lr_scheduler": lr_scheduler,
            "lr_scheduler_type": scheduler_type,
            "lr_scheduler_args": scheduler_args,
            "lr_scheduler_num_cycles": num_cycles if lr_scheduler == "cosine_with_restarts" else None,
            "lr_scheduler_power": power if lr_scheduler == "polynomial" else None,
            "lr_warmup_steps": warmup if lr_scheduler not in ("cosine", "constant") else None,
            "optimizer_type": optimizer,
            "optimizer_args": optimizer_args or None,
            "loss_type": "l2",
            "max_grad_norm": 1.0,
        },
        "training_arguments": {
            "lowram": True,
            "pretrained_model_name_or_path": "/content/Illustrious-XL-v0.1.safetensors",
            "vae": "/content/sdxl_vae.safetensors",
            "max_train_steps": steps,
            "max_train_epochs": epochs,
            "train_batch_size": c["train_batch_size"],
            "seed": 42,
            "max_token_length": 225,
            "xformers": False,
            "sdpa": True,
            "min_snr_gamma": 8.0,
            "ip_noise_gamma": None,
            "no_half_vae": True,
            "gradient_checkpointing": True,
            "gradient_accumulation_steps": 1,
            "max_data_loader_n_workers": 1,
            "persistent_data_loader_workers": True,
            "mixed_precision": mixed,
            "full_fp16": full_precision,
            "full_bf16": False,
            "cache_latents": True,
            "cache_latents_to_disk": True,
            "cache_text_encoder_outputs": cache_te,
            "min_timestep": 0,
            "max_timestep": 1000,
            "prior_loss_weight": 1.0,
            "multires_noise_iterations": 6,
            "multires_noise_discount": 0.3,
        },
        "saving_arguments": {
            "save_precision": "fp16",
            "save_model_as": "safetensors",
            "save_every_n_epochs": 1,
            "save_last_n_epochs": 10,
            "output_name": project,
            "output_dir": f"{COLAB_ROOT}/{project}/output",
            "log_prefix": project,
            "logging_dir": f"{COLAB_ROOT}/_logs",
        },
    }
    general = {
        "resolution": 1024,
        "shuffle_caption": not cache_te,
        "keep_tokens": 1,
        "flip_aug": False,
        "caption_extension": ".txt",
        "enable_bucket": True,
        "bucket_no_upscale": False,
        "bucket_reso_steps": 64,
        "min_bucket_reso": 256,
        "max_bucket_reso": 4096,
    }
    return drop_none_in_sections(config), drop_none_in_sections(colab_dataset(general, subsets))


COLAB_SD15_CHOICES = [
    (
        "sd15_defaults_cwr3_epochs",
        "the notebook's defaults: cosine_with_restarts, 3 cycles, 5 % warmup, 10 epochs",
        {"images": 20},
    ),
    (
        "sd15_constant_steps",
        "constant, 2000 steps",
        {"images": 25, "lr_scheduler": "constant", "preferred_unit": "Steps", "how_many": 2000},
    ),
    (
        "sd15_polynomial_power3",
        "polynomial (the number is its power: 3), 10 % warmup, 6 epochs",
        {"images": 18, "lr_scheduler": "polynomial", "lr_warmup_ratio": 0.1, "how_many": 6},
    ),
    (
        "sd15_cosine_style_no_te",
        "cosine, text encoder LR 0 (style), batch 3, 15 epochs",
        {
            "images": 25,
            "num_repeats": 8,
            "lr_scheduler": "cosine",
            "text_encoder_lr": 0,
            "train_batch_size": 3,
            "how_many": 15,
        },
    ),
    (
        "sd15_cww_steps_locon",
        "constant_with_warmup, 1200 steps, LoCon",
        {
            "images": 30,
            "lr_scheduler": "constant_with_warmup",
            "preferred_unit": "Steps",
            "how_many": 1200,
            "lora_type": "LoCon",
        },
    ),
    (
        "sd15_linear_two_subsets",
        "linear, custom dataset of two folders (repeats 6 and 2), 8 epochs",
        {"lr_scheduler": "linear", "how_many": 8, "subsets": "two"},
    ),
]

COLAB_XL_CHOICES = [
    (
        "xl_defaults_cwr3_epochs",
        "the notebook's defaults: cosine_with_restarts, 3 cycles, 5 % warmup, 10 epochs, AdamW8bit",
        {"images": 50},
    ),
    (
        "xl_rex_epochs",
        "rex, 10 epochs (rex steps from the data set)",
        {"images": 40, "num_repeats": 3, "lr_scheduler": "rex"},
    ),
    (
        "xl_rex_steps",
        "rex, 1000 steps",
        {"images": 30, "lr_scheduler": "rex", "preferred_unit": "Steps", "how_many": 1000},
    ),
    (
        "xl_constant_prodigy_steps",
        "constant, Prodigy with the recommended values, 1500 steps",
        {"images": 35, "lr_scheduler": "constant", "optimizer": "Prodigy", "preferred_unit": "Steps", "how_many": 1500},
    ),
    (
        "xl_polynomial_locon",
        "polynomial (power 2), 10 % warmup, LoCon, 8 epochs, 1 repeat",
        {
            "images": 60,
            "num_repeats": 1,
            "lr_scheduler": "polynomial",
            "lr_scheduler_number": 2,
            "lr_warmup_ratio": 0.1,
            "lora_type": "LoCon",
            "how_many": 8,
        },
    ),
    (
        "xl_linear_style_no_te",
        "linear, no warmup, text encoder LR 0, 12 epochs",
        {"images": 45, "lr_scheduler": "linear", "lr_warmup_ratio": 0.0, "text_encoder_lr": 0, "how_many": 12},
    ),
    (
        "xl_cosine_came_two_subsets",
        "cosine, Came, custom dataset of two folders (repeats 3 and 1), 10 epochs",
        {"lr_scheduler": "cosine", "optimizer": "Came", "subsets": "two"},
    ),
    (
        "xl_cww_steps",
        "constant_with_warmup, 5 % warmup, 2000 steps",
        {"images": 50, "lr_scheduler": "constant_with_warmup", "preferred_unit": "Steps", "how_many": 2000},
    ),
    (
        "xl_rex_cached_te",
        "rex, text encoder outputs cached (so UNet only), 3 cycles, 10 epochs",
        {"images": 24, "num_repeats": 4, "lr_scheduler": "rex", "cache_text_encoder_outputs": True},
    ),
]


def two_subsets(project: str, repeats: tuple[int, int], counts: tuple[int, int]) -> list[dict]:
    base = f"{COLAB_ROOT}/{project}/dataset"
    return [
        {"num_repeats": repeats[0], "image_dir": f"{base}/main", "images": counts[0]},
        {"num_repeats": repeats[1], "image_dir": f"{base}/extra", "images": counts[1]},
    ]


def build_colab(src: Path, out: Path) -> list[dict]:
    checkout = src / COLAB
    commit = commit_of(checkout)
    entries = []
    for notebook, choices, writer, script, pair in (
        ("Lora_Trainer.ipynb", COLAB_SD15_CHOICES, colab_sd15, "train_network", (6, 2)),
        ("Lora_Trainer_XL.ipynb", COLAB_XL_CHOICES, colab_xl, "sdxl_train_network", (3, 1)),
    ):
        for short, text, choice in choices:
            name = "colab_" + short
            choice = dict(choice, project=name)
            if choice.get("subsets") == "two":
                choice["subsets"] = two_subsets(name, pair, (16, 9))
            config, dataset = writer(choice)
            (out / f"{name}.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
            (out / f"{name}.dataset.toml").write_text(tomli_w.dumps(dataset), encoding="utf-8")
            data_root = f"{COLAB_ROOT}/{name}/dataset"
            if choice.get("subsets"):
                folders = {s["image_dir"][len(data_root) + 1 :]: s["images"] for s in choice["subsets"]}
            else:
                folders = {"": choice["images"]}
            entries.append(
                corpus_entry(
                    name,
                    "kohya-colab",
                    "hollowstrawberry/kohya-colab",
                    commit,
                    dataset_config=True,
                    source_paths=[f"{notebook} (create_config, validate_dataset, calculate_rex_steps)"],
                    choices=text + "; " + ", ".join(f"{k or 'dataset'}: {v} images" for k, v in folders.items()),
                    script=script,
                    data_root=data_root,
                    folders=folders,
                )
            )
    return entries


# ----------------------------------------------------------------------------------------------
# (c) LoRA_Easy backend

REX_CLASS = "LoraEasyCustomOptimizer.RexAnnealingWarmRestarts.RexAnnealingWarmRestarts"
CAWR_CLASS = "LoraEasyCustomOptimizer.CosineAnnealingWarmRestarts.CosineAnnealingWarmRestarts"


def easy_value(value) -> str:
    """utils/process.py: strings in double quotes, bools lower-case, everything else str()."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value}"


def easy_args(body: dict) -> dict:
    """utils/validation.py validate_args: flatten the sections, drop empty values, list-ify arg dicts."""
    out = {}
    for section in body.values():
        for arg, val in section.items():
            if arg in ("optimizer_args", "lr_scheduler_args", "network_args"):
                val = [f"{k}={v.capitalize() if v in ('true', 'false') else v}" for k, v in val.items()]
                if arg == "network_args" and any(v.startswith("algo=") for v in val):
                    out["network_module"] = "lycoris.kohya"
            if not val:
                continue
            if isinstance(val, str) and val.lower() == "false":
                continue
            if isinstance(val, str) and val.lower() == "true":
                val = True
            out[arg] = val
    out.setdefault("network_module", "networks.lora")
    return out


def easy_steps(args: dict, dataset: dict) -> int:
    if "max_train_steps" in args:
        return args["max_train_steps"]
    total = sum(s["num_repeats"] * s["images"] for s in dataset["subsets"])
    return one_bucket_steps(
        total, dataset["general"]["batch_size"], args.get("gradient_accumulation_steps", 1), args["max_train_epochs"]
    )


def easy_postprocess(args: dict, dataset: dict) -> None:
    """validate_warmup_ratio then validate_restarts, then the sdxl flag is removed."""
    if "warmup_ratio" in args:
        steps = round(easy_steps(args, dataset) * args["warmup_ratio"])
        if "lr_scheduler_type" in args:
            args["lr_scheduler_args"].append(f"warmup_steps={steps // args.get('lr_scheduler_num_cycles', 1)}")
        else:
            args["lr_warmup_steps"] = steps
        del args["warmup_ratio"]
    if "lr_scheduler_num_cycles" in args and "lr_scheduler_type" in args:
        steps = easy_steps(args, dataset) // args["lr_scheduler_num_cycles"]
        args["lr_scheduler_args"].append(f"first_cycle_max_steps={steps}")
        del args["lr_scheduler_num_cycles"]
    args.pop("sdxl", None)


def easy_config_text(args: dict) -> str:
    return "".join(f"{k} = {easy_value(v)}\n" for k, v in args.items())


def easy_dataset_text(general: dict, subsets: list[dict]) -> str:
    text = "[general]\n" + "".join(f"{k} = {easy_value(v)}\n" for k, v in general.items() if v)
    text += "\n[[datasets]]\n"
    for subset in subsets:
        text += "\n\t[[datasets.subsets]]\n"
        text += "".join(f"\t{k} = {easy_value(v)}\n" for k, v in subset.items() if v and k not in ("name", "images"))
    return text


def easy_body(name: str, sdxl: bool, optimizer: dict, length: dict, network: dict | None = None) -> dict:
    home = f"/home/user/lora_easy/{name}"
    return {
        "general_args": {
            "pretrained_model_name_or_path": "/home/user/models/"
            + ("noobaiXL_epsPred11.safetensors" if sdxl else "anyloraCheckpoint_bakedvaeFp16.safetensors"),
            "sdxl": sdxl,
            "mixed_precision": "bf16",
            "seed": 23,
            "max_token_length": 225,
            "sdpa": True,
            "gradient_checkpointing": True,
            "cache_latents": True,
            "max_data_loader_n_workers": 1,
            "persistent_data_loader_workers": True,
            "clip_skip": 0 if sdxl else 2,
            **length,
        },
        "network_args": {"network_dim": 16, "network_alpha": 8, **(network or {})},
        "optimizer_args": {
            "optimizer_type": "AdamW8bit",
            "loss_type": "l2",
            "max_grad_norm": 1.0,
            "min_snr_gamma": 8,
            **optimizer,
        },
        "saving_args": {
            "output_dir": f"{home}/output",
            "output_name": name,
            "save_precision": "fp16",
            "save_model_as": "safetensors",
            "save_every_n_epochs": 1,
        },
    }


EASY_CHOICES = [
    (
        "easy_sdxl_rex_epochs",
        "SDXL, REX class, 3 cycles, warmup ratio 0.05, 10 epochs, two subsets",
        True,
        {
            "learning_rate": 1e-4,
            "unet_lr": 1e-4,
            "text_encoder_lr": 1e-5,
            "lr_scheduler": "cosine",
            "lr_scheduler_type": REX_CLASS,
            "lr_scheduler_args": {"min_lr": 1e-6, "gamma": 0.9, "d": 0.9},
            "lr_scheduler_num_cycles": 3,
            "warmup_ratio": 0.05,
            "optimizer_args": {"weight_decay": "0.1", "betas": "0.9,0.99"},
        },
        {"max_train_epochs": 10},
        4,
        1,
        [("main", 3, 24), ("extra", 1, 10)],
    ),
    (
        "easy_sdxl_cawr_class",
        "SDXL, LoRA_Easy's CosineAnnealingWarmRestarts class, gamma 0.85, 4 cycles, warmup ratio 0.02, 8 epochs",
        True,
        {
            "learning_rate": 2e-4,
            "unet_lr": 2e-4,
            "text_encoder_lr": 2e-5,
            "lr_scheduler": "cosine",
            "lr_scheduler_type": CAWR_CLASS,
            "lr_scheduler_args": {"gamma": 0.85, "min_lr": 1e-6},
            "lr_scheduler_num_cycles": 4,
            "warmup_ratio": 0.02,
        },
        {"max_train_epochs": 8},
        2,
        1,
        [("main", 2, 40)],
    ),
    (
        "easy_sd15_cosine_warmup_ratio",
        "SD 1.5, cosine, warmup ratio 0.1 (becomes lr_warmup_steps), 12 epochs",
        False,
        {
            "learning_rate": 5e-4,
            "unet_lr": 5e-4,
            "text_encoder_lr": 1e-4,
            "lr_scheduler": "cosine",
            "warmup_ratio": 0.1,
        },
        {"max_train_epochs": 12},
        2,
        1,
        [("main", 10, 15)],
    ),
    (
        "easy_sd15_rex_steps",
        "SD 1.5, REX class, 2 cycles, warmup ratio 0.02, 1200 steps",
        False,
        {
            "learning_rate": 3e-4,
            "unet_lr": 3e-4,
            "text_encoder_lr": 6e-5,
            "lr_scheduler": "cosine",
            "lr_scheduler_type": REX_CLASS,
            "lr_scheduler_args": {"min_lr": 1e-7, "gamma": 0.8, "d": 0.9},
            "lr_scheduler_num_cycles": 2,
            "warmup_ratio": 0.02,
        },
        {"max_train_steps": 1200},
        3,
        1,
        [("main", 5, 30)],
    ),
    (
        "easy_sdxl_cww_steps",
        "SDXL, constant_with_warmup, warmup ratio 0.05, 2000 steps, LoCon via LyCORIS",
        True,
        {
            "learning_rate": 1e-4,
            "unet_lr": 1e-4,
            "text_encoder_lr": 1e-5,
            "lr_scheduler": "constant_with_warmup",
            "warmup_ratio": 0.05,
        },
        {"max_train_steps": 2000},
        4,
        1,
        [("main", 2, 50)],
        {"network_args": {"algo": "locon", "conv_dim": "8", "conv_alpha": "4"}},
    ),
    (
        "easy_sd15_polynomial_accum",
        "SD 1.5, polynomial power 2, gradient accumulation 2, 10 epochs",
        False,
        {
            "learning_rate": 4e-4,
            "unet_lr": 4e-4,
            "text_encoder_lr": 8e-5,
            "lr_scheduler": "polynomial",
            "lr_scheduler_power": 2.0,
            "warmup_ratio": 0.05,
        },
        {"max_train_epochs": 10, "gradient_accumulation_steps": 2},
        2,
        2,
        [("main", 6, 21), ("extra", 2, 11)],
    ),
    (
        "easy_sd15_constant_warmup_ratio",
        "SD 1.5, constant with warmup ratio 0.05: the backend turns the ratio into lr_warmup_steps,"
        " which sd-scripts refuses for constant (a real mistake the backend lets through), 10 epochs",
        False,
        {
            "learning_rate": 1e-4,
            "unet_lr": 1e-4,
            "text_encoder_lr": 5e-5,
            "lr_scheduler": "constant",
            "warmup_ratio": 0.05,
        },
        {"max_train_epochs": 10},
        2,
        1,
        [("main", 10, 20)],
    ),
]


def build_easy(src: Path, out: Path) -> list[dict]:
    checkout = src / EASY
    commit = commit_of(checkout)
    entries = []
    for item in EASY_CHOICES:
        name, text, sdxl, optimizer, length, batch, accumulation, subsets = item[:8]
        assert accumulation == length.get("gradient_accumulation_steps", 1), name
        network = item[8] if len(item) > 8 else None
        data_root = f"/home/user/lora_easy/{name}/images"
        body = easy_body(name, sdxl, optimizer, length, network)
        args = easy_args(body)
        general = {
            "resolution": 1024 if sdxl else 512,
            "batch_size": batch,
            "enable_bucket": True,
            "min_bucket_reso": 256,
            "max_bucket_reso": 2048 if sdxl else 1024,
            "bucket_reso_steps": 64,
            "bucket_no_upscale": True,
            "caption_extension": ".txt",
            "shuffle_caption": True,
            "keep_tokens": 1,
        }
        subset_args = [
            {
                "name": folder,
                "image_dir": f"{data_root}/{folder}",
                "num_repeats": repeats,
                "images": count,
                "caption_extension": ".txt",
            }
            for folder, repeats, count in subsets
        ]
        easy_postprocess(args, {"general": general, "subsets": subset_args})
        (out / f"{name}.toml").write_text(easy_config_text(args), encoding="utf-8")
        (out / f"{name}.dataset.toml").write_text(easy_dataset_text(general, subset_args), encoding="utf-8")
        entries.append(
            corpus_entry(
                name,
                "LoRA_Easy_Training_scripts (backend)",
                "derrian-distro/LoRA_Easy_Training_scripts_Backend",
                commit,
                dataset_config=True,
                source_paths=[
                    "utils/validation.py (validate_args, validate_warmup_ratio, validate_restarts)",
                    "utils/process.py",
                ],
                choices=text + "; " + ", ".join(f"{f}: {c} images x {r}" for f, r, c in subsets),
                script="sdxl_train_network" if sdxl else "train_network",
                data_root=data_root,
                folders={folder: count for folder, _r, count in subsets},
            )
        )
    return entries


# ----------------------------------------------------------------------------------------------
# README


README_HEAD = """# Real-world configs

Each `*.toml` here is a file that a kohya tool writes, produced by `tools/build_realworld_corpus.py`
replaying the tool's own config-writing code on its inputs (a kohya_ss GUI preset, a kohya-colab
notebook's form values, a LoRA_Easy frontend request). No file is hand-edited. `manifest.json` holds the
same facts as the table below in machine-readable form.

Regenerate with the checkouts of the three repositories side by side in SRC_DIR:

    python tools/build_realworld_corpus.py SRC_DIR
    SDSCRIPTS_VENV/bin/python tools/gen_sdscripts_golden.py SD_SCRIPTS_CHECKOUT \\
        --custom-scheduler LORA_EASY_BACKEND/custom_scheduler

The same script with `--verify-exports PROJECT_PYTHON` writes nothing: it exports every config with
`lora-sched export --kohya` and checks that sd-scripts, reading the export, steps the golden curve.

sd-scripts' and musubi-tuner's documentation examples are not copied here (they would be verbatim
copies): `python tools/check_public_configs.py CHECKOUT...` validates them where they are and prints a
summary table.

## How the replays write the files

- kohya_ss GUI: the LoRA tab's `train_model` turns its fields into one flat table, drops every value
  that is "", False, 0 or None, sorts the keys and writes it with the `toml` package. Fields a preset
  lacks keep the GUI's start-up values. Our files are written with tomli-w: same tables and values,
  different spacing (the `toml` package writes `[ "a", "b",]`).
- kohya-colab: `create_config` writes the sectioned training config and a separate dataset config;
  the notebook passes the dataset config to sd-scripts on the command line (`--dataset_config`), so the
  training config does not name it. Written with tomli-w (the notebook uses `toml.dumps`).
- LoRA_Easy: the backend writes `key = value` lines itself (Python `str()` of each value, so lists come
  out as `['a=1', 'b=2']`) and a dataset file with tab-indented `[[datasets.subsets]]`; it also passes
  the dataset file on the command line. The frontend's request body is not in the backend repository:
  the bodies used here are ours, shaped as the backend reads them (sections of `{arg: value}`, with
  `lr_scheduler_args`/`optimizer_args`/`network_args` as tables and `warmup_ratio`).

## Synthetic data sets

Every config is tested against folders of identical square PNG images built at test time
(`folders` in manifest.json: folder relative to `data_root` -> number of images, with a `.txt` and
a `.caption` caption beside each), so all images share one bucket. The config's `data_root` path is
replaced by the temporary folder before the file is read. A GUI config's `max_train_steps` is the
GUI's own estimate from those folders; kohya-colab's and LoRA_Easy's REX step arguments are the
notebook's/backend's own computation on them.

## Golden curves

`golden/NAME.csv` holds, for every step of the run, the LR of every param group as sd-scripts' own
`get_scheduler_fix` gives it (see the header comment of each file for the sd-scripts commit and how the
groups were formed). Where sd-scripts refuses the config, the file holds the error instead. With the
`adafactor` schedule sd-scripts' scheduler only relays what the Adafactor optimizer computes once
gradients exist: the golden holds that optimizer's relative step size (its own `_get_lr`), without the
parameter-RMS factor, which depends on the weights.

## Files

| file | tool | source (repository @ commit: path) | choices | changes |
| --- | --- | --- | --- | --- |
"""


def write_readme(out: Path, entries: list[dict]) -> None:
    rows = []
    for e in entries:
        files = f"`{e['config']}`" + (f" + `{e['dataset_config']}`" if e["dataset_config"] else "")
        source = f"{e['repo']} @ {e['commit'][:12]}: " + "; ".join(e["source_paths"])
        rows.append(f"| {files} | {e['tool']} | {source} | {e['choices']} | {e['changes']} |")
    (out / "README.md").write_text(README_HEAD + "\n".join(rows) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src_dir", type=Path, help="folder holding the OWNER+NAME checkouts")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "realworld")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for old in list(args.out.glob("*.toml")):
        old.unlink()
    entries = (
        build_gui(args.src_dir, args.out) + build_colab(args.src_dir, args.out) + build_easy(args.src_dir, args.out)
    )
    manifest = {"files": entries}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    write_readme(args.out, entries)
    print(f"wrote {len(entries)} configs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

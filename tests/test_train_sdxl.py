"""SDXL training (builtin:tiny-sdxl, and a diffusers folder of it), as sd-scripts' sdxl_train_network:
both text encoders, the pooled embedding and size/crop ids, kohya's SDXL key names and metadata, a
LoRA that diffusers' StableDiffusionXLPipeline loads, v-prediction; the LR log equals the preview."""

from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

torch = pytest.importorskip("torch")

from test_train_e2e import assert_log_matches_preview, preview_lrs, read_log  # noqa: E402
from train_support import write_train_config  # noqa: E402

from lora_sched.cli import main  # noqa: E402

SDXL_RUN = {"pretrained_model_name_or_path": "builtin:tiny-sdxl", "max_train_steps": 4, "lr_warmup_steps": 1}


def _lora(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        names = list(fh.keys())  # safe_open is not a mapping
        return {k: fh.get_tensor(k) for k in names}, fh.metadata()


def _image(pipe):
    gen = torch.Generator().manual_seed(0)
    return pipe("a red circle", num_inference_steps=2, output_type="np", generator=gen).images


@pytest.mark.slow
def test_sdxl_lora_with_both_text_encoders_loads_in_diffusers(tmp_path):
    from lora_sched.train.model import build_tiny_sdxl

    out = tmp_path / "run"
    config = write_train_config(tmp_path / "c.toml", out, SDXL_RUN, text_encoder_lr=[5e-4, 1e-4])
    assert main(["train", str(config)]) == 0
    rows = read_log(out)
    assert_log_matches_preview(rows, preview_lrs(config), ["unet", "text_encoder"])  # list: its first value

    tensors, meta = _lora(out / "lora.safetensors")
    modules = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in tensors}
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q" in modules  # SGM names, as sd-scripts
    assert "lora_unet_middle_block_1_transformer_blocks_1_attn2_to_out_0" in modules
    assert "lora_unet_output_blocks_5_1_transformer_blocks_0_attn2_to_k" in modules
    assert not [m for m in modules if "down_blocks" in m or "mid_block" in m or "up_blocks" in m]
    assert "lora_te1_text_model_encoder_layers_1_self_attn_q_proj" in modules
    assert "lora_te2_text_model_encoder_layers_2_self_attn_out_proj" in modules
    # the first encoder's last layer feeds nothing (SDXL reads its penultimate state): as sd-scripts,
    # its LoRA is in the file, untrained (lora_up = 0)
    last = "lora_te1_text_model_encoder_layers_2_self_attn_q_proj.lora_up.weight"
    assert not tensors[last].any() and tensors[last.replace("layers_2", "layers_1")].any()
    counts = {p: len([m for m in modules if m.startswith(p)]) for p in ("lora_unet_", "lora_te1_", "lora_te2_")}
    # as sd-scripts' networks.lora (tests/test_train_network.py): UNet: 10 layers x 17 transformer blocks
    # (down 2 x 1 + 2 x 2, mid 2, up 3 x 2 + 3 x 1) + proj_in / proj_out x 11 Transformer2DModels;
    # text encoders: q/k/v/out_proj, fc1, fc2 x 3 layers each
    assert counts == {"lora_unet_": 192, "lora_te1_": 18, "lora_te2_": 18}
    assert all(tensors[f"{m}.alpha"].item() == 1.0 for m in modules)
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0" and meta["ss_v2"] == "False"
    assert meta["ss_sd_model_name"] == "builtin:tiny-sdxl" and meta["ss_network_module"] == "networks.lora"
    assert meta["ss_text_encoder_lr"] == "0.0005" and meta["ss_resolution"] == "(64, 64)"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert meta["modelspec.prediction_type"] == "epsilon"

    pipe = build_tiny_sdxl().pipeline()
    before = _image(pipe)
    pipe.load_lora_weights(str(out / "lora.safetensors"))
    # every LoRA module of the file found its layer: diffusers mapped kohya's SDXL names back
    loaded = {
        part: sum(1 for n, _ in getattr(pipe, part).named_modules() if n.endswith(".lora_A"))
        for part in ("unet", "text_encoder", "text_encoder_2")
    }
    assert loaded == {"unet": 192, "text_encoder": 18, "text_encoder_2": 18}
    assert not torch.allclose(torch.from_numpy(before), torch.from_numpy(_image(pipe)))


@pytest.mark.slow
def test_sdxl_folder_v_prediction_unet_only(tmp_path):
    folder = tmp_path / "tiny-sdxl"
    assert main(["model", "save", "builtin:tiny-sdxl", str(folder)]) == 0
    out = tmp_path / "run"
    values = {**SDXL_RUN, "pretrained_model_name_or_path": str(folder), "text_encoder_lr": 0.0}
    config = write_train_config(tmp_path / "c.toml", out, values, v_parameterization=True, max_train_steps=3)
    assert main(["train", str(config)]) == 0
    rows = read_log(out)
    assert "lr_text_encoder" not in rows[0]
    assert_log_matches_preview(rows, preview_lrs(config), ["unet"])
    tensors, meta = _lora(out / "lora.safetensors")
    assert tensors and all(k.startswith("lora_unet_") for k in tensors)
    assert meta["ss_sd_model_name"] == "tiny-sdxl" and meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.prediction_type"] == "v"


@pytest.mark.slow
def test_sdxl_single_file_loads_the_same_model_and_trains_both_text_encoders(tmp_path):
    from ldm_support import save_single_file

    from lora_sched.train.model import build_tiny_sdxl
    from lora_sched.train.sources import load_model

    built = build_tiny_sdxl()
    path = save_single_file(built, "sdxl", tmp_path / "tiny-sdxl.safetensors")
    loaded = load_model(str(path))
    assert loaded.kind == "sdxl" and loaded.tokenizer_2.pad_token == "!"
    for part, module in built.modules().items():
        original, read = module.state_dict(), loaded.modules()[part].state_dict()
        assert set(original) <= set(read), part  # (a file's text encoder 2 may carry its position ids)
        assert all(torch.equal(original[k], read[k]) for k in original), part

    out = tmp_path / "run"
    config = write_train_config(
        tmp_path / "c.toml", out, {**SDXL_RUN, "pretrained_model_name_or_path": str(path)}, max_train_steps=2
    )
    assert main(["train", str(config)]) == 0
    assert_log_matches_preview(read_log(out), preview_lrs(config), ["unet", "text_encoder"])
    tensors, meta = _lora(out / "lora.safetensors")
    prefixes = {k.split("_")[1] for k in tensors}
    assert prefixes == {"unet", "te1", "te2"} and meta["ss_sd_model_name"] == "tiny-sdxl.safetensors"


@pytest.mark.slow
@pytest.mark.parametrize("text_encoder_lr", [0.0, 1e-4], ids=["frozen-encoders", "trained-encoders"])
def test_sdxl_trains_with_caption_options_and_flips(tmp_path, monkeypatch, text_encoder_lr):
    """kohya-colab's XL defaults (shuffle_caption, keep_tokens, flip_aug...) train: each draw's caption
    goes through both encoders, mirrored draws get mirrored crop ids, the log equals the preview."""
    from PIL import Image

    from lora_sched.train import steps

    data = tmp_path / "data" / "2_tags"
    data.mkdir(parents=True)
    for i, size in enumerate([(45, 64), (64, 45)]):
        Image.new("RGB", size, (40 * i, 120, 200)).save(data / f"img{i}.png")
        (data / f"img{i}.txt").write_text(f"sks{i}, red, green, blue, round, square", "utf-8")
    out = tmp_path / "run"
    values = {**SDXL_RUN, "train_data_dir": str(data.parent), "resolution": 64, "text_encoder_lr": text_encoder_lr}
    config = write_train_config(
        tmp_path / "c.toml", out, values, max_train_steps=6, shuffle_caption=True, keep_tokens=1, flip_aug=True
    )
    seen = []
    real_loss = steps.denoising_loss

    def recording_loss(unet, condition, noise_scheduler, data, rows, *rest, **options):
        hidden, extra = condition(data, rows, torch.device("cpu"))
        seen.append((hidden.detach().clone(), extra["added_cond_kwargs"]["time_ids"].clone()))
        return real_loss(unet, condition, noise_scheduler, data, rows, *rest, **options)

    monkeypatch.setattr(steps, "denoising_loss", recording_loss)
    assert main(["train", str(config)]) == 0
    groups = ["unet", "text_encoder"] if text_encoder_lr else ["unet"]
    assert_log_matches_preview(read_log(out), preview_lrs(config), groups)
    crops = {tuple(t.tolist()) for _, ids in seen for t in ids}
    # img0 (45 x 64 in 64 x 64): crop left 9, right 54 -> mirrored left 10; img1 (64 x 45): top 9, left 0 either way
    assert crops <= {(64, 45, 0, 9, 64, 64), (64, 45, 0, 10, 64, 64), (45, 64, 9, 0, 64, 64)}
    assert (64, 45, 0, 10, 64, 64) in crops and (64, 45, 0, 9, 64, 64) in crops
    encoded = {t.numpy().tobytes() for hidden, _ in seen for t in hidden}
    assert len(encoded) > 2  # the 2 captions were drawn in more than 2 orders

"""Model sources: diffusers folders, single-file checkpoints (SD 1.x / 2.x), the Hub with opt-in.

The single files are written by tests/ldm_support.py (an LDM key map independent of the loader);
loading them must give back every original tensor and the original model's outputs.
"""

from __future__ import annotations

import pickle
import types
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="model sources need the train extra (torch)")

from ldm_support import build_tiny_sd2, model_to_ldm, save_single_file  # noqa: E402
from train_support import write_train_config  # noqa: E402

from lora_sched.cli import main  # noqa: E402
from lora_sched.errors import ConfigError  # noqa: E402
from lora_sched.train import detect  # noqa: E402
from lora_sched.train.model import build_tiny_sd, build_tiny_sdxl  # noqa: E402
from lora_sched.train.sources import (  # noqa: E402
    SourceOptions,
    check_model_source,
    load_model,
)


@pytest.fixture(scope="module")
def tiny():
    return {"sd1": build_tiny_sd(), "sd2": build_tiny_sd2(), "sdxl": build_tiny_sdxl()}


@pytest.fixture(scope="module")
def files(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    return {
        "sd1": save_single_file(tiny["sd1"], "sd1", root / "tiny-sd.safetensors"),
        "sd1_ckpt": save_single_file(tiny["sd1"], "sd1", root / "tiny-sd.ckpt"),
        "sd1_fp16": save_single_file(tiny["sd1"], "sd1", root / "tiny-sd-fp16.safetensors", torch.float16),
        "sd2": save_single_file(tiny["sd2"], "sd2", root / "tiny-sd2.safetensors"),
        "sdxl": save_single_file(tiny["sdxl"], "sdxl", root / "tiny-sdxl.safetensors"),
        "sdxl_script": _as_conversion_script_writes(tiny["sdxl"], root / "tiny-sdxl-script.safetensors"),
    }


def _as_conversion_script_writes(model, path: Path) -> Path:
    """An SDXL file as diffusers' diffusers -> original conversion script writes one from a folder
    saved by transformers >= 5.6: the first encoder's keys without the ``text_model.`` level, the
    second's projection kept as a Linear weight (``text_projection.weight``, projection x width)."""
    from safetensors.torch import save_file

    first, second = "conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."
    state = {k.replace(first + "text_model.", first): t for k, t in model_to_ldm(model, "sdxl").items()}
    state[second + "text_projection.weight"] = state.pop(second + "text_projection").T.contiguous()
    save_file({k: t.contiguous() for k, t in state.items()}, str(path))
    return path


def assert_same_tensors(original, loaded, dtype=None):
    assert set(original.modules()) == set(loaded.modules())
    for part, module in original.modules().items():
        a, b = module.state_dict(), loaded.modules()[part].state_dict()
        assert set(a) == set(b), part
        for key in a:
            expected = a[key] if dtype is None else a[key].to(dtype).to(torch.float32)
            assert b[key].dtype == torch.float32 and torch.equal(expected, b[key]), f"{part}.{key}"


def outputs(model):
    """The UNet's and the text encoder's outputs on fixed inputs (the head counts show here)."""
    ids = model.tokenizer(["a red circle"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        text = model.text_encoder(ids)[0]
        seed = torch.Generator().manual_seed(0)
        latents = torch.randn(1, 4, 8, 8, generator=seed)
        context = torch.randn(1, 77, model.unet.config.cross_attention_dim, generator=seed)
        extra = {}
        if model.is_sdxl:  # the pooled text embedding and the six size / crop numbers
            pooled = torch.randn(1, model.text_encoder_2.config.projection_dim, generator=seed)
            extra["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
            text = torch.cat([text.flatten(), model.text_encoder_2(ids).text_embeds.flatten()])
        unet = model.unet(latents, 10, encoder_hidden_states=context, **extra).sample
    return text, unet


@pytest.mark.parametrize(
    "family, name",
    [("sd1", "sd1"), ("sd1", "sd1_ckpt"), ("sd2", "sd2"), ("sdxl", "sdxl"), ("sdxl", "sdxl_script")],
)
def test_a_single_file_loads_every_tensor_and_the_same_model(tiny, files, family, name):
    loaded = load_model(str(files[name]))
    assert_same_tensors(tiny[family], loaded)
    for a, b in zip(outputs(tiny[family]), outputs(loaded)):
        assert torch.allclose(a, b, atol=1e-5)
    assert loaded.noise_scheduler.config.prediction_type == "epsilon"
    assert loaded.vae.config.scaling_factor == (0.13025 if family == "sdxl" else 0.18215)
    assert loaded.kind == family


def test_a_text_encoder_without_the_text_model_level_loads(tiny, tmp_path):
    """diffusers' conversion script copies the text encoder's keys as saved; transformers >= 5.6
    saves CLIPTextModel without the ``text_model.`` level."""
    from safetensors.torch import save_file

    prefix = "cond_stage_model.transformer."
    state = {k.replace(prefix + "text_model.", prefix): t for k, t in model_to_ldm(tiny["sd1"], "sd1").items()}
    save_file(state, str(tmp_path / "flat.safetensors"))
    assert_same_tensors(tiny["sd1"], load_model(str(tmp_path / "flat.safetensors")))


def test_a_half_precision_file_is_trained_in_float32(tiny, files):
    assert_same_tensors(tiny["sd1"], load_model(str(files["sd1_fp16"])), dtype=torch.float16)


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_a_diffusers_folder_gives_the_same_tensors(tiny, tmp_path, family):
    tiny[family].pipeline().save_pretrained(tmp_path / family)
    loaded = load_model(str(tmp_path / family))
    assert_same_tensors(tiny[family], loaded)
    assert loaded.kind == family


# -- v-prediction ---------------------------------------------------------------------------------------
def test_v_prediction_from_the_key_a_yaml_or_a_v_pred_tensor(tiny, files, tmp_path, caplog):
    sd2 = files["sd2"]
    assert load_model(str(sd2)).noise_scheduler.config.prediction_type == "epsilon"
    # the notices are log records (logger lora_sched.train.sources; the command line prints them)
    assert "for a 768-v model set v_parameterization = true" in caplog.text
    caplog.clear()
    v_model = load_model(str(sd2), options=SourceOptions(v_parameterization=True))
    assert v_model.noise_scheduler.config.prediction_type == "v_prediction"
    copy = tmp_path / "v.safetensors"
    copy.write_bytes(sd2.read_bytes())
    copy.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n', encoding="utf-8")
    assert load_model(str(copy)).noise_scheduler.config.prediction_type == "v_prediction"
    assert "v.yaml (parameterization: v) marks a v-prediction model" in caplog.text
    from safetensors.torch import save_file

    marked = tmp_path / "marked.safetensors"
    save_file({**model_to_ldm(tiny["sd1"], "sd1"), "v_pred": torch.tensor([])}, str(marked))
    assert load_model(str(marked)).noise_scheduler.config.prediction_type == "v_prediction"


def test_v2_that_disagrees_with_the_model_is_a_warning(files, caplog):
    check_model_source(str(files["sd1"]), options=SourceOptions(v2=True))
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "warning: v2 = true, but the model is SD 1.x" in record.getMessage()
    caplog.clear()
    check_model_source(str(files["sd2"]), options=SourceOptions(v2=True))
    assert not caplog.records


# -- detection of the released architectures (shapes only, no weights) -----------------------------------
SD15_UNET = {
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "use_linear_projection": False,
}
SD21_UNET = {
    **SD15_UNET,
    "cross_attention_dim": 1024,
    "attention_head_dim": (5, 10, 20, 20),
    "use_linear_projection": True,
}
SDXL_UNET = {
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "cross_attention_dim": 2048,
    "attention_head_dim": (5, 10, 20),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
SD_VAE = {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "latent_channels": 4}
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
OPENCLIP_H = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23, "num_attention_heads": 16}
BIG_G = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 20}


def _meta_model(unet: dict, texts: list[tuple[dict, str, bool]]):
    """An SDModel-like object of released sizes, on the meta device (shapes, no memory)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with init_empty_weights():
        parts = {
            "unet": UNet2DConditionModel(**unet),
            "vae": AutoencoderKL(
                **SD_VAE, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4
            ),
        }
        for name, (config, act, projection) in zip(("text_encoder", "text_encoder_2"), texts):
            cls = CLIPTextModelWithProjection if projection else CLIPTextModel
            extra = {"projection_dim": 1280} if projection else {}
            parts[name] = cls(CLIPTextConfig(**config, vocab_size=49408, hidden_act=act, **extra))
    return types.SimpleNamespace(**parts)


@pytest.mark.parametrize(
    "family, unet, texts",
    [
        ("sd1", SD15_UNET, [(CLIP_L, "quick_gelu", False)]),
        ("sd2", SD21_UNET, [(OPENCLIP_H, "gelu", False)]),
        ("sdxl", SDXL_UNET, [(CLIP_L, "quick_gelu", False), (BIG_G, "gelu", True)]),
    ],
)
def test_released_architectures_are_detected_from_their_shapes(family, unet, texts):
    model = _meta_model(unet, texts)
    shapes = {k: tuple(t.shape) for k, t in model_to_ldm(model, family).items()}
    found = detect.detect(shapes)
    assert found.family == family
    assert {k: found.unet[k] for k in unet} == unet
    assert {k: found.vae[k] for k in SD_VAE} == SD_VAE
    assert found.vae["scaling_factor"] == (0.13025 if family == "sdxl" else 0.18215)
    for spec, (config, act, projection) in zip(found.text_encoders, texts):
        assert {k: spec.config[k] for k in config} == config
        assert spec.config["hidden_act"] == act and spec.with_projection == projection
    if family == "sd2":  # the released export's unused 24th block and projection are skipped
        assert found.text_encoders[0].unused_last_block


def test_detection_reads_only_the_header(files):
    shapes, _ = detect.safetensors_shapes(files["sd1"])
    assert detect.detect(shapes).family == "sd1"


# -- wrong inputs: a clear error, nothing written ------------------------------------------------------
def _lora_file(path: Path) -> Path:
    from safetensors.torch import save_file

    name = "lora_unet_down_blocks_1_attentions_0_proj_in"
    save_file({f"{name}.lora_down.weight": torch.zeros(4, 32), f"{name}.lora_up.weight": torch.zeros(32, 4)}, str(path))
    return path


def _truncated(files, path: Path) -> Path:
    data = files["sd1"].read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    return path


def _unknown(path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(2, 2)}, str(path))
    return path


def _unet_part(folder: Path) -> Path:
    build_tiny_sd().pipeline().save_pretrained(folder / "model")
    return folder / "model" / "unet" / "diffusion_pytorch_model.safetensors"


@pytest.mark.parametrize(
    "make, needles",
    [
        (lambda files, d: _lora_file(d / "style.safetensors"), ["a LoRA file (network weights), not a base model"]),
        (lambda files, d: _truncated(files, d / "cut.safetensors"), ["a truncated file: its header lists"]),
        (lambda files, d: _unknown(d / "flux.safetensors"), ["without Stable Diffusion's UNet and VAE"]),
        (lambda files, d: _unet_part(d), ["one part of a diffusers folder", "model_index.json"]),
        (
            lambda files, d: (
                (d / "page.safetensors").write_text("<html>rate limited</html>") and d / "page.safetensors"
            ),
            ["not safetensors"],
        ),
        (
            lambda files, d: (
                (d / "lfs.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")
                and d / "lfs.safetensors"
            ),
            ["Git LFS pointer", "git lfs pull"],
        ),
        (lambda files, d: d / "missing.safetensors", ["no such file or folder"]),
        (lambda files, d: "someone/some-model", ["Hugging Face Hub id", "allow_download = true", "--download"]),
    ],
    ids=["lora", "truncated", "unknown", "diffusers-unet", "html", "lfs-pointer", "missing", "hub-without-opt-in"],
)
def test_a_wrong_model_is_one_located_error_and_nothing_is_written(files, tmp_path, capsys, make, needles):
    model = make(files, tmp_path)
    config = write_train_config(tmp_path / "c.toml", tmp_path / "out", {}, pretrained_model_name_or_path=str(model))
    assert main(["train", str(config)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{config}:" in err and "pretrained_model_name_or_path: expected" in err, err
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "out").exists()


class _Canary:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_ckpt_with_a_crafted_pickle_is_refused_unrun(tmp_path):
    canary = tmp_path / "canary"
    bad = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Canary(canary)}, str(bad), pickle_protocol=2)
    with pytest.raises(ConfigError, match=r"a pickle holding Python objects besides tensors \(.*\), refused unread"):
        check_model_source(str(bad))
    plain = tmp_path / "legacy.ckpt"
    plain.write_bytes(pickle.dumps(_Canary(canary)))
    with pytest.raises(ConfigError, match=r"refused unread|cannot read"):
        check_model_source(str(plain))
    assert not canary.exists()


def test_an_old_ckpt_naming_lightnings_callback_loads_without_importing_it(tiny, tmp_path, monkeypatch):
    """SD 1.x .ckpt files from the original training pickle PyTorch Lightning's ModelCheckpoint
    class as a dict key: read as an inert stand-in, the weights load."""
    import sys

    names = ("pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint")
    for name in names:  # a stand-in package, present only while the file is written
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    module = sys.modules[names[-1]]
    callback = type("ModelCheckpoint", (), {"__module__": module.__name__})
    module.ModelCheckpoint = callback
    path = tmp_path / "sd-v1-x.ckpt"
    state = {k: t.contiguous() for k, t in model_to_ldm(tiny["sd1"], "sd1").items()}
    torch.save({"state_dict": state, "callbacks": {callback: {"best_model_score": torch.tensor(0.1)}}}, str(path))
    for name in names:
        monkeypatch.delitem(sys.modules, name)
    assert_same_tensors(tiny["sd1"], load_model(str(path)))


def test_a_real_vocabulary_needs_a_tokenizer_named_in_the_error(tmp_path, monkeypatch):
    """A file with CLIP's 49,408-token vocabulary: its tokenizer comes from tokenizer_cache_dir
    (sd-scripts' layout) or the Hub cache; else the error says what to set."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    model = build_tiny_sd()
    model.text_encoder.resize_token_embeddings(49408)
    path = save_single_file(model, "sd1", tmp_path / "real-vocab.safetensors")
    with pytest.raises(ConfigError, match="tokenizer_cache_dir") as error:
        check_model_source(str(path))
    assert "openai_clip-vit-large-patch14/" in str(error.value)
    cache = tmp_path / "tokenizers"
    model.tokenizer.save_pretrained(cache / "openai_clip-vit-large-patch14")
    loaded = load_model(str(path), options=SourceOptions(tokenizer_cache_dir=str(cache)))
    assert loaded.tokenizer.get_vocab() == model.tokenizer.get_vocab()
    assert loaded.text_encoder.config.eos_token_id == model.tokenizer.eos_token_id


# -- the Hub: opt-in, offline ----------------------------------------------------------------------------
def test_a_hub_id_with_download_allowed_offline_is_one_paragraph(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    config = write_train_config(tmp_path / "c.toml", tmp_path / "out", {}, pretrained_model_name_or_path="me/tiny-sd")
    assert main(["train", str(config), "--download"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "pretrained_model_name_or_path: expected a Hub model that downloads" in err
    assert "hf download me/tiny-sd --local-dir DIR" in err
    assert not (tmp_path / "out").exists()


def test_a_hub_id_in_the_cache_loads_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hub-cache"
    snapshot = cache / "models--me--tiny-sd" / "snapshots" / ("0" * 40)
    build_tiny_sd().pipeline().save_pretrained(snapshot)
    (cache / "models--me--tiny-sd" / "refs").mkdir()
    (cache / "models--me--tiny-sd" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="allow_download"):
        check_model_source("me/tiny-sd")
    name = check_model_source("me/tiny-sd", options=SourceOptions(allow_download=True))
    assert Path(name).resolve() == snapshot.resolve()
    assert_same_tensors(build_tiny_sd(), load_model(name))


# -- training from each source (slow) --------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "name, extra",
    [
        ("sd1", {}),
        ("sd1_ckpt", {"text_encoder_lr": 0.0}),
        ("sd2", {"v_parameterization": True}),
        ("sdxl_script", {"resolution": 64}),
    ],
)
def test_training_from_a_single_file(files, tmp_path, capsys, name, extra):
    """A few steps from the single file, text encoder trained: the LoRA loads into the pipeline of
    the same file's model and changes its outputs; the LR log is the preview's."""
    from safetensors import safe_open

    out = tmp_path / "run"
    config = write_train_config(
        tmp_path / "c.toml",
        out,
        {},
        pretrained_model_name_or_path=str(files[name]),
        max_train_steps=3,
        lr_warmup_steps=1,
        **extra,
    )
    assert main(["train", str(config)]) == 0, capsys.readouterr().err
    with safe_open(str(out / "lora.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert any(k.startswith("lora_unet_") for k in keys)
    assert any(k.startswith("lora_te") for k in keys) == (extra.get("text_encoder_lr") != 0.0)
    model = load_model(
        str(files[name]), options=SourceOptions(v_parameterization=bool(extra.get("v_parameterization")))
    )
    pipe = model.pipeline()
    before = outputs(model)
    pipe.load_lora_weights(str(out / "lora.safetensors"))
    after = outputs(model)
    assert not torch.allclose(before[1], after[1])
    import csv

    with open(out / "train_log.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and float(rows[0]["lr_unet"]) == 0.0  # one warmup step from 0


# -- vae: another VAE replaces the model's (sd-scripts' --vae) --------------------------------------------
def _other_vae_file(model, path: Path, prefix: str) -> tuple[Path, dict]:
    """A VAE file in the original layout, its weights other than the model's (each tensor + 0.5)."""
    from ldm_support import vae_to_ldm
    from safetensors.torch import save_file

    state = {k: t + 0.5 for k, t in model.vae.state_dict().items()}
    ldm = {prefix + k.removeprefix("first_stage_model."): t for k, t in vae_to_ldm(state, model.vae.config).items()}
    save_file(ldm, str(path))
    return path, state


@pytest.mark.parametrize("prefix", ["", "first_stage_model."], ids=["bare", "prefixed"])
@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_a_vae_file_replaces_the_models_vae(tiny, files, tmp_path, family, prefix):
    path, state = _other_vae_file(tiny[family], tmp_path / "vae.safetensors", prefix)
    loaded = load_model(str(files[family]), options=SourceOptions(vae=str(path)))
    for name, tensor in loaded.vae.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    plain = load_model(str(files[family]))
    assert not torch.equal(plain.vae.encoder.conv_in.weight, loaded.vae.encoder.conv_in.weight)


def test_a_diffusers_vae_folder_replaces_the_models_vae(tiny, files, tmp_path):
    other = type(tiny["sd1"].vae).from_config(tiny["sd1"].vae.config)
    other.save_pretrained(tmp_path / "vae")
    loaded = load_model(str(files["sd1"]), options=SourceOptions(vae=str(tmp_path / "vae")))
    for name, tensor in loaded.vae.state_dict().items():
        assert torch.equal(tensor, other.state_dict()[name]), name


def test_a_missing_or_foreign_vae_is_refused_before_anything_is_written(tiny, files, tmp_path, capsys):
    config = write_train_config(tmp_path / "c.toml", tmp_path / "out", {}, vae="/content/sdxl_vae.safetensors")
    assert main(["train", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{config}:" in err and "vae: expected a VAE file" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    from safetensors.torch import save_file

    save_file({"encoder.conv_in.weight": torch.zeros(2, 3, 3, 3)}, str(tmp_path / "not_a_vae.safetensors"))
    with pytest.raises(ConfigError) as exc:
        load_model(str(files["sd1"]), options=SourceOptions(vae=str(tmp_path / "not_a_vae.safetensors")))
    assert exc.value.problems[0].key == "vae"

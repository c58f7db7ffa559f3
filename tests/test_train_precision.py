"""Precision in `lora-sched train`, as sd-scripts' train_network: bf16 training with the text
encoder(s) trained (SDXL and SD 1.x), full_bf16 / full_fp16 (the LoRA weights in the half type too,
each only with its mixed_precision), no_half_vae (the VAE float32, else in the weight type), and fp16
on a CPU, which runs as float32 and says so."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")

from train_support import logged_text, run_cli, write_train_config  # noqa: E402

from lora_sched.cli import main  # noqa: E402
from lora_sched.errors import ConfigError  # noqa: E402
from lora_sched.train import compute  # noqa: E402

#: One update at a constant LR (no warmup: the first step's LR is not 0), batch 2 of 64 px.
ONE_STEP = {"max_train_steps": 1, "lr_warmup_steps": 0, "lr_scheduler": "constant", "text_encoder_lr": 1e-3}


def _options(**values) -> compute.ComputeOptions:
    return compute.compute_options(values, on_cpu=True)


def _refusal(on_cpu: bool = True, **values) -> str:
    with pytest.raises(ConfigError) as caught:
        compute.compute_options(values, on_cpu=on_cpu)
    (found,) = caught.value.problems
    return f"{found.key}: {found.expected} | {found.hint}"


def test_full_bf16_and_full_fp16_need_their_mixed_precision_as_sd_scripts_asserts():
    assert _options(mixed_precision="bf16", full_bf16=True).full_half is True
    assert _options(mixed_precision="bf16").full_half is False
    text = _refusal(mixed_precision="no", full_bf16=True)
    assert text.startswith('full_bf16: true only with mixed_precision = "bf16"')
    assert 'mixed_precision is "no": set mixed_precision = "bf16"' in text
    text = _refusal(on_cpu=False, mixed_precision="bf16", full_fp16=True)
    assert text.startswith('full_fp16: true only with mixed_precision = "fp16"') and "full_bf16" in text
    # both set: sd-scripts tests full_fp16 first, so bf16 fails its check
    assert _refusal(on_cpu=False, mixed_precision="bf16", full_fp16=True, full_bf16=True).startswith("full_fp16:")


def test_full_fp16_on_a_gpu_is_applied_and_on_a_cpu_is_refused_with_the_bf16_way(caplog):
    on_gpu = compute.compute_options({"mixed_precision": "fp16", "full_fp16": True}, on_cpu=False)
    assert (on_gpu.mixed_precision, on_gpu.full_half) == ("fp16", True)
    text = _refusal(mixed_precision="fp16", full_fp16=True)
    assert text.startswith("full_fp16: a GPU (fp16 has no CPU kernels")
    assert 'use mixed_precision = "bf16" with full_bf16 = true' in text
    both = compute.compute_options({"mixed_precision": "fp16", "full_fp16": True, "full_bf16": True}, on_cpu=False)
    assert both.full_half and "full_fp16 decides (full_bf16 is ignored)" in logged_text(caplog)


def test_the_vae_takes_the_weight_type_unless_no_half_vae():
    assert compute.vae_dtype(_options(mixed_precision="bf16")) == torch.bfloat16
    assert compute.vae_dtype(_options(mixed_precision="bf16", no_half_vae=True)) is None  # float32, as loaded
    assert compute.vae_dtype(_options(mixed_precision="no")) is None
    assert compute.vae_dtype(_options(mixed_precision="fp16")) is None  # fp16 runs as float32 on a CPU


def test_full_bf16_stores_the_lora_weights_in_bf16_too():
    """Frozen weights in the half type either way; the trained (LoRA) ones float32, or bf16 with full_bf16."""
    for full_half, trained_dtype in ((False, torch.float32), (True, torch.bfloat16)):
        part = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
        part[0].requires_grad_(False)  # the base model's layer; part[1] stands for a LoRA layer
        compute.cast_frozen_weights([part], "bf16", full_half)
        assert {p.dtype for p in part[0].parameters()} == {torch.bfloat16}
        assert {p.dtype for p in part[1].parameters()} == {trained_dtype}


def test_full_fp16_lets_the_gradient_scaler_unscale_fp16_gradients():
    """torch's GradScaler refuses fp16 gradients; sd-scripts patches it for full_fp16, and so do we."""
    param = torch.nn.Parameter(torch.ones(3, dtype=torch.float16))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    scaler.scale(param.sum()).backward()
    with pytest.raises(ValueError, match="unscale FP16 gradients"):
        scaler.unscale_(optimizer)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    compute.allow_fp16_unscale(scaler)
    scaler.scale(param.sum()).backward()
    scaler.unscale_(optimizer)
    assert param.grad.tolist() == [2.0, 2.0, 2.0]  # 4 + 4 accumulated over both backwards, unscaled by 4


def test_full_bf16_without_bf16_stops_the_run_before_anything_is_written(tmp_path, capsys):
    config = write_train_config(tmp_path / "c.toml", tmp_path / "out", ONE_STEP, full_bf16=True)
    assert main(["train", str(config)]) == 1
    err = capsys.readouterr().err
    assert 'full_bf16: expected true only with mixed_precision = "bf16"' in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def _two_images(tmp_path: Path) -> str:
    """A kohya folder of two captioned 64 px images: the VAE encodes 2 images, not builtin:shapes' 32."""
    from PIL import Image

    folder = tmp_path / "data" / "1_shapes"
    folder.mkdir(parents=True)
    for name, colour in (("red", (220, 40, 40)), ("blue", (40, 70, 220))):
        Image.new("RGB", (64, 64), colour).save(folder / f"{name}.png")
        (folder / f"{name}.txt").write_text(f"a {name} square", encoding="utf-8")
    return str(tmp_path / "data")


def _lora_file(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "lora.safetensors"))


def _last_loss(out: Path) -> float:
    import csv

    with open(out / "train_log.csv", newline="", encoding="utf-8") as fh:
        return float(list(csv.DictReader(fh))[-1]["loss"])


def _trained(tensors: dict, prefix: str) -> bool:
    """Whether the text encoder's LoRA moved: lora_up starts at zero, one update makes it nonzero (not
    everywhere: SDXL's first encoder's last layer feeds nothing, its LoRA gets no gradient)."""
    ups = [t for k, t in tensors.items() if k.startswith(prefix) and k.endswith("lora_up.weight")]
    return any(t.abs().sum() > 0 for t in ups) and all(torch.isfinite(t).all() for t in ups)


@pytest.mark.slow
def test_sdxl_bf16_trains_both_text_encoders(tmp_path):
    """The bug this file began with: SDXL + bf16 + a trained text encoder stopped at step 0 (the pooled
    projection ran outside autocast on a float32 input against bf16 weights)."""
    out = tmp_path / "out"
    values = {**ONE_STEP, "pretrained_model_name_or_path": "builtin:tiny-sdxl", "mixed_precision": "bf16"}
    # no_half_vae: as SDXL setups set it (and a bf16 VAE is slow on a CPU)
    config = write_train_config(
        tmp_path / "c.toml",
        out,
        values,
        train_batch_size=1,
        train_data_dir=_two_images(tmp_path),
        max_token_length=150,
        no_half_vae=True,
    )
    proc = run_cli("train", str(config))  # bf16: a process of its own
    assert proc.returncode == 0, proc.stderr
    assert torch.isfinite(torch.tensor(_last_loss(out)))
    tensors = _lora_file(out)
    assert _trained(tensors, "lora_te1_") and _trained(tensors, "lora_te2_")


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {"max_token_length": 225},  # the VAE in bf16 too, as sd-scripts without no_half_vae
        {"full_bf16": True, "clip_skip": 2, "no_half_vae": True},
    ],
    ids=["bf16", "full_bf16"],
)
def test_sd_bf16_trains_the_text_encoder(tmp_path, options):
    out = tmp_path / "out"
    values = {**ONE_STEP, "mixed_precision": "bf16", **options}
    config = write_train_config(
        tmp_path / "c.toml", out, values, train_batch_size=1, train_data_dir=_two_images(tmp_path)
    )
    proc = run_cli("train", str(config))  # bf16: a process of its own
    assert proc.returncode == 0, proc.stderr
    assert torch.isfinite(torch.tensor(_last_loss(out)))
    assert _trained(_lora_file(out), "lora_te_")


def test_clip_skip_normalises_float32_states_of_a_bf16_encoder():
    """Under mixed precision the prepared encoder returns float32 states and keeps bf16 weights: the
    final layer norm of clip_skip runs in float32 (as autocast runs it on a GPU), not in a type error."""
    from lora_sched.train.model import _tiny_clip
    from lora_sched.train.text_encoding import final_norm

    encoder = _tiny_clip(514, 64, projection=None)
    states = torch.randn(2, 77, 64, generator=torch.Generator().manual_seed(0))
    expected = encoder.final_layer_norm(states)
    encoder.to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        normed = final_norm(encoder, states)
    assert normed.dtype == torch.float32
    torch.testing.assert_close(normed, expected, atol=0.03, rtol=0.02)  # the norm's weights rounded to bf16


@pytest.mark.slow
def test_sd_fp16_on_a_cpu_trains_the_text_encoder_as_float32_and_says_so(tmp_path, capsys):
    out = tmp_path / "out"
    config = write_train_config(
        tmp_path / "c.toml",
        out,
        {**ONE_STEP, "mixed_precision": "fp16"},
        train_batch_size=1,
        train_data_dir=_two_images(tmp_path),
    )
    assert main(["train", str(config)]) == 0
    assert 'mixed_precision = "fp16": this machine has no GPU' in capsys.readouterr().err
    assert torch.isfinite(torch.tensor(_last_loss(out)))
    assert _trained(_lora_file(out), "lora_te_")

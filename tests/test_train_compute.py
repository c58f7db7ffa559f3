"""What makes a real model fit on a GPU, checked on the CPU: gradient checkpointing (same loss and
gradients, activations recomputed), SDPA attention, bf16 / fp16 mixed precision (frozen weights in the
half type, LoRA weights float32), xformers / mem_eff_attn substitutes, AdamW8bit's missing package."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")

from train_support import logged_text, run_cli, write_train_config  # noqa: E402

from lora_sched.cli import main  # noqa: E402
from lora_sched.config.loader import loads_config  # noqa: E402
from lora_sched.errors import ConfigError  # noqa: E402
from lora_sched.train import compute  # noqa: E402
from lora_sched.train.lora import add_lora, trainable  # noqa: E402
from lora_sched.train.model import build_tiny_sd  # noqa: E402
from lora_sched.train.network import NetworkSettings  # noqa: E402
from lora_sched.train.optim import optimizer_class  # noqa: E402

COMPUTE_KEYS = ("gradient_checkpointing", "sdpa", "xformers", "mem_eff_attn", "cache_latents", "cache_latents_to_disk")


def test_the_compute_keys_leave_the_unused_keys_notice():
    text = "[training_arguments]\n" + "".join(f"{k} = true\n" for k in COMPUTE_KEYS) + "lowram = true\n"
    cfg = loads_config(text)
    (notice,) = [p for p in cfg.warnings if "does not use" in p.found]
    assert notice.found == "1 sd-scripts option(s) it does not use: lowram"
    assert all(cfg.values[k] is True for k in COMPUTE_KEYS)


def _tiny_with_lora(train_te: bool = True):
    model = build_tiny_sd()
    add_lora(model, NetworkSettings(dim=4, alpha=4.0), train_te, seed=3)
    with torch.no_grad():  # lora_B starts at zero: give it values so every LoRA weight gets a gradient
        for module in (model.unet, model.text_encoder):
            for name, p in module.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.1)
    return model


def _loss_and_grads(model) -> tuple[float, dict]:
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 16, 16, generator=gen)  # 128 px: a mid block of 1 x 1 would ignore its q
    ids = torch.randint(2, 60, (2, 77), generator=gen)
    embeddings = model.text_encoder(ids)[0]
    loss = model.unet(latents, torch.tensor([10, 500]), embeddings).sample.pow(2).mean()
    loss.backward()
    params = {**trainable(model.unet), **{f"te.{k}": p for k, p in trainable(model.text_encoder).items()}}
    return loss.item(), {k: p.grad.clone() for k, p in params.items()}


def _first_layer(text_encoder):
    """The MLP of the first CLIP encoder layer (its path differs between transformers 4 and 5)."""
    return next(m for name, m in text_encoder.named_modules() if name.endswith("encoder.layers.0.mlp"))


def _count_calls(module) -> list[int]:
    """Count the module's forward runs (a wrapped forward: torch's checkpoint recomputes without hooks)."""
    calls, forward = [0], module.forward

    def counted(*args, **kwargs):
        calls[0] += 1
        return forward(*args, **kwargs)

    module.forward = counted
    return calls


@pytest.mark.slow  # builds the model
def test_gradient_checkpointing_gives_the_same_loss_and_gradients_and_recomputes():
    plain = _tiny_with_lora()
    checkpointed = _tiny_with_lora()
    compute.enable_checkpointing(checkpointed.unet, checkpointed.text_encoder)
    unet_resnet = _count_calls(checkpointed.unet.up_blocks[-1].resnets[0])  # after a LoRA layer
    te_layer = _count_calls(_first_layer(checkpointed.text_encoder))
    loss, grads = _loss_and_grads(plain)
    loss_ckpt, grads_ckpt = _loss_and_grads(checkpointed)
    assert unet_resnet == [2] and te_layer == [2]  # run in the forward, run again in the backward
    assert loss_ckpt == pytest.approx(loss, rel=1e-6)
    assert grads.keys() == grads_ckpt.keys() and any(k.startswith("te.") for k in grads)
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.slow  # builds the model
def test_every_unet_attention_layer_runs_on_sdpa():
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    model = build_tiny_sd()
    model.unet.set_attn_processor(AttnProcessor())  # the slow path, to see it replaced
    compute.set_attention(model.unet, "sdpa")
    processors = model.unet.attn_processors
    assert processors and all(type(p) is AttnProcessor2_0 for p in processors.values())


@pytest.mark.slow  # builds the model
def test_bf16_stores_frozen_weights_in_bf16_and_keeps_lora_float32():
    model = _tiny_with_lora()
    options = compute.ComputeOptions("bf16", gradient_checkpointing=False, attention="sdpa")
    compute.apply_compute(model, options, train_te=True)
    for part in (model.unet, model.text_encoder):
        for name, p in part.named_parameters():
            assert p.dtype == (torch.float32 if "lora_" in name else torch.bfloat16), name
    assert {p.dtype for p in model.vae.parameters()} == {torch.float32}  # it only encodes, once
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, grads = _loss_and_grads(model)
    assert torch.isfinite(torch.tensor(loss)) and all(g.dtype == torch.float32 for g in grads.values())


def test_fp16_on_a_cpu_runs_float32_with_a_notice(caplog):
    options = compute.compute_options({"mixed_precision": "fp16"}, on_cpu=True)
    assert options.mixed_precision == "no"
    assert 'notice: mixed_precision = "fp16": this machine has no GPU' in logged_text(caplog)
    assert compute.compute_options({"mixed_precision": "fp16"}, on_cpu=False).mixed_precision == "fp16"
    assert compute.compute_options({"mixed_precision": "bf16"}, on_cpu=True).mixed_precision == "bf16"


def test_xformers_without_the_package_or_a_gpu_runs_sdpa_with_a_notice(monkeypatch, caplog):
    found = {"xformers": None}
    monkeypatch.setattr(compute.importlib.util, "find_spec", lambda name: found.get(name, object()))
    assert compute.compute_options({"xformers": True}, on_cpu=False).attention == "sdpa"
    assert "xformers = true: the xformers package is not installed" in logged_text(caplog)
    found["xformers"] = object()
    assert compute.compute_options({"xformers": True}, on_cpu=True).attention == "sdpa"
    assert "xformers needs a GPU" in logged_text(caplog)
    assert compute.compute_options({"xformers": True}, on_cpu=False).attention == "xformers"
    assert compute.compute_options({"mem_eff_attn": True}, on_cpu=False).attention == "sdpa"
    assert "mem_eff_attn = true: attention runs on PyTorch's SDPA" in logged_text(caplog)
    assert compute.compute_options({"sdpa": True}, on_cpu=True)[:3] == ("no", False, "sdpa")
    assert logged_text(caplog) == ""


def test_adamw8bit_without_bitsandbytes_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    monkeypatch.setitem(sys.modules, "bitsandbytes.optim", None)
    monkeypatch.setattr("lora_sched.train.optim.installed_version", lambda package: None)
    with pytest.raises(ConfigError) as exc:
        optimizer_class("AdamW8bit")
    assert "the package bitsandbytes is not installed: pip install bitsandbytes" in str(exc.value)


# -- whole runs ------------------------------------------------------------------------------------
def _run(tmp_path: Path, name: str, **values) -> list[dict[str, str]]:
    """A 3-step run; in a process of its own with bf16 (accelerate keeps one mixed precision per process)."""
    out = tmp_path / name
    config = write_train_config(
        tmp_path / f"{name}.toml", out, {"lr_warmup_steps": 1, "max_train_steps": 3}, section=None, **values
    )
    if values.get("mixed_precision") == "bf16":
        proc = run_cli("train", str(config))
        assert proc.returncode == 0, proc.stderr
    else:
        assert main(["train", str(config)]) == 0
    with open(out / "train_log.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _lora(tmp_path: Path, name: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(tmp_path / name / "lora.safetensors"))


@pytest.mark.slow
def test_checkpointed_bf16_adamw8bit_run_trains_on_the_schedule_of_a_plain_run(tmp_path, capsys):
    """The colab XL settings (gradient_checkpointing, AdamW8bit, mixed precision) on the built-in model:
    the LR log is the plain run's, the loss stays near it, the LoRA is float32 and moved."""
    plain = _run(tmp_path, "plain", optimizer_type="AdamW8bit")
    fitted = _run(
        tmp_path, "fitted", optimizer_type="AdamW8bit", mixed_precision="bf16", gradient_checkpointing=True, sdpa=True
    )
    for column in ("lr_unet", "lr_text_encoder"):
        assert [r[column] for r in fitted] == [r[column] for r in plain]
    for a, b in zip(fitted, plain):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=0.05)
    lora = _lora(tmp_path, "fitted")
    assert {t.dtype for t in lora.values()} == {torch.float32}
    assert any(t.abs().sum() > 0 for k, t in lora.items() if k.endswith("lora_up.weight"))


@pytest.mark.slow
def test_fp16_on_a_cpu_trains_exactly_as_float32(tmp_path, capsys):
    plain = _run(tmp_path, "plain")
    fp16 = _run(tmp_path, "fp16", mixed_precision="fp16")
    assert 'mixed_precision = "fp16": this machine has no GPU' in capsys.readouterr().err  # the command line's
    assert [r["loss"] for r in fp16] == [r["loss"] for r in plain]
    a, b = _lora(tmp_path, "plain"), _lora(tmp_path, "fp16")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

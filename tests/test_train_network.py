"""The LoRA network `lora-sched train` builds is the one sd-scripts' networks.lora creates: the same
modules, kohya names, shapes and alphas (goldens from sd-scripts' own create_network on its own SD 1.x
and SDXL UNets at the built-in models' sizes, tools/gen_sdscripts_network_golden.py), the same
training-time dropouts (LoRAModule.forward's outputs), and network_args read or refused in the plan."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

torch = pytest.importorskip("torch")

from train_support import write_train_config  # noqa: E402

from lora_sched.cli import main  # noqa: E402
from lora_sched.errors import ConfigError  # noqa: E402
from lora_sched.train.kohya_names import kohya_block_index  # noqa: E402
from lora_sched.train.lora import add_lora, lora_alphas, lora_tensors, to_kohya  # noqa: E402
from lora_sched.train.network import NetworkSettings, network_settings  # noqa: E402

GOLDEN = Path(__file__).parent / "data" / "sdscripts_network"
NETWORKS = json.loads((GOLDEN / "networks.json").read_text(encoding="utf-8"))
SD_SCRIPTS_COMMIT = "48d368fa557731ad0488c07304dfeba8c07910eb"


def _modules(kohya: dict) -> dict[str, dict]:
    """{module: {"down": shape, "up": shape, "alpha": value}} of a kohya state dict, the golden's form."""
    out: dict[str, dict] = {}
    for key, tensor in kohya.items():
        module, _, what = key.partition(".")
        entry = out.setdefault(module, {})
        if what == "alpha":
            entry["alpha"] = float(tensor)
        else:
            entry["down" if what.startswith("lora_down") else "up"] = list(tensor.shape)
    return out


def _settings(case: dict) -> NetworkSettings:
    return network_settings(
        {
            "network_dim": case["network_dim"],
            "network_alpha": case["network_alpha"],
            "network_args": case["network_args"],
        }
    )


def test_goldens_come_from_the_pinned_sd_scripts():
    assert NETWORKS["source"] == {
        "repository": "kohya-ss/sd-scripts",
        "commit": SD_SCRIPTS_COMMIT,
        "files": ["networks/lora.py", "library/original_unet.py", "library/sdxl_original_unet.py"],
    }


@pytest.mark.parametrize("case", sorted(NETWORKS["cases"]))
def test_lora_modules_names_shapes_and_alphas_equal_sd_scripts(case):
    from lora_sched.train.model import build_builtin

    golden = NETWORKS["cases"][case]
    model = build_builtin(golden["model"])
    add_lora(model, _settings(golden), train_text_encoder=True, seed=0)
    sdxl_layers = int(model.unet.config.layers_per_block) if model.is_sdxl else None
    ours = _modules(to_kohya(lora_tensors(model, True), lora_alphas(model, True), sdxl_layers))
    assert ours == golden["modules"]


def test_golden_counts_cover_every_block_kind():
    """The goldens exercise what they should: conv_dim adds the ResNets' 3x3 convs (and their
    time_emb_proj / 1x1 shortcut at network_dim), conv_dim=0 only the latter, block_dims drops blocks."""
    counts = {case: len(v["modules"]) for case, v in NETWORKS["cases"].items()}
    assert counts == {
        "sd": 210,
        "sd_conv": 295,
        "sd_conv_zero": 245,
        "sd_blocks": 243,
        "sdxl": 228,
        "sdxl_conv": 294,
        "sdxl_blocks": 241,
    }
    sd_conv = NETWORKS["cases"]["sd_conv"]["modules"]
    assert sd_conv["lora_unet_down_blocks_0_resnets_0_conv1"] == {
        "down": [2, 32, 3, 3],
        "up": [32, 2, 1, 1],
        "alpha": 0.5,
    }
    assert sd_conv["lora_unet_up_blocks_1_resnets_0_conv_shortcut"] == {
        "down": [4, 128, 1, 1],
        "up": [64, 4, 1, 1],
        "alpha": 2.0,
    }
    sdxl_conv = NETWORKS["cases"]["sdxl_conv"]["modules"]
    assert sdxl_conv["lora_unet_input_blocks_3_0_op"] == {"down": [3, 64, 3, 3], "up": [64, 3, 1, 1], "alpha": 3.0}


def test_saved_sdxl_lora_keeps_the_first_encoders_last_layer_untrained():
    """sd-scripts creates (and saves) a LoRA on every layer of SDXL's first encoder; its last layer
    feeds nothing, so here it stays frozen at lora_up = 0 (DDP refuses parameters without gradient)."""
    from lora_sched.train.lora import trainable
    from lora_sched.train.model import build_builtin

    model = build_builtin("builtin:tiny-sdxl")
    add_lora(model, NetworkSettings(dim=4, alpha=1.0), train_text_encoder=True, seed=0)
    trained = trainable(model.text_encoder)
    assert len(trained) == 2 * 6 * 2  # lora_A and lora_B of 6 modules in layers 0 and 1
    assert not [n for n in trained if "layers.2." in n]
    assert len(trainable(model.text_encoder_2)) == 2 * 6 * 3


@pytest.mark.parametrize("name", [f[0] for f in NETWORKS["forward_cases"]])
def test_dropouts_equal_lora_module_forward(name):
    """network_dropout, rank_dropout and module_dropout: four training-mode calls after the same seed
    give LoRAModule.forward's outputs exactly (same draws, same order, same float operations)."""
    from peft import LoraConfig, inject_adapter_in_model
    from safetensors.torch import load_file

    from lora_sched.train.lora import _use_kohya_forward

    case = next(f for f in NETWORKS["forward_cases"] if f[0] == name)
    _, layer, _, rank, alpha, dropout, rank_dropout, module_dropout, seed = case
    stored = load_file(str(GOLDEN / "forwards.safetensors"))
    weight = stored[f"{name}.org_weight"]
    holder = torch.nn.Module()
    if layer == "linear":
        holder.layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
    else:
        holder.layer = torch.nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1)
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, target_modules=["layer"]), holder)
    lora = holder.layer
    with torch.no_grad():
        lora.base_layer.weight.copy_(weight)
        lora.base_layer.bias.copy_(stored[f"{name}.org_bias"])
        lora.lora_A["default"].weight.copy_(stored[f"{name}.lora_down"])
        lora.lora_B["default"].weight.copy_(stored[f"{name}.lora_up"])
    network = NetworkSettings(4, 1.0, dropout=dropout, rank_dropout=rank_dropout, module_dropout=module_dropout)
    _use_kohya_forward(lora, network)
    holder.train()
    x = stored[f"{name}.x"]
    torch.manual_seed(seed)
    with torch.no_grad():
        ours = torch.stack([holder.layer(x) for _ in range(4)])
    assert torch.equal(ours, stored[f"{name}.y"])
    holder.eval()  # no dropout outside training: the plain LoRA output
    with torch.no_grad():
        plain = lora.base_layer(x) + lora.lora_B["default"](lora.lora_A["default"](x)) * (alpha / rank)
        assert torch.equal(holder.layer(x), plain)


def test_module_dropout_leaves_the_dropped_lora_without_gradient():
    """A dropped module's LoRA takes no part in the loss, as in sd-scripts (grad None, not zero)."""
    from peft import LoraConfig, inject_adapter_in_model

    from lora_sched.train.lora import _use_kohya_forward

    holder = torch.nn.Module()
    holder.layer = torch.nn.Linear(4, 4)
    inject_adapter_in_model(LoraConfig(r=2, lora_alpha=1, target_modules=["layer"]), holder)
    _use_kohya_forward(holder.layer, NetworkSettings(2, 1.0, module_dropout=1.0))
    x = torch.ones(1, 4, requires_grad=True)
    holder.layer(x).sum().backward()
    assert x.grad is not None  # the base layer still took part
    assert holder.layer.lora_A["default"].weight.grad is None
    assert holder.layer.lora_B["default"].weight.grad is None


def test_block_index_follows_networks_lora():
    assert kohya_block_index("lora_unet_down_blocks_0_attentions_1_proj_in", False) == 2
    assert kohya_block_index("lora_unet_down_blocks_2_downsamplers_0_conv", False) == 9
    assert kohya_block_index("lora_unet_mid_block_attentions_0_proj_in", False) == 12
    assert kohya_block_index("lora_unet_up_blocks_3_attentions_2_proj_out", False) == 24
    assert kohya_block_index("lora_unet_input_blocks_8_1_proj_in", True) == 9
    assert kohya_block_index("lora_unet_middle_block_2_in_layers_2", True) == 12
    assert kohya_block_index("lora_unet_output_blocks_2_2_conv", True) == 15


def test_network_args_read_once_with_sd_scripts_defaults():
    values = {"network_dim": 8, "network_alpha": 4.0, "network_dropout": 0.1, "network_args": ["conv_dim=4"]}
    settings = network_settings(values)
    assert (settings.conv_dim, settings.conv_alpha, settings.dropout) == (4, 1.0, 0.1)  # conv_alpha defaults to 1
    assert settings.rank_dropout is None and settings.module_dropout is None and settings.has_dropout
    assert not network_settings({"network_dim": 8, "network_alpha": 4.0}).has_dropout


@pytest.mark.parametrize(
    ("entry", "found"),
    [
        ("down_lr_weight=1,1,1,1,1,1,1,1,1,1,1,1", "per-block learning rates"),
        ("loraplus_lr_ratio=16", "LoRA+"),
        ("dropout=0.1", "network_dropout = 0.1"),
        ("conv_dims=4", "did you mean"),
        ("algo=locon", "lycoris.kohya"),
        ("conv_dim=4.0", "expected an integer"),
        ("rank_dropout=1", "below 1.0"),
        (" conv_dim=4", 'write "conv_dim=4"'),
        ("block_alphas=1", "block_dims set too"),
    ],
)
def test_network_args_that_are_not_applied_are_refused_by_name(entry, found):
    with pytest.raises(ConfigError) as err:
        network_settings({"network_dim": 4, "network_alpha": 1.0, "network_args": [entry]})
    assert "network_args" in str(err.value) and found in str(err.value)


def test_block_dims_of_a_length_no_model_has_are_refused_in_the_plan():
    with pytest.raises(ConfigError, match=r"25 comma-separated values .* or 23"):  # no model has 3 blocks
        network_settings({"network_dim": 4, "network_alpha": 1.0, "network_args": ["block_dims=1,2,3"]})
    sdxl_dims = ",".join(["4"] * 23)
    settings = network_settings({"network_dim": 4, "network_alpha": 1.0, "network_args": [f"block_dims={sdxl_dims}"]})
    assert settings.block_settings(is_sdxl=True)[0] == [4] * 23
    with pytest.raises(ConfigError, match="25 comma-separated values"):  # an SDXL list for an SD model
        settings.block_settings(is_sdxl=False)


def test_train_refuses_block_lr_weights_before_building(tmp_path, capsys):
    out = tmp_path / "run"
    config = write_train_config(tmp_path / "c.toml", out, {}, network_args=["up_lr_weight=cosine"])
    assert main(["train", str(config)]) != 0
    assert "network_args.up_lr_weight" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_trained_lora_file_has_sd_scripts_modules_and_network_metadata(tmp_path):
    """A real run with conv_dim and every dropout: the file's keys, shapes and alphas are the golden's,
    the 3x3 conv LoRAs trained, and the metadata records the network as sd-scripts does."""
    from safetensors import safe_open

    golden = NETWORKS["cases"]["sd_conv"]
    out = tmp_path / "run"
    config = write_train_config(
        tmp_path / "c.toml",
        out,
        {"max_train_steps": 3, "lr_warmup_steps": 0},
        network_dim=golden["network_dim"],
        network_alpha=golden["network_alpha"],
        network_args=[*golden["network_args"], "rank_dropout=0.25", "module_dropout=0.1"],
        network_dropout=0.1,
    )
    assert main(["train", str(config)]) == 0
    with safe_open(str(out / "lora.safetensors"), "pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is not a mapping)
        meta = fh.metadata()
    assert _modules(tensors) == golden["modules"]
    assert tensors["lora_unet_up_blocks_1_resnets_0_conv1.lora_up.weight"].abs().sum() > 0  # trained
    assert json.loads(meta["ss_network_args"]) == {
        "conv_dim": "2",
        "conv_alpha": "0.5",
        "rank_dropout": "0.25",
        "module_dropout": "0.1",
        "dropout": 0.1,
    }
    assert (meta["ss_network_dim"], meta["ss_network_alpha"], meta["ss_network_dropout"]) == ("4", "2.0", "0.1")

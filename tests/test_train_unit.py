"""Unit tests of the training adapter's parts: tokenizer, built-in model and data, sharding,
optimizers, kohya key names, checkpoint discovery and the bad-input messages of `lora-sched train`."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import tomli_w

os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")

from lora_sched.builtins import BUILTIN_SHAPES_SIZE  # noqa: E402
from lora_sched.cli import main  # noqa: E402
from lora_sched.config.args import keyword_args  # noqa: E402
from lora_sched.errors import ConfigError  # noqa: E402
from lora_sched.schedules.durations import steps_per_epoch  # noqa: E402
from lora_sched.train import checkpoint as ckpt  # noqa: E402
from lora_sched.train.data import ShardedOrder, builtin_shapes, load_examples, load_images  # noqa: E402
from lora_sched.train.lora import to_kohya  # noqa: E402
from lora_sched.train.model import builtin_tokenizer  # noqa: E402
from lora_sched.train.optim import build_optimizer  # noqa: E402
from lora_sched.train.sources import check_model_source  # noqa: E402


# -- tokenizer and built-in data -------------------------------------------------------------
def test_builtin_tokenizer_is_clip_shaped_and_offline():
    tok = builtin_tokenizer()
    ids = tok("A Red circle", padding="max_length", max_length=77, truncation=True).input_ids
    assert len(ids) == 77
    assert ids[0] == tok.bos_token_id == 0 and tok.eos_token_id == 1
    words = tok.convert_ids_to_tokens(ids[1:12])
    # lower-cased, one character a token, CLIP's end-of-word marker on the last one of each word
    assert words == ["a</w>", "r", "e", "d</w>", "c", "i", "r", "c", "l", "e</w>", "<|endoftext|>"]
    long = tok("x" * 500, truncation=True, max_length=77).input_ids
    assert len(long) == 77 and long[-1] == 1


def test_builtin_shapes_are_deterministic_and_captioned():
    a, b = builtin_shapes(), builtin_shapes()
    assert len(a) == BUILTIN_SHAPES_SIZE
    assert len({e.caption for e in a}) == BUILTIN_SHAPES_SIZE
    assert a[0].caption == "a red circle on a white background"
    img_a, img_b = a[5].load(64, 64), b[5].load(64, 64)
    assert img_a.size == (64, 64) and img_a.tobytes() == img_b.tobytes()
    centre = img_a.getpixel((32, 32))
    corner = img_a.getpixel((1, 1))
    assert centre != corner  # a shape on a background


def test_kohya_folder_repeats_captions_and_unreadable_images(tmp_path, caplog):
    from PIL import Image

    concept = tmp_path / "3_red_things"
    concept.mkdir()
    Image.new("RGB", (40, 30), (200, 0, 0)).save(concept / "a.png")
    (concept / "a.txt").write_text("a red box\n", encoding="utf-8")
    Image.new("RGB", (30, 40), (0, 0, 200)).save(concept / "b.jpg")  # no caption: the concept name
    (concept / "broken.png").write_bytes(b"not a png")
    (tmp_path / "notes").mkdir()  # not N_concept: skipped with a notice
    examples = load_examples(str(tmp_path))
    assert [(e.name, e.caption, e.repeats) for e in examples] == [
        ("3_red_things/a.png", "a red box", 3),
        ("3_red_things/b.jpg", "red things", 3),
        ("3_red_things/broken.png", "red things", 3),
    ]
    assert "notes" in caplog.text  # not N_concept: a notice (a log record; the command line prints it)
    with pytest.raises(ConfigError) as info:  # the preview counted it: training stops instead of skipping it
        load_images(examples, 32, 32)
    assert "1 of 3 unreadable" in str(info.value) and "broken.png" in str(info.value)
    (concept / "broken.png").unlink()
    kept, images = load_images(load_examples(str(tmp_path)), 32, 32)
    assert [e.name for e in kept] == ["3_red_things/a.png", "3_red_things/b.jpg"]
    assert all(img.size == (32, 32) for img in images)


def test_empty_or_unreadable_dataset_is_a_config_error(tmp_path):
    (tmp_path / "5_empty").mkdir()
    with pytest.raises(ConfigError) as exc:
        load_examples(str(tmp_path))
    assert exc.value.problems[0].key == "train_data_dir"
    (tmp_path / "5_empty" / "x.png").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="1 of 1 unreadable"):
        load_images(load_examples(str(tmp_path)), 32, 32)
    with pytest.raises(ConfigError, match="does not exist"):
        load_examples(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="did you mean"):
        load_examples("builtin:shape")


# -- sharded order ---------------------------------------------------------------------------
@pytest.mark.parametrize("n, batch, procs", [(32, 2, 1), (32, 3, 2), (7, 2, 3), (5, 8, 2)])
def test_sharded_order_covers_each_epoch_and_matches_steps_per_epoch(n, batch, procs):
    orders = [ShardedOrder(n, batch, seed=3, rank=r, num_processes=procs) for r in range(procs)]
    per_process = orders[0].batches_per_process
    for accum in (1, 2, 4):
        assert math.ceil(per_process / accum) == steps_per_epoch(n, batch, accum, procs)
    seen = [i for o in orders for pos in range(per_process) for i in o.batch(0, pos)]
    assert set(seen) == set(range(n))  # every sample at least once (wrapped batches repeat a few)
    assert len(seen) == procs * per_process * batch - sum(
        batch - len(o.batch(0, pos)) for o in orders for pos in range(per_process)
    )
    assert orders[0].permutation(1) == ShardedOrder(n, batch, seed=3).permutation(1)
    if n > 4:
        assert orders[0].permutation(0) != orders[0].permutation(1)


# -- optimizers ------------------------------------------------------------------------------
def _groups():
    return [{"params": [torch.nn.Parameter(torch.zeros(3))], "lr": 1e-3, "name": "unet"}]


def test_optimizer_args_are_parsed_as_literals():
    assert keyword_args(["weight_decay=0.1", "betas=(0.9, 0.99)", "foreach = False"]) == {
        "weight_decay": 0.1,
        "betas": [0.9, 0.99],  # TOML has no tuples: the config layer's parser gives lists
        "foreach": False,
    }
    assert keyword_args(["mode=fast"]) == {"mode": "fast"}
    with pytest.raises(ConfigError) as exc:
        keyword_args(["weight_decay=0.1", "oops"])
    assert exc.value.problems[0].key == "optimizer_args[1]"
    assert keyword_args(["weight_decay=0.1", "oops"], lenient=True) == {"weight_decay": 0.1}
    assert keyword_args({"weight_decay": 0.1}) == {"weight_decay": 0.1} and keyword_args(None) == {}


def test_optimizers_by_kohya_name(monkeypatch):
    from transformers.optimization import Adafactor

    opt = build_optimizer("AdamW", _groups(), {"weight_decay": 0.1}, relative_step=False)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.1
    sgd = build_optimizer("SGDNesterov", _groups(), {}, relative_step=False)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"] is True
    assert isinstance(build_optimizer("radam", _groups(), {}, relative_step=False), torch.optim.RAdam)
    ada = build_optimizer("Adafactor", _groups(), {}, relative_step=True)
    assert isinstance(ada, Adafactor) and ada.param_groups[0]["relative_step"] is True
    assert ada.param_groups[0]["lr"] is None and ada.param_groups[0]["initial_lr"] == 1e-3
    with pytest.raises(ConfigError, match="AdamW"):
        build_optimizer("AdamWW", _groups(), {}, relative_step=False)
    for module in ("bitsandbytes", "bitsandbytes.optim"):  # as if not installed: importing them fails
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr("lora_sched.train.optim.installed_version", lambda package: None)
    with pytest.raises(ConfigError, match="bitsandbytes is not installed: pip install bitsandbytes"):
        build_optimizer("AdamW8bit", _groups(), {}, relative_step=False)
    with pytest.raises(ConfigError) as exc:
        build_optimizer("AdamW", _groups(), {"wieght_decay": 0.1}, relative_step=False)
    assert exc.value.problems[0].key == "optimizer_args"


# -- kohya names -----------------------------------------------------------------------------
def test_kohya_key_names_and_alpha():
    a, b = torch.ones(4, 32), torch.zeros(32, 4)
    out = to_kohya(
        {
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_A.weight": a,
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_B.weight": b,
            "text_encoder.encoder.layers.1.self_attn.q_proj.lora_A.weight": a,
        },
        alpha=2.0,
    )
    unet = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0"
    te = "lora_te_text_model_encoder_layers_1_self_attn_q_proj"
    assert set(out) == {
        f"{unet}.lora_down.weight",
        f"{unet}.lora_up.weight",
        f"{unet}.alpha",
        f"{te}.lora_down.weight",
        f"{te}.alpha",
    }
    assert out[f"{unet}.alpha"].item() == 2.0 and out[f"{unet}.alpha"].dim() == 0


# -- model source and checkpoints --------------------------------------------------------------
def test_model_source_errors(tmp_path):
    check_model_source("builtin:tiny-sd")
    with pytest.raises(ConfigError, match="no such file or folder"):
        check_model_source(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="did you mean"):
        check_model_source("builtin:tiny_sd")
    (tmp_path / "unet").mkdir()
    with pytest.raises(ConfigError, match="missing vae, text_encoder, tokenizer"):
        check_model_source(str(tmp_path))


def _fake_checkpoint(folder: Path, step: int) -> Path:
    """A checkpoint folder with every required file and a matching manifest (contents are not read)."""
    folder.mkdir(parents=True)
    for name in ckpt.REQUIRED:
        (folder / name).write_bytes(f"{name} of step {step}".encode())
    ckpt.write_manifest(folder)
    return folder


def test_latest_checkpoint_ignores_unfinished_and_damaged_ones(tmp_path, caplog):
    root = ckpt.checkpoints_dir(tmp_path)
    for step in (10, 20, 30):
        _fake_checkpoint(root / f"step-{step:08d}", step)
    (root / "step-00000030" / "optimizer.pt").write_bytes(b"optimizer.pt of step 31")  # same size, other bytes
    _fake_checkpoint(root / ".tmp-step-00000040", 40)  # a save killed half way
    (root / "step-00000050").mkdir()  # not a checkpoint: no manifest
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [10, 20, 30, 50]
    caplog.clear()
    assert ckpt.find_resume_dir("latest", tmp_path).name == "step-00000020"
    err = caplog.text  # notices are log records (the command line prints them)
    assert "skipping a damaged checkpoint" in err and "step-00000050/manifest.json is missing" in err
    assert "step-00000030/optimizer.pt: its sha256 differs" in err
    assert "resuming from step-00000020, the newest intact checkpoint" in err
    assert ckpt.find_resume_dir(str(tmp_path), tmp_path).name == "step-00000020"
    assert ckpt.find_resume_dir("latest", tmp_path / "empty") is None
    with pytest.raises(ConfigError, match=r"step-00000030/optimizer.pt: its sha256 differs") as info:
        ckpt.find_resume_dir(str(root / "step-00000030"), tmp_path)
    assert "damaged" in str(info.value)
    with pytest.raises(ConfigError, match="checkpoint folder"):
        ckpt.find_resume_dir(str(root / "step-00000040"), tmp_path)
    for step in (10, 20):
        (root / f"step-{step:08d}" / "lora.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"4 checkpoint\(s\) in .*, all damaged"):
        ckpt.find_resume_dir("latest", tmp_path)


# -- bad inputs through the CLI: one message, exit 1, nothing written ----------------------------
def _config(path: Path, **values) -> Path:
    flat = {"resolution": 64, "max_train_steps": 2, "train_batch_size": 1, "output_dir": str(path.parent / "out")}
    flat.update(values)
    path.write_text(tomli_w.dumps({"training_arguments": flat}), encoding="utf-8")
    return path


def _fails_cleanly(capsys, config: Path, *needles: str) -> str:
    assert main(["train", str(config)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def test_missing_model_folder(tmp_path, capsys):
    config = _config(tmp_path / "c.toml", pretrained_model_name_or_path=str(tmp_path / "no-model"))
    err = _fails_cleanly(capsys, config, "pretrained_model_name_or_path", "no-model", f"{config}:")
    assert err.count("\n\n") == 0
    assert not (tmp_path / "out").exists()


def test_empty_and_unreadable_datasets(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "2_cats").mkdir(parents=True)
    config = _config(tmp_path / "c.toml", train_data_dir=str(data))
    _fails_cleanly(capsys, config, "train_data_dir", "N_concept")
    (data / "2_cats" / "one.png").write_bytes(b"\x89PNG broken")  # found by validate: not a PNG signature
    _fails_cleanly(capsys, config, "train_data_dir", "one.png", "1 unreadable", "not an image")
    # a PNG signature with nothing after it passes the cheap check; decoding, before step 0, stops on it
    (data / "2_cats" / "one.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    _fails_cleanly(capsys, config, "train_data_dir", "one.png", "1 of 1 unreadable")
    assert not (tmp_path / "out").exists()


def test_output_dir_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    config = _config(tmp_path / "c.toml", output_dir=str(target))
    _fails_cleanly(capsys, config, "output_dir", "a file of that name exists")
    assert target.read_text() == "keep me"


def test_config_error_is_reported_with_its_line(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("[training_arguments]\nmax_train_steps = 2\nlearning_rat = 1e-4\n", encoding="utf-8")
    _fails_cleanly(capsys, config, f"{config}:3", "learning_rat", "learning_rate")
    assert not (tmp_path / "output").exists()


def test_bad_override_flag(tmp_path, capsys):
    config = _config(tmp_path / "c.toml")
    assert main(["train", str(config), "--max-train-steps", "0"]) == 1
    assert "--max-train-steps" in capsys.readouterr().err


def test_resolution_the_model_cannot_take(tmp_path, capsys):
    config = _config(tmp_path / "c.toml", resolution=96)  # builtin:tiny-sd needs multiples of 8 x 8, as SD 1.x
    _fails_cleanly(capsys, config, f"{config}:", "resolution", "multiples of 64")
    assert not (tmp_path / "out").exists()


# -- the output folder and early errors: reported before the model is built -------------------
@pytest.fixture
def no_model_build(monkeypatch):
    """Make building the model (or loading the images) fail loudly: the errors under test come first."""
    from lora_sched.train import build

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the error was reported")

    monkeypatch.setattr(build, "load_model", refuse)


@pytest.mark.parametrize("name", ["builtin:tiny-sd", "builtin:tiny-sdxl"])
def test_builtin_geometry_constants_match_the_built_model(name):
    from lora_sched.builtins import BUILTIN_BLOCKS
    from lora_sched.train.memory import resolution_multiple
    from lora_sched.train.model import build_builtin

    model = build_builtin(name)
    assert BUILTIN_BLOCKS[name]["vae"] == tuple(model.vae.config.block_out_channels)
    assert BUILTIN_BLOCKS[name]["unet"] == tuple(model.unet.config.block_out_channels)
    # VAE 8x, UNet 8x (SD 1.x: four blocks) or 4x (SDXL: three), as in the real models
    assert resolution_multiple(name) == {"builtin:tiny-sd": 64, "builtin:tiny-sdxl": 32}[name]


def test_cache_memory_lower_bound():
    from lora_sched.train.memory import cache_bytes

    # 32 images at 8192 x 8192: 3 bytes (RGB) + 2 x 12 bytes (float32 copies) a pixel; VAE: 8 x 32 channels x 4 bytes
    assert cache_bytes(32, 8192, 8192, 32) == (32 * 8192 * 8192 * 27, 8 * 32 * 8192 * 8192 * 4)
    assert cache_bytes(3, 64, 32, 128) == (3 * 64 * 32 * 27, 3 * 128 * 64 * 32 * 4)


def test_a_resolution_too_large_for_memory_is_refused_before_loading(tmp_path, capsys, no_model_build, monkeypatch):
    from lora_sched.train import loop, memory

    monkeypatch.setattr(loop, "load_images", lambda *a: pytest.fail("images loaded before the memory check"))
    monkeypatch.setattr(memory, "available_host_bytes", lambda: 8 * 2**30)
    config = _config(tmp_path / "c.toml", resolution=8192)
    need = (32 * 8192 * 8192 * 27 + 8 * 32 * 8192 * 8192 * 4) / 2**30
    _fails_cleanly(
        capsys,
        config,
        f"{config}:",
        "resolution: expected a size whose training data fits in memory (8.0 GiB available)",
        f"got 8192 x 8192: caching 32 image(s) needs at least {need:.1f} GiB",
    )
    assert not (tmp_path / "out").exists()


def test_an_unknown_optimizer_or_bad_arguments_are_reported_before_the_model(tmp_path, capsys, no_model_build):
    config = _config(tmp_path / "c.toml", optimizer_type="AdamWW")
    _fails_cleanly(capsys, config, "optimizer_type", "AdamWW")
    config = _config(tmp_path / "c.toml", optimizer_args=["betas=(0.9,)"])
    _fails_cleanly(capsys, config, "optimizer_args", "AdamW")
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_cannot_be_made_is_reported_before_the_model(tmp_path, capsys, no_model_build):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "train_log.csv").mkdir()
    _fails_cleanly(capsys, _config(tmp_path / "c.toml", output_dir=str(blocked)), "output_dir", "train_log.csv")
    (blocked / "train_log.csv").rmdir()
    (blocked / "checkpoints").write_text("not a folder")
    _fails_cleanly(capsys, _config(tmp_path / "c.toml", output_dir=str(blocked)), "checkpoints is not a folder")
    (blocked / "checkpoints").unlink()
    (blocked / "lora.safetensors").mkdir()
    _fails_cleanly(
        capsys, _config(tmp_path / "c.toml", output_dir=str(blocked), output_name="lora"), "lora.safetensors"
    )


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc, where no process may create a folder")
def test_an_output_folder_nobody_can_create_is_reported_before_the_model(tmp_path, capsys, no_model_build):
    config = _config(tmp_path / "c.toml", output_dir="/proc/lora-sched-out")
    _fails_cleanly(
        capsys, config, "output_dir: expected a folder this user can create and write", "/proc/lora-sched-out"
    )


def test_a_second_run_into_a_locked_output_folder_names_the_holder(tmp_path, capsys, no_model_build):
    from lora_sched.train.lock import OutputLock

    out = tmp_path / "out"
    with OutputLock(out):
        err = _fails_cleanly(capsys, _config(tmp_path / "c.toml"), "output_dir: expected a folder no other run")
        assert f"in use by pid {os.getpid()} on " in err and "started 20" in err
    with pytest.raises(AssertionError, match="the model was built"):  # released: the run gets past the lock
        main(["train", str(_config(tmp_path / "c.toml"))])


def test_a_resume_refuses_a_change_of_exactly_the_keys_that_fix_the_weights_and_the_data_order():
    from lora_sched.config.keys import KEYS, defaults

    identity = {
        "pretrained_model_name_or_path",
        "train_data_dir",
        "resolution",
        "network_dim",
        "network_alpha",
        "network_args",  # conv_dim, block_dims: the LoRA's modules and shapes
        "vae",  # another VAE: other latents
        "train_batch_size",
        "gradient_accumulation_steps",
        "seed",
        "optimizer_type",
        "optimizer_args",
        "reg_data_dir",  # the regularisation images an epoch holds
        "validation_seed",  # which images validation_split holds out
    }
    saved = defaults()
    refused = {key.name for key in KEYS if ckpt.identity_changes(saved, {**saved, key.name: "changed"})}
    assert refused == identity
    (found,) = ckpt.identity_changes(saved, {**saved, "seed": 7})
    assert str(found) == (
        "seed: expected 42 (as in the checkpoint), got 7 in the current config\n"
        "    hint: restore the value the run started with, or start a new run in another output_dir"
    )

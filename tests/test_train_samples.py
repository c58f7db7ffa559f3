"""Training with sample images and per-epoch / per-step LoRA files (builtin:tiny-sd, CPU).

One run with samples and saves against the same run without them: the final weights and the LR /
loss log are bit-identical (sampling has its own random stream), the images and files are the ones
sd-scripts would write, and every per-epoch LoRA loads in diffusers and changes its output.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")

from train_support import write_train_config  # noqa: E402

from lora_sched.cli import main  # noqa: E402

pytestmark = pytest.mark.slow

#: batch 8 over the 32 built-in images: 4 steps per epoch, 4 epochs = 16 steps.
RUN = {"train_batch_size": 8, "max_train_steps": None, "max_train_epochs": 4, "lr_warmup_steps": 2}
SAMPLES = {
    "sample_every_n_epochs": 2,
    "sample_at_first": True,
    "sample_sampler": "euler_a",
}
SAVES = {"save_every_n_epochs": 1, "save_last_n_epochs": 2, "save_every_n_steps": 6}


def _log(output_dir: Path) -> list[dict[str, str]]:
    with open(output_dir / "train_log.csv", newline="", encoding="utf-8") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_samples_and_epoch_saves_leave_training_bit_identical(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle --w 64 --h 64 --s 2 --d 11\na blue square --n green --w 48 --h 64 --s 2 --d 3\n")
    with_out, plain_out = tmp_path / "with", tmp_path / "plain"
    config = write_train_config(tmp_path / "with.toml", with_out, RUN, sample_prompts=str(prompts), **SAMPLES, **SAVES)
    plain = write_train_config(tmp_path / "plain.toml", plain_out, RUN)
    assert main(["train", str(config)]) == 0
    assert main(["train", str(plain)]) == 0

    # the training itself: the same weights and log, step for step
    final, plain_final = _tensors(with_out / "lora.safetensors"), _tensors(plain_out / "lora.safetensors")
    assert final.keys() == plain_final.keys()
    assert all(torch.equal(final[k], plain_final[k]) for k in final)
    assert _log(with_out) == _log(plain_out)
    from test_train_e2e import assert_log_matches_preview, preview_lrs, read_log

    assert_log_matches_preview(read_log(with_out), preview_lrs(config), ["unet", "text_encoder"])

    # sd-scripts' names: sample_at_first as e000000, then the end of epochs 2 and 4; seeds in the names
    names = sorted(p.name for p in (with_out / "sample").glob("lora_*.png") if "contact_sheet" not in p.name)
    pattern = re.compile(r"^lora_(e00000[024])_(0[01])_\d{14}_(11|3)\.png$")
    assert [pattern.match(n).group(1, 2, 3) for n in names] == [
        (point, index, seed)
        for point in ("e000000", "e000002", "e000004")
        for index, seed in (("00", "11"), ("01", "3"))
    ]
    sheet = with_out / "sample" / "lora_contact_sheet.png"
    from PIL import Image

    with Image.open(sheet) as image:
        assert image.size == (72 + 2 * (96 + 4), 50 + 3 * (64 + 4))  # point and prompt labels
    # epochs 1-3 saved, the 4th is lora.safetensors; save_last_n_epochs = 2 removed epoch 1
    saved = sorted(p.name for p in with_out.glob("lora-*.safetensors"))
    assert saved == [
        "lora-000002.safetensors",
        "lora-000003.safetensors",
        "lora-step00000006.safetensors",
        "lora-step00000012.safetensors",
    ]
    assert sorted(p.name for p in (with_out / "checkpoints").iterdir()) == [
        "step-00000006",
        "step-00000012",
        "step-00000016",
    ]  # the resume checkpoints, as before
    _check_epoch_files(with_out, final)


def _check_epoch_files(out: Path, final: dict) -> None:
    """Kohya keys and ss_* metadata; each loads in diffusers and changes what the UNet computes."""
    from safetensors import safe_open
    from test_train_e2e import unet_and_text_outputs

    from lora_sched.train.model import build_tiny_sd

    base = unet_and_text_outputs(build_tiny_sd().pipeline())[0]
    outputs = []
    for name, epoch, steps in (("lora-000002", 2, 8), ("lora-000003", 3, 12), ("lora-step00000006", 2, 6)):
        path = out / f"{name}.safetensors"
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata()
            assert sorted(fh.keys()) == sorted(final)
        assert (meta["ss_epoch"], meta["ss_steps"], meta["ss_output_name"]) == (str(epoch), str(steps), "lora")
        assert meta["ss_network_module"] == "networks.lora" and meta["ss_num_epochs"] == "4"
        pipe = build_tiny_sd().pipeline()
        pipe.load_lora_weights(str(path))
        outputs.append(unet_and_text_outputs(pipe)[0])
        assert not torch.allclose(outputs[-1], base)
    assert not torch.allclose(outputs[0], outputs[1])  # epoch 2 and epoch 3 differ
    # training went on after epoch 3 (a module whose LoRA gets no gradient keeps its zero lora_up in both)
    epoch_3 = _tensors(out / "lora-000003.safetensors")
    assert not all(torch.equal(epoch_3[k], final[k]) for k in final if "lora_up" in k)

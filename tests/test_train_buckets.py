"""Training with aspect-ratio buckets on builtin:tiny-sd: images of several shapes train at their
buckets, each micro-batch holds one bucket, and the run is the length the preview counts."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")

from train_support import write_train_config  # noqa: E402

from lora_sched.cli import main  # noqa: E402
from lora_sched.config import load_config  # noqa: E402
from lora_sched.config.buckets import BucketSettings  # noqa: E402
from lora_sched.train.data import Example, load_images, sharded_order  # noqa: E402

#: resolution 192 (area 36864), buckets 64..256 in steps of 64 (builtin:tiny-sd's size step, as SD 1.x's):
#: 128x256, 192x192, 256x128 and so on.
BUCKETS = {
    "resolution": 192,
    "enable_bucket": True,
    "min_bucket_reso": 64,
    "max_bucket_reso": 256,
    "bucket_reso_steps": 64,
}


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i, (w, h) in enumerate(sizes):
        img = Image.new("RGB", (w, h), (40 * i % 256, 120, 200))
        img.paste((250, 250, 20), (0, 0, w // 3, h))  # a band on the left: a mirrored image differs
        img.save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"a picture {i}", encoding="utf-8")


def test_examples_fit_their_buckets_and_batches_hold_one(tmp_path: Path) -> None:
    sizes = [(100, 50), (120, 60), (90, 44), (60, 60), (70, 70), (50, 100), (44, 90)]
    write_images(tmp_path / "2_mix", sizes)
    settings = BucketSettings((48, 48), True, 16, 64, 16)
    examples = [Example(p.name, "", 2, p, buckets=settings) for p in sorted((tmp_path / "2_mix").glob("*.png"))]
    fitted, images = load_images(examples, 48, 48)
    assert [img.size for img in images] == [(64, 32)] * 3 + [(48, 48)] * 2 + [(32, 64)] * 2
    assert fitted[0].geometry.original_size == (100, 50) and fitted[0].geometry.placement.resized == (64, 32)
    assert fitted[2].geometry.crop_ltrb == (0.0, 0.0, 64.0, 64 / (90 / 44))  # sd-scripts' crop of 90x44 in 64x32
    for procs in (1, 2):
        orders = [sharded_order(fitted, 3, seed=5, rank=r, procs=procs) for r in range(procs)]
        assert orders[0].num_batches == 2 + 2 + 2  # 6, 4 and 4 samples in batches of 3
        for epoch in (0, 1):
            batches = [o.batch(epoch, p) for o in orders for p in range(o.batches_per_process)]
            for batch in batches:
                assert len({images[_example(fitted, i)].size for i in batch}) == 1  # one bucket
            assert sorted(i for b in batches for i in b) == list(range(14))  # each sample once an epoch
    # the order is a pure function of (seed, epoch): a resumed run draws the same batches
    first, again = (sharded_order(fitted, 3, seed=5, rank=0, procs=1) for _ in range(2))
    assert [again.batch(1, p) for p in range(6)] == [first.batch(1, p) for p in range(6)]
    assert [first.batch(0, p) for p in range(6)] != [first.batch(1, p) for p in range(6)]


def _example(examples: list, sample: int) -> int:
    return [i for i, ex in enumerate(examples) for _ in range(ex.repeats)][sample]


@pytest.mark.slow
def test_a_bucketed_run_trains_each_bucket_and_equals_its_preview(tmp_path: Path, monkeypatch) -> None:
    from safetensors import safe_open

    from lora_sched.train import steps

    data = tmp_path / "data"
    write_images(data / "2_mix", [(400, 200), (480, 240), (360, 176), (240, 240), (280, 280), (200, 400), (176, 360)])
    out = tmp_path / "out"
    config = write_train_config(
        tmp_path / "c.toml",
        out,
        BUCKETS,
        train_data_dir=str(data),
        train_batch_size=3,
        max_train_steps=None,
        max_train_epochs=2,
        text_encoder_lr=0.0,
    )
    cfg = load_config(config)
    assert cfg.data().batches == 6  # buckets of 6, 4 and 4 samples; one bucket would make ceil(14 / 3) = 5
    shapes: list[tuple[int, ...]] = []
    real_loss = steps.denoising_loss

    def recording_loss(unet, text_encoder, noise_scheduler, data, rows, *rest, **options):
        shapes.append(tuple(data.latents[rows].shape))
        return real_loss(unet, text_encoder, noise_scheduler, data, rows, *rest, **options)

    monkeypatch.setattr(steps, "denoising_loss", recording_loss)
    csv_path = tmp_path / "preview.csv"
    assert main(["preview", str(config), "--csv", str(csv_path)]) == 0
    assert main(["train", str(config)]) == 0
    with open(out / "train_log.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(csv_path, newline="", encoding="utf-8") as fh:
        previewed = list(csv.DictReader(fh))
    assert len(rows) == len(previewed) == 12
    assert [float(r["lr_unet"]) for r in rows] == pytest.approx([float(r["lr_unet"]) for r in previewed], rel=1e-12)
    # latents are a VAE's 1/8: 256x128 -> 32x16, 192x192 -> 24x24, 128x256 -> 16x32 (batch, channels, h, w)
    assert sorted({s[2:] for s in shapes}) == [(16, 32), (24, 24), (32, 16)]
    assert sorted(s[0] for s in shapes) == sorted([3, 3, 3, 1, 3, 1] * 2)  # 6, 4 and 4 samples batched apart
    with safe_open(str(out / "lora.safetensors"), "pt") as fh:
        meta = fh.metadata()
    assert meta["ss_enable_bucket"] == "True" and meta["ss_min_bucket_reso"] == "64"
    info = json.loads(meta["ss_bucket_info"])
    assert info["buckets"] == {
        "0": {"resolution": [128, 256], "count": 4},
        "1": {"resolution": [192, 192], "count": 4},
        "2": {"resolution": [256, 128], "count": 6},
    }


@pytest.mark.slow
def test_caption_options_and_flips_are_drawn_per_sample_and_keep_the_previewed_length(tmp_path, monkeypatch) -> None:
    from lora_sched.train import steps

    data = tmp_path / "data"
    write_images(data / "3_tags", [(64, 48), (48, 64)])
    for i in range(2):
        (data / "3_tags" / f"img{i}.txt").write_text(f"sks{i}, red, green, blue, round, square\nignored", "utf-8")
    out = tmp_path / "out"
    config = write_train_config(
        tmp_path / "c.toml",
        out,
        {"resolution": 64, "train_data_dir": str(data), "max_train_steps": None, "max_train_epochs": 2},
        shuffle_caption=True,
        keep_tokens=1,
        caption_tag_dropout_rate=0.2,
        flip_aug=True,
        text_encoder_lr=0.0,  # a frozen text encoder runs on each draw's caption
    )
    seen: list[tuple] = []
    real_loss = steps.denoising_loss

    def recording_loss(unet, text_encoder, noise_scheduler, data, rows, *rest, **options):
        seen.append((data.input_ids[rows].clone(), data.latents[rows].clone(), data.embeddings[rows].clone()))
        return real_loss(unet, text_encoder, noise_scheduler, data, rows, *rest, **options)

    monkeypatch.setattr(steps, "denoising_loss", recording_loss)
    assert main(["train", str(config)]) == 0
    with open(out / "train_log.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == load_config(config).resolve().run_length == 2 * 3  # ceil(6 / 2) steps an epoch
    ids = {tuple(t.tolist()) for batch, _, _ in seen for t in batch}
    assert len(ids) > 2  # the 2 captions were drawn in more than 2 orders / tag sets
    latents = {tuple(t.flatten().tolist()) for _, batch, _ in seen for t in batch}
    assert len(latents) == 4  # each image drawn both as it is and mirrored


def test_several_datasets_train_with_their_own_resolution_batch_size_and_buckets(tmp_path: Path) -> None:
    from lora_sched.train.data import training_data

    write_images(tmp_path / "a", [(40, 40), (50, 30), (30, 50)])
    write_images(tmp_path / "b", [(100, 50), (50, 100), (60, 60), (90, 45)])
    dataset = tmp_path / "d.toml"
    dataset.write_text(
        f"""[[datasets]]
resolution = 32
batch_size = 2
  [[datasets.subsets]]
  image_dir = {str(tmp_path / "a")!r}
  num_repeats = 3
[[datasets]]
resolution = 48
batch_size = 3
enable_bucket = true
min_bucket_reso = 16
max_bucket_reso = 64
bucket_reso_steps = 16
  [[datasets.subsets]]
  image_dir = {str(tmp_path / "b")!r}
  num_repeats = 2
""",
        encoding="utf-8",
    )
    cfg = load_config(write_train_config(tmp_path / "c.toml", tmp_path / "out", {"dataset_config": str(dataset)}))
    # a: 9 samples at 32x32 in batches of 2 -> 5; b: buckets 64x32 (4), 32x64 (2), 48x48 (2) in batches of 3 -> 4
    assert cfg.data().batches == 5 + 2 + 1 + 1
    read = training_data(cfg)
    fitted, images = load_images(read.examples, 32, 32)
    assert [img.size for img in images] == [(32, 32)] * 3 + [(64, 32), (32, 64), (48, 48), (64, 32)]
    order = sharded_order(fitted, read.batch_size, seed=1, rank=0, procs=1)
    assert order.num_batches == 9
    batches = [order.batch(0, p) for p in range(order.num_batches)]
    for batch in batches:
        examples = {_example(fitted, i) for i in batch}
        assert len({(fitted[e].dataset, images[e].size) for e in examples}) == 1  # one dataset, one bucket
        assert len(batch) <= fitted[next(iter(examples))].batch_size
    assert sorted(len(b) for b in batches) == sorted([2, 2, 2, 2, 1, 3, 1, 2, 2])  # a: 9 by 2; b: 4, 2, 2 by 3

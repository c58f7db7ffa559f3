"""Aspect-ratio buckets by sd-scripts' rules: the bucket, resized size and crop of every image size
of tests/data/bucket_goldens.json (computed by sd-scripts' own BucketManager at commit
48d368fa557731ad0488c07304dfeba8c07910eb; tools/gen_bucket_goldens.py regenerates it from a
checkout), the batches per epoch of image sets, and the preview's count of real image folders."""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_sched.config import loads_config
from lora_sched.config.buckets import (
    BucketRules,
    BucketSettings,
    bucket_batches,
    bucket_counts,
    epoch_batches,
    original_crop,
    predefined_buckets,
    resolution_size,
)
from lora_sched.config.dataset import DataPlan
from lora_sched.config.image_head import read_head
from lora_sched.errors import ConfigError

GOLDEN = json.loads((Path(__file__).parent / "data" / "bucket_goldens.json").read_text(encoding="utf-8"))
CASES = {case["setting"]["name"]: case for case in GOLDEN["cases"]}


def settings_of(name: str) -> BucketSettings:
    s = CASES[name]["setting"]
    return BucketSettings(
        tuple(s["resolution"]),
        s["enable_bucket"],
        s["min_bucket_reso"],
        s["max_bucket_reso"],
        s["bucket_reso_steps"],
        s["bucket_no_upscale"],
    )


def test_the_goldens_come_from_the_pinned_sd_scripts() -> None:
    assert GOLDEN["provenance"]["repository"] == "kohya-ss/sd-scripts"
    assert GOLDEN["provenance"]["commit"] == "48d368fa557731ad0488c07304dfeba8c07910eb"
    assert len(CASES) == 10 and all(len(c["images"]) == 233 for c in CASES.values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_predefined_buckets_equal_sd_scripts(name: str) -> None:
    rules = BucketRules(settings_of(name))
    assert [list(b) for b in rules.predefined] == CASES[name]["predefined"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_image_lands_in_the_bucket_sd_scripts_chooses(name: str) -> None:
    rules = BucketRules(settings_of(name))
    checked = refused = 0
    for row in CASES[name]["images"]:
        size = (row[0], row[1])
        if len(row) == 3 or 0 in row[2:4]:  # sd-scripts fails on it (or makes an empty bucket): refused here
            with pytest.raises(ValueError, match=r"pixels|too thin"):
                rules.place(size)
            refused += 1
            continue
        placement = rules.place(size)
        assert [*placement.bucket, *placement.resized] == row[2:6], size
        assert list(original_crop(placement.bucket, size)) == row[6:10], size
        # the resized image covers the bucket: the centre crop never pads
        assert placement.resized[0] >= placement.bucket[0] and placement.resized[1] >= placement.bucket[1]
        checked += 1
    assert checked >= 220  # only images under bucket_reso_steps (or thinner) are refused
    if not CASES[name]["setting"]["bucket_no_upscale"]:
        assert refused == 0  # predefined buckets take any size


def test_a_few_buckets_by_hand() -> None:
    sd15 = BucketRules(BucketSettings((512, 512), True))
    assert sd15.place((1920, 1080)) == ((640, 384), (683, 384))
    assert sd15.place((1920, 1080)).crop_left_top == (21, 0)
    assert sd15.place((384, 640)).bucket == (384, 640)  # a predefined size keeps it (no resize)
    assert sd15.place((384, 640)).resized == (384, 640)
    no_up = BucketRules(BucketSettings((512, 512), True, bucket_no_upscale=True))
    assert no_up.place((300, 200)) == ((256, 192), (300, 200))  # smaller than the area: cropped, never enlarged
    off = BucketRules(BucketSettings((512, 768)))
    assert off.place((1000, 1000)) == ((512, 768), (768, 768))  # one bucket: cover and centre-crop
    assert predefined_buckets((512, 512), 256, 1024, 64)[:3] == [(256, 832), (256, 896), (256, 960)]


@pytest.mark.parametrize("count", GOLDEN["counts"], ids=lambda c: f"{c['setting']}-b{c['batch_size']}")
def test_batches_per_epoch_equal_sd_scripts(count: dict) -> None:
    rules = BucketRules(settings_of(count["setting"]))
    counts = bucket_counts((rules.place((w, h)).bucket, r) for w, h, r in count["images"])
    assert bucket_batches(counts.values(), count["batch_size"]) == count["batches"]


def test_settings_sd_scripts_refuses() -> None:
    assert BucketSettings((512, 512), True, 300, 1000).min_max() == (256, 1024)
    assert BucketSettings((512, 512), True, 300, 1000).problem() is None
    assert BucketSettings((512, 512), True, 576, 1024).problem()[0] == "min_bucket_reso"
    assert BucketSettings((1024, 512), True, 256, 960).problem()[0] == "max_bucket_reso"
    assert BucketSettings((1024, 512), False, 256, 960).problem() is None  # off: not read


def test_resolution_forms() -> None:
    assert resolution_size(512) == (512, 512)
    assert resolution_size("512,768") == (512, 768)
    assert resolution_size([640, 480]) == (640, 480)
    assert resolution_size("512") == (512, 512)
    assert resolution_size("a,b") is None and resolution_size(True) is None and resolution_size("0") is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=40),
    st.lists(st.integers(1, 6), min_size=6, max_size=6),
    st.randoms(use_true_random=False),
)
def test_epoch_batches_hold_one_bucket_each(bucket_of: list[int], sizes: list[int], rnd) -> None:
    order = list(range(len(bucket_of)))
    rnd.shuffle(order)
    batches = epoch_batches(order, bucket_of, sizes)
    assert sorted(s for b in batches for s in b) == list(range(len(bucket_of)))  # every sample once
    for batch in batches:
        assert len({bucket_of[s] for s in batch}) == 1  # one bucket per batch
        assert len(batch) <= sizes[bucket_of[batch[0]]]
    per_bucket = {b: bucket_of.count(b) for b in set(bucket_of)}
    assert len(batches) == sum(math.ceil(n / sizes[b]) for b, n in per_bucket.items())
    firsts = [order.index(b[0]) for b in batches]
    assert firsts == sorted(firsts)  # taken in the order their first sample comes


def test_one_bucket_cuts_the_permutation_in_order() -> None:
    assert epoch_batches([3, 1, 4, 0, 2], [0] * 5, [2]) == [[3, 1], [4, 0], [2]]


# -- image headers -----------------------------------------------------------------------------
def png_bytes(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "WEBP-lossless"])
def test_header_sizes_equal_what_pil_reads(tmp_path: Path, fmt: str) -> None:
    Image = pytest.importorskip("PIL.Image")
    for width, height in ((37, 91), (640, 480), (3, 2000)):
        path = tmp_path / f"x{width}.img"
        img = Image.new("RGB", (width, height), (10, 200, 30))
        kind = fmt.split("-")[0]
        exif = b"Exif\x00\x00" + b"\x00" * 5000 if kind == "JPEG" else None  # a big APP1 before the frame
        kwargs = {"lossless": True} if fmt == "WEBP-lossless" else ({"exif": exif} if exif else {})
        img.save(path, kind, **kwargs)
        assert read_head(str(path)) == (None, (width, height)), fmt


def test_header_of_bad_files(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "cut.png").write_bytes(png_bytes(5, 7)[:20])
    assert read_head(str(tmp_path / "empty.png")).unreadable == "an empty file (0 bytes)"
    assert read_head(str(tmp_path / "text.png")).unreadable.startswith("not an image")
    assert read_head(str(tmp_path / "cut.png")) == (None, None)  # an image whose size the header lacks
    assert read_head(str(tmp_path / "missing.png")).unreadable.startswith("cannot be opened")


# -- the preview's count -------------------------------------------------------------------------
def write_sizes(folder: Path, sizes: list[tuple[int, int]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        (folder / f"img{i:03d}.png").write_bytes(png_bytes(w, h))


def test_the_preview_counts_each_bucket_apart(tmp_path: Path) -> None:
    # 3 wide (640x384), 2 square (512x512), 1 tall (384x640) images, 2 repeats, batch 4:
    # buckets of 6, 4 and 2 samples -> 2 + 1 + 1 batches (one bucket: ceil(12 / 4) = 3)
    write_sizes(tmp_path / "data" / "2_mix", [(1920, 1080)] * 3 + [(800, 800)] * 2 + [(1080, 1920)])
    text = (
        f"train_data_dir = {str(tmp_path / 'data')!r}\ntrain_batch_size = 4\nmax_train_epochs = 3\nresolution = 512\n"
    )
    off = loads_config(text)
    assert off.data().batches == 3 and off.resolve().run_length == 9
    on = loads_config(text + "enable_bucket = true\n")
    found = on.data()
    assert isinstance(found, DataPlan) and found.samples == 12 and found.batches == 4
    assert found.datasets[0].bucket_counts() == {(640, 384): 6, (512, 512): 4, (384, 640): 2}
    assert on.resolve().run_length == 12
    assert "enable_bucket" not in [p.key for p in on.warnings]  # a key lora_sched reads


def test_dataset_config_buckets_per_dataset(tmp_path: Path) -> None:
    write_sizes(tmp_path / "a", [(1920, 1080), (800, 800), (1080, 1920)])
    write_sizes(tmp_path / "b", [(1920, 1080)] * 3)
    dataset = tmp_path / "d.toml"
    dataset.write_text(
        f"""[general]
enable_bucket = true
[[datasets]]
resolution = 512
batch_size = 2
  [[datasets.subsets]]
  image_dir = {str(tmp_path / "a")!r}
  num_repeats = 3
[[datasets]]
resolution = 512
batch_size = 2
enable_bucket = false
  [[datasets.subsets]]
  image_dir = {str(tmp_path / "b")!r}
""",
        encoding="utf-8",
    )
    cfg = loads_config(f"dataset_config = {str(dataset)!r}\nmax_train_epochs = 1\n")
    # first: three buckets of 3 samples -> 2 + 2 + 2; second: one bucket of 3 -> 2
    assert cfg.data().batches == 8 and cfg.resolve().run_length == 8


def test_bucket_settings_sd_scripts_refuses_are_errors(tmp_path: Path) -> None:
    write_sizes(tmp_path / "data" / "1_x", [(800, 600)])
    text = f"train_data_dir = {str(tmp_path / 'data')!r}\nresolution = 512\nenable_bucket = true\n"
    with pytest.raises(ConfigError) as info:
        loads_config(text + "min_bucket_reso = 640\n")
    assert str(info.value) == (
        "<string>:4: min_bucket_reso: expected bucket settings sd-scripts accepts (train_data_dir), "
        "got 640 (on the steps), above the resolution's shorter side 512\n"
        "    hint: write min_bucket_reso = 512 or less (256 when not written), or raise the resolution"
    )
    assert loads_config(text + "min_bucket_reso = 300\n").data().batches == 1  # 300 rounds down to 256
    with pytest.raises(ConfigError) as info:  # the default, not written: the hint says what to write
        loads_config(f"train_data_dir = {str(tmp_path / 'data')!r}\nresolution = 128\nenable_bucket = true\n")
    assert "hint: write min_bucket_reso = 128 or less (256 when not written)" in str(info.value)


def test_whole_float_sizes_as_kohya_ss_gui_presets_write_them(tmp_path: Path) -> None:
    write_sizes(tmp_path / "data" / "1_x", [(1920, 1080), (800, 800)])
    text = f"train_data_dir = {str(tmp_path / 'data')!r}\nresolution = 512\nenable_bucket = true\n"
    text += "train_batch_size = 2\n"
    cfg = loads_config(text + "bucket_reso_steps = 64.0\nmax_bucket_reso = 2048.0\n")
    assert cfg.data().batches == 2 and cfg.data().datasets[0].buckets.bucket_reso_steps == 64
    with pytest.raises(ConfigError, match=r"bucket_reso_steps: expected bucket settings .* got 64.5: a whole number"):
        loads_config(text + "bucket_reso_steps = 64.5\n")

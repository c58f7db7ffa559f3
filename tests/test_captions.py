"""Caption options by sd-scripts' rules: every processed caption of tests/data/caption_goldens.json
(computed by sd-scripts' own BaseDataset.process_caption at commit
48d368fa557731ad0488c07304dfeba8c07910eb with Python's random seeded; tools/gen_caption_goldens.py
regenerates it from a checkout) equals lora_sched's with a generator of the same seed; the options
are read per subset from a dataset_config and never change the step count."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from lora_sched.config import loads_config
from lora_sched.config.captions import CaptionSettings, caption_settings, process_caption

GOLDEN = json.loads((Path(__file__).parent / "data" / "caption_goldens.json").read_text(encoding="utf-8"))


def test_the_goldens_come_from_the_pinned_sd_scripts() -> None:
    assert GOLDEN["provenance"]["commit"] == "48d368fa557731ad0488c07304dfeba8c07910eb"
    assert len(GOLDEN["rows"]) == 11 * 7 * 5 * 2


def test_every_processed_caption_equals_sd_scripts() -> None:
    changed = 0
    for options, caption, seed, epoch, expected in GOLDEN["rows"]:
        got = process_caption(caption, caption_settings(options), epoch, random.Random(seed))
        assert got == expected, (options, caption, seed, epoch)
        changed += got != caption
    assert changed == 413  # the options change most captions (the rest: no option, or drawn unchanged)


def test_a_few_captions_by_hand() -> None:
    keep = CaptionSettings(shuffle_caption=True, keep_tokens=1)
    for seed in range(20):
        out = process_caption("sks, a, b, c", keep, 1, random.Random(seed)).split(", ")
        assert out[0] == "sks" and sorted(out[1:]) == ["a", "b", "c"]
    sep = CaptionSettings(shuffle_caption=True, keep_tokens_separator="|||")
    out = process_caption("x, y ||| a, b ||| z", sep, 1, random.Random(3)).split(", ")
    assert out[:2] == ["x", "y"] and out[-1] == "z" and sorted(out[2:4]) == ["a", "b"]
    every = CaptionSettings(caption_dropout_every_n_epochs=2)
    assert [process_caption("a, b", every, e, random.Random(0)) for e in (1, 2, 3, 4)] == ["a, b", "", "a, b", ""]
    assert process_caption("first\nsecond", CaptionSettings(), 1, random.Random(0)) == "first"


def test_caption_options_per_subset_and_the_same_step_count(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            (tmp_path / name / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    dataset = tmp_path / "d.toml"
    dataset.write_text(
        f"""[general]
shuffle_caption = true
keep_tokens = 1
[[datasets]]
batch_size = 2
  [[datasets.subsets]]
  image_dir = {str(tmp_path / "a")!r}
  flip_aug = true
  [[datasets.subsets]]
  image_dir = {str(tmp_path / "b")!r}
  keep_tokens = 2
  caption_dropout_rate = 0.25
""",
        encoding="utf-8",
    )
    text = f"dataset_config = {str(dataset)!r}\nmax_train_epochs = 2\ncaption_tag_dropout_rate = 0.1\n"
    cfg = loads_config(text)
    a, b = cfg.data().datasets[0].subsets
    assert a.captions == CaptionSettings(
        shuffle_caption=True, keep_tokens=1, caption_tag_dropout_rate=0.1, flip_aug=True
    )
    assert b.captions == CaptionSettings(
        shuffle_caption=True, keep_tokens=2, caption_dropout_rate=0.25, caption_tag_dropout_rate=0.1
    )
    plain = loads_config(f"dataset_config = {str(dataset)!r}\nmax_train_epochs = 2\n")
    assert cfg.resolve().run_length == plain.resolve().run_length == 2 * 3  # ceil(6 / 2) a epoch
    assert not [p for p in cfg.warnings if p.key in ("shuffle_caption", "caption_tag_dropout_rate")]


def test_a_rate_out_of_range_in_a_dataset_config_is_an_error(tmp_path: Path) -> None:
    from lora_sched.errors import ConfigError

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    dataset = tmp_path / "d.toml"
    dataset.write_text(
        f"[[datasets]]\n[[datasets.subsets]]\nimage_dir = {str(tmp_path / 'a')!r}\ncaption_dropout_rate = 1.5\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"d.toml:4: datasets\[0\].subsets\[0\].caption_dropout_rate: expected a number in \[0, 1\], got 1.5",
    ):
        loads_config(f"dataset_config = {str(dataset)!r}\nmax_train_epochs = 1\n")


def test_the_key_table_and_the_caption_settings_agree_on_every_default():
    """One set of defaults: sd-scripts' (an unset prefix or suffix adds nothing, as "" does)."""
    from lora_sched.config.captions import CAPTION_DEFAULTS
    from lora_sched.config.keys import KEY_BY_NAME

    for name, default in CAPTION_DEFAULTS.items():
        key_default = KEY_BY_NAME[name].default
        assert key_default == default or (key_default is None and default == ""), name
    assert CAPTION_DEFAULTS["caption_separator"] == "," and CAPTION_DEFAULTS["keep_tokens_separator"] == ""

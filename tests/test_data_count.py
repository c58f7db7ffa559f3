"""One step count everywhere: the data a run reads is counted once, the way sd-scripts counts it,
and validate, preview, export and the training data path agree on it.

Counting rules checked here (sd-scripts library/train_util.py and library/config_util.py at commit
48d368fa557731ad0488c07304dfeba8c07910eb): folder repeats are int(name before the first "_"),
images are files ending in one of the lower/upper-case extension spellings (hidden files are not
globbed), dataset_config values fall back subset -> dataset -> general -> the training config ->
sd-scripts' defaults, each dataset is batched apart, regularisation images are repeated or cut to
the training samples, and an epoch is ceil(batches / processes / accumulation) updates.
"""

from __future__ import annotations

import functools
import io
import json
import math
import tempfile
from pathlib import Path

import pytest
import tomllib
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lora_sched.cli import main
from lora_sched.config import load_config, loads_config
from lora_sched.config.dataset import DataPlan, NoData, reg_samples
from lora_sched.errors import ConfigError
from lora_sched.torch.export import export_kohya

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # enough for counting, which reads no further


def touch_images(folder: Path, n: int, ext: str = ".png", data: bytes = PNG_SIGNATURE) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"img{i:03d}{ext}").write_bytes(data)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- the folder layout -------------------------------------------------------------------------
def test_folder_names_and_extensions_as_sd_scripts_globs_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    touch_images(data / "3_cat", 2)
    touch_images(data / "3_cat", 1, ".JPG")  # an upper-case spelling sd-scripts globs
    (data / "3_cat" / "odd.Png").write_bytes(PNG_SIGNATURE)  # a mixed case it does not
    (data / "3_cat" / ".hidden.png").write_bytes(PNG_SIGNATURE)  # glob's * skips hidden files
    (data / "3_cat" / "notes.txt").write_text("x")
    touch_images(data / "2", 4)  # "2": int("2") = 2 repeats, an empty class token
    touch_images(data / "0_off", 5)  # 0 repeats: skipped
    touch_images(data / "cats_3", 5)  # no leading int: skipped
    (data / "loose.png").write_bytes(PNG_SIGNATURE)  # not in a concept folder: not read
    cfg = loads_config(f"train_data_dir = {str(data)!r}\ntrain_batch_size = 4\nmax_train_epochs = 2")
    found = cfg.data()
    assert isinstance(found, DataPlan)
    assert found.samples == 3 * 3 + 2 * 4 == 17
    assert found.batches == 5  # ceil(17 / 4)
    assert cfg.resolve().run_length == 10
    notices = [p.found for p in cfg.warnings if p.key == "train_data_dir" and p.severity == "notice"]
    assert len(notices) == 2 and any("0_off" in n for n in notices) and any("cats_3" in n for n in notices)


def test_unreadable_images_are_errors_naming_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    touch_images(data / "5_cat", 3)
    (data / "5_cat" / "empty.png").write_bytes(b"")
    (data / "5_cat" / "text.jpg").write_text("hello, not a jpeg")
    config = write(tmp_path / "c.toml", f"train_data_dir = {str(data)!r}\nmax_train_epochs = 1\n")
    for verb in ("validate", "preview"):
        assert main([verb, str(config)]) == 1
        err = capsys.readouterr().err
        assert f"{config}:1: train_data_dir: expected image files training can read, got 2 unreadable" in err
        assert "empty.png (an empty file (0 bytes))" in err and "text.jpg (not an image" in err
    assert main(["export", "--kohya", str(config)]) == 1


def test_a_folder_with_no_concept_folder_says_which_folders_were_skipped(tmp_path: Path, capsys) -> None:
    touch_images(tmp_path / "data", 2)  # loose images: not read
    touch_images(tmp_path / "data" / "cats", 3)  # no repeat count
    config = write(tmp_path / "c.toml", f"max_train_epochs = 2\ntrain_data_dir = {str(tmp_path / 'data')!r}\n")
    assert main(["preview", str(config)]) == 3
    err = capsys.readouterr().err
    assert (
        f"{config}:2: notice: train_data_dir: expected N_concept/ folders, got {tmp_path / 'data' / 'cats'}: "
        "not in the N_concept form (e.g. 10_shapes); skipped\n"
    ) in err
    assert "2 epochs of data that cannot be counted here (train_data_dir" in err


@pytest.mark.parametrize("verb", ["validate", "preview", "export", "form"])
def test_each_image_is_opened_once_per_command(tmp_path: Path, verb: str, monkeypatch) -> None:
    import lora_sched.config.dataset as dataset

    data = tmp_path / "data"
    touch_images(data / "5_cat", 4)
    touch_images(data / "2_dog", 3)
    opened: list[str] = []
    real = dataset.read_head
    monkeypatch.setattr(dataset, "read_head", lambda path, sizes: opened.append(path) or real(path, sizes))
    if verb == "form":  # one form update: the TOML is written, loaded and previewed
        pytest.importorskip("numpy")
        from lora_sched.notebook import translate

        values = {"length_mode": "epochs", "max_train_epochs": 2, "train_data_dir": str(data)}
        cfg, _ = translate.translate(values)
        translate.preview_sample(cfg)
    else:
        config = write(tmp_path / "c.toml", f"train_data_dir = {str(data)!r}\nmax_train_epochs = 2\n")
        args = {"validate": ["validate"], "preview": ["preview"], "export": ["export", "--kohya"]}[verb]
        assert main([*args, str(config)]) == 0
    assert sorted(opened) == sorted(str(p) for p in data.glob("*/*.png"))


def test_reg_data_dir_joins_the_dataset_as_sd_scripts_reads_it(tmp_path: Path) -> None:
    touch_images(tmp_path / "train" / "10_cat", 5)
    touch_images(tmp_path / "reg" / "1_person", 3)
    text = f"train_data_dir = {str(tmp_path / 'train')!r}\nmax_train_epochs = 2\ntrain_batch_size = 4\n"
    cfg = loads_config(text + f"reg_data_dir = {str(tmp_path / 'reg')!r}\n")
    assert cfg.num_samples() == 50 + 50  # 3 reg images repeated up to the 50 training samples
    assert cfg.resolve().run_length == 2 * 25
    from lora_sched.train.data import training_data

    trained = training_data(cfg).examples  # lora-sched train reads what the preview counts
    assert sum(e.repeats for e in trained) == 100 and [e.repeats for e in trained[5:]] == [17, 17, 16]
    assert loads_config(text + 'reg_data_dir = ""\n').num_samples() == 50  # the GUI's "unset"


def test_reg_samples_follow_sd_scripts_balancing() -> None:
    from lora_sched.config.dataset import Subset

    def reg(*counts_repeats: tuple[int, int]) -> list[Subset]:
        folders = enumerate(counts_repeats)
        return [Subset(f"r{i}", r, [f"r{i}/{j}.png" for j in range(n)], is_reg=True) for i, (n, r) in folders]

    assert reg_samples(20, reg((3, 1))) == 20  # fewer: repeated up to the training samples
    assert reg_samples(20, reg((30, 1))) == 20  # more: cut at the training samples
    assert reg_samples(20, reg((3, 7))) == 21  # 7 + 7 + 7: the first pass stops past 20
    assert reg_samples(20, reg((1, 5), (2, 4))) == 20  # 5 + 4 + 4 = 13, then one repeat at a time
    assert reg_samples(0, reg((3, 1))) == 0
    assert reg_samples(20, []) == 0


# -- dataset_config ----------------------------------------------------------------------------
DATASET_TOML = """
[general]
batch_size = 2
num_repeats = 3
caption_extension = ".txt"

[[datasets]]
resolution = 512

  [[datasets.subsets]]
  image_dir = "{data}/a"

  [[datasets.subsets]]
  image_dir = "{data}/b"
  num_repeats = 1

  [[datasets.subsets]]
  image_dir = "{data}/a"      # the same folder again: sd-scripts ignores the duplicate

  [[datasets.subsets]]
  image_dir = "{data}/a"
  num_repeats = 0             # ignored too (but the duplicate check comes first in sd-scripts)

  [[datasets.subsets]]
  image_dir = "{data}/reg"
  is_reg = true

[[datasets]]
batch_size = 4
validation_split = 0.25

  [[datasets.subsets]]
  image_dir = "{data}/c"
"""


def _dataset_tree(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    touch_images(data / "a", 5)
    touch_images(data / "b", 2)
    touch_images(data / "reg", 4)
    touch_images(data / "c", 10)
    write(tmp_path / "ds.toml", DATASET_TOML.format(data=data))
    return data


def test_dataset_config_inherits_and_batches_each_dataset_apart(tmp_path: Path) -> None:
    _dataset_tree(tmp_path)
    cfg = loads_config(f"dataset_config = {str(tmp_path / 'ds.toml')!r}\nmax_train_epochs = 3\ntrain_batch_size = 8")
    found = cfg.data()
    assert isinstance(found, DataPlan) and found.key == "dataset_config"
    first, second = found.datasets
    # a: 5 x 3 (general's num_repeats) + b: 2 x 1 = 17 training samples; 4 reg images repeated up to 17
    assert (first.train_samples(), first.samples(), first.batch_size, first.resolution) == (17, 34, 2, 512)
    # c: ceil(10 x 0.75) = 8 training images x 3 repeats, batch 4 (its own, not general's 2)
    assert (second.samples(), second.batch_size) == (24, 4)
    assert found.batches == 17 + 6  # ceil(34 / 2) + ceil(24 / 4): no batch mixes two datasets
    assert cfg.training_shape().steps_per_epoch == 23
    assert cfg.training_shape(num_processes=2).steps_per_epoch == 12
    assert cfg.resolve().run_length == 69


def test_dataset_config_as_json_and_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    touch_images(data / "x", 6)
    doc = {"datasets": [{"batch_size": 3, "subsets": [{"image_dir": str(data / "x"), "num_repeats": 2}]}]}
    write(tmp_path / "ds.json", json.dumps(doc))
    touch_images(data / "10_ignored", 50)  # sd-scripts ignores train_data_dir when a dataset_config is given
    config = write(tmp_path / "c.toml", f"train_data_dir = {str(data)!r}\nmax_train_epochs = 5\n")
    assert main(["validate", str(config), "--dataset-config", str(tmp_path / "ds.json")]) == 0
    assert "20 steps" in capsys.readouterr().out  # 6 x 2 / 3 = 4 per epoch


def test_dataset_config_mistakes_are_located_in_that_file(tmp_path: Path) -> None:
    write(
        tmp_path / "ds.toml",
        '[general]\nnum_repeats = "3"\n'
        '[[datasets]]\nbatch_size = "2"\n[[datasets.subsets]]\nnum_repeats = 2\n'
        '[[datasets]]\n[[datasets.subsets]]\nimage_dir = "a"\n[[datasets.subsets]]\nimage_dir = "b"\nis_reg = 1\n',
    )
    with pytest.raises(ConfigError) as info:
        loads_config(f"dataset_config = {str(tmp_path / 'ds.toml')!r}\nmax_train_epochs = 1")
    ds = str(tmp_path / "ds.toml")
    found = {(p.file, p.line, p.key) for p in info.value.problems}
    assert found >= {
        (ds, 4, "datasets[0].batch_size"),
        (ds, 5, "datasets[0].subsets[0].image_dir"),  # missing: the line of its [[datasets.subsets]]
        (ds, 2, "general.num_repeats"),
        (ds, 12, "datasets[1].subsets[1].is_reg"),  # the second dataset's second subset
    }


def test_fine_tuning_subsets_are_not_counted_but_a_stated_size_is(tmp_path: Path) -> None:
    write(tmp_path / "ds.toml", '[[datasets]]\n[[datasets.subsets]]\nimage_dir = "x"\nmetadata_file = "m.json"\n')
    text = f"dataset_config = {str(tmp_path / 'ds.toml')!r}\nmax_train_epochs = 2\ntrain_batch_size = 4\n"
    cfg = loads_config(text)
    assert isinstance(cfg.data(), NoData) and "metadata_file" in cfg.unknown_run_length()
    cfg = loads_config(text + "samples_per_epoch = 40\n")
    assert cfg.resolve().run_length == 20


# -- unknown data: say so, never guess ----------------------------------------------------------
def test_epochs_without_data_are_never_counted_on_the_builtin_set(tmp_path: Path, capsys) -> None:
    config = write(tmp_path / "c.toml", "max_train_epochs = 10\ntrain_batch_size = 2\n")
    assert main(["validate", str(config)]) == 0
    captured = capsys.readouterr()
    why = "no data is named: neither train_data_dir nor dataset_config is set"
    assert captured.out == f"{config}: ok (constant, 10 epochs: run length unknown here ({why}))\n"
    assert captured.err == (
        f"{config}:1: notice: max_train_epochs: expected data to count the steps of an epoch, "
        "got 10 epochs of data that cannot be counted here\n"
        f"    hint: {why}; give the data (train_data_dir, dataset_config or --dataset-config) or its size "
        "(samples_per_epoch / --samples-per-epoch = images x repeats)\n"
    )
    assert main(["preview", str(config)]) == 3
    assert "the run length is unknown: 10 epochs" in capsys.readouterr().err
    assert main(["export", "--kohya", str(config)]) == 3
    assert "export: the run length is unknown" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="an export never guesses one"):
        export_kohya(load_config(config))
    assert main(["export", "--kohya", str(config), "--samples-per-epoch", "100"]) == 0
    exported = tomllib.loads(capsys.readouterr().out)
    assert exported["training_arguments"]["max_train_steps"] == 500  # 10 epochs of 100 / 2, not 160
    named = write(
        tmp_path / "b.toml", 'max_train_epochs = 10\ntrain_batch_size = 2\ntrain_data_dir = "builtin:shapes"\n'
    )
    assert main(["preview", str(named)]) == 0  # named: counted (32 / 2 x 10)
    assert "160 steps" in capsys.readouterr().out


def test_a_stated_size_that_disagrees_with_the_data_here_is_a_warning(tmp_path: Path) -> None:
    touch_images(tmp_path / "data" / "2_x", 5)
    cfg = loads_config(f"train_data_dir = {str(tmp_path / 'data')!r}\nmax_train_epochs = 1\nsamples_per_epoch = 99")
    assert cfg.num_samples() == 10
    (warning,) = [p for p in cfg.warnings if p.key == "samples_per_epoch"]
    assert warning.severity == "warning" and "counted: 10" in warning.hint


# -- item 5: the export writes what the source had --------------------------------------------
EXPORT_SOURCES = {
    "minimal.toml": 'max_train_steps = 100\nlr_scheduler = "cosine"\n',
    "colab.toml": (
        "[training_arguments]\nmax_train_epochs = 10\ntrain_batch_size = 2\nxformers = true\n"
        '[optimizer_arguments]\nlearning_rate = 5e-4\nlr_scheduler = "cosine_with_restarts"\n'
        "lr_scheduler_num_cycles = 3\nlr_warmup_steps = 0.05\n"
        '[model_arguments]\npretrained_model_name_or_path = "/models/sd15.safetensors"\n'
    ),
    "rex.toml": 'max_train_steps = 300\nlr_scheduler = "rex"\nseed = 7\noutput_dir = "runs"\nresolution = 512\n',
}


@pytest.mark.parametrize("name", sorted(EXPORT_SOURCES))
def test_export_writes_only_the_source_keys_and_the_schedule(tmp_path: Path, name: str) -> None:
    from lora_sched.torch.export import SCHEDULE_KEYS

    source = write(tmp_path / name, EXPORT_SOURCES[name])
    cfg = load_config(source, data={"samples_per_epoch": 100})
    text = export_kohya(cfg)
    exported = {k: v for table in tomllib.loads(text).values() for k, v in table.items()}
    given = set(cfg.sections) - {"samples_per_epoch"}  # a lora_sched key: sd-scripts has no use for it
    assert set(exported) <= given | set(SCHEDULE_KEYS)
    # sd-scripts' defaults are its own when a key is absent: never written for it
    assert not {"lr_scheduler_power", "lr_decay_steps"} & (set(exported) - given)
    assert {k for k in given if k not in SCHEDULE_KEYS} <= set(exported)
    for default in ("builtin:tiny-sd", "builtin:shapes"):
        assert default not in text
    for key in ("resolution", "output_dir", "seed", "output_name", "train_data_dir"):
        assert (key in exported) == (key in given), key


# -- the property: preview's count is the training data path's, or training refuses ------------
def _png_bytes() -> bytes:
    Image = pytest.importorskip("PIL.Image")

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@functools.cache
def _png_of(width: int, height: int) -> bytes:
    Image = pytest.importorskip("PIL.Image")

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (width % 256, height % 256, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


#: Image sizes of the bucketed layouts (resolution 32, buckets 16..64 in steps of 8): wide, tall, square.
BUCKET_SIZES = [(16, 16), (40, 24), (24, 40), (64, 64), (100, 30), (30, 100), (200, 150), (33, 17)]
BUCKET_SETTINGS = "resolution = 32\nenable_bucket = true\nbucket_reso_steps = 8\nmin_bucket_reso = 16\n"


GOOD, EMPTY, TEXT, TRUNCATED, NO_CAPTION = "good", "empty", "text", "truncated", "no caption"
FILE_KINDS = st.sampled_from([GOOD] * 12 + [NO_CAPTION] * 3 + [EMPTY, TEXT, TRUNCATED])


@st.composite
def layouts(draw: st.DrawFn) -> dict:
    """A random data set: a kohya folder or a dataset_config, with subsets of random files, and a run shape."""
    use_dataset_config = draw(st.booleans())
    n_datasets = draw(st.sampled_from([1, 1, 1, 2])) if use_dataset_config else 1
    datasets = []
    for _ in range(n_datasets):
        subsets = []
        for _ in range(draw(st.integers(1, 3))):
            files = draw(st.lists(FILE_KINDS, min_size=draw(st.sampled_from([0, 1, 1, 1])), max_size=5))
            subsets.append(
                {
                    "repeats": draw(st.sampled_from([0, 1, 1, 2, 3, 4, 10])),
                    "files": files,
                    "sizes": draw(st.lists(st.sampled_from(BUCKET_SIZES), min_size=len(files), max_size=len(files))),
                    "is_reg": use_dataset_config and draw(st.integers(0, 5)) == 0,
                }
            )
        datasets.append({"batch": draw(st.integers(1, 5)), "subsets": subsets})
    return {
        "dataset_config": use_dataset_config,
        "datasets": datasets,
        "batch": draw(st.integers(1, 5)),
        "accum": draw(st.integers(1, 4)),
        "procs": draw(st.integers(1, 3)),
        "epochs": draw(st.integers(1, 3)),
        "bucket": draw(st.sampled_from([None, None, "upscale", "no_upscale"])),
    }


def _build(root: Path, layout: dict, png: bytes) -> tuple[str, dict]:
    """The files and the config text of a layout, and what counting must find in it."""
    data = root / "data"
    data.mkdir()
    content = {GOOD: png, NO_CAPTION: png, EMPTY: b"", TEXT: b"caption text, not an image", TRUNCATED: png[:20]}
    several = len(layout["datasets"]) > 1
    facts = {"unreadable": False, "truncated": False, "reg": False, "images": 0, "several": several}
    tables = []
    for d, dataset in enumerate(layout["datasets"]):
        subsets = []
        for s, subset in enumerate(dataset["subsets"]):
            folder = data / (f"{subset['repeats']}_concept{d}{s}" if not layout["dataset_config"] else f"set{d}{s}")
            folder.mkdir()
            for i, kind in enumerate(subset["files"]):
                sized = layout["bucket"] and kind in (GOOD, NO_CAPTION)
                (folder / f"{i}.png").write_bytes(_png_of(*subset["sizes"][i]) if sized else content[kind])
                if kind != NO_CAPTION:
                    (folder / f"{i}.txt").write_text(f"caption {i}")
            (folder / "readme.md").write_text("not an image: never counted")
            subsets.append({"image_dir": str(folder), "num_repeats": subset["repeats"], "is_reg": subset["is_reg"]})
        read = [s for s in dataset["subsets"] if s["repeats"] >= 1 and s["files"]]
        if any(not s["is_reg"] for s in read):  # reg images alone are not read (sd-scripts: no data)
            kinds = [k for s in read for k in s["files"]]
            facts["unreadable"] |= EMPTY in kinds or TEXT in kinds
            facts["truncated"] |= TRUNCATED in kinds
            facts["reg"] |= any(s["is_reg"] for s in read)
            facts["images"] += sum(len(s["files"]) for s in read if not s["is_reg"])
        tables.append({"batch_size": dataset["batch"], "subsets": subsets})
    text = f"max_train_epochs = {layout['epochs']}\ntrain_batch_size = {layout['batch']}\n"
    text += f"gradient_accumulation_steps = {layout['accum']}\n"
    if layout["bucket"]:
        text += BUCKET_SETTINGS + f"bucket_no_upscale = {str(layout['bucket'] == 'no_upscale').lower()}\n"
    else:
        text += "resolution = 8\n"
    if layout["dataset_config"]:
        import tomli_w

        (root / "ds.toml").write_text(tomli_w.dumps({"datasets": tables}), encoding="utf-8")
        text += f"dataset_config = {str(root / 'ds.toml')!r}\n"
    else:
        text += f"train_data_dir = {str(data)!r}\n"
    return text, facts


def _training_epoch(cfg, procs: int) -> int:
    """Updates per epoch as the training loop counts them: from the examples it decodes, on the
    sharded order it iterates (lora_sched.train.loop), or ConfigError where training refuses."""
    from lora_sched.train.data import load_images, sharded_order, training_data
    from lora_sched.train.loop import check_epoch_length, parse_resolution

    read = training_data(cfg)
    examples, images = load_images(read.examples, *parse_resolution(read.resolution))
    order = sharded_order(examples, read.batch_size, seed=0, rank=procs - 1, procs=procs)
    steps = order.updates_per_epoch(int(cfg.values["gradient_accumulation_steps"]))
    check_epoch_length(cfg, steps, procs)
    for position in range(order.batches_per_process):  # a batch holds one bucket: one image size
        assert len({images[examples_at(examples, i)].size for i in order.batch(0, position)}) == 1
    return steps


def examples_at(examples: list, sample: int) -> int:
    """The example position of a sample (repeats expanded)."""
    from lora_sched.train.data import sample_index

    return sample_index(examples)[sample]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=layouts())
def test_preview_counts_what_training_reads_or_training_refuses(layout: dict) -> None:
    png = _png_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text, facts = _build(root, layout, png)
        procs = layout["procs"]
        try:
            cfg = loads_config(text, source=str(root / "c.toml"))
        except ConfigError as exc:  # validate and preview refuse; train loads the same way and refuses too
            assert facts["unreadable"], str(exc)
            assert "unreadable" in str(exc)
            event("refused at validate: unreadable image")
            return
        assert not facts["unreadable"]
        if cfg.unknown_run_length() is not None:  # no image at all: preview asks for the size
            assert facts["images"] == 0
            with pytest.raises(ConfigError):
                _training_epoch(cfg, procs)
            event("unknown run length: training refuses")
            return
        previewed = cfg.training_shape(num_processes=procs).steps_per_epoch
        run_length = cfg.resolve(cfg.training_shape(num_processes=procs)).run_length
        assert run_length == layout["epochs"] * previewed
        try:
            trained = _training_epoch(cfg, procs)
        except ConfigError as exc:  # refused before step 0, and only for a reason it names
            assert facts["truncated"] or facts["reg"] or facts["several"], str(exc)
            event("refused by training before step 0")
            return
        assert trained == previewed
        if procs == 1:  # the preview's CSV has one row per step the training log will have
            out = root / "lr.csv"
            cfg_file = root / "c.toml"
            cfg_file.write_text(text, encoding="utf-8")
            assert main(["preview", str(cfg_file), "--csv", str(out)]) == 0
            assert len(out.read_text().splitlines()) == 1 + layout["epochs"] * trained
        event("preview == training" + (f" ({layout['bucket']} buckets)" if layout["bucket"] else ""))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    folders=st.lists(
        st.tuples(st.integers(1, 4), st.lists(st.sampled_from(BUCKET_SIZES), min_size=1, max_size=6)),
        min_size=1,
        max_size=3,
    ),
    batch=st.integers(1, 5),
    accum=st.integers(1, 3),
    procs=st.integers(1, 3),
    no_upscale=st.booleans(),
    steps=st.sampled_from([8, 16]),
)
def test_bucketed_preview_counts_the_batches_training_makes(folders, batch, accum, procs, no_upscale, steps) -> None:
    """Good images of several shapes only: the preview's epoch is training's, batch for batch."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for f, (repeats, sizes) in enumerate(folders):
            folder = root / "data" / f"{repeats}_set{f}"
            folder.mkdir(parents=True)
            for i, size in enumerate(sizes):
                (folder / f"{i}.png").write_bytes(_png_of(*size))
        text = f"train_data_dir = {str(root / 'data')!r}\nmax_train_epochs = 2\ntrain_batch_size = {batch}\n"
        text += f"gradient_accumulation_steps = {accum}\nresolution = 32\nenable_bucket = true\n"
        text += f"bucket_reso_steps = {steps}\nmin_bucket_reso = 16\nbucket_no_upscale = {str(no_upscale).lower()}\n"
        try:
            cfg = loads_config(text)
        except ConfigError as exc:  # an image too thin for the steps once shrunk: sd-scripts divides by zero
            assert "expected images a bucket can hold" in str(exc) and no_upscale, str(exc)
            event("refused: an image no bucket holds")
            return
        counts = cfg.data().datasets[0].bucket_counts()
        assert cfg.data().batches == sum(math.ceil(n / batch) for n in counts.values())
        previewed = cfg.training_shape(num_processes=procs).steps_per_epoch
        assert _training_epoch(cfg, procs) == previewed
        event(f"{min(len(counts), 3)}{'+' if len(counts) >= 3 else ''} buckets")


# -- real runs (slow): train refuses before step 0, or its log is the preview step for step ------
@pytest.mark.slow
def test_train_on_a_folder_with_bad_images_refuses_then_runs_the_previewed_length(tmp_path, capsys) -> None:
    pytest.importorskip("torch")
    import csv

    png = _png_bytes()
    data = tmp_path / "data"
    touch_images(data / "2_shapes", 5, data=png)
    touch_images(data / "1_more", 2, data=png)
    (data / "2_shapes" / "zero.png").write_bytes(b"")
    out = tmp_path / "out"
    config = write(
        tmp_path / "c.toml",
        f"train_data_dir = {str(data)!r}\noutput_dir = {str(out)!r}\nresolution = 64\ntrain_batch_size = 3\n"
        'max_train_epochs = 2\nlr_scheduler = "cosine"\nlr_warmup_steps = 0.2\ntext_encoder_lr = 0.0\n',
    )
    for verb in ("preview", "train"):  # an empty file: found by the cheap check, named by every verb
        assert main([verb, str(config)]) == 1
        assert "zero.png (an empty file (0 bytes))" in capsys.readouterr().err
    (data / "2_shapes" / "zero.png").write_bytes(png[:30])  # starts like a PNG: only decoding finds it
    assert main(["train", str(config)]) == 1
    err = capsys.readouterr().err
    assert "zero.png" in err and "1 of 8 unreadable" in err and "Traceback" not in err
    assert not out.exists()  # refused before anything was written
    (data / "2_shapes" / "zero.png").unlink()
    csv_path = tmp_path / "preview.csv"
    assert main(["preview", str(config), "--csv", str(csv_path)]) == 0
    assert main(["train", str(config)]) == 0
    with csv_path.open(newline="") as f:
        previewed = list(csv.DictReader(f))
    with (out / "train_log.csv").open(newline="") as f:
        logged = list(csv.DictReader(f))
    assert len(previewed) == len(logged) == 2 * 4  # (5 x 2 + 2 x 1) / 3 = 4 steps per epoch, 2 epochs
    assert [float(r["lr_unet"]) for r in logged] == [float(r["lr_unet"]) for r in previewed]


@pytest.mark.slow
def test_train_refuses_epochs_of_unnamed_data_before_building_anything(tmp_path, capsys) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "out"
    config = write(tmp_path / "c.toml", f"max_train_epochs = 2\noutput_dir = {str(out)!r}\nresolution = 64\n")
    assert main(["train", str(config)]) == 1  # it would read builtin:shapes, which no preview counted
    err = capsys.readouterr().err
    assert "max_train_epochs" in err and "an epoch of unknown length (no data named)" in err
    assert not out.exists()
    named = write(tmp_path / "d.toml", f"samples_per_epoch = 10\n{config.read_text()}")
    assert main(["train", str(named)]) == 1  # a stated size, but training would read other data
    assert "10 steps per epoch counted on samples_per_epoch = 10" in capsys.readouterr().err


def test_relative_data_paths_are_read_from_the_working_folder(tmp_path: Path, monkeypatch) -> None:
    touch_images(tmp_path / "img", 4)
    write(tmp_path / "ds.toml", '[[datasets]]\n[[datasets.subsets]]\nimage_dir = "img"\nnum_repeats = 3\n')
    (tmp_path / "configs").mkdir()
    config = write(tmp_path / "configs" / "c.toml", 'dataset_config = "ds.toml"\nmax_train_epochs = 2\n')
    monkeypatch.chdir(tmp_path)  # as sd-scripts: not the config file's folder
    assert load_config(config).resolve().run_length == 24  # 4 images x 3 repeats, batch 1, 2 epochs
    monkeypatch.chdir(tmp_path / "configs")
    assert "is not a file on this machine" in load_config(config).unknown_run_length()


def test_an_epoch_duration_without_data_asks_for_the_data(tmp_path: Path) -> None:
    text = 'max_train_steps = 100\nlr_scheduler = "cosine"\nlr_warmup_steps = "1ep"\n'
    with pytest.raises(ConfigError) as info:
        loads_config(text, source="c.toml")
    (p,) = info.value.problems
    assert str(p) == (
        'c.toml:3: lr_warmup_steps: expected a duration in steps (epochs need the dataset size), got "1ep" (a string)\n'
        "    hint: give the data an epoch is counted on (train_data_dir, dataset_config or --dataset-config) "
        "or its size (samples_per_epoch / --samples-per-epoch), or write the duration in steps"
    )
    assert loads_config(text + "samples_per_epoch = 20\n").resolve().warmup == 20  # what the hint offers works

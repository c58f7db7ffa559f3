"""Regularisation images (reg_data_dir, is_reg, prior_loss_weight) and the validation split
(validation_split, validation_seed, validate_every_n_*, max_validation_steps) in `lora-sched train`.

Where lora_sched reproduces sd-scripts (the regularisation fill, the split, the LossRecorder average,
the validation timesteps and times) it is compared with goldens computed by sd-scripts' own code
(tests/data/sdscripts_data/goldens.json, tools/gen_sdscripts_data_golden.py): exactly, as the same
integer and float operations run in the same order.
"""

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
from lora_sched.config.dataset import reg_repeats, split_images  # noqa: E402
from lora_sched.errors import ConfigError  # noqa: E402
from lora_sched.train.csv_log import CsvLog  # noqa: E402
from lora_sched.train.data import CachedData, loss_weights, sample_weights, training_data  # noqa: E402
from lora_sched.train.validation import (  # noqa: E402
    EPOCH_COLUMN,
    STEP_COLUMN,
    LossRecorder,
    ValidationPlan,
    ValidationSet,
    Validator,
    validation_batches,
    validation_plan,
    validation_timesteps,
)

GOLDENS = json.loads((Path(__file__).parent / "data" / "sdscripts_data" / "goldens.json").read_text())


def write_images(folder: Path, count: int, tag: str, captions: bool = True) -> None:
    """`count` 64x64 images img0.png ... with captions "tag i" (none when `captions` is False)."""
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (64, 64), ((len(tag) * 50 + 37 * i) % 256, 90, 200)).save(folder / f"img{i}.png")
        if captions:
            (folder / f"img{i}.txt").write_text(f"{tag} {i}", encoding="utf-8")


# -- parity with sd-scripts' own code -----------------------------------------------------------
def test_the_split_holds_out_the_images_sd_scripts_holds_out() -> None:
    assert GOLDENS["provenance"]["commit"] == "48d368fa557731ad0488c07304dfeba8c07910eb"
    for images, split, seed, trained, held_out in GOLDENS["split_rows"]:
        assert split_images(images, split, seed) == (trained, held_out), (images, split, seed)


def test_regularisation_images_are_repeated_and_cut_as_sd_scripts_fills_them() -> None:
    for train_samples, repeats, given in GOLDENS["fill_rows"]:
        assert reg_repeats(train_samples, repeats) == given, (train_samples, repeats)


def test_the_validation_average_is_sd_scripts_loss_recorder() -> None:
    recorder, averages = LossRecorder(), []
    for epoch, index, loss in GOLDENS["recorder_feed"]:
        recorder.add(epoch, index, loss)
        averages.append(recorder.average)
    assert averages == GOLDENS["recorder_averages"]
    assert LossRecorder().average == 0.0


def test_validation_timesteps_and_times_are_sd_scripts() -> None:
    for total, low, high, expected in GOLDENS["timesteps"]:
        assert validation_timesteps(0 if low is None else low, total if high is None else high) == expected
    for every_steps, every_epochs, steps, epochs in GOLDENS["due"]:
        plan = ValidationPlan(every_steps, every_epochs, None, 0)
        assert [s for s in range(1, 13) if plan.step_due(s)] == steps
        assert [e for e in range(6) if plan.epoch_due(e)] == epochs


def test_validations_follow_the_steps_and_epoch_ends_and_log_the_divergence(monkeypatch) -> None:
    from types import SimpleNamespace

    validator = Validator(ValidationPlan(4, None, None, 0), ValidationSet(None, None, [[0]]), (0, 1000))
    assert validator.timesteps == [200, 400, 600, 800]
    measured = iter([2.0, 3.0, 4.0, 5.0])
    monkeypatch.setattr(validator, "_validate", lambda run, epoch, recorder: next(measured))
    run = SimpleNamespace(
        processes=SimpleNamespace(steps_per_epoch=3), training=SimpleNamespace(resolved=SimpleNamespace(run_length=7))
    )
    found = [validator.after_update(run, step, 0.5 + step) for step in range(7)]
    # global step 4 (log step 3); the ends of epochs 0 and 1 (log steps 2, 5) and of the run mid-epoch 2 (6)
    assert found == [{}, {}, {EPOCH_COLUMN: 2.0}, {STEP_COLUMN: 3.0}, {}, {EPOCH_COLUMN: 4.0}, {EPOCH_COLUMN: 5.0}]
    assert validator.row(found[3]) == [3.0, None]
    # the training average after log step 6: epoch 0 appended 0.5, 1.5, 2.5; epochs 1-2 replaced them
    assert validator.tracker(found[6]) == {
        "loss/validation/epoch_average": 5.0,
        "loss/validation/epoch_divergence": 5.0 - (6.5 + 4.5 + 5.5) / 3,
    }


def test_a_split_that_shares_an_image_warns(tmp_path: Path, caplog) -> None:
    from lora_sched.train.data import Example

    images = [Example(f"img{i}", "", 1, tmp_path / f"img{i}.png") for i in range(10)]
    trained, held_out = split_images(10, 0.35, 0)  # ceil(6.5) = 7 trained, round(3.5) = 4 held out
    assert len(set(trained) & set(held_out)) == 1
    values = {"validation_split": 0.35, "seed": 3}
    with caplog.at_level("WARNING", logger="lora_sched.train"):
        plan = validation_plan(values, [images[i] for i in held_out], [images[i] for i in trained])
    assert plan == ValidationPlan(None, None, None, 3)
    assert "holds out 1 image(s) that are trained on too" in caplog.text
    assert validation_plan(values, [], images) is None


# -- the data training reads --------------------------------------------------------------------
def test_reg_data_dir_images_are_filled_captioned_and_weighted(tmp_path: Path) -> None:
    write_images(tmp_path / "train" / "3_sks_dog", 2, "sks dog")
    write_images(tmp_path / "reg" / "1_dog", 4, "dog", captions=False)
    (tmp_path / "reg" / "1_dog" / "img3.txt").write_text("a dog on grass", encoding="utf-8")
    config = write_train_config(
        tmp_path / "c.toml",
        tmp_path / "out",
        {},
        train_data_dir=str(tmp_path / "train"),
        reg_data_dir=str(tmp_path / "reg"),
        prior_loss_weight=0.25,
    )
    cfg = load_config(config)
    data = training_data(cfg)
    # 2 images x 3 repeats = 6 training samples; 4 reg images of 1 repeat reach 6 with 2 extra repeats
    assert [(e.name, e.caption, e.repeats, e.loss_weight) for e in data.examples] == [
        ("3_sks_dog/img0.png", "sks dog 0", 3, 1.0),
        ("3_sks_dog/img1.png", "sks dog 1", 3, 1.0),
        ("1_dog/img0.png", "dog", 2, 0.25),
        ("1_dog/img1.png", "dog", 2, 0.25),
        ("1_dog/img2.png", "dog", 1, 0.25),
        ("1_dog/img3.png", "a dog on grass", 1, 0.25),
    ]
    assert sum(e.repeats for e in data.examples) == cfg.data().samples == 12
    assert not any("reg_data_dir" in w.found for w in cfg.warnings)  # a key lora_sched reads now
    # the cache's weights, and a micro-batch's weights by sample position (repeats expanded)
    cached = CachedData(None, None, None, [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 5], [], loss_weights(data.examples))
    assert sample_weights(cached, [0, 6, 11, 3]).tolist() == [1.0, 0.25, 0.25, 1.0]
    assert loss_weights(data.examples[:2]) is None  # all 1: the plain batch mean


def test_a_dataset_config_splits_and_weights_its_subsets(tmp_path: Path) -> None:
    write_images(tmp_path / "a", 7, "a")
    write_images(tmp_path / "r", 3, "r")
    dataset = tmp_path / "data.toml"
    dataset.write_text(
        "[[datasets]]\nbatch_size = 2\nvalidation_split = 0.35\nvalidation_seed = 42\n"
        f'[[datasets.subsets]]\nimage_dir = "{(tmp_path / "a").as_posix()}"\nnum_repeats = 2\n'
        f'[[datasets.subsets]]\nimage_dir = "{(tmp_path / "r").as_posix()}"\nis_reg = true\n',
        encoding="utf-8",
    )
    config = write_train_config(tmp_path / "c.toml", tmp_path / "out", {}, dataset_config=str(dataset))
    cfg = load_config(config)
    data = training_data(cfg)
    golden = next(r for r in GOLDENS["split_rows"] if r[:3] == [7, 0.35, 42])
    trained, held_out = golden[3], golden[4]
    assert [e.name for e in data.examples if e.name.startswith("a/")] == [f"a/img{i}.png" for i in trained]
    assert [e.name for e in data.validation] == [f"a/img{i}.png" for i in held_out]
    assert all(e.repeats == 1 and e.loss_weight == 1.0 for e in data.validation)
    assert [e.repeats for e in data.examples if e.name.startswith("r/")] == [4, 3, 3]  # 5 x 2 = 10 samples
    assert sum(e.repeats for e in data.examples) == cfg.data().samples == 20
    assert cfg.training_shape().steps_per_epoch == 10


def test_the_training_config_splits_train_data_dir_by_seed_unless_validation_seed(tmp_path: Path) -> None:
    write_images(tmp_path / "train" / "1_x", 10, "x")
    common = {"train_data_dir": str(tmp_path / "train"), "validation_split": 0.25, "seed": 1234}
    by_seed = training_data(load_config(write_train_config(tmp_path / "a.toml", tmp_path / "o", common)))
    by_own = training_data(
        load_config(write_train_config(tmp_path / "b.toml", tmp_path / "o", common, validation_seed=42))
    )
    for data, seed in ((by_seed, 1234), (by_own, 42)):
        golden = next(r for r in GOLDENS["split_rows"] if r[:3] == [10, 0.25, seed])
        assert [e.name for e in data.examples] == [f"1_x/img{i}.png" for i in golden[3]]
        assert [e.name for e in data.validation] == [f"1_x/img{i}.png" for i in golden[4]]
        assert not {e.name for e in data.examples} & {e.name for e in data.validation}


def test_builtin_shapes_refuses_reg_and_validation_rather_than_ignoring_them(tmp_path: Path) -> None:
    for key, value in (("reg_data_dir", str(tmp_path)), ("validation_split", 0.2)):
        config = write_train_config(tmp_path / "c.toml", tmp_path / "out", {}, **{key: value})
        with pytest.raises(ConfigError) as caught:
            training_data(load_config(config))
        assert caught.value.problems[0].key == key


def test_held_out_batches_keep_each_dataset_and_size_apart() -> None:
    from lora_sched.train.data import Example

    examples = [Example(str(i), "", 1, dataset=d, batch_size=b) for i, (d, b) in enumerate([(0, 2)] * 5 + [(1, 3)] * 4)]
    assert validation_batches(examples, 1) == [[0, 1], [2, 3], [4], [5, 6, 7], [8]]


def test_the_log_keeps_rows_with_empty_validation_cells_on_resume(tmp_path: Path) -> None:
    path, columns = tmp_path / "log.csv", ("val_step_average", "val_epoch_average")
    log = CsvLog(path, ["lr_unet"], 0, columns)
    log.write(0, 0, [0.1], 0.5, [None, None])
    log.write(1, 0, [0.1], 0.4, [0.75, 0.5])
    log.write(2, 1, [0.1], 0.3, [None, None])
    log.close()
    from lora_sched.train.lr_log import _read_log

    assert [r["step"] for r in _read_log(path)] == ["0", "1", "2"]  # the plot keeps rows without a validation
    CsvLog(path, ["lr_unet"], 2, columns).close()  # a resume at step 2 keeps steps 0 and 1
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [(r["step"], r["val_step_average"], r["val_epoch_average"]) for r in rows] == [
        ("0", "", ""),
        ("1", "0.75", "0.5"),
    ]


# -- training runs --------------------------------------------------------------------------------
def _reg_config(tmp_path: Path, name: str, **values) -> Path:
    return write_train_config(
        tmp_path / f"{name}.toml",
        tmp_path / name,
        {"max_train_steps": 3, "text_encoder_lr": 0.0, "lr_warmup_steps": 0},
        train_data_dir=str(tmp_path / "train"),
        reg_data_dir=str(tmp_path / "reg"),
        **values,
    )


@pytest.mark.slow
def test_prior_loss_weight_reaches_the_loss_of_the_regularisation_samples(tmp_path: Path, monkeypatch) -> None:
    from safetensors.torch import load_file

    from lora_sched.train import data as data_module
    from lora_sched.train import steps

    write_images(tmp_path / "train" / "1_cat", 3, "cat")
    write_images(tmp_path / "reg" / "1_animal", 3, "animal")
    seen: list[list[float] | None] = []
    real_loss = steps.denoising_loss

    def recording_loss(*args, sample_weights=None, **kwargs):
        seen.append(None if sample_weights is None else sample_weights.tolist())
        return real_loss(*args, sample_weights=sample_weights, **kwargs)

    monkeypatch.setattr(steps, "denoising_loss", recording_loss)
    assert main(["train", str(_reg_config(tmp_path, "zero", prior_loss_weight=0.0))]) == 0
    assert len(seen) == 3 and all(w is not None and set(w) <= {0.0, 1.0} for w in seen)
    assert sorted(x for w in seen for x in w) == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]  # one epoch: 3 + 3 samples

    # the same run with prior_loss_weight 1 whose regularisation samples weigh 0 in the cache
    real_weights = data_module.loss_weights

    def weightless_reg(examples):
        return torch.tensor([1.0 if e.name.startswith("1_cat/") else 0.0 for e in examples])

    monkeypatch.setattr(data_module, "loss_weights", weightless_reg)
    assert main(["train", str(_reg_config(tmp_path, "weightless", prior_loss_weight=1.0))]) == 0
    monkeypatch.setattr(data_module, "loss_weights", real_weights)
    assert main(["train", str(_reg_config(tmp_path, "one", prior_loss_weight=1.0))]) == 0
    zero, weightless, one = (load_file(str(tmp_path / n / "lora.safetensors")) for n in ("zero", "weightless", "one"))
    assert zero.keys() == weightless.keys()
    assert all(torch.equal(zero[k], weightless[k]) for k in zero)
    assert any(not torch.equal(zero[k], one[k]) for k in zero)


@pytest.mark.slow
def test_validation_never_trains_on_held_out_images_and_logs_when_sd_scripts_does(tmp_path: Path, monkeypatch) -> None:
    from safetensors.torch import load_file

    from lora_sched.train import steps

    write_images(tmp_path / "train" / "1_cat", 5, "cat")
    write_images(tmp_path / "reg" / "1_animal", 2, "animal")
    config = _reg_config(
        tmp_path,
        "out",
        validation_split=0.4,
        validate_every_n_steps=3,
        validate_every_n_epochs=2,
        max_train_steps=None,
        max_train_epochs=2,
        train_batch_size=3,
    )
    cfg = load_config(config)
    held_out = {f"cat {i}" for i in split_images(5, 0.4, 7)[1]}  # TRAIN_DEFAULTS' seed 7 splits
    assert len(held_out) == 2
    trained_captions: set[str] = set()
    real_loss = steps.denoising_loss

    def recording_loss(unet, condition, noise_scheduler, data, rows, *rest, **kwargs):
        trained_captions.update(data.captions[r] for r in rows)
        return real_loss(unet, condition, noise_scheduler, data, rows, *rest, **kwargs)

    monkeypatch.setattr(steps, "denoising_loss", recording_loss)
    csv_path = tmp_path / "preview.csv"
    assert main(["preview", str(config), "--csv", str(csv_path)]) == 0
    assert main(["train", str(config)]) == 0
    # 3 kept images + 3 reg samples (2 images filled to 3) = 6 samples: 2 steps per epoch, as previewed
    assert cfg.training_shape().steps_per_epoch == 2
    rows = list(csv.DictReader((tmp_path / "out" / "train_log.csv").open(encoding="utf-8")))
    previewed = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    assert len(rows) == len(previewed) == 4
    assert trained_captions == {f"cat {i}" for i in range(5)} - held_out | {"animal 0", "animal 1"}
    # validate_every_n_steps 3: after global step 3 (log step 2); validate_every_n_epochs 2: the 2nd epoch's end
    assert [r["step"] for r in rows if r["val_step_average"]] == ["2"]
    assert [r["step"] for r in rows if r["val_epoch_average"]] == ["3"]
    values = [float(r[c]) for r in rows for c in ("val_step_average", "val_epoch_average") if r[c]]
    assert all(0 < v < 10 for v in values)
    # the validations change nothing of the training: the same run without any gives the same LoRA
    quiet = _reg_config(
        tmp_path,
        "quiet",
        validation_split=0.4,
        validate_every_n_epochs=1000,
        max_train_steps=None,
        max_train_epochs=2,
        train_batch_size=3,
    )
    assert main(["train", str(quiet)]) == 0
    quiet_log = (tmp_path / "quiet" / "train_log.csv").read_text(encoding="utf-8")
    assert not any(r["val_epoch_average"] for r in csv.DictReader(quiet_log.splitlines()))
    validated, plain = (load_file(str(tmp_path / n / "lora.safetensors")) for n in ("out", "quiet"))
    assert all(torch.equal(validated[k], plain[k]) for k in validated)

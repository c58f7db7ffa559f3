"""The metadata sd-scripts writes into a LoRA file, as `lora-sched train` writes it: the sshs_*
hashes (compared with goldens computed by sd-scripts' own functions, tests/data/sdscripts_metadata/,
tools/gen_sdscripts_metadata_golden.py), the tag counts, the folders, the dataset records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from train_support import write_train_config

from lora_sched.cli import main
from lora_sched.config import load_config
from lora_sched.train.data import training_data
from lora_sched.train.metadata import (
    DataFolder,
    LoraRunFacts,
    addnet_legacy_hash,
    addnet_model_hash,
    dataset_dirs,
    dataset_tag_frequency,
    file_hashes,
    file_sha256,
    lora_hashes,
    lora_metadata,
    old_model_hash,
    optimizer_text,
    run_session,
    tag_frequency,
)

GOLDEN_DIR = Path(__file__).parent / "data" / "sdscripts_metadata"
GOLDENS = json.loads((GOLDEN_DIR / "goldens.json").read_text(encoding="utf-8"))


def make_tensors(spec: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The recipe of the goldens: values ((i * 7 + start) % 251 - 125) / 64, exact in every dtype used."""
    out = {}
    for name, (shape, dtype, start) in spec.items():
        count = int(torch.tensor(shape, dtype=torch.int64).prod().item()) if shape else 1
        values = (torch.arange(count, dtype=torch.int64) * 7 + start) % 251 - 125
        out[name] = (values.to(torch.float32) / 64).reshape(shape).to(getattr(torch, dtype))
    return out


# -- hashes: sd-scripts' values -----------------------------------------------------------------
def test_goldens_name_the_sdscripts_commit_they_come_from() -> None:
    provenance = GOLDENS["provenance"]
    assert provenance["repository"] == "kohya-ss/sd-scripts"
    assert len(provenance["commit"]) == 40 and int(provenance["commit"], 16) >= 0


@pytest.mark.parametrize("case", GOLDENS["hash_cases"], ids=lambda c: c["name"])
def test_lora_hashes_equal_sdscripts_precalculated_hashes(case: dict[str, Any]) -> None:
    found = lora_hashes(make_tensors(case["tensors"]), case["metadata"])
    assert found == {"sshs_model_hash": case["sshs_model_hash"], "sshs_legacy_hash": case["sshs_legacy_hash"]}


def test_the_legacy_hash_reads_tensor_bytes_of_a_file_over_one_mib() -> None:
    large = next(c for c in GOLDENS["hash_cases"] if c["name"] == "large_lora")
    assert large["sshs_legacy_hash"] != addnet_legacy_hash(b"")  # not the empty tail of a small file
    small = next(c for c in GOLDENS["hash_cases"] if c["name"] == "small_lora")
    assert small["sshs_legacy_hash"] == addnet_legacy_hash(b"") == "e3b0c442"


def test_only_ss_keys_change_the_hashes() -> None:
    """A user editing the title (modelspec.*) or a stale sshs_* key does not change them; an ss_* key does."""
    cases = {c["name"]: c for c in GOLDENS["hash_cases"]}
    assert cases["no_metadata"]["sshs_model_hash"] == cases["only_non_ss_metadata"]["sshs_model_hash"]
    tensors = make_tensors(cases["small_lora"]["tensors"])
    assert lora_hashes(tensors, {"ss_seed": "1"}) == lora_hashes(tensors, {"ss_seed": "1", "modelspec.title": "t"})
    assert lora_hashes(tensors, {"ss_seed": "1"})["sshs_model_hash"] == cases["no_metadata"]["sshs_model_hash"]


def test_hashes_recomputed_from_a_stored_file_equal_sdscripts() -> None:
    path = GOLDEN_DIR / GOLDENS["file"]["path"]
    golden = GOLDENS["file"]
    assert file_hashes(path) == {
        "sshs_model_hash": golden["sshs_model_hash"],
        "sshs_legacy_hash": golden["sshs_legacy_hash"],
    }
    with safe_open(str(path), "pt") as fh:  # the file carries what sd-scripts wrote into it
        meta = fh.metadata()
    assert (meta["sshs_model_hash"], meta["sshs_legacy_hash"]) == (
        golden["sshs_model_hash"],
        golden["sshs_legacy_hash"],
    )
    assert old_model_hash(str(path)) == golden["model_hash"]
    assert file_sha256(str(path)) == golden["calculate_sha256"]
    assert addnet_model_hash(path.read_bytes()) == golden["sshs_model_hash"]


def test_the_model_file_hashes_equal_sdscripts_on_a_file_over_one_mib(tmp_path: Path) -> None:
    large = next(c for c in GOLDENS["hash_cases"] if c["name"] == "large_lora")
    path = tmp_path / "model.safetensors"
    save_file(make_tensors(large["tensors"]), str(path), large["metadata"])
    assert old_model_hash(str(path)) == large["file_model_hash"] == "3b8a1e9b"


def test_model_file_hashes_name_a_folder_or_a_missing_file_as_sdscripts_does(tmp_path: Path) -> None:
    assert (old_model_hash(str(tmp_path)), file_sha256(str(tmp_path))) == ("IsADirectory", "IsADirectory")
    missing = str(tmp_path / "none.safetensors")
    assert (old_model_hash(missing), file_sha256(missing)) == ("NOFILE", "NOFILE")


# -- tag counts and folders ----------------------------------------------------------------------
@pytest.mark.parametrize("case", GOLDENS["tag_cases"], ids=lambda c: "+".join(f[0] for f in c["folders"]))
def test_tag_counts_equal_sdscripts_set_tag_frequency(case: dict[str, Any]) -> None:
    folders = [DataFolder(0, name, 1, len(captions), tuple(captions)) for name, captions in case["folders"]]
    assert dataset_tag_frequency(folders) == case["tag_frequency"]


def test_tag_counts_of_a_folder_in_two_datasets_are_the_first_datasets() -> None:
    folders = [
        DataFolder(0, "10_a", 10, 2, ("x, y", "x")),
        DataFolder(1, "10_a", 2, 1, ("z",)),
        DataFolder(1, "3_b", 3, 1, ("Y",)),
    ]
    assert tag_frequency(folders) == {"10_a": {"x": 2, "y": 1}, "3_b": {"y": 1}}


def test_dataset_dirs_count_images_and_repeats_and_number_a_repeated_name() -> None:
    folders = [
        DataFolder(0, "10_a", 10, 2, ("p", "q")),
        DataFolder(0, "1_reg", 1, 5, (), is_reg=True),
        DataFolder(1, "10_a", 4, 3, ("r", "s", "t")),
        DataFolder(1, "2_empty", 2, 0, ()),
    ]
    assert dataset_dirs(folders) == {"10_a": {"n_repeats": 4, "img_count": 3}}  # train_data_dir: the later wins
    assert dataset_dirs(folders, renumber=True) == {
        "10_a": {"n_repeats": 10, "img_count": 2},
        "10_a (2)": {"n_repeats": 4, "img_count": 3},
    }
    assert dataset_dirs(folders, reg=True) == {"1_reg": {"n_repeats": 1, "img_count": 5}}


def test_ss_optimizer_is_the_class_path_with_its_arguments() -> None:
    assert optimizer_text("torch.optim.adamw.AdamW", {}) == "torch.optim.adamw.AdamW"
    text = optimizer_text("torch.optim.sgd.SGD", {"weight_decay": 0.1, "betas": (0.9, 0.99), "nesterov": True})
    assert text == "torch.optim.sgd.SGD(weight_decay=0.1,betas=(0.9, 0.99),nesterov=True)"


# -- the metadata of a config's data, without training ----------------------------------------------
class _Schedule:
    name, warmup, run_length = "cosine", 0, 12

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name}


def _image(path: Path, caption: str | None) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (200, 30, 30)).save(path)
    if caption is not None:
        path.with_suffix(".txt").write_text(caption + "\nignored second line", encoding="utf-8")


def _facts(cfg: Any) -> LoraRunFacts:
    data = training_data(cfg)
    return LoraRunFacts(
        cfg=cfg,
        resolved=_Schedule(),
        group_lrs={"unet": 1e-3},
        num_samples=sum(ex.repeats for ex in data.examples),
        steps_per_epoch=6,
        steps=12,
        optimizer_type="AdamW",
        width=64,
        height=64,
        model_kind="sd1",
        v_prediction=False,
        examples=tuple(data.examples),
        batches_per_epoch=6,
        optimizer_name="torch.optim.adamw.AdamW",
        optimizer_args={"weight_decay": 0.01},
        session=run_session(cfg),
    )


def test_folder_data_gives_sdscripts_folders_counts_and_tags(tmp_path: Path) -> None:
    _image(tmp_path / "img" / "3_red thing" / "a.png", "Red, circle,  red ,")
    _image(tmp_path / "img" / "3_red thing" / "b.png", "red, square")
    _image(tmp_path / "img" / "1_other" / "c.png", None)  # no caption file: the folder's words
    _image(tmp_path / "reg" / "1_thing" / "r.png", "thing")
    config = write_train_config(
        tmp_path / "c.toml",
        tmp_path / "out",
        {"train_data_dir": str(tmp_path / "img"), "reg_data_dir": str(tmp_path / "reg"), "train_batch_size": 1},
    )
    meta = lora_metadata(_facts(load_config(config)))
    assert json.loads(meta["ss_dataset_dirs"]) == {
        "1_other": {"n_repeats": 1, "img_count": 1},
        "3_red thing": {"n_repeats": 3, "img_count": 2},
    }
    assert json.loads(meta["ss_reg_dataset_dirs"]) == {"1_thing": {"n_repeats": 1, "img_count": 1}}
    assert json.loads(meta["ss_tag_frequency"]) == {
        "1_other": {"other": 1},
        "3_red thing": {"red": 3, "circle": 1, "square": 1},
        "1_thing": {"thing": 1},
    }
    assert (meta["ss_num_train_images"], meta["ss_num_reg_images"]) == ("7", "1")
    assert (meta["ss_batch_size_per_device"], meta["ss_total_batch_size"], meta["ss_resolution"]) == (
        "1",
        "1",
        "(64, 64)",
    )
    assert (meta["ss_enable_bucket"], meta["ss_min_bucket_reso"], meta["ss_bucket_info"]) == ("False", "None", "null")
    assert meta["ss_optimizer"] == "torch.optim.adamw.AdamW(weight_decay=0.01)"
    assert (meta["ss_noise_offset"], meta["ss_loss_type"], meta["ss_multires_noise_discount"]) == ("None", "l2", "0.3")
    assert "ss_datasets" not in meta


def test_dataset_config_data_gives_ss_datasets(tmp_path: Path) -> None:
    _image(tmp_path / "a" / "x.png", "one, two")
    _image(tmp_path / "a" / "y.png", "two")
    _image(tmp_path / "b" / "a" / "z.png", "three")
    dataset = tmp_path / "dataset.toml"
    dataset.write_text(
        f"""[general]
flip_aug = true
[[datasets]]
resolution = 64
batch_size = 2
  [[datasets.subsets]]
  image_dir = {str(tmp_path / "a")!r}
  num_repeats = 2
  caption_extension = ".txt"
  [[datasets.subsets]]
  image_dir = {str(tmp_path / "b" / "a")!r}
  num_repeats = 5
  caption_extension = ".txt"
  class_tokens = "sks"
""",
        encoding="utf-8",
    )
    config = write_train_config(tmp_path / "c.toml", tmp_path / "out", {"dataset_config": str(dataset)})
    meta = lora_metadata(_facts(load_config(config)))
    assert json.loads(meta["ss_dataset_dirs"]) == {
        "a": {"n_repeats": 2, "img_count": 2},
        "a (2)": {"n_repeats": 5, "img_count": 1},
    }
    assert json.loads(meta["ss_tag_frequency"]) == {"a": {"one": 1, "two": 2, "three": 1}}  # one name: added up
    (entry,) = json.loads(meta["ss_datasets"])
    assert {k: entry[k] for k in ("is_dreambooth", "batch_size_per_device", "num_train_images", "num_reg_images")} == {
        "is_dreambooth": True,
        "batch_size_per_device": 2,
        "num_train_images": 9,
        "num_reg_images": 0,
    }
    assert (entry["resolution"], entry["enable_bucket"], entry["bucket_info"]) == ([64, 64], False, None)
    assert [
        (s["image_dir"], s["img_count"], s["num_repeats"], s["class_tokens"], s["flip_aug"]) for s in entry["subsets"]
    ] == [
        ("a", 2, 2, None, True),
        ("a", 1, 5, "sks", True),
    ]
    assert not {"ss_batch_size_per_device", "ss_resolution", "ss_bucket_info"} & set(meta)  # in ss_datasets instead


def test_dataset_config_bucket_info_is_the_one_decoding_gives(tmp_path: Path) -> None:
    """ss_datasets' bucket_info is placed from the sizes the data plan read, without decoding: the
    same buckets and counts as the decoded images (lora_sched.train.buckets.bucket_metadata)."""
    from PIL import Image

    from lora_sched.train.buckets import bucket_metadata
    from lora_sched.train.data import load_images

    for i, size in enumerate([(128, 64), (120, 60), (64, 128), (64, 64)]):
        (tmp_path / "img").mkdir(exist_ok=True)
        Image.new("RGB", size, (10 * i, 90, 90)).save(tmp_path / "img" / f"{i}.png")
    dataset = tmp_path / "dataset.toml"
    dataset.write_text(
        f"""[[datasets]]
resolution = 64
enable_bucket = true
min_bucket_reso = 32
max_bucket_reso = 128
bucket_reso_steps = 32
  [[datasets.subsets]]
  image_dir = {str(tmp_path / "img")!r}
  num_repeats = 3
""",
        encoding="utf-8",
    )
    cfg = load_config(write_train_config(tmp_path / "c.toml", tmp_path / "out", {"dataset_config": str(dataset)}))
    (entry,) = json.loads(lora_metadata(_facts(cfg))["ss_datasets"])
    decoded = bucket_metadata(load_images(training_data(cfg).examples, 64, 64)[0])
    assert entry["bucket_info"] == json.loads(json.dumps(decoded["ss_bucket_info"]))
    assert sum(b["count"] for b in entry["bucket_info"]["buckets"].values()) == 12  # 4 images x 3 repeats
    assert (entry["enable_bucket"], entry["min_bucket_reso"], entry["max_bucket_reso"]) == (True, 32, 128)


def _facts_builtin(cfg: Any) -> LoraRunFacts:
    return LoraRunFacts(cfg, _Schedule(), {"unet": 1e-3}, 32, 16, 12, "AdamW", 64, 64, "sd1", False)


def test_network_args_are_json_with_sdscripts_dropout_and_the_comment_is_kept(tmp_path: Path) -> None:
    extra = {"network_args": ["conv_dim=4", "algo=lora=x"], "training_comment": "café, v2"}
    meta = lora_metadata(_facts_builtin(load_config(write_train_config(tmp_path / "c.toml", tmp_path / "o", extra))))
    assert json.loads(meta["ss_network_args"]) == {"conv_dim": "4", "algo": "lora=x", "dropout": None}
    assert meta["ss_training_comment"] == "café, v2"
    plain = lora_metadata(_facts_builtin(load_config(write_train_config(tmp_path / "p.toml", tmp_path / "o", {}))))
    assert "ss_network_args" not in plain and plain["ss_training_comment"] == "None"


def test_no_metadata_keeps_sdscripts_minimum_keys(tmp_path: Path) -> None:
    extra = {"no_metadata": True, "network_args": ["conv_dim=4"]}
    meta = lora_metadata(_facts_builtin(load_config(write_train_config(tmp_path / "c.toml", tmp_path / "o", extra))))
    assert {k: v for k, v in meta.items() if k.startswith("ss_")} == {
        "ss_network_module": "networks.lora",
        "ss_network_dim": "4",
        "ss_network_alpha": "1.0",
        "ss_v2": "False",
        "ss_base_model_version": "sd_v1",
        "ss_network_args": json.dumps({"conv_dim": "4", "dropout": None}),
    }
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"


# -- a trained file ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_trained_lora_carries_sdscripts_metadata_and_its_own_hashes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    values = {"max_train_steps": 2, "lr_warmup_steps": 0, "text_encoder_lr": 0.0, "save_every_n_steps": 1}
    assert main(["train", str(write_train_config(tmp_path / "c.toml", out, values))]) == 0
    metas = {}
    for name in ("lora-step00000001", "lora"):
        with safe_open(str(out / f"{name}.safetensors"), "pt") as fh:
            metas[name] = fh.metadata()
    meta, first = metas["lora"], metas["lora-step00000001"]
    colours, shapes = ("red", "green", "blue", "yellow"), ("circle", "square", "triangle", "diamond")
    captions = {f"a {c} {s} on a {b} background": 1 for s in shapes for c in colours for b in ("white", "black")}
    assert json.loads(meta["ss_tag_frequency"]) == {"builtin:shapes": captions}
    assert json.loads(meta["ss_dataset_dirs"]) == {"builtin:shapes": {"n_repeats": 1, "img_count": 32}}
    assert (meta["ss_num_train_images"], meta["ss_num_batches_per_epoch"], meta["ss_steps"]) == ("32", "16", "2")
    assert (meta["ss_optimizer"], meta["ss_text_encoder_lr"], first["ss_steps"]) == (
        "torch.optim.adamw.AdamW",
        "0.0",
        "1",
    )
    for name, found in metas.items():  # each file's hashes, recomputed from the file itself
        hashes = file_hashes(out / f"{name}.safetensors")
        assert hashes == {"sshs_model_hash": found["sshs_model_hash"], "sshs_legacy_hash": found["sshs_legacy_hash"]}
    assert first["sshs_model_hash"] != meta["sshs_model_hash"]  # the weights changed in step 2
    # one run, one session: the same id and start time in every file it writes
    assert (first["ss_session_id"], first["ss_training_started_at"]) == (
        meta["ss_session_id"],
        meta["ss_training_started_at"],
    )
    assert float(meta["ss_training_started_at"]) <= float(first["ss_training_finished_at"])
    assert float(first["ss_training_finished_at"]) <= float(meta["ss_training_finished_at"])

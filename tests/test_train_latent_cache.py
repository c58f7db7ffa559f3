"""cache_latents_to_disk: IMAGE.npz next to each image, read by a later run (which then trains
identically), replaced when the image, the resolution or the VAE changes; atomic, sd-scripts' fields."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from train_support import write_train_config  # noqa: E402

from lora_sched.cli import main  # noqa: E402
from lora_sched.train.latent_cache import LatentDiskCache, npz_path  # noqa: E402


class _Vae(torch.nn.Module):
    """Stands in for a VAE: the cache reads only the encoder's weights."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(2, 2)
        self.decoder = torch.nn.Linear(2, 2)
        torch.nn.init.constant_(self.encoder.weight, value)
        torch.nn.init.zeros_(self.encoder.bias)
        torch.nn.init.zeros_(self.decoder.weight)
        torch.nn.init.zeros_(self.decoder.bias)


def _items(folder: Path, n: int = 3, size: tuple[int, int] = (24, 16)) -> list[tuple[Path, object, None]]:
    """(image file, its fitted PIL image, no bucket geometry) x n; the files hold a stand-in: the cache
    keys on the fitted pixels and only writes IMAGE.npz next to the file."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        path = folder / f"img{i}.png"
        path.write_bytes(b"stand-in")
        items.append((path, Image.new("RGB", size, (10 * i, 20, 30)), None))
    return items


class _Encoder:
    """encode(positions) -> distinct latents per position; records what it was asked for."""

    def __init__(self, offset: float = 0.0) -> None:
        self.calls: list[list[int]] = []
        self.offset = offset

    def __call__(self, positions: list[int]):
        self.calls.append(list(positions))
        return [torch.full((4, 2, 3), p + self.offset) for p in positions]


def test_a_second_pass_reads_every_file_and_gets_the_same_latents(tmp_path):
    items = _items(tmp_path / "data")
    first_encoder, second_encoder = _Encoder(), _Encoder(offset=100.0)
    cache = LatentDiskCache(_Vae())
    first = cache.latents(items, first_encoder)
    assert first_encoder.calls == [[0, 1, 2]] and (cache.read, cache.written) == (0, 3)
    again = LatentDiskCache(_Vae())
    second = again.latents(items, second_encoder)
    assert second_encoder.calls == [] and (again.read, again.written) == (3, 0)
    assert all(torch.equal(a, b) for a, b in zip(first, second)) and float(second[2][0, 0, 0]) == 2.0
    with np.load(npz_path(items[0][0])) as npz:  # sd-scripts' fields, so sd-scripts reads the file too
        assert npz["latents"].shape == (4, 2, 3) and npz["latents"].dtype == np.float32
        assert npz["original_size"].tolist() == [24, 16] and npz["crop_ltrb"].tolist() == [0, 0, 24, 16]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "img0.npz",
        "img0.png",
        "img1.npz",
        "img1.png",
        "img2.npz",
        "img2.png",
    ]  # fmt: skip  (no temporary file left)


def test_changed_pixels_a_changed_size_or_vae_are_encoded_again(tmp_path):
    from PIL import Image

    items = _items(tmp_path / "data")
    LatentDiskCache(_Vae()).latents(items, _Encoder())
    items[1] = (items[1][0], Image.new("RGB", (24, 16), (1, 2, 3)), None)  # the image was edited
    encoder = _Encoder()
    LatentDiskCache(_Vae()).latents(items, encoder)
    assert encoder.calls == [[1]]  # only the edited image
    encoder = _Encoder()
    resized = [(path, img.resize((16, 24)), None) for path, img, _ in items]
    LatentDiskCache(_Vae()).latents(resized, encoder)
    assert encoder.calls == [[0, 1, 2]]  # another training size
    encoder = _Encoder()
    LatentDiskCache(_Vae(value=2.0)).latents(resized, encoder)
    assert encoder.calls == [[0, 1, 2]]  # another VAE encoder
    decoder_changed = _Vae(value=2.0)
    torch.nn.init.constant_(decoder_changed.decoder.weight, 5.0)
    encoder = _Encoder()
    LatentDiskCache(decoder_changed).latents(resized, encoder)
    assert encoder.calls == []  # the decoder plays no part in the latents


def test_damaged_foreign_or_absent_files_are_encoded_and_replaced(tmp_path):
    from PIL import Image

    items = _items(tmp_path / "data")
    npz_path(items[0][0]).write_bytes(b"PK\x03\x04 cut short")  # truncated
    np.savez(npz_path(items[1][0]), latents=np.zeros((4, 2, 3), np.float32))  # sd-scripts' own file: no key
    encoder = _Encoder()
    cache = LatentDiskCache(_Vae())
    latents = cache.latents([*items, (None, Image.new("RGB", (24, 16)), None)], encoder)
    assert encoder.calls == [[0, 1, 2, 3]] and cache.written == 3 and cache.in_memory == 1
    assert len(latents) == 4 and float(latents[3][0, 0, 0]) == 3.0
    assert LatentDiskCache(_Vae()).latents(items, _Encoder(offset=9.0))[1][0, 0, 0] == 1.0  # now read


def test_a_folder_that_cannot_be_written_keeps_the_latents_in_memory(tmp_path, monkeypatch, caplog):
    def refuse(path, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("lora_sched.train.latent_cache.atomic_write_bytes", refuse)
    items = _items(tmp_path / "data")
    cache = LatentDiskCache(_Vae())
    latents = cache.latents(items, _Encoder())
    with caplog.at_level(logging.INFO, logger="lora_sched.train"):
        cache.report()  # a log record (the command line prints it)
    assert len(latents) == 3 and cache.written == 0
    err = caplog.text
    assert "0 latent file(s) read, 0 encoded and written; 3 could not be written, kept in memory" in err
    assert f"{npz_path(items[0][0])} (Permission denied)" in err


# -- whole runs ------------------------------------------------------------------------------------
def _kohya_folder(root: Path) -> Path:
    from lora_sched.train.data import builtin_shapes

    folder = root / "2_shapes"
    folder.mkdir(parents=True)
    for i, example in enumerate(builtin_shapes()[:4]):
        example.load(48, 40).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(example.caption, encoding="utf-8")
    return root


def _train(tmp_path: Path, name: str, data: Path, **values) -> tuple[list[dict[str, str]], dict]:
    from safetensors.torch import load_file

    out = tmp_path / name
    config = write_train_config(
        tmp_path / f"{name}.toml",
        out,
        {"lr_warmup_steps": 1, "max_train_steps": 3, "train_data_dir": str(data)},
        section=None,
        cache_latents_to_disk=True,
        **values,
    )
    assert main(["train", str(config)]) == 0
    with open(out / "train_log.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return rows, load_file(str(out / "lora.safetensors"))


@pytest.mark.slow
def test_a_second_run_reads_the_npz_files_and_trains_identically(tmp_path, capsys):
    data = _kohya_folder(tmp_path / "data")
    first_rows, first_lora = _train(tmp_path, "first", data)
    assert "0 latent file(s) read, 4 encoded and written" in capsys.readouterr().err
    files = sorted((data / "2_shapes").glob("*.npz"))
    assert [f.name for f in files] == ["img0.npz", "img1.npz", "img2.npz", "img3.npz"]
    with np.load(files[0]) as npz:
        assert npz["latents"].shape == (4, 8, 8)  # 64 x 64 pixels through the 8x VAE
    stamps = [f.stat().st_mtime_ns for f in files]
    second_rows, second_lora = _train(tmp_path, "second", data)
    assert "4 latent file(s) read, 0 encoded and written" in capsys.readouterr().err
    assert [f.stat().st_mtime_ns for f in files] == stamps  # read, not rewritten
    assert [(r["lr_unet"], r["loss"]) for r in second_rows] == [(r["lr_unet"], r["loss"]) for r in first_rows]
    assert first_lora.keys() == second_lora.keys()
    assert all(torch.equal(first_lora[k], second_lora[k]) for k in first_lora)
    _train(tmp_path, "third", data, resolution=128)  # another size: every file encoded again
    assert "0 latent file(s) read, 4 encoded and written" in capsys.readouterr().err


@pytest.mark.slow
def test_builtin_data_has_no_files_and_stays_in_memory(tmp_path, capsys):
    _train(tmp_path, "out", Path("builtin:shapes"))
    assert "32 image(s) without a file of their own (builtin data) kept in memory" in capsys.readouterr().err

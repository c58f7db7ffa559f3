"""`lora-sched model save NAME DIR`: a built-in model as a diffusers folder, written whole or not at all."""

from __future__ import annotations

import pytest

from lora_sched.cli import main

torch = pytest.importorskip("torch")


def _weights_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["builtin:tiny-sd", "builtin:tiny-sdxl"])
def test_saved_folder_is_a_diffusers_pipeline_of_the_same_weights(tmp_path, capsys, name):
    from diffusers import DiffusionPipeline

    from lora_sched.train.model import build_builtin
    from lora_sched.train.sources import load_model

    folder = tmp_path / "model"
    assert main(["model", "save", name, str(folder)]) == 0
    assert f"wrote {folder}" in capsys.readouterr().out
    parts = {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}
    if name.endswith("sdxl"):
        parts |= {"text_encoder_2", "tokenizer_2"}
    assert {p.name for p in folder.iterdir()} == parts | {"model_index.json"}
    assert list(folder.glob("unet/*.safetensors"))
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left behind

    built, loaded = build_builtin(name), load_model(str(folder))
    assert loaded.kind == built.kind
    for part, module in built.modules().items():
        assert _weights_equal(module, loaded.modules()[part]), part
    pipe = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True)  # diffusers' own loader
    assert type(pipe).__name__ == type(built.pipeline()).__name__


def test_refuses_a_non_empty_folder_and_writes_nothing(tmp_path, capsys):
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine", encoding="utf-8")
    assert main(["model", "save", "builtin:tiny-sd", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f'DIR: expected a new or empty folder, got "{folder}"' in err and "not empty" in err
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_refuses_a_file_and_an_unknown_name(tmp_path, capsys):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    assert main(["model", "save", "builtin:tiny-sd", str(file)]) == 1
    assert "a file of that name exists" in capsys.readouterr().err
    assert main(["model", "save", "builtin:tiny-sdx", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert "NAME: expected" in err and "did you mean `builtin:tiny-sdxl`?" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_a_failed_write_leaves_no_folder(tmp_path, capsys, monkeypatch):
    from diffusers import StableDiffusionPipeline

    def disk_full(self, folder, **kwargs):
        from pathlib import Path

        Path(folder, "unet").mkdir(parents=True)  # part of the model was written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(StableDiffusionPipeline, "save_pretrained", disk_full)
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder is accepted as the target
    assert main(["model", "save", "builtin:tiny-sd", str(empty)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"] and not any(empty.iterdir())

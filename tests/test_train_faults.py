"""Faulty and hostile files in a training output folder: nothing runs from them, nothing resumes
from a damaged one, nothing tracebacks (lora-sched train, builtin:tiny-sd, a few steps)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import tomli_w

os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")

from lora_sched.cli import main  # noqa: E402
from lora_sched.train import checkpoint as ckpt  # noqa: E402

pytestmark = pytest.mark.slow


def write_config(path: Path, output_dir: Path, **values) -> Path:
    flat = {
        "pretrained_model_name_or_path": "builtin:tiny-sd",
        "train_data_dir": "builtin:shapes",
        "resolution": 32,
        "train_batch_size": 2,
        "learning_rate": 1e-3,
        "text_encoder_lr": 0.0,
        "lr_scheduler": "cosine",
        "lr_warmup_steps": 1,
        "max_train_steps": 4,
        "save_every_n_steps": 2,
        "seed": 7,
        "output_dir": str(output_dir),
        "output_name": "lora",
    }
    flat.update(values)
    path.write_text(tomli_w.dumps({"training_arguments": flat}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished 4-step run with checkpoints at steps 2 and 4 (copied, never changed, by each test)."""
    root = tmp_path_factory.mktemp("finished")
    config = write_config(root / "c.toml", root / "run")
    assert main(["train", str(config)]) == 0
    return root / "run"


@pytest.fixture
def run(finished, tmp_path) -> tuple[Path, Path]:
    """(config, output_dir): a private copy of the finished run."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return write_config(tmp_path / "c.toml", out), out


def step_dir(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step:08d}"


def train(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["train", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


class _Canary:
    """A pickle that creates a file when it is unpickled (what a hostile checkpoint would do)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (exec, (f"open({str(self.path)!r}, 'w').close()",))


@pytest.mark.parametrize("rewrite_manifest", [False, True])
def test_a_crafted_pickle_in_a_checkpoint_never_runs(run, tmp_path, capsys, rewrite_manifest):
    config, out = run
    canary = tmp_path / "canary"
    folder = step_dir(out, 2)
    (folder / "scheduler.pt").write_bytes(pickle.dumps({"format": _Canary(canary)}))
    if rewrite_manifest:  # an attacker who also fixes the checksums
        ckpt.write_manifest(folder)
    before = (out / "lora.safetensors").read_bytes()
    code, err = train(capsys, str(config), "--resume", str(folder))
    assert code == 1
    assert not canary.exists()
    assert "scheduler.pt" in err and "damaged" in err
    if rewrite_manifest:
        assert "it holds Python objects, not only tensors and plain values" in err
    else:
        assert "scheduler.pt: " in err and "bytes, manifest.json says" in err
    assert (out / "lora.safetensors").read_bytes() == before


def flip_bytes(path: Path, count: int = 8) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
    path.write_bytes(bytes(data))


def tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.parametrize("part", ["optimizer.pt", "lora.safetensors"])
def test_flipped_bytes_in_a_checkpoint_are_refused_naming_the_file(run, capsys, part):
    config, out = run
    flip_bytes(step_dir(out, 2) / part)
    code, err = train(capsys, str(config), "--resume", str(step_dir(out, 2)))
    assert code == 1
    assert f"{step_dir(out, 2) / part}: its sha256 differs" in err and "damaged" in err


@pytest.mark.parametrize("part", ["optimizer.pt", "lora.safetensors"])
def test_resume_latest_skips_a_damaged_checkpoint_and_gets_the_same_lora(run, capsys, part):
    config, out = run
    reference = tensors(out / "lora.safetensors")
    flip_bytes(step_dir(out, 4) / part)
    code, err = train(capsys, str(config), "--resume", "latest")
    assert code == 0, err
    assert f"notice: skipping a damaged checkpoint: {step_dir(out, 4) / part}: its sha256 differs" in err
    assert "resuming from step-00000002, the newest intact checkpoint" in err
    assert "resumed from" in err and "at step 2" in err
    resumed = tensors(out / "lora.safetensors")
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    ckpt.verify_checkpoint(step_dir(out, 4))  # saved again, intact


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda s: s.pop("step"), "step = None, expected an int"),
        (lambda s: s.update(step="2"), "step = '2', expected an int"),
        (lambda s: s.update(step=3), "step = 3 in a folder named step-00000002"),
        (lambda s: s.update(values=[]), "values = [], expected an object"),
    ],
)
def test_a_damaged_state_json_is_a_clear_error(run, capsys, edit, needle):
    config, out = run
    folder = step_dir(out, 2)
    state = json.loads((folder / ckpt.STATE_FILE).read_text())
    edit(state)
    (folder / ckpt.STATE_FILE).write_text(json.dumps(state))
    code, err = train(capsys, str(config), "--resume", str(folder))
    assert code == 1 and f"{folder / ckpt.STATE_FILE}: " in err and "manifest.json" in err
    ckpt.write_manifest(folder)  # checksums that match the edit: the fields themselves are checked
    code, err = train(capsys, str(config), "--resume", str(folder))
    assert code == 1 and needle in err and "damaged" in err, err

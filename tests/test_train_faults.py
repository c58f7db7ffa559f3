"""Faulty and hostile files in a training output folder: nothing runs from them, nothing resumes
from a damaged one, nothing tracebacks (lora-sched train, builtin:tiny-sd, a few steps)."""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")

from train_support import write_train_config  # noqa: E402

from lora_sched.cli import main  # noqa: E402
from lora_sched.train import checkpoint as ckpt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
pytestmark = pytest.mark.slow


FAULT_RUN = {"text_encoder_lr": 0.0, "lr_warmup_steps": 1, "max_train_steps": 4, "save_every_n_steps": 2}


def write_config(path: Path, output_dir: Path, **values) -> Path:
    """This module's short run (None drops a key)."""
    return write_train_config(path, output_dir, FAULT_RUN, **values)


def start_training(config: Path) -> subprocess.Popen:
    """`lora-sched train CONFIG` in a child process (stderr kept for the test's messages)."""
    return subprocess.Popen(
        [sys.executable, "-m", "lora_sched", "train", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
        text=True,
    )


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


# -- torn logs, lineage, two runs, signals ----------------------------------------------------
def read_log(out: Path) -> list[dict[str, str]]:
    with open(out / "train_log.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def same_rows(a: list[dict[str, str]], b: list[dict[str, str]]) -> bool:
    keys = ("step", "epoch", "lr_unet", "loss")  # seconds is wall time
    return [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]


@pytest.mark.parametrize(
    ("tail", "whole_rows"),
    [
        (lambda row: row[: len(row) // 2], 2),  # a power cut while the row after the checkpoint was written
        (lambda row: "\0" * 40, 2),  # zeros a file system can leave in place of unwritten data
        (None, 1),  # cut before the checkpoint's step: the missing row is said, not invented
    ],
)
def test_a_torn_log_resumes_without_a_traceback(run, capsys, tail, whole_rows):
    config, out = run
    reference_rows, reference = read_log(out), tensors(out / "lora.safetensors")
    lines = (out / "train_log.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    kept = lines[: 1 + whole_rows]
    torn = tail(lines[1 + whole_rows]) if tail else lines[1 + whole_rows][:7]
    (out / "train_log.csv").write_text("".join(kept) + torn, encoding="utf-8")
    code, err = train(capsys, str(config), "--resume", str(step_dir(out, 2)))
    assert code == 0, err
    rows = read_log(out)
    if whole_rows == 2:
        assert same_rows(rows, reference_rows)
        assert "notice: " not in err.replace("notice: resuming at step 2", "")
    else:
        assert same_rows(rows, [reference_rows[0], *reference_rows[2:]])
        assert "held whole rows for steps 0-0 only" in err and "without rows for steps 1-1" in err
    resumed = tensors(out / "lora.safetensors")
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_resume_latest_never_continues_a_stale_checkpoint_of_another_schedule(run, capsys, monkeypatch, tmp_path):
    from lora_sched.train import csv_log

    _, out = run
    new_schedule = write_config(tmp_path / "c.toml", out, lr_warmup_steps=2)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the resumed run dies before its first step is logged

    with monkeypatch.context() as patch:
        patch.setattr(csv_log.CsvLog, "write", killed)
        code, err = train(capsys, str(new_schedule), "--resume", str(step_dir(out, 2)), "--allow-schedule-change")
    assert code == 130
    assert "was made with another schedule (warmup: 1 -> 2" in err
    assert "the later checkpoints (step-00000004) moved to checkpoints.superseded-" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002"]
    (stale,) = out.glob("checkpoints.superseded-*/step-00000004")
    ckpt.verify_checkpoint(stale)  # kept intact, out of --resume latest's way
    code, err = train(capsys, str(new_schedule), "--resume", "latest")
    assert code == 1 and "step-00000002" in err and "schedule.warmup" in err and "complete" not in err
    code, err = train(capsys, str(new_schedule), "--resume", "latest", "--allow-schedule-change")
    assert code == 0 and "resumed from" in err and "at step 2" in err
    state = json.loads((step_dir(out, 4) / ckpt.STATE_FILE).read_text())
    assert state["resolved"]["warmup"] == 2


def test_a_second_run_into_the_same_folder_is_refused_naming_the_first(tmp_path, capsys):
    out = tmp_path / "run"
    config = write_config(tmp_path / "c.toml", out, max_train_steps=30, save_every_n_steps=None)
    first = start_training(config)
    lock, deadline = out / ".lora-sched.lock", time.monotonic() + 240
    while first.poll() is None and time.monotonic() < deadline:
        if lock.exists() and f'"pid": {first.pid}' in lock.read_text():
            break
        time.sleep(0.01)
    code, err = train(capsys, str(config))
    still_running = first.poll() is None
    _, first_err = first.communicate(timeout=900)
    assert still_running, "the first run ended before the second started"
    assert code == 1
    assert f"output_dir: expected a folder no other run is writing to, got {out}, in use by pid {first.pid}" in err
    assert first.returncode == 0, first_err[-2000:]
    assert [int(r["step"]) for r in read_log(out)] == list(range(30))
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000030"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    config = write_config(root / "c.toml", root / "run", max_train_steps=60, save_every_n_steps=None)
    assert main(["train", str(config)]) == 0  # in this process: same threads, same math as the sigkill test
    return root / "run"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_then_resume_is_bit_identical(uninterrupted, tmp_path, signum):
    out = tmp_path / "run"
    config = write_config(tmp_path / "c.toml", out, max_train_steps=60, save_every_n_steps=None)
    proc = start_training(config)
    log, deadline = out / "train_log.csv", time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if log.exists() and log.read_text(encoding="utf-8").count("\n") >= 3:  # header + 2 steps
            break
        time.sleep(0.005)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signum, err[-2000:]
    step = len(read_log(out))
    assert 2 <= step < 60
    folder = step_dir(out, step)
    assert [p.name for p in (out / "checkpoints").iterdir()] == [folder.name]  # saved at the signal, no other
    ckpt.verify_checkpoint(folder)
    assert f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint {folder} saved" in err
    assert "Traceback" not in err and not (out / "lora.safetensors").exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "lora_sched", "train", str(config), "--resume", "latest"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert same_rows(read_log(out), read_log(uninterrupted))
    a, b = tensors(uninterrupted / "lora.safetensors"), tensors(out / "lora.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_model_folder_with_a_crafted_pickle_never_runs_it(tmp_path, capsys):
    from lora_sched.train.model import build_tiny_sd

    model_dir, canary = tmp_path / "model", tmp_path / "canary"
    build_tiny_sd().pipeline().save_pretrained(str(model_dir), safe_serialization=False)
    (weights,) = (model_dir / "unet").glob("*.bin")
    weights.write_bytes(pickle.dumps({"conv_in.weight": _Canary(canary)}))
    config = write_config(tmp_path / "c.toml", tmp_path / "out", pretrained_model_name_or_path=str(model_dir))
    code, err = train(capsys, str(config))
    assert code == 1
    assert not canary.exists()
    assert "pretrained_model_name_or_path: expected a diffusers folder whose weights load" in err


def test_resume_latest_on_a_finished_run_says_complete_and_rewrites_nothing(run, capsys):
    config, out = run
    lora = out / "lora.safetensors"
    before = lora.read_bytes(), lora.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["train", str(config), "--resume", "latest"]) == 0
    captured = capsys.readouterr()
    assert "the run is already complete (4 steps); nothing was written" in captured.out
    # what it is doing, from its first second
    assert captured.err.startswith("lora-sched: checking the config and counting the data\n")
    assert "lora-sched: loading the model builtin:tiny-sd and caching the latents" in captured.err
    assert "builtin:tiny-sd has random weights" in captured.err
    assert "last loss nan" not in captured.out + captured.err
    assert (lora.read_bytes(), lora.stat().st_mtime_ns) == before

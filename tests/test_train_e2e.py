"""End-to-end training runs on builtin:tiny-sd / builtin:shapes (a few steps each, CPU).

What they show: the LR the optimizer used at every step equals the
preview; accumulation and processes never change the number of scheduler steps; a run killed
with SIGKILL after a checkpoint resumes bit for bit; the output loads in diffusers.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

torch = pytest.importorskip("torch")

from train_support import run_cli, write_train_config  # noqa: E402

from lora_sched.api import load_config  # noqa: E402
from lora_sched.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def write_config(path: Path, output_dir: Path, **values) -> Path:
    """This module's short run (None drops a key)."""
    return write_train_config(path, output_dir, {}, **values)


def read_log(output_dir: Path) -> list[dict[str, str]]:
    with open(output_dir / "train_log.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def preview_lrs(config: Path, shape=None) -> dict[str, list[float]]:
    """What `lora-sched preview` shows: base LR of each group x m(s) of the resolved schedule."""
    cfg = load_config(config)
    m = cfg.resolve(shape).multipliers()
    return {group: [base * float(x) for x in m] for group, base in cfg.group_lrs().items()}


def assert_log_matches_preview(rows: list[dict[str, str]], preview: dict[str, list[float]], groups) -> None:
    assert [int(r["step"]) for r in rows] == list(range(len(preview["unet"])))
    for group in groups:
        logged = [float(r[f"lr_{group}"]) for r in rows]
        expected = preview[group]
        worst = max(abs(a - b) for a, b in zip(logged, expected))
        assert worst <= 1e-12 * max(expected), (group, worst)


def unet_and_text_outputs(pipe) -> tuple:
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 8, 8, generator=gen)
    ids = pipe.tokenizer(["a red circle"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        text = pipe.text_encoder(ids)[0]
        unet = pipe.unet(latents, torch.tensor([500]), text).sample
    return unet, text


def test_end_to_end_lr_log_equals_preview_and_lora_loads_in_diffusers(tmp_path, capsys):
    from safetensors import safe_open

    from lora_sched.train.model import build_tiny_sd

    out = tmp_path / "run"
    config = write_config(tmp_path / "c.toml", out)
    assert main(["train", str(config)]) == 0
    rows = read_log(out)
    assert_log_matches_preview(rows, preview_lrs(config), ["unet", "text_encoder"])
    assert float(rows[0]["lr_unet"]) == 0.0  # warmup starts at 0, as in kohya / diffusers
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert "wrote" in capsys.readouterr().out

    lora_file = out / "lora.safetensors"
    with safe_open(str(lora_file), "pt") as fh:
        keys, meta = list(fh.keys()), fh.metadata()
    assert any(k.startswith("lora_unet_") and k.endswith(".lora_down.weight") for k in keys)
    assert any(k.startswith("lora_te_text_model_encoder_layers_") and k.endswith(".lora_up.weight") for k in keys)
    resolved = load_config(config).resolve()
    assert meta["ss_lr_scheduler"] == "cosine"
    assert meta["ss_lr_warmup_steps"] == "3"
    assert meta["ss_max_train_steps"] == "10"
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "1.0"
    assert float(meta["ss_unet_lr"]) == 1e-3 and float(meta["ss_text_encoder_lr"]) == 5e-4
    assert json.loads(meta["ss_lr_scheduler_args"]) == json.loads(json.dumps(resolved.to_dict()))
    assert meta["ss_seed"] == "7"

    pipe = build_tiny_sd().pipeline()
    unet_before, text_before = unet_and_text_outputs(pipe)
    pipe.load_lora_weights(str(lora_file))
    unet_after, text_after = unet_and_text_outputs(pipe)
    assert not torch.allclose(unet_before, unet_after)
    assert not torch.allclose(text_before, text_after)
    # the final checkpoint holds the same weights as the file
    assert (out / "checkpoints" / "step-00000010" / "state.json").is_file()


def test_local_diffusers_folder_trains_unet_only(tmp_path):
    from lora_sched.train.model import build_tiny_sd
    from lora_sched.train.sources import load_model

    folder = tmp_path / "tiny-sd"
    build_tiny_sd().pipeline().to(dtype=torch.float16).save_pretrained(folder)  # as SD checkpoints often are
    out = tmp_path / "run"
    config = write_config(
        tmp_path / "c.toml",
        out,
        pretrained_model_name_or_path=str(folder),
        text_encoder_lr=0.0,
        max_train_steps=3,
        lr_warmup_steps=1,
    )
    assert main(["train", str(config)]) == 0
    rows = read_log(out)
    assert "lr_text_encoder" not in rows[0]  # text encoder frozen: one param group
    assert_log_matches_preview(rows, preview_lrs(config), ["unet"])
    from safetensors import safe_open

    with safe_open(str(out / "lora.safetensors"), "pt") as fh:
        names = list(fh.keys())
    assert names and not [k for k in names if k.startswith("lora_te_")]
    trained = _tensors(out / "checkpoints" / "step-00000003" / "lora.safetensors")  # parameters as trained
    assert {t.dtype for t in trained.values()} == {torch.float32}
    loaded = load_model(str(folder))  # transformers would keep the text encoder in float16
    assert {p.dtype for part in (loaded.unet, loaded.vae, loaded.text_encoder) for p in part.parameters()} == {
        torch.float32
    }


def make_kohya_folder(root: Path, images: int = 4, repeats: int = 2) -> Path:
    """`root/<repeats>_shapes/` with `images` PNGs (from builtin:shapes) and same-name captions."""
    from lora_sched.train.data import builtin_shapes

    folder = root / f"{repeats}_shapes"
    folder.mkdir(parents=True)
    for i, example in enumerate(builtin_shapes()[:images]):
        example.load(48, 40).save(folder / f"img{i}.png")  # not square: exercises crop and resize
        (folder / f"img{i}.txt").write_text(example.caption, encoding="utf-8")
    return root


@pytest.mark.parametrize("batch, accum", [(1, 4), (3, 2)])
def test_accumulation_keeps_scheduler_steps_per_update(tmp_path, batch, accum):
    """Epoch-based run on a kohya folder of 4 images x 2 repeats: batch 4 x accum 1 and batch 1 x
    accum 4 make the same updates at the same LRs; a partial accumulation window (batch 3 x accum 2:
    3 micro-batches an epoch) still ends in one update and one scheduler step."""
    data = make_kohya_folder(tmp_path / "data")
    common = {
        "max_train_steps": None,
        "max_train_epochs": 3,
        "lr_warmup_steps": 0.25,
        "text_encoder_lr": 0.0,
        "train_data_dir": str(data),
    }
    ref_out, out = tmp_path / "ref", tmp_path / "acc"
    ref_cfg = write_config(tmp_path / "ref.toml", ref_out, train_batch_size=4, gradient_accumulation_steps=1, **common)
    cfg = write_config(tmp_path / "acc.toml", out, train_batch_size=batch, gradient_accumulation_steps=accum, **common)
    assert main(["train", str(ref_cfg)]) == 0
    assert main(["train", str(cfg)]) == 0
    ref_rows, rows = read_log(ref_out), read_log(out)
    assert_log_matches_preview(rows, preview_lrs(cfg), ["unet"])
    assert_log_matches_preview(ref_rows, preview_lrs(ref_cfg), ["unet"])
    assert len(rows) == len(ref_rows) == 6  # 2 updates an epoch x 3 epochs in every case
    assert [r["lr_unet"] for r in rows] == [r["lr_unet"] for r in ref_rows]
    assert [int(r["epoch"]) for r in rows] == [0, 0, 1, 1, 2, 2]
    assert float(rows[1]["lr_unet"]) == 1e-3  # warmup: floor(0.25 x 6) = 1 step


def test_two_processes_step_the_scheduler_once_per_update(tmp_path):
    """`accelerate launch` with 2 processes: same LR sequence as 1 process, warmup ends on the same update."""
    one, two = tmp_path / "one", tmp_path / "two"
    common = {"lr_warmup_steps": 4, "max_train_steps": 8, "gradient_accumulation_steps": 2}  # no_sync path too
    cfg_one = write_config(tmp_path / "one.toml", one, **common)
    cfg_two = write_config(tmp_path / "two.toml", two, **common)
    assert main(["train", str(cfg_one)]) == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
        "-m",
        "lora_sched",
        "train",
        str(cfg_two),
    ]
    proc = subprocess.run(launch, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (two / "checkpoints" / "step-00000008").glob("rng-*.pt")) == ["rng-0.pt", "rng-1.pt"]
    rows_one, rows_two = read_log(one), read_log(two)
    for group in ("unet", "text_encoder"):
        assert [r[f"lr_{group}"] for r in rows_two] == [r[f"lr_{group}"] for r in rows_one]
    assert_log_matches_preview(rows_two, preview_lrs(cfg_two), ["unet", "text_encoder"])
    peak = [i for i, r in enumerate(rows_two) if float(r["lr_unet"]) == 1e-3]
    assert peak[0] == 4  # warmup 4 ends on update 4 with 2 processes too (not 4 / 2)
    # epochs are counted on the sharded data: 16 batches / 2 processes / accumulation 2 = 4 updates
    assert [int(r["epoch"]) for r in rows_two] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [int(r["epoch"]) for r in rows_one] == [0] * 8


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_sigkill_after_checkpoint_then_resume_is_bitwise_identical(tmp_path):
    steps, every = 40, 5
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    cfg_ref = write_config(tmp_path / "ref.toml", ref, max_train_steps=steps, save_every_n_steps=every)
    cfg_killed = write_config(tmp_path / "killed.toml", killed, max_train_steps=steps, save_every_n_steps=every)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lora_sched", "train", str(cfg_killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    first = killed / "checkpoints" / f"step-{every:08d}"
    deadline = time.monotonic() + 240
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "lora.safetensors").exists()
    done = sorted(p.name for p in (killed / "checkpoints").glob("step-*"))
    assert done and done[-1] != f"step-{steps:08d}"
    assert (killed / ".lora-sched.lock").is_file()  # left behind by the killed run: must not block the resume

    assert main(["train", str(cfg_ref)]) == 0  # the uninterrupted run (in this process: same threads, same math)
    resumed = run_cli("train", str(cfg_killed), "--resume", "latest")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr

    ref_rows, rows = read_log(ref), read_log(killed)
    assert len(rows) == steps
    for key in ("step", "epoch", "lr_unet", "lr_text_encoder", "loss"):
        assert [r[key] for r in rows] == [r[key] for r in ref_rows], key
    a, b = _tensors(ref / "lora.safetensors"), _tensors(killed / "lora.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_a_changed_schedule_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    config = write_config(tmp_path / "c.toml", out, max_train_steps=4, save_every_n_steps=2, text_encoder_lr=0.0)
    assert main(["train", str(config)]) == 0
    before = (out / "lora.safetensors").read_bytes()
    log_before = (out / "train_log.csv").read_text()
    capsys.readouterr()
    write_config(
        tmp_path / "c.toml", out, max_train_steps=4, save_every_n_steps=2, text_encoder_lr=0.0, lr_warmup_steps=1
    )
    assert main(["train", str(config), "--resume", str(out / "checkpoints" / "step-00000002")]) == 1
    err = capsys.readouterr().err
    assert "resume" in err and "warmup" in err and "Traceback" not in err
    assert (out / "lora.safetensors").read_bytes() == before
    assert (out / "train_log.csv").read_text() == log_before
    # asked for: the step is kept and the new curve is used from there
    args = ["train", str(config), "--resume", str(out / "checkpoints" / "step-00000002"), "--allow-schedule-change"]
    assert main(args) == 0
    rows, old_rows, new_curve = read_log(out), log_before.splitlines()[1:], preview_lrs(config)["unet"]
    assert [",".join(r.values()) for r in rows[:2]] == old_rows[:2]
    assert [float(r["lr_unet"]) for r in rows[2:]] == new_curve[2:]


def test_fresh_run_into_a_folder_with_checkpoints_sets_them_aside(tmp_path, capsys):
    out = tmp_path / "run"
    config = write_config(tmp_path / "c.toml", out, max_train_steps=2, text_encoder_lr=0.0, lr_warmup_steps=0)
    assert main(["train", str(config)]) == 0
    first = _tensors(out / "checkpoints" / "step-00000002" / "lora.safetensors")
    write_config(tmp_path / "c.toml", out, max_train_steps=3, text_encoder_lr=0.0, lr_warmup_steps=0, seed=8)
    capsys.readouterr()
    assert main(["train", str(config)]) == 0  # a new run, not a resume
    assert "moved to checkpoints.previous-" in capsys.readouterr().err
    (old,) = out.glob("checkpoints.previous-*")
    kept = _tensors(old / "step-00000002" / "lora.safetensors")
    assert all(torch.equal(first[k], kept[k]) for k in first)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000003"]
    assert len(read_log(out)) == 3
    # resuming a finished run is fine and changes nothing
    before = (out / "lora.safetensors").read_bytes()
    assert main(["train", str(config), "--resume", "latest"]) == 0
    assert "complete" in capsys.readouterr().err
    assert (out / "lora.safetensors").read_bytes() == before
    assert len(read_log(out)) == 3


def test_adafactor_schedule_and_custom_torch_class_follow_their_preview(tmp_path):
    from lora_sched.torch.preview import preview_lrs as custom_preview

    ada_out, cos_out = tmp_path / "ada", tmp_path / "cos"
    ada = write_config(
        tmp_path / "ada.toml",
        ada_out,
        lr_scheduler="adafactor",
        optimizer_type="Adafactor",
        lr_warmup_steps=0,
        max_train_steps=3,
        text_encoder_lr=0.0,
    )
    cos = write_config(
        tmp_path / "cos.toml",
        cos_out,
        lr_scheduler=None,
        lr_scheduler_type="CosineAnnealingLR",
        lr_scheduler_args=["T_max=6"],
        lr_warmup_steps=2,
        max_train_steps=8,
        text_encoder_lr=0.0,
    )
    assert main(["train", str(ada)]) == 0
    assert_log_matches_preview(read_log(ada_out), preview_lrs(ada), ["unet"])
    assert main(["train", str(cos)]) == 0
    cfg = load_config(cos)
    expected = custom_preview(cfg.scheduler_type, cfg.scheduler_type_args, [1e-3], 8, 2)[:, 0].tolist()
    assert [float(r["lr_unet"]) for r in read_log(cos_out)] == expected
    assert expected[2] == 1e-3 and expected[0] == 0.0


def test_reduce_on_plateau_is_fed_the_mean_loss_every_plateau_every_updates(tmp_path):
    out = tmp_path / "run"
    config = write_config(
        tmp_path / "c.toml",
        out,
        lr_scheduler=None,
        lr_scheduler_type="ReduceLROnPlateau",
        lr_scheduler_args=["factor=0.5", "patience=0"],
        plateau_every=2,
        lr_warmup_steps=0,
        max_train_steps=12,
        text_encoder_lr=0.0,
        learning_rate=1e-2,
    )
    assert main(["train", str(config)]) == 0
    rows = read_log(out)
    # replay: torch's ReduceLROnPlateau fed the mean of each pair of logged losses
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    expected = []
    for i, row in enumerate(rows):
        expected.append(opt.param_groups[0]["lr"])
        if i % 2 == 1:
            sched.step((float(rows[i - 1]["loss"]) + float(row["loss"])) / 2)
    assert [float(r["lr_unet"]) for r in rows] == expected
    assert min(expected) < 1e-2  # the loss of a 12-step run is noisy: some pair does not improve


def test_bf16_after_a_full_precision_run_in_one_process_is_refused_and_runs_in_its_own(tmp_path, capsys):
    """accelerate keeps one mixed precision per process: a second run in the same Python process with
    another is refused at its key, before its folder exists, and runs as a process of its own."""
    out = tmp_path / "run"
    config = write_config(tmp_path / "c.toml", out, mixed_precision="bf16", max_train_steps=3, lr_warmup_steps=1)
    assert (
        main(["train", str(write_config(tmp_path / "a.toml", tmp_path / "a", max_train_steps=2, lr_warmup_steps=0))])
        == 0
    )
    capsys.readouterr()
    assert main(["train", str(config)]) == 1  # a config error
    err = capsys.readouterr().err
    expected = 'expected "no", as the run before it in this Python process, got "bf16"'
    assert f"c.toml:14: training_arguments.mixed_precision: {expected}" in err, err
    assert "run this config as its own process" in err and "Traceback" not in err
    assert not out.exists()
    proc = run_cli("train", str(config))
    assert proc.returncode == 0, proc.stderr
    rows = read_log(out)
    assert_log_matches_preview(rows, preview_lrs(config), ["unet", "text_encoder"])
    assert all(math.isfinite(float(r["loss"])) for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("part", ["scheduler.pt", "optimizer.pt", "state.json", "lora.safetensors"])
def test_a_damaged_checkpoint_is_a_one_paragraph_error_and_nothing_is_written(tmp_path, capsys, part):
    out = tmp_path / "run"
    config = write_config(tmp_path / "c.toml", out, max_train_steps=4, save_every_n_steps=2, text_encoder_lr=0.0)
    assert main(["train", str(config)]) == 0
    before = (out / "lora.safetensors").read_bytes()
    step2 = out / "checkpoints" / "step-00000002"
    (step2 / part).write_bytes(b"\x00garbage")
    capsys.readouterr()
    assert main(["train", str(config), "--resume", str(step2)]) == 1
    err = capsys.readouterr().err
    assert "resume" in err and part in err and "damaged" in err and "Traceback" not in err
    assert (out / "lora.safetensors").read_bytes() == before


@pytest.mark.slow
def test_changed_optimizer_args_refuse_a_resume(tmp_path, capsys):
    out = tmp_path / "run"
    config = write_config(tmp_path / "c.toml", out, max_train_steps=4, save_every_n_steps=2, text_encoder_lr=0.0)
    assert main(["train", str(config)]) == 0
    write_config(
        tmp_path / "c.toml",
        out,
        max_train_steps=4,
        save_every_n_steps=2,
        text_encoder_lr=0.0,
        optimizer_args=["weight_decay=0.5"],
    )
    capsys.readouterr()
    assert main(["train", str(config), "--resume", "latest"]) == 1
    assert "optimizer_args" in capsys.readouterr().err

"""sd-scripts options `train` must honour or refuse: network_module, log_with / logging_dir (TensorBoard
logs written and read back), and the optional optimizers in real training runs (schedule-free ones
at a constant LR, with a notice)."""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")

from train_support import write_train_config  # noqa: E402

from lora_sched.cli import main  # noqa: E402
from lora_sched.config.writer import current_umask  # noqa: E402


def write_config(path: Path, output_dir: Path, **values) -> Path:
    """This module's short run (None drops a key)."""
    return write_train_config(path, output_dir, {"lr_warmup_steps": 1, "max_train_steps": 3}, section=None, **values)


def _line_of(path: Path, key: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(f"{key} ="))


@pytest.mark.parametrize("module", ["lycoris.kohya", "networks.dylora"])
def test_a_network_module_other_than_lora_is_an_error_at_its_line(tmp_path, capsys, module):
    config = write_config(tmp_path / "c.toml", tmp_path / "out", network_module=module)
    assert main(["validate", str(config)]) == 0  # the file stays valid for sd-scripts
    assert main(["train", str(config)]) == 1
    err = capsys.readouterr().err
    line = _line_of(config, "network_module")
    assert f'{config}:{line}: network_module: expected "networks.lora" (lora-sched train builds plain LoRA only)' in err
    assert f'got "{module}"' in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("tracker", ["wandb", "all"])
def test_wandb_is_refused_at_its_line(tmp_path, capsys, tracker):
    config = write_config(tmp_path / "c.toml", tmp_path / "out", log_with=tracker)
    assert main(["train", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{config}:{_line_of(config, 'log_with')}: log_with: expected \"tensorboard\"" in err
    assert "wandb is not supported" in err


def read_log(output_dir: Path) -> list[dict[str, str]]:
    with open(output_dir / "train_log.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_tensorboard_logs_are_written_and_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, logs = tmp_path / "out", tmp_path / "tb"
    config = write_config(tmp_path / "c.toml", out, logging_dir=str(logs), log_prefix="run-")
    assert main(["train", str(config)]) == 0
    (run,) = logs.iterdir()  # sd-scripts' layout: logging_dir/<log_prefix><timestamp>
    assert run.name.startswith("run-") and len(run.name) == len("run-") + 14
    (events,) = {p.parent for p in run.rglob("events.out.tfevents.*")}
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert {"loss", "lr/unet", "lr/text_encoder"} <= set(acc.Tags()["scalars"])
    rows = read_log(out)
    for tag, column in (("loss", "loss"), ("lr/unet", "lr_unet"), ("lr/text_encoder", "lr_text_encoder")):
        logged = acc.Scalars(tag)
        assert [e.step for e in logged] == [int(r["step"]) for r in rows]
        assert [e.value for e in logged] == pytest.approx([float(r[column]) for r in rows], rel=1e-6)


#: Optional optimizers trained for real, by their sd-scripts spelling (args as their users pass them).
OPTIMIZER_RUNS = {
    "AdamW8bit": {},
    "Prodigy": {"learning_rate": 1.0, "text_encoder_lr": 1.0, "optimizer_args": ["d_coef=0.5"]},
    "pytorch_optimizer.CAME": {"optimizer_args": ["weight_decay=0.04"]},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", OPTIMIZER_RUNS)
def test_optional_optimizers_train_with_the_text_encoder(tmp_path, name):
    from safetensors import safe_open

    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", out, optimizer_type=name, **OPTIMIZER_RUNS[name])
    assert main(["train", str(config)]) == 0
    rows = read_log(out)
    assert len(rows) == 3 and all(float(r["loss"]) > 0 for r in rows)
    with safe_open(str(out / "lora.safetensors"), "pt") as fh:
        keys = list(fh.keys())
        assert fh.metadata()["ss_optimizer"].split("(")[0].endswith("." + name.rpartition(".")[2])  # module.Class
        up = [fh.get_tensor(k) for k in keys if k.endswith("lora_up.weight")]
    assert any(k.startswith("lora_te_") for k in keys)
    assert any(t.abs().sum() > 0 for t in up)  # lora_up starts at zero: the optimizer moved it


@pytest.mark.slow
def test_schedule_free_runs_at_a_constant_lr_with_a_notice(tmp_path, capsys):
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "c.toml", out, optimizer_type="AdamWScheduleFree", save_every_n_steps=2, lr_warmup_steps=0
    )
    assert main(["train", str(config)]) == 0
    err = capsys.readouterr().err
    assert "notice: AdamWScheduleFree schedules its own LR: lr_scheduler cosine replaced by constant" in err
    rows = read_log(out)
    assert [float(r["lr_unet"]) for r in rows] == [1e-3] * 3
    assert [float(r["lr_text_encoder"]) for r in rows] == [5e-4] * 3
    # resumed from the step-2 checkpoint (saved with the eval weights), it finishes the same way
    assert main(["train", str(config), "--resume", str(out / "checkpoints" / "step-00000002")]) == 0
    # outputs get the permissions of any other tool's new file (the atomic writer honours the umask)
    for name in ("lora.safetensors", "train_log.csv"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~current_umask(), name


OVERRIDDEN = """\
# a sectioned file: the flags' re-validation writes another layout, errors must point here
[training_arguments]
pretrained_model_name_or_path = "builtin:tiny-sd"
max_train_steps = 20
lr_warmup_steps = 10
[dataset_arguments]
train_data_dir = "{data}"
resolution = 64
"""


def test_with_flag_overrides_errors_point_at_the_file_line_or_name_the_flag(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(OVERRIDDEN.format(data=(tmp_path / "missing").as_posix()), encoding="utf-8")
    # a key of the file, re-checked against the flag's value: its line in the user's file
    assert main(["train", str(config), "--max-train-steps", "5"]) == 1
    err = capsys.readouterr().err
    assert f"{config}:5: training_arguments.lr_warmup_steps: expected a warmup shorter than the horizon (5 " in err
    assert "(with command-line overrides)" not in err
    # the flag's own value is wrong: the message names the flag
    (tmp_path / "afile").write_text("")
    assert main(["train", str(config), "--output-dir", str(tmp_path / "afile" / "out")]) == 1
    err = capsys.readouterr().err
    assert "--output-dir (output_dir): expected a path whose parents are folders" in err
    # a train-time problem with a key of the file: its line, also when a flag changed another key
    assert main(["train", str(config), "--output-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{config}:7: dataset_arguments.train_data_dir: expected a folder of N_concept/ subfolders" in err


def test_flag_overrides_keep_the_sd_scripts_options_training_checks(tmp_path, capsys):
    config = write_config(tmp_path / "c.toml", tmp_path / "out", network_module="lycoris.kohya")
    assert main(["train", str(config), "--output-dir", str(tmp_path / "elsewhere"), "--max-train-steps", "2"]) == 1
    err = capsys.readouterr().err
    assert f"{config}:{_line_of(config, 'network_module')}: network_module: expected" in err

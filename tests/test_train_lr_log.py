"""What a run reports of its LR and loss: d x lr for LR-free optimizers (log, TensorBoard, progress bar,
preview note), and the loss + LR plot written at the end of a run."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from train_support import write_train_config

from lora_sched.cli import main
from lora_sched.train.lr_log import PLOT_NAME, LrReport, adapts_lr, write_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("name", "adaptive"),
    [("Prodigy", True), ("prodigy", True), ("DAdaptation", True), ("DAdaptLion", True), ("AdamW", False),
     ("AdamWScheduleFree", False), ("pytorch_optimizer.CAME", False)],
)  # fmt: skip
def test_lr_free_optimizers_are_the_one_lr_ones(name, adaptive):
    assert adapts_lr(name) is adaptive


def test_an_lr_free_optimizer_reports_d_times_lr_per_group():
    report = LrReport("Prodigy", ["unet", "text_encoder"])
    optimizer = SimpleNamespace(param_groups=[{"d": 0.25}, {"d": 0.25}])
    values = report.values(optimizer, [1.0, 0.5])
    assert report.columns() == ["lr_unet", "lr_text_encoder", "d*lr_unet", "d*lr_text_encoder"]
    assert values == [1.0, 0.5, 0.25, 0.125]
    assert report.tracker(values, 0.5) == {
        "loss": 0.5,
        "lr/unet": 1.0,
        "lr/text_encoder": 0.5,
        "lr/d*lr/unet": 0.25,
        "lr/d*lr/text_encoder": 0.125,
    }
    assert report.postfix(3, values, 0.123456) == {"step": "3", "loss": "0.1235", "lr": "1", "d*lr": "0.25"}


def test_other_optimizers_report_the_scheduled_lr_only():
    report = LrReport("AdamW", ["unet"])
    values = report.values(SimpleNamespace(param_groups=[{}]), [2e-4])
    assert report.columns() == ["lr_unet"] and values == [2e-4]
    assert report.tracker(values, 1.0) == {"loss": 1.0, "lr/unet": 2e-4}
    assert report.postfix(0, values, 1.0) == {"step": "0", "loss": "1.0000", "lr": "0.0002"}


def _write_log(path: Path, rows: list[str]) -> Path:
    path.write_text("step,epoch,lr_unet,d*lr_unet,loss,seconds\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def test_the_plot_is_a_png_of_the_log_written_atomically(tmp_path):
    log = _write_log(
        tmp_path / "train_log.csv", [f"{s},0,{1e-3 * (s + 1)},{1e-6 * s},{1.0 / (s + 1)},0.1" for s in range(20)]
    )
    png = tmp_path / PLOT_NAME
    assert write_plot(log, png) is True
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_log.csv", PLOT_NAME]  # no temporary file left


def test_no_plot_from_a_log_without_a_whole_row(tmp_path):
    log = _write_log(tmp_path / "train_log.csv", ["0,0,1e-3,1e-6,nan,0.1", "1,0,1e-3"])
    assert write_plot(log, tmp_path / PLOT_NAME) is False
    assert write_plot(tmp_path / "absent.csv", tmp_path / PLOT_NAME) is False
    assert not (tmp_path / PLOT_NAME).exists()


def test_preview_says_an_lr_free_optimizer_scales_d_times_lr(tmp_path, capsys):
    config = tmp_path / "c.toml"
    for optimizer, said in (("Prodigy", True), ("AdamW", False)):
        config.write_text(f'optimizer_type = "{optimizer}"\nlearning_rate = 1.0\nmax_train_steps = 100\n')
        assert main(["preview", str(config)]) == 0
        out = capsys.readouterr().out
        assert ("(Prodigy adapts its step size: each update uses d x lr" in out) is said, out


def read_log(output_dir: Path) -> list[dict[str, str]]:
    with open(output_dir / "train_log.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_a_prodigy_run_logs_d_times_lr_in_the_csv_tensorboard_and_the_bar_and_plots(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    values = {"optimizer_type": "Prodigy", "learning_rate": 1.0, "text_encoder_lr": 1.0, "lr_warmup_steps": 0}
    config = write_train_config(
        tmp_path / "c.toml", out, {"max_train_steps": 4}, section=None, log_with="tensorboard", **values
    )
    assert main(["train", str(config)]) == 0
    rows = read_log(out)
    assert list(rows[0]) == [
        "step", "epoch", "lr_unet", "lr_text_encoder", "d*lr_unet", "d*lr_text_encoder", "loss", "seconds"
    ]  # fmt: skip
    d = [float(r["d*lr_unet"]) / float(r["lr_unet"]) for r in rows]
    assert d[0] == 1e-6  # Prodigy's d0: the first update's d
    assert all(float(r["d*lr_text_encoder"]) == di * float(r["lr_text_encoder"]) for r, di in zip(rows, d))
    assert d == sorted(d)  # Prodigy's d never shrinks (in 4 steps of this run it barely moves)
    (events,) = {p.parent for p in (out / "logs").rglob("events.out.tfevents.*")}
    acc = EventAccumulator(str(events))
    acc.Reload()
    for tag, column in (("lr/d*lr/unet", "d*lr_unet"), ("lr/d*lr/text_encoder", "d*lr_text_encoder")):
        assert [e.value for e in acc.Scalars(tag)] == pytest.approx([float(r[column]) for r in rows], rel=1e-6)
    assert "d*lr=" in capsys.readouterr().err  # the progress bar
    assert (out / PLOT_NAME).read_bytes().startswith(PNG_MAGIC)


def test_a_folder_where_the_plot_goes_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "out"
    (out / PLOT_NAME).mkdir(parents=True)
    config = write_train_config(tmp_path / "c.toml", out, {}, section=None)
    assert main(["train", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{out / PLOT_NAME} is not a file; move it away or choose another output_dir" in err
    assert sorted(p.name for p in out.iterdir()) == [PLOT_NAME]  # nothing written


def test_the_plot_is_drawn_once_the_run_has_let_go_of_its_model(tmp_path, monkeypatch):
    """matplotlib loads after the run's model, optimizer and caches are freed, so it reuses their
    memory instead of raising the run's peak (bench/bench_train.py measures the peak)."""
    import weakref

    from lora_sched.train import loop

    build_model, write = loop.build_model, loop.write_plot
    unets, alive_at_plot = [], []

    def build_and_watch(*args, **kwargs):
        built = build_model(*args, **kwargs)
        unets.append(weakref.ref(built.model.unet))
        return built

    def write_and_check(log, png):
        alive_at_plot.append(unets[0]() is not None)
        return write(log, png)

    monkeypatch.setattr(loop, "build_model", build_and_watch)
    monkeypatch.setattr(loop, "write_plot", write_and_check)
    out = tmp_path / "out"
    assert main(["train", str(write_train_config(tmp_path / "c.toml", out, {"max_train_steps": 4}, section=None))]) == 0
    assert alive_at_plot == [False]
    assert (out / PLOT_NAME).read_bytes().startswith(PNG_MAGIC)

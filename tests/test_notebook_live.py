"""The notebook's live training view, piece by piece (tests/test_notebook_colab.py runs it on a real
kernel, tests/browser/ in JupyterLab): reading the log as it grows, the plot, where the files are."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_sched.notebook.live import LogRows, read_log, run_files


def test_read_log_keeps_whole_rows_only(tmp_path):
    log = tmp_path / "train_log.csv"
    assert read_log(log) == LogRows()  # not written yet
    log.write_text(
        "step,epoch,lr_unet,lr_text_encoder,loss,seconds\n"
        "0,0,0.0,0.0,0.5,0.1\n"
        "1,0,0.0005,0.00025,0.25,0.2\n"
        "2,0,0.001,0.0005,0.1",  # the row being written: left out
        encoding="utf-8",
    )
    rows = read_log(log)
    assert rows.steps == [0, 1]
    assert rows.lrs == {"unet": [0.0, 0.0005], "text_encoder": [0.0, 0.00025]}
    assert rows.losses == [0.5, 0.25]


def test_read_log_takes_the_effective_lr_of_lr_free_optimizers(tmp_path):
    log = tmp_path / "train_log.csv"
    log.write_text(
        "step,epoch,lr_unet,d*lr_unet,loss,seconds\n0,0,1.0,1e-06,0.5,0.1\n1,0,1.0,3e-06,0.4,0.2\n",
        encoding="utf-8",
    )
    rows = read_log(log)
    assert rows.lrs == {"unet": [1.0, 1.0]} and rows.effective == {"unet": [1e-06, 3e-06]}
    assert rows.shown == rows.effective  # Prodigy's lr is a multiplier: d x lr is what moves the weights
    assert LogRows([0], {"unet": [1e-4]}, [0.1]).shown == {"unet": [1e-4]}


def test_plot_is_a_png_with_the_planned_curve(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (the notebook extra) draws the plot")
    from lora_sched.notebook.live import plot_png

    rows = LogRows([0, 1, 2], {"unet": [0.0, 1e-4, 2e-4]}, [0.3, 0.2, 0.25])
    png = plot_png(rows, 10, {"unet": (list(range(10)), [i * 1e-4 for i in range(10)])})
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert plot_png(LogRows(), None).startswith(b"\x89PNG")  # before the first step: empty axes
    prodigy = LogRows([0, 1], {"unet": [1.0, 1.0]}, [0.3, 0.2], {"unet": [1e-6, 3e-6]})
    assert plot_png(prodigy, 10, {"unet": ([0, 1], [1.0, 1.0])}).startswith(b"\x89PNG")


def test_run_files_follow_the_config_and_an_output_dir_override(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.toml"
    config.write_text(
        'output_dir = "runs/a"\noutput_name = "mine"\nlr_scheduler = "cosine"\nmax_train_steps = 30\n'
        "learning_rate = 1e-4\n",
        encoding="utf-8",
    )
    files = run_files(config)
    assert files.log == Path("runs/a/train_log.csv")
    assert files.sheet == Path("runs/a/sample/mine_contact_sheet.png")
    assert files.total == 30
    steps, lrs = files.planned["unet"]
    assert len(steps) == len(lrs) == 30 and lrs[0] == pytest.approx(1e-4)
    assert run_files(config, ("--output-dir", "b")).log == Path("b/train_log.csv")
    assert run_files(config, ("--output-dir=c",)).sheet == Path("c/sample/mine_contact_sheet.png")


def test_run_files_of_a_config_in_error_leave_the_report_to_the_run(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("max_train_steps = -1\n", encoding="utf-8")
    assert run_files(config).total is None

"""The first hour of a new user (a kohya_ss GUI / kohya-colab user with their TOML and images): the
command line says what it is doing and why.

preview shows the arithmetic of an epoch-based run (numbers below computed by hand) and marks the
epochs and restarts on its PNG; train acknowledges a signal at once (even while it samples), its
progress bar shows the step it counts, its CSV clock runs on across a resume, and its contact
sheet carries the prompts.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from lora_sched.cli import main
from lora_sched.config import preview

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


# -- preview: the arithmetic of an epoch-based run ----------------------------------------------
def _image(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 80, 40)).save(path)


@pytest.fixture
def folder_config(tmp_path: Path) -> Path:
    """Two concept folders, bucketed at resolution 64 (buckets 64x64 and 128x32 among others):
    3_cat: two 64x64 images and one 128x32, 2_dog: three 64x64 images; batch 2, accumulation 2,
    4 epochs, 2 cosine cycles (a restart half way)."""
    data = tmp_path / "data"
    for i in range(2):
        _image(data / "3_cat" / f"square{i}.png", (64, 64))
    _image(data / "3_cat" / "wide.png", (128, 32))
    for i in range(3):
        _image(data / "2_dog" / f"dog{i}.png", (64, 64))
    config = tmp_path / "lora.toml"
    config.write_text(
        f"train_data_dir = {str(data)!r}\nresolution = 64\nenable_bucket = true\nmin_bucket_reso = 32\n"
        "max_bucket_reso = 128\nbucket_reso_steps = 32\ntrain_batch_size = 2\ngradient_accumulation_steps = 2\n"
        'max_train_epochs = 4\nlearning_rate = 1e-4\nlr_scheduler = "cosine_with_restarts"\n'
        "lr_scheduler_num_cycles = 2\n",
        encoding="utf-8",
    )
    return config


def test_preview_shows_how_the_epochs_become_steps(folder_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # samples: 3_cat 3 x 3 = 9, 2_dog 3 x 2 = 6 -> 15; buckets: 64x64 holds 2 x 3 + 3 x 2 = 12 samples
    # (6 batches of 2), 128x32 holds 1 x 3 = 3 (2 batches) -> 8 batches; ceil(8 / 2) = 4 steps per epoch
    assert main(["preview", str(folder_config)]) == 0
    out = capsys.readouterr().out
    block = [
        "how the steps are counted:",
        "  2_dog: 3 images x 2 repeats = 6 samples",
        "  3_cat: 3 images x 3 repeats = 9 samples",
        "  samples per epoch: 15",
        "  batches of 2 per bucket: 64x64: ceil(12 / 2) = 6, 128x32: ceil(3 / 2) = 2; 8 in all",
        "  steps per epoch: ceil(8 batches / accumulation 2) = 4",
        "  total: 4 epochs x 4 = 16 steps",
    ]
    assert "\n".join(block) in out
    assert out.splitlines()[0].endswith("cosine_with_restarts, 16 steps, warmup 0, LR 0.0001")

    # two processes: each sees ceil(8 / 2) = 4 batches, ceil(4 / 2) = 2 updates per epoch
    assert main(["preview", str(folder_config), "--num-processes", "2"]) == 0
    out = capsys.readouterr().out
    assert "  steps per epoch: ceil(ceil(8 batches / 2 processes) / accumulation 2) = 2\n" in out
    assert "  total: 4 epochs x 2 = 8 steps\n" in out


def test_preview_arithmetic_of_the_builtin_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('train_data_dir = "builtin:shapes"\nmax_train_epochs = 2\ntrain_batch_size = 3\n')
    assert main(["preview", str(config)]) == 0
    block = [  # the 32 built-in images, one bucket
        "how the steps are counted:",
        "  samples per epoch: 32 (builtin:shapes)",
        "  batches of 3: ceil(32 / 3) = 11",
        "  steps per epoch: 11 batches = 11",
        "  total: 2 epochs x 11 = 22 steps",
    ]
    assert "\n".join(block) + "\n" in capsys.readouterr().out


def test_preview_of_a_step_count_has_no_epoch_block(folder_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = folder_config.read_text(encoding="utf-8").replace("max_train_epochs = 4", "max_train_steps = 10")
    folder_config.write_text(text, encoding="utf-8")
    assert main(["preview", str(folder_config)]) == 0
    assert "how the steps are counted" not in capsys.readouterr().out


# -- errors: where a value came from, and the fix -------------------------------------------------
def test_an_error_about_a_default_value_says_it_was_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _image(tmp_path / "data" / "1_x" / "a.png", (96, 96))
    config = tmp_path / "c.toml"
    data = str(tmp_path / "data")
    config.write_text(f"train_data_dir = {data!r}\nresolution = 96\nenable_bucket = true\nmax_train_epochs = 1\n")
    assert main(["validate", str(config)]) == 1
    assert capsys.readouterr().err == (
        f"{config}: min_bucket_reso (default 256): expected bucket settings sd-scripts accepts (train_data_dir), "
        "got 256 (on the steps), above the resolution's shorter side 96\n"
        "    hint: write min_bucket_reso = 64 or less (256 when not written), or raise the resolution\n"
    )


@pytest.mark.parametrize("verb", ["validate", "preview", "export", "train", "bound"])
def test_every_verb_that_reads_a_config_takes_trust_scheduler_code(verb: str) -> None:
    from lora_sched.cli import build_parser

    args = build_parser(only=verb).parse_args([verb, "c.toml", "--trust-scheduler-code"])
    assert args.trust_scheduler_code is True


def test_bound_trusts_a_custom_class_when_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "first_hour_sched.py").write_text(
        "import torch\n\nclass Flat(torch.optim.lr_scheduler.LambdaLR):\n"
        "    def __init__(self, optimizer):\n        super().__init__(optimizer, lambda step: 1.0)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "c.toml"
    config.write_text('max_train_steps = 100\nlr_scheduler_type = "first_hour_sched.Flat"\n')
    assert main(["bound", str(config)]) == 1
    assert "if you trust it, pass --trust-scheduler-code" in capsys.readouterr().err
    assert main(["bound", str(config), "--trust-scheduler-code"]) == 1  # trusted: then refused for its reason
    err = capsys.readouterr().err
    assert "expected a catalogue schedule (the bound needs its closed form)" in err and "--trust" not in err


# -- preview --png: epochs and restarts ---------------------------------------------------------
def test_the_png_marks_every_epoch_start_and_the_restart(
    folder_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = []
    draw = preview.lr_figure

    def kept(*args, **kwargs):
        figures.append(draw(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(preview, "lr_figure", kept)
    png = tmp_path / "lr.png"
    assert main(["preview", str(folder_config), "--png", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")
    (ax,) = figures[0].axes

    def marks(gid: str) -> tuple[list[float], list[str]]:
        lines = [float(line.get_xdata()[0]) for line in ax.get_lines() if line.get_gid() == gid]
        return lines, [t.get_text().strip() for t in ax.texts if t.get_gid() == gid]

    # 16 steps of 4 per epoch: epochs 2, 3 and 4 start at steps 4, 8, 12; 2 cycles of 8 steps restart at 8
    assert marks(preview.EPOCH_GID) == ([4.0, 8.0, 12.0], ["epoch 2", "epoch 3", "epoch 4"])
    assert marks(preview.RESTART_GID) == ([8.0], ["restart"])
    curves = [line for line in ax.get_lines() if line.get_gid() is None]
    assert [line.get_linestyle() for line in curves] == ["-", "--"]  # the text encoder's curve coincides
    assert all(line.get_drawstyle() == "steps-post" for line in curves)  # an LR holds for its whole step


def test_a_long_run_marks_a_sample_of_its_epochs() -> None:
    # 333 epoch starts (3, 6, ... 999): every 4th drawn (83 lines), every 11th of those labelled (8 labels)
    marks = preview.epoch_marks(1000, 3)
    assert len(marks) == 83 and marks[0] == (12, "epoch 5") and marks[1] == (24, "")
    assert [label for _, label in marks if label] == [f"epoch {5 + 44 * i}" for i in range(8)]
    assert preview.epoch_marks(10, 10) == [] and preview.epoch_marks(10, None) == []


# -- train: the contact sheet's labels ----------------------------------------------------------
def test_label_lines_wrap_and_shorten_a_prompt() -> None:
    from lora_sched.train.sampling import label_lines

    def width(text: str) -> int:
        return 6 * len(text)  # a 6-pixel monospace font

    prompt = "a blue square on a long green meadow under a cloudy sky"
    # 16 characters a line; "meadow under a ..." does not fit the third line: cut to 13 + "..."
    assert label_lines(prompt, 96, width) == ["a blue square on", "a long green", "meadow under..."]
    assert label_lines("a red circle", 96, width) == ["a red circle"]
    assert label_lines("supercalifragilistic", 60, width) == ["superca..."]


def test_the_contact_sheet_writes_each_prompt_above_its_column(tmp_path: Path) -> None:
    from lora_sched.config.prompts import SamplePrompt
    from lora_sched.train.sampling import MIN_COLUMN_WIDTH, SamplePlan, write_contact_sheet

    prompts = (SamplePrompt(0, "a red circle", width=64, height=64), SamplePrompt(1, "", width=64, height=64))
    plan = SamplePlan(prompts, tmp_path / "sample", "lora")
    plan.folder.mkdir()
    for index in (0, 1):
        path = plan.folder / f"lora_e000000_{index:02d}.png"
        Image.new("RGB", (64, 64), "white").save(path)  # white images: any dark pixel is text
        plan.made.append(("e000000", index, path))
    with Image.open(write_contact_sheet(plan)) as sheet:
        gray = sheet.convert("L")
        column = MIN_COLUMN_WIDTH + 4
        first = gray.crop((72, 0, 72 + column, gray.height))
        second = gray.crop((72 + column, 0, 72 + 2 * column, gray.height))
    assert first.getextrema()[0] < 128  # "a red circle" was drawn in the first column
    assert second.getextrema() == (255, 255)  # an empty prompt: nothing


# -- train: the CSV clock across a resume -------------------------------------------------------
def test_the_log_clock_goes_on_from_the_last_kept_row_on_resume(tmp_path: Path) -> None:
    from lora_sched.train.csv_log import CsvLog

    path = tmp_path / "train_log.csv"
    path.write_text(
        "step,epoch,lr_unet,loss,seconds\n0,0,0.001,0.5,100.25\n1,0,0.001,0.4,101.5\n2,0,0.001,0.3,102.0\n",
        encoding="utf-8",
    )
    log = CsvLog(path, ["lr_unet"], start=2)  # resumed at step 2: row 2 is written again
    log.write(2, 0, [0.001], 0.3)
    log.close()
    with open(path, newline="", encoding="utf-8") as fh:
        seconds = [float(row["seconds"]) for row in csv.DictReader(fh)]
    assert seconds[:2] == [100.25, 101.5]
    assert 101.5 <= seconds[2] < 101.5 + 60  # on from the last kept row, not from 0


# -- train: the progress bar and a resume, end to end --------------------------------------------
def _frames(err: str) -> list[tuple[int, int]]:
    """(count, step) of every progress bar frame that shows a step."""
    return [(int(n), int(s)) for n, s in re.findall(r"(\d+)/\d+ \[[^\]]*\bstep=(\d+)", err.replace("\r", "\n"))]


@pytest.mark.slow
def test_the_bar_shows_the_step_it_counts_and_the_clock_survives_a_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from train_support import write_train_config

    out = tmp_path / "run"
    config = write_train_config(tmp_path / "c.toml", out, {"max_train_steps": 4, "save_every_n_steps": 2})
    assert main(["train", str(config)]) == 0
    frames = _frames(capsys.readouterr().err)
    assert frames and frames[-1] == (4, 4) and all(count == step for count, step in frames)

    log = out / "train_log.csv"
    rows = log.read_text(encoding="utf-8").splitlines()
    rows[1:3] = [re.sub(r",[^,]*$", f",{500 + i}.0", row) for i, row in enumerate(rows[1:3])]  # an older clock
    log.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert main(["train", str(config), "--resume", str(out / "checkpoints" / "step-00000002")]) == 0
    frames = _frames(capsys.readouterr().err)
    assert frames and frames[-1] == (4, 4) and all(count == step for count, step in frames)
    with open(log, newline="", encoding="utf-8") as fh:
        seconds = [float(row["seconds"]) for row in csv.DictReader(fh)]
    assert seconds[:2] == [500.0, 501.0] and 501.0 < seconds[2] <= seconds[3] < 501.0 + 600


# -- train: a signal is acknowledged at once, even while sampling ----------------------------------
class _Stderr:
    """A child's stderr read as it comes (the progress bar writes no newline), with when it came."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.text, self.lock = "", threading.Lock()
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        while chunk := os.read(proc.stderr.fileno(), 4096):
            with self.lock:
                self.text += chunk.decode("utf-8", "replace")

    def wait_for(self, text: str, seconds: float) -> float | None:
        """Seconds until `text` appeared (None: not within `seconds`)."""
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            with self.lock:
                if text in self.text:
                    return time.monotonic() - start
            time.sleep(0.01)
        return None


@pytest.mark.slow
def test_ctrl_c_while_sampling_is_acknowledged_at_once_and_cuts_the_sampling(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from train_support import write_train_config

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle --w 64 --h 64 --s 1000 --d 1\n", encoding="utf-8")  # seconds of denoising
    out = tmp_path / "run"
    config = write_train_config(
        tmp_path / "c.toml", out, {"max_train_steps": 4}, sample_prompts=str(prompts), sample_at_first=True
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "lora_sched", "train", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    err = _Stderr(proc)
    try:
        deadline = time.monotonic() + 240
        while not (out / "sample").is_dir() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the sample folder is made as sampling starts
        assert proc.poll() is None, err.text[-2000:]
        proc.send_signal(signal.SIGINT)
        said = err.wait_for("lora-sched: stopping at the next step boundary, after saving a checkpoint", 10)
        assert said is not None, err.text[-2000:]
        assert proc.wait(timeout=300) == 128 + signal.SIGINT
    finally:
        proc.kill()
    err.thread.join(timeout=10)
    assert "(Ctrl-C again to stop at once)" in err.text
    assert "sampling at e000000 stopped by the signal: 0 of 1 drawn" in err.text
    assert "stopped by SIGINT at step 1" in err.text and "Traceback" not in err.text
    assert "requires torchvision" not in err.text  # transformers' notice, filtered where sampling sets it off
    assert not list((out / "sample").glob("*.png"))  # the cut image is not kept as a sample

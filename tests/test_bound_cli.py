"""`lora-sched bound` end to end: real processes on kohya TOML files written to tmp_path.

Printed numbers have 4 significant digits, so they are compared to the library's values (computed
here in-process from the same schedules) to 1e-3 relative.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lora_sched.analysis import schedule_bound, transfer_lr
from lora_sched.schedules import ScheduleRequest, resolve

PRINTED = 1e-3


def write(tmp_path: Path, name: str, scheduler: str, steps: int = 4000, lr: float = 1e-4, **extra: str) -> Path:
    """A minimal kohya config; extra = {section: 'key = value' lines}."""
    sections = {"training_arguments": f"max_train_steps = {steps}", "optimizer_arguments": f"learning_rate = {lr}"}
    sections["optimizer_arguments"] += f'\nlr_scheduler = "{scheduler}"'
    for section, lines in extra.items():
        sections[section] = (sections.get(section, "") + "\n" + lines).strip()
    path = tmp_path / name
    path.write_text("".join(f"[{s}]\n{body}\n\n" for s, body in sections.items()), encoding="utf-8")
    return path


def bound_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lora_sched", "bound", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in:\n{text}"
    return float(match.group(1))


NUM = r"([0-9.]+(?:e[-+]?\d+)?|inf)"


def test_compares_linear_and_wsd_like_the_paper(tmp_path):
    write(tmp_path, "linear.toml", "linear")
    write(tmp_path, "wsd.toml", "wsd", optimizer_arguments="lr_decay_steps = 0.2")  # the paper's linear cooldown
    result = bound_cli(tmp_path, "linear.toml", "wsd.toml")
    assert result.returncode == 0, result.stderr
    out = result.stdout

    linear = schedule_bound(resolve(ScheduleRequest("linear", max_train_steps=4000, base_lr=1e-4)))
    wsd = schedule_bound(resolve(ScheduleRequest("wsd", args={"decay": 0.2}, max_train_steps=4000, base_lr=1e-4)))
    block_linear, block_wsd = out.split("linear.toml: linear")[1].split("wsd.toml: wsd")
    assert number(rf"at base LR {NUM}", block_linear) == pytest.approx(1e-4)
    assert number(rf"bound {NUM} \(t1", block_linear) == pytest.approx(linear.bound, rel=PRINTED)
    assert number(rf"bound-optimal base LR {NUM}", block_linear) == pytest.approx(linear.optimal_base_lr, rel=PRINTED)
    assert number(rf"bound-optimal base LR {NUM}", block_wsd) == pytest.approx(wsd.optimal_base_lr, rel=PRINTED)
    assert number(rf"= {NUM} x its LR", block_wsd) == pytest.approx(wsd.optimal_base_lr / 1e-4, rel=PRINTED)
    assert number(rf"x sqrt\(T\) = {NUM}", block_linear) == pytest.approx(2.00, rel=0.01)
    assert number(rf"x sqrt\(T\) = {NUM}", block_wsd) == pytest.approx(2.16, rel=0.01)

    ratio = number(rf"wsd.toml: bound-optimal base LR {NUM}x linear.toml's", out)
    assert ratio == pytest.approx(wsd.optimal_base_lr / linear.optimal_base_lr, rel=PRINTED)
    assert number(rf"inverse {NUM}\)", out) == pytest.approx(1.95, rel=0.02)
    assert number(rf"use {NUM} for wsd.toml", out) == pytest.approx(1e-4 * ratio, rel=PRINTED)


def test_png_plot_is_written_atomically(tmp_path):
    write(tmp_path, "a.toml", "cosine", steps=300, optimizer_arguments="lr_warmup_steps = 30")
    write(tmp_path, "b.toml", "constant", steps=300)
    result = bound_cli(tmp_path, "a.toml", "b.toml", "--png", "plots/bound.png")
    assert result.returncode == 0, result.stderr
    png = tmp_path / "plots" / "bound.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert sorted(p.name for p in png.parent.iterdir()) == ["bound.png"]  # no temp file left behind
    assert "wrote plots/bound.png" in result.stdout


def test_transfer_to_another_run_length(tmp_path):
    write(tmp_path, "cos.toml", "cosine", steps=1000, lr=2e-4, optimizer_arguments="lr_warmup_steps = 0.05")
    result = bound_cli(tmp_path, "--transfer", "cos.toml", "--steps", "4000")
    assert result.returncode == 0, result.stderr
    expected = transfer_lr(ScheduleRequest("cosine", warmup=0.05, max_train_steps=1000), 4000, base_lr=2e-4)
    assert number(rf"for 4000 steps \(max_train_steps = 4000\): base LR {NUM}", result.stdout) == pytest.approx(
        expected.new_lr, rel=PRINTED
    )
    assert number(rf"\(x{NUM} = gamma\*\(4000\) / gamma\*\(1000\)\)", result.stdout) == pytest.approx(
        expected.factor, rel=PRINTED
    )
    assert expected.factor < 1  # a longer run wants a smaller base LR


def test_transfer_that_breaks_the_schedule_names_file_line_and_key(tmp_path):
    write(tmp_path, "w.toml", "cosine", steps=1000, optimizer_arguments="lr_warmup_steps = 500")
    result = bound_cli(tmp_path, "--transfer", "w.toml", "--steps", "300")
    assert result.returncode == 1
    assert re.search(r"w\.toml:\d+: .*lr_warmup_steps", result.stderr), result.stderr
    assert "--steps 300" in result.stderr and "Traceback" not in result.stderr


def test_uses_the_unet_lr_and_reports_infinite_bounds(tmp_path):
    write(
        tmp_path,
        "held.toml",
        "linear",
        steps=120,
        optimizer_arguments="unet_lr = 3e-4",
        lora_sched="schedule_steps = 100\nhold_after_horizon = true",
    )
    result = bound_cli(tmp_path, "held.toml")
    assert result.returncode == 0, result.stderr
    assert number(rf"at base LR {NUM}", result.stdout) == pytest.approx(3e-4)
    assert "bound inf" in result.stdout and "last 20 step(s) have LR 0" in result.stdout
    head = resolve(ScheduleRequest("linear", max_train_steps=100))  # the 100 steps where the weights move
    assert number(rf"over the first 100 steps .*bound-optimal base LR {NUM}", result.stdout) == pytest.approx(
        schedule_bound(head).optimal_base_lr, rel=PRINTED
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--transfer", "a.toml"], "--transfer needs --steps"),
        (["a.toml", "--steps", "10"], "--steps goes with --transfer"),
        (["a.toml", "--D", "0"], "--D: expected a finite number > 0"),
        (["a.toml", "--G", "nan"], "--G: expected a finite number > 0"),
        (["--transfer", "a.toml", "--steps", "0"], "--steps: expected an int >= 1"),
    ],
)
def test_usage_errors_exit_2(tmp_path, args, message):
    write(tmp_path, "a.toml", "linear", steps=100)
    result = bound_cli(tmp_path, *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_bad_files_exit_1_and_the_good_ones_are_still_reported(tmp_path):
    write(tmp_path, "good.toml", "linear", steps=100)
    write(tmp_path, "typo.toml", "linear", steps=100, optimizer_arguments="lr_warmup_stpes = 10")
    custom = 'lr_scheduler_type = "CosineAnnealingLR"\nlr_scheduler_args = ["T_max=100"]'
    write(tmp_path, "custom.toml", "constant", steps=100, optimizer_arguments=custom)
    result = bound_cli(tmp_path, "good.toml", "typo.toml", "custom.toml")
    assert result.returncode == 1
    assert "good.toml: linear, 100 steps" in result.stdout
    assert re.search(r"typo\.toml:\d+: .*lr_warmup_stpes", result.stderr), result.stderr
    assert re.search(r"custom\.toml:\d+: .*lr_scheduler_type.*catalogue schedule", result.stderr), result.stderr
    assert "Traceback" not in result.stderr


def test_bound_does_not_import_torch(tmp_path):
    write(tmp_path, "a.toml", "cosine", steps=100)
    code = (
        "import sys; from lora_sched.cli import main; rc = main(['bound', 'a.toml']); "
        "assert 'torch' not in sys.modules, 'torch imported'; raise SystemExit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not math.isnan(number(rf"bound-optimal base LR {NUM}", result.stdout))

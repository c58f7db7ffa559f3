"""preview and the notebook form in bounded memory for any run length (up to MAX_STEPS = 1e9).

A billion-step run once needed more than 6 GB; now a run longer than DENSE_STEPS is drawn from an
even sample, its table is exact, its restarts are located exactly, and --csv / --steps stream in
blocks. The long run is checked in a subprocess under an address-space limit and a time limit
(it takes about 2 s; the limit leaves room for a loaded 2-core machine).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from lora_sched.api import loads_config
from lora_sched.cli import main
from lora_sched.config import preview as pv
from lora_sched.schedules.catalogue import discrete

resource = pytest.importorskip("resource")  # POSIX: RLIMIT_AS

BILLION = 1_000_000_000
WARMUP, CYCLES = 1000, 5
RESTARTS = """
[optimizer_arguments]
learning_rate = 1e-3
lr_scheduler = "cosine_with_restarts"
lr_warmup_steps = {warmup}
lr_scheduler_num_cycles = {cycles}
[training_arguments]
max_train_steps = {steps}
"""


def cosine_with_restarts(s: int, steps: int = BILLION) -> float:
    """The closed form (diffusers' get_cosine_with_hard_restarts_schedule_with_warmup), written out here."""
    if s < WARMUP:
        return s / WARMUP
    p = (s - WARMUP) / (steps - WARMUP)
    return 0.5 * (1 + math.cos(math.pi * ((CYCLES * p) % 1.0)))


def run_limited(code: str, limit_gb: float = 2.0, timeout: int = 180) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter whose address space is capped (numpy's BLAS on one thread)."""
    prefix = (
        f"import resource\nlimit = int({limit_gb} * 2**30)\nresource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", prefix + code], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_a_billion_step_preview_fits_in_2_gb_with_exact_values(tmp_path):
    config = tmp_path / "long.toml"
    config.write_text(RESTARTS.format(warmup=WARMUP, cycles=CYCLES, steps=BILLION))
    out = run_limited(f"from lora_sched.cli import main\nraise SystemExit(main(['preview', {str(config)!r}]))")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[1] == (
        "(a 1,000,000,000-step run: the sparkline, the restarts and the PNG use 4,194,309 sampled steps, "
        "about one every 238; the table's values are exact)"
    )
    assert len(lines[2]) == 64
    rows = [line.split(None, 4) for line in lines[6:]]
    cycle = (BILLION - WARMUP) // CYCLES  # 199,999,800 steps
    restarts = [WARMUP + k * cycle for k in range(1, CYCLES)]
    expected_steps = sorted(
        {0, WARMUP - 1, WARMUP, BILLION // 4, BILLION // 2, 3 * BILLION // 4, BILLION - 1, *restarts}
    )
    assert [int(r[0]) for r in rows] == expected_steps
    for row in rows:
        step, multiplier, unet = int(row[0]), float(row[1]), float(row[2])
        want = cosine_with_restarts(step)
        assert multiplier == pytest.approx(want, rel=1e-5, abs=1e-12), step
        assert unet == pytest.approx(1e-3 * want, rel=1e-5, abs=1e-15), step
    notes = {int(r[0]): r[4] if len(r) > 4 else "" for r in rows}
    assert [s for s, note in notes.items() if "restart" in note] == restarts


def test_a_billion_step_form_preview_and_step_schedule_fit_in_2_gb():
    code = (
        "import json\n"
        "from lora_sched.config import loads_config\n"
        "from lora_sched.config import preview\n"
        "from lora_sched.notebook import translate\n"
        f"cfg = loads_config({RESTARTS.format(warmup=WARMUP, cycles=CYCLES, steps=BILLION)!r})\n"
        "steps, curves = translate.preview_sample(cfg)\n"
        "step = loads_config('lr_scheduler = \"step\"\\nlr_scheduler_args = {step_size = 1, gamma = 0.5}\\n'\n"
        "                    'max_train_steps = 1000000000\\n')\n"
        "c = preview.curve(step)\n"
        "print(json.dumps([int(steps.size), int(steps[-1]), float(curves['unet'][-1]),\n"
        "                  c.at([0, 1, 2, 1074, 1075, 999999999]).tolist()]))\n"
    )
    out = run_limited(code)
    assert out.returncode == 0, out.stderr[-3000:]
    size, last, lr_last, powers = json.loads(out.stdout)
    assert size == 4_194_309 and last == BILLION - 1
    assert lr_last == pytest.approx(1e-3 * cosine_with_restarts(BILLION - 1), rel=1e-12, abs=1e-24)
    assert powers == [1.0, 0.5, 0.25, 2.0**-1074, 0.0, 0.0]  # the repeated product underflows like StepLR's


# -- the sampled path gives what the dense path gives -------------------------------------------
@pytest.fixture
def small_limits(monkeypatch):
    """Sample past 1,000 steps and stream 97 steps at a time, so the long-run code runs on small runs."""
    monkeypatch.setattr(pv, "DENSE_STEPS", 1000)
    monkeypatch.setattr(pv, "BLOCK_STEPS", 97)


def _both(text: str, monkeypatch) -> tuple:
    cfg = loads_config(text)
    dense = pv.curve(cfg)
    assert dense.dense
    with monkeypatch.context() as patch:
        patch.setattr(pv, "DENSE_STEPS", 1000)
        patch.setattr(pv, "BLOCK_STEPS", 97)
        sampled = pv.curve(cfg)
        assert not sampled.dense
        return cfg, dense, sampled, pv.key_steps(cfg, sampled), pv.csv_text(cfg, sampled)


@pytest.mark.parametrize(
    "text",
    [
        RESTARTS.format(warmup=37, cycles=7, steps=20_011),
        'lr_scheduler = "rex"\nlr_warmup_steps = 50\nmax_train_steps = 30000\n'
        "lr_scheduler_args = {cycle_steps = 4000, cycle_warmup = 300}\n",
        'lr_scheduler = "cosine_annealing_warm_restarts"\nmax_train_steps = 12345\n'
        "lr_scheduler_args = {t_0 = 700, t_mult = 2}\n",
        'lr_scheduler = "step"\nmax_train_steps = 9000\nlr_scheduler_args = {step_size = 700, gamma = 0.5}\n',
    ],
    ids=["cosine_with_restarts", "rex", "warm_restarts", "step"],
)
def test_sampled_preview_has_the_dense_key_steps_and_csv(text, monkeypatch):
    cfg, dense, sampled, keys, csv = _both(text, monkeypatch)
    assert keys == pv.key_steps(cfg, dense)  # restarts located exactly between samples
    assert csv == pv.csv_text(cfg, dense)  # the streamed CSV is the dense one, byte for byte
    assert pv.table(cfg, sampled, keys) == pv.table(cfg, dense, keys)
    assert sampled.steps.size < dense.steps.size


def test_every_step_table_and_csv_file_stream_in_blocks(tmp_path, small_limits, capsys):
    config = tmp_path / "c.toml"
    config.write_text(RESTARTS.format(warmup=10, cycles=3, steps=2500))
    csv = tmp_path / "lr.csv"
    assert main(["preview", str(config), "--steps", "--csv", str(csv)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("(a 2,500-step run: the sparkline, the restarts and the PNG use 1,")
    rows = out[out.index(next(x for x in out if x.strip().startswith("step"))) + 2 :][:2500]
    assert [int(r.split()[0]) for r in rows] == list(range(2500))
    lines = csv.read_text().splitlines()
    assert lines[0] == "step,lr_unet,lr_text_encoder" and len(lines) == 2501
    m = loads_config(config.read_text()).resolve().multipliers()
    assert [float(x.split(",")[1]) for x in lines[1:]] == (m * 1e-3).tolist()
    assert out[-1] == f"wrote {csv} (2500 steps)"


def test_a_custom_class_preview_is_cut_at_custom_steps(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    monkeypatch.setattr(pv, "CUSTOM_STEPS", 50)
    config = tmp_path / "c.toml"
    config.write_text(
        'lr_scheduler_type = "CosineAnnealingLR"\nlr_scheduler_args = ["T_max=100"]\nmax_train_steps = 200\n'
    )
    assert main(["preview", str(config)]) == 0
    out = capsys.readouterr().out
    assert "(a custom class is stepped one update at a time: the preview covers its first 50 of 200 steps)" in out
    assert out.rstrip().endswith("last step previewed")
    assert out.rstrip().splitlines()[-1].split()[0] == "49"


def test_repeated_powers_in_chunks_equal_one_running_product(monkeypatch):
    monkeypatch.setattr(discrete, "POWER_CHUNK", 64)
    for gamma in (0.5, 0.97, 1 - 1e-9, 1.0):
        k = np.array([[0, 1, 63, 64], [65, 200, 129, 5], [1000, 999, 64, 0]], dtype=np.intp)
        full = np.empty(1001)
        full[0] = 1.0
        np.cumprod(np.full(1000, gamma), out=full[1:])
        got = discrete.repeated_powers(gamma, k)
        assert got.shape == k.shape
        assert np.array_equal(got, full[k]), gamma


def test_the_png_of_a_long_run_is_an_envelope(tmp_path, small_limits):
    pytest.importorskip("matplotlib")
    cfg = loads_config(RESTARTS.format(warmup=10, cycles=3, steps=50_000))
    c = pv.curve(cfg)
    x, y = pv.envelope(c.steps, c.m, points=200)
    assert x.size == y.size == 200
    assert y.max() == c.m.max() and y.min() == c.m.min()
    png = tmp_path / "lr.png"
    pv.write_png(cfg, c, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bound_of_a_billion_step_run_is_a_clear_error_not_an_out_of_memory(tmp_path):
    config = tmp_path / "long.toml"
    config.write_text(RESTARTS.format(warmup=WARMUP, cycles=CYCLES, steps=BILLION))
    out = run_limited(f"from lora_sched.cli import main\nraise SystemExit(main(['bound', {str(config)!r}]))")
    assert out.returncode == 1, out.stderr[-3000:]
    assert out.stderr == (
        f"{config}: expected a run of at most 16,777,216 steps for `bound` (it holds every step in memory), "
        "got 1,000,000,000 steps\n    hint: `preview` shows a run of any length\n"
    )

"""Configs the kohya tools write (tests/realworld/, see its README): validate, preview, export, and the
curve equal to sd-scripts' own get_scheduler_fix (golden/, computed by tools/gen_sdscripts_golden.py)
step by step for every param group, on the same synthetic data set."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import tomllib
from realworld_support import CORPUS, flat, manifest, read_golden, relocate

from lora_sched.cli import main

ENTRIES = manifest()
REL = 1e-9

# Keys an export may add or change: the schedule and the run length it is counted over.
SCHEDULE_KEYS = {
    "lr_scheduler",
    "lr_scheduler_type",
    "lr_scheduler_args",
    "lr_warmup_steps",
    "lr_scheduler_num_cycles",
    "lr_scheduler_power",
    "lr_scheduler_timescale",
    "lr_scheduler_min_lr_ratio",
    "lr_decay_steps",
    "max_train_steps",
    "max_train_epochs",
}

# Files sd-scripts refuses at start-up (their golden file holds its error) for a reason lora-sched
# deliberately runs (see the README's differences from sd-scripts): validate passes with a warning
# naming this key, --strict refuses, and `export --kohya` writes a file sd-scripts runs.
SDSCRIPTS_REFUSES = {"easy_sd15_constant_warmup_ratio": "lr_warmup_steps"}

# Why a check fails today, one reason per open bug. strict=True: a fix shows up as XPASS, and its
# entry must then go.
KNOWN_FAILURES: dict[str, list[tuple[tuple[str, ...], str]]] = {}


def cases(check: str) -> list:
    params = []
    for entry in ENTRIES:
        reason = next((why for checks, why in KNOWN_FAILURES.get(entry["name"], []) if check in checks), None)
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        params.append(pytest.param(entry, id=entry["name"], marks=marks))
    return params


def data_args(dataset: Path | None) -> list[str]:
    return ["--dataset-config", str(dataset)] if dataset else []


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def preview_table(config: Path, dataset: Path | None, out: Path, capsys) -> dict[str, list[float]]:
    code, text = run(["preview", str(config), "--csv", str(out), *data_args(dataset)], capsys)
    assert code == 0, text
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c.startswith("lr_")] if rows else []
    return {c: [float(r[c]) for r in rows] for c in columns}


def assert_same_curve(name: str, got: dict[str, list[float]]) -> None:
    _, golden, error = read_golden(name)
    assert error is None, f"sd-scripts refuses {name}: {error}"
    want = {k: v for k, v in golden.items() if k.startswith("lr_")}
    # sd-scripts leaves a group with LR 0 out of the optimizer; an all-zero column says the same
    got = {k: v for k, v in got.items() if k in want or any(v)}
    assert_curves_equal(got, want)


def test_corpus_is_complete() -> None:
    assert len(ENTRIES) >= 40
    for entry in ENTRIES:
        assert (CORPUS / entry["config"]).is_file()
        assert (CORPUS / "golden" / f"{entry['name']}.csv").is_file()
        if entry["dataset_config"]:
            assert (CORPUS / entry["dataset_config"]).is_file()
        comments, _, _ = read_golden(entry["name"])
        assert comments[0].startswith("sd-scripts ") and "get_scheduler_fix" in comments[0]
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    for entry in ENTRIES:
        assert f"`{entry['config']}`" in readme


def warned_about(entry: dict, text: str) -> bool:
    """Whether lora-sched said the key sd-scripts refuses this file for."""
    key = SDSCRIPTS_REFUSES.get(entry["name"], "lr_warmup_steps")
    return f"{key}: expected no warmup" in text


def assert_curves_equal(got: dict[str, list[float]], want: dict[str, list[float]]) -> None:
    """Step by step, every param group (`got`: lora-sched's, `want`: the reference)."""
    assert sorted(got) == sorted(want), f"param groups: lora_sched {sorted(got)}, reference {sorted(want)}"
    for column, expected in want.items():
        actual = got[column]
        assert len(actual) == len(expected), f"run length: lora_sched {len(actual)} steps, reference {len(expected)}"
        for step, (a, e) in enumerate(zip(actual, expected)):
            assert math.isclose(a, e, rel_tol=REL, abs_tol=0.0), (
                f"{column} step {step}: lora_sched {a!r}, reference {e!r}"
            )


def test_the_files_sdscripts_refuses_are_listed() -> None:
    refused_by_sdscripts = {e["name"] for e in ENTRIES if read_golden(e["name"])[2]}
    assert refused_by_sdscripts == set(SDSCRIPTS_REFUSES)


def constant_with_warmup(config: Path, dataset: Path | None) -> dict[str, list[float]]:
    """The curve lora-sched trains for a `constant` file with a warmup: a linear ramp from 0, then flat."""
    from lora_sched.config import load_config

    cfg = load_config(config, data={"dataset_config": str(dataset)} if dataset else None)
    rs = cfg.resolve()
    ramp = [min(1.0, s / rs.warmup) for s in range(rs.run_length)]
    return {f"lr_{group}": [lr * m for m in ramp] for group, lr in cfg.group_lrs().items() if lr}


@pytest.mark.parametrize("entry", cases("validate"))
def test_validate(entry: dict, tmp_path: Path, capsys) -> None:
    config, dataset = relocate(entry, tmp_path)
    code, text = run(["validate", str(config), *data_args(dataset)], capsys)
    assert code == 0, text
    assert warned_about(entry, text) == (entry["name"] in SDSCRIPTS_REFUSES), text


@pytest.mark.parametrize("entry", cases("strict"))
def test_validate_strict(entry: dict, tmp_path: Path, capsys) -> None:
    config, dataset = relocate(entry, tmp_path)
    code, text = run(["validate", "--strict", str(config), *data_args(dataset)], capsys)
    if entry["name"] in SDSCRIPTS_REFUSES:
        assert code == 1 and warned_about(entry, text), text
    else:
        assert code == 0, text


@pytest.mark.parametrize("entry", cases("curve"))
def test_preview_curve(entry: dict, tmp_path: Path, capsys) -> None:
    config, dataset = relocate(entry, tmp_path)
    got = preview_table(config, dataset, tmp_path / "preview.csv", capsys)
    if entry["name"] in SDSCRIPTS_REFUSES:
        assert_curves_equal(got, constant_with_warmup(config, dataset))
        return
    assert_same_curve(entry["name"], got)


@pytest.mark.parametrize("entry", cases("export"))
def test_export(entry: dict, tmp_path: Path, capsys) -> None:
    config, dataset = relocate(entry, tmp_path)
    exported = tmp_path / f"exported_{config.name}"
    code, text = run(["export", "--kohya", str(config), "-o", str(exported), *data_args(dataset)], capsys)
    assert code == 0, text
    source = flat(tomllib.loads(config.read_text(encoding="utf-8")))
    written = flat(tomllib.loads(exported.read_text(encoding="utf-8")))
    added = sorted(set(written) - set(source) - SCHEDULE_KEYS)
    assert not added, f"export added keys the source did not have: {added}"
    changed = sorted(k for k in source if k not in SCHEDULE_KEYS and written.get(k) != source[k])
    assert not changed, f"export changed or dropped: {changed}"
    curve = preview_table(exported, dataset, tmp_path / "exported.csv", capsys)
    if entry["name"] in SDSCRIPTS_REFUSES:
        assert written["lr_scheduler"] == "constant_with_warmup"  # what sd-scripts runs with a warmup
        assert_curves_equal(curve, constant_with_warmup(config, dataset))
        return
    assert_same_curve(entry["name"], curve)

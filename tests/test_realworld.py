"""Configs the kohya tools write (tests/realworld/, see its README): validate, preview, export, and the
curve equal to sd-scripts' own get_scheduler_fix (golden/, computed by tools/gen_sdscripts_golden.py)
step by step for every param group, on the same synthetic data set."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import tomllib
from realworld_support import CORPUS, manifest, read_golden, relocate

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

# Files sd-scripts refuses (their golden file holds its error): lora-sched must refuse them too, naming
# this key, in validate, preview and export.
REFUSED = {"easy_sd15_constant_warmup_ratio": "lr_warmup_steps"}

# Why a check fails today, one reason per open bug (issue 10). strict=True: a fix shows up as XPASS,
# and its entry must then go.
CONSTANT_WARMUP = "constant with a warmup: sd-scripts refuses the file, lora-sched accepts it"
ALL = ("validate", "strict", "curve", "export")

KNOWN_FAILURES: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "easy_sd15_constant_warmup_ratio": [(ALL, CONSTANT_WARMUP)],
}


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
    assert sorted(got) == sorted(want), f"param groups: lora_sched {sorted(got)}, sd-scripts {sorted(want)}"
    for column, expected in want.items():
        actual = got[column]
        assert len(actual) == len(expected), f"run length: lora_sched {len(actual)} steps, sd-scripts {len(expected)}"
        for step, (a, e) in enumerate(zip(actual, expected)):
            assert math.isclose(a, e, rel_tol=REL, abs_tol=0.0), (
                f"{column} step {step}: lora_sched {a!r}, sd-scripts {e!r}"
            )


def flat(doc: dict) -> dict:
    out = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(value)
        else:
            out[key] = value
    return out


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


def assert_refused(entry: dict, code: int, text: str) -> None:
    _, _, error = read_golden(entry["name"])
    assert error, "sd-scripts runs this file"
    assert code == 1, text
    assert REFUSED[entry["name"]] in text, text


def test_refused_files_are_the_ones_sdscripts_refuses() -> None:
    refused_by_sdscripts = {e["name"] for e in ENTRIES if read_golden(e["name"])[2]}
    assert refused_by_sdscripts == set(REFUSED)


@pytest.mark.parametrize("entry", cases("validate"))
def test_validate(entry: dict, tmp_path: Path, capsys) -> None:
    config, dataset = relocate(entry, tmp_path)
    code, text = run(["validate", str(config), *data_args(dataset)], capsys)
    if entry["name"] in REFUSED:
        assert_refused(entry, code, text)
    else:
        assert code == 0, text


@pytest.mark.parametrize("entry", cases("strict"))
def test_validate_strict(entry: dict, tmp_path: Path, capsys) -> None:
    config, dataset = relocate(entry, tmp_path)
    code, text = run(["validate", "--strict", str(config), *data_args(dataset)], capsys)
    if entry["name"] in REFUSED:
        assert_refused(entry, code, text)
    else:
        assert code == 0, text


@pytest.mark.parametrize("entry", cases("curve"))
def test_preview_curve(entry: dict, tmp_path: Path, capsys) -> None:
    config, dataset = relocate(entry, tmp_path)
    if entry["name"] in REFUSED:
        code, text = run(["preview", str(config), *data_args(dataset)], capsys)
        assert_refused(entry, code, text)
        return
    assert_same_curve(entry["name"], preview_table(config, dataset, tmp_path / "preview.csv", capsys))


@pytest.mark.parametrize("entry", cases("export"))
def test_export(entry: dict, tmp_path: Path, capsys) -> None:
    config, dataset = relocate(entry, tmp_path)
    exported = tmp_path / f"exported_{config.name}"
    code, text = run(["export", "--kohya", str(config), "-o", str(exported), *data_args(dataset)], capsys)
    if entry["name"] in REFUSED:
        assert_refused(entry, code, text)
        assert not exported.exists()
        return
    assert code == 0, text
    source = flat(tomllib.loads(config.read_text(encoding="utf-8")))
    written = flat(tomllib.loads(exported.read_text(encoding="utf-8")))
    added = sorted(set(written) - set(source) - SCHEDULE_KEYS)
    assert not added, f"export added keys the source did not have: {added}"
    changed = sorted(k for k in source if k not in SCHEDULE_KEYS and written.get(k) != source[k])
    assert not changed, f"export changed or dropped: {changed}"
    assert_same_curve(entry["name"], preview_table(exported, dataset, tmp_path / "exported.csv", capsys))

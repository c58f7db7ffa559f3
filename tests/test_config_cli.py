"""`validate`, `preview` and `schema` through the CLI, the shipped configs, and the import budget."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the package depends on tomli there
    import tomli as tomllib

from lora_sched.api import load_config
from lora_sched.cli import main
from lora_sched.config.schema import build_schema
from lora_sched.schedules import all_specs

ROOT = Path(__file__).parent.parent
CONFIGS = sorted((ROOT / "configs").rglob("*.toml"))
CORPUS = ROOT / "tests" / "invalid_configs"
#: Configs whose data lives in a dataset_config that is not on this machine (kohya-colab keeps it
#: apart): epochs are counted on a stated size, samples per epoch (--samples-per-epoch).
DATA_ELSEWHERE = {"kohya_colab_sd15.toml": 100, "kohya_colab_xl.toml": 60}


def _load(path: Path):
    size = DATA_ELSEWHERE.get(path.name)
    return load_config(path, data={"samples_per_epoch": size} if size else None)


def _data_flags(path: Path) -> list[str]:
    size = DATA_ELSEWHERE.get(path.name)
    return ["--samples-per-epoch", str(size)] if size else []


def test_shipped_configs_validate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--strict", *map(str, CONFIGS)]) == 0
    out = capsys.readouterr().out
    for path in CONFIGS:
        assert f"{path}: ok (" in out


def test_kohya_colab_layouts_load_as_they_are() -> None:
    xl = _load(ROOT / "configs" / "kohya_colab_xl.toml")
    assert xl.values["optimizer_type"] == "AdamW8bit"
    assert xl.optimizer_kwargs() == {"weight_decay": 0.1, "betas": [0.9, 0.99]}
    assert xl.group_lrs() == {"unet": 3e-4, "text_encoder": 6e-5}
    assert xl.section_of("unet_lr") == "network_arguments"
    rs = xl.resolve()
    assert (rs.name, rs.params["num_cycles"], rs.warmup) == ("cosine_with_restarts", 3, 10)
    assert "network_module" in xl.extras and xl.extras["lowram"] == ("training_arguments", True)
    assert xl.values["min_snr_gamma"] == 8.0 and xl.values["multires_noise_iterations"] == 6  # keys `train` applies
    sd15 = load_config(ROOT / "configs" / "kohya_colab_sd15.toml")
    assert sd15.section_of("network_dim") == "additional_network_arguments"
    assert sd15.values["prior_loss_weight"] == 1.0 and sd15.section_of("prior_loss_weight") == "dreambooth_arguments"
    assert sd15.values["mixed_precision"] == "fp16"


def test_epochs_of_data_elsewhere_are_counted_on_the_stated_size(capsys: pytest.CaptureFixture[str]) -> None:
    sd15, xl = (str(ROOT / "configs" / name) for name in ("kohya_colab_sd15.toml", "kohya_colab_xl.toml"))
    assert main(["preview", sd15]) == 3  # 10 epochs of data not here: never counted on a built-in set
    err = capsys.readouterr().err
    assert "preview: the run length is unknown: 10 epochs" in err and "--samples-per-epoch N" in err
    assert main(["validate", sd15, xl]) == 0
    assert "10 epochs: run length unknown here (no data is named" in capsys.readouterr().out
    assert main(["validate", sd15, "--samples-per-epoch", "100"]) == 0  # 100 samples / batch 2 x 10 epochs
    assert "cosine_with_restarts, 500 steps, warmup 8" in capsys.readouterr().out
    assert main(["validate", xl, "--samples-per-epoch", "60"]) == 0  # 60 / batch 4 = 15 steps x 10 epochs
    assert "150 steps" in capsys.readouterr().out


def test_a_config_for_every_schedule() -> None:
    covered = {_load(p).resolve().name for p in CONFIGS}
    assert {s.name for s in all_specs()} <= covered


def test_packaged_quickstart_is_the_configs_one() -> None:
    packaged = ROOT / "lora_sched" / "data" / "quickstart.toml"
    assert packaged.read_bytes() == (ROOT / "configs" / "quickstart.toml").read_bytes()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_preview_csv_is_the_catalogue_curve(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lr.csv"
    assert main(["preview", str(path), "--csv", str(out), *_data_flags(path)]) == 0
    printed = capsys.readouterr().out
    cfg = _load(path)
    rs = cfg.resolve()
    m = rs.multipliers()
    lrs = cfg.group_lrs()
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(rs.run_length))
    assert list(rows[0]) == ["step", "lr_unet", "lr_text_encoder"]  # the groups in sd-scripts' order
    # base x m(s), or each group's own curve under an absolute floor (rex's min_lr)
    np.testing.assert_array_equal(np.array([float(r["lr_unet"]) for r in rows]), rs.group_lrs(lrs["unet"]))
    te = np.array([float(r["lr_text_encoder"]) for r in rows])
    np.testing.assert_array_equal(te, rs.group_lrs(lrs["text_encoder"]))
    if not rs.per_group:
        np.testing.assert_array_equal(te, lrs["text_encoder"] * m)
    # the key-step table prints the same numbers (6 significant digits)
    for line in printed.splitlines():
        cells = line.split()
        if cells and cells[0].isdigit() and len(cells) >= 4:
            assert float(cells[1]) == pytest.approx(m[int(cells[0])], rel=1e-5, abs=1e-12)


def test_preview_key_steps_warmup_quarters_and_restarts(capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "configs" / "schedules" / "cosine_with_restarts.toml"  # 300 steps, W = 10, 3 cycles
    assert main(["preview", str(path)]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        cells = line.split(None, 4)
        if cells and cells[0].isdigit():
            rows[int(cells[0])] = cells[4] if len(cells) > 4 else ""
    m = load_config(path).resolve().multipliers()
    restarts = [s for s in range(11, 300) if m[s] > m[s - 1]]
    assert restarts == [107, 204]  # cycles of (300 - 10) / 3 steps after the warmup
    assert sorted(rows) == sorted({0, 9, 10, 75, 150, 225, 299, *restarts})
    assert "restart" in rows[107] and "warmup done" in rows[10]


def test_preview_every_step_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "curve.png"
    assert main(["preview", str(ROOT / "configs" / "quickstart.toml"), "--steps", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if re.match(r"^\s+\d+\s", line)]) == 60
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_preview_of_a_custom_torch_class(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="previewing a custom torch class steps it (the train extra)")
    path = tmp_path / "custom.toml"
    path.write_text(
        'lr_scheduler_type = "StepLR"\nlr_scheduler_args = ["step_size=3", "gamma=0.5"]\nmax_train_steps = 9\n'
    )
    code = main(["preview", str(path), "--csv", str(tmp_path / "c.csv")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "custom StepLR" in captured.out
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    lr = 2e-6  # sd-scripts' default learning_rate, for both groups
    assert [float(r["lr_unet"]) / lr for r in rows] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]


def test_preview_of_an_invalid_config_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", str(CORPUS / "lr_nan.toml")]) == 1
    assert "lr_nan.toml:2: optimizer_arguments.learning_rate" in capsys.readouterr().err


def test_schema_is_valid_and_accepts_every_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == build_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    for path in CONFIGS:
        assert list(validator.iter_errors(tomllib.loads(path.read_text(encoding="utf-8")))) == [], path
    shipped = json.loads((ROOT / "configs" / "lora_sched.schema.json").read_text(encoding="utf-8"))
    assert shipped == schema, "regenerate: lora-sched schema -o configs/lora_sched.schema.json"


@pytest.mark.parametrize(
    "name",
    [
        "typo_key.toml",
        "lr_string.toml",
        "arg_not_taken.toml",
        "arg_not_taken_table.toml",
        "mixed_precision_bad.toml",
        "args_wrong_type.toml",
        "scheduler_name_case.toml",
        "warmup_type_bad.toml",
        "empty_key.toml",
    ],
)
def test_schema_rejects_what_the_loader_rejects(name: str) -> None:
    doc = tomllib.loads((CORPUS / name).read_text(encoding="utf-8"))
    assert list(jsonschema.Draft7Validator(build_schema()).iter_errors(doc)), name


def _imported_modules(args: list[str]) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lora_sched", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "lora_sched" in names  # the listing is really there
    return names


def test_validate_imports_neither_numpy_nor_torch() -> None:
    names = _imported_modules(["validate", "configs/quickstart.toml", "configs/kohya_colab_xl.toml"])
    assert not names & {"numpy", "torch", "diffusers", "matplotlib", "ipywidgets"}


def test_preview_imports_numpy_but_not_torch() -> None:
    names = _imported_modules(["preview", "configs/kohya_colab_xl_rex.toml"])
    assert "numpy" in names
    assert not names & {"torch", "diffusers", "matplotlib", "ipywidgets"}


def test_validate_arguments_without_argparse_match_argparse() -> None:
    from lora_sched.cli import _plain_validate, build_parser

    for argv in (
        ["validate", "a.toml"],
        ["validate", "--strict", "a.toml", "b.toml"],
        ["validate", "a.toml", "--trust-scheduler-code", "--strict"],
    ):
        fast = vars(_plain_validate(argv))
        slow = vars(build_parser().parse_args(argv))
        assert fast == slow
    for argv in (["validate"], ["validate", "-h"], ["validate", "--stric", "a.toml"], ["preview", "a.toml"], []):
        assert _plain_validate(argv) is None  # left to argparse: usage errors exit 2


def test_validate_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["validate"], ["validate", "--no-such-flag", "a.toml"], ["valdate", "a.toml"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert "invalid choice: 'valdate'" in capsys.readouterr().err


def test_parser_is_built_from_the_verb_table(capsys: pytest.CaptureFixture[str]) -> None:
    from lora_sched.cli import VERBS, build_parser

    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    for verb in VERBS:
        assert f"    {verb.name} " in listing  # --help lists every verb of the table
        only = build_parser(only=verb.name)  # the fast path builds that verb alone, with its handler
        assert only.parse_args([verb.name, *_minimal_args(verb.name)]).handler == verb.handler


def _minimal_args(verb: str) -> list[str]:
    return {
        "describe": ["cosine"],
        "validate": ["a.toml"],
        "preview": ["a.toml"],
        "export": ["--kohya", "a.toml"],
        "bound": ["a.toml"],
        "model": ["save", "builtin:tiny-sd", "out"],
    }.get(verb, [])

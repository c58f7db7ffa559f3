"""SimpleTuner's config.json / config.toml: recognised, read as SimpleTuner runs it (goldens from its own
custom_schedule.py and parser, tools/gen_simpletuner_golden.py), quirks warned, and written back."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lora_sched.errors import ConfigError
from lora_sched.trainers import read_document, read_run, recognise, write_run
from lora_sched.trainers.base import RunFacts
from lora_sched.trainers.simpletuner import COMMIT, KEYS, TRAINER

DATA = Path(__file__).parent / "data" / "trainers" / "simpletuner"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
CASES = {case["name"]: case for case in MANIFEST["cases"]}
CONFIGS = sorted(p for p in (DATA / "configs").iterdir() if p.name != "PROVENANCE.json")
WAVES = ("cosine", "sine", "cosine_with_restarts")


def case_path(case: dict, tmp_path: Path) -> str:
    if "file" in case:
        return str(DATA / case["file"])
    path = tmp_path / f"{case['name']}.json"
    path.write_text(json.dumps(case["config"]), encoding="utf-8")
    return str(path)


def read_case(case: dict, tmp_path: Path):
    facts = RunFacts(num_processes=case["processes"], steps_per_epoch=case["steps_per_epoch"])
    return read_run(case_path(case, tmp_path), facts)


def golden(case: dict) -> tuple[list[str], np.ndarray]:
    with open(DATA / case["csv"], newline="") as handle:
        rows = list(csv.reader(handle))
    return [h.removeprefix("lr_") for h in rows[0][1:]], np.array([[float(v) for v in r] for r in rows[1:]])


def assert_same(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for group in want:
        np.testing.assert_allclose(got[group], want[group], rtol=1e-9, atol=0, err_msg=group)


def own_groups(run, lrs: dict) -> dict:
    """`lrs` without the roles trained inside another group (each checked at its host's LR): the
    groups SimpleTuner's own scheduler steps."""
    for role, host in run.shared.items():
        np.testing.assert_array_equal(lrs.pop(role), lrs[host], err_msg=role)
    return lrs


def toml_run(tmp_path: Path, text: str, name: str = "run.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return read_run(str(path), trainer="sd-scripts")


def write_and_read(run, tmp_path: Path, facts: RunFacts | None = None):
    text = write_run(run, "simpletuner", facts)
    path = tmp_path / "written.json"
    path.write_text(text, encoding="utf-8")
    assert recognise(read_document(str(path))).name == "simpletuner"
    return text, read_run(str(path), facts)


# ---- corpus and goldens -------------------------------------------------------------------------
def test_manifest_records_the_snapshot() -> None:
    assert MANIFEST["repository"] == "bghira/SimpleTuner" and MANIFEST["commit"] == COMMIT
    assert MANIFEST["torch"] and MANIFEST["cases"]
    # the parser types the reader applies are those SimpleTuner's own field registry gives
    for key, kind in MANIFEST["parser_types"].items():
        assert KEYS[key][0] == kind, key


def test_provenance_names_every_corpus_file() -> None:
    provenance = json.loads((DATA / "configs" / "PROVENANCE.json").read_text())
    assert sorted(provenance) == [p.name for p in CONFIGS]
    for entry in provenance.values():
        assert entry["repository"] == "bghira/SimpleTuner" and entry["commit"] == COMMIT and entry["path"]
    goldened = {case["file"] for case in MANIFEST["cases"] if "file" in case}
    assert goldened == {f"configs/{p.name}" for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_corpus_recognised_as_simpletuner_only(path: Path) -> None:
    document = read_document(str(path))
    assert TRAINER.recognise(document) == 3
    assert recognise(document).name == "simpletuner"


@pytest.mark.parametrize("name", sorted(CASES))
def test_reader_matches_simpletuners_own_scheduler(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    run = read_case(case, tmp_path)
    groups, rows = golden(case)
    assert run.run_length == case["run_length"] == len(rows)
    assert list(run.groups) == groups == case["groups"]
    got = own_groups(run, run.lrs(np.arange(run.run_length)))
    assert_same(got, {g: rows[:, i + 1] for i, g in enumerate(groups)})


# ---- quirks -------------------------------------------------------------------------------------
def cited_lines(run) -> set[int]:
    found = (re.findall(r"custom_schedule\.py:(\d+) @ ", str(warning)) for warning in run.warnings)
    return {int(line) for lines in found for line in lines}


def expected_quirks(case: dict) -> set[int]:
    """custom_schedule.py lines each case's warnings must cite (and no others)."""
    config = case.get("config") or json.loads((DATA / case["file"]).read_text())
    get = lambda key, default=None: config.get(key, config.get(f"--{key}", default))  # noqa: E731
    name = {"cosine_with_warmup": "cosine"}.get(get("lr_scheduler"), get("lr_scheduler"))
    two_groups = bool(get("train_text_encoder")) and get("text_encoder_lr") is not None
    if name == "cosine":
        return {268, 255} | ({227} if not get("lr_warmup_steps", 0) else set()) | ({269} if two_groups else set())
    if name == "cosine_with_restarts":
        return {372, 354} | ({374} if two_groups else set())
    if name == "sine":
        return {424, 412}
    return set()


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_quirk_warned_exactly_when_it_applies(name: str, tmp_path: Path) -> None:
    run = read_case(CASES[name], tmp_path)
    assert cited_lines(run) == expected_quirks(CASES[name])
    for warning in run.warnings:
        assert warning.severity == "warning" and warning.line is not None
        assert COMMIT[:10] in str(warning)


def test_cosine_quirk_names_the_wave_and_its_key_line() -> None:
    run = read_run(str(DATA / "configs" / "ace_step-v1-0.json"))
    (wave,) = [w for w in run.warnings if "custom_schedule.py:255" in str(w)]
    assert "period of 2 x lr_warmup_steps = 100" in str(wave) and wave.key == "lr_scheduler"
    text = (DATA / "configs" / "ace_step-v1-0.json").read_text().splitlines()
    assert '"lr_scheduler"' in text[wave.line - 1]
    lrs = run.lrs(np.arange(200))["unet"]
    assert lrs[0] == lrs[100] == 5e-05 and lrs[50] < 1e-6  # a wave: back at the top after 2 x 50 steps


def test_cosine_with_restarts_stays_constant(tmp_path: Path) -> None:
    run = read_case(CASES["cosine_with_restarts"], tmp_path)
    lrs = run.lrs(np.arange(run.run_length))["unet"]
    assert np.all(lrs == lrs[0])


def test_schedule_free_optimizer_disables_the_schedule(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    config = {"model_family": "flux", "optimizer": "adamw_schedulefree", "lr_scheduler": "linear"}
    path.write_text(json.dumps({**config, "learning_rate": 1e-4, "lr_warmup_steps": 5, "max_train_steps": 20}))
    run = read_run(str(path))
    assert np.all(run.lrs(np.arange(20))["unet"] == 1e-4)
    assert any("optimizer_param.py:252" in str(w) for w in run.warnings)


def test_lr_scale_scales_learning_rate_only(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    config = {"model_family": "sdxl", "lr_scheduler": "constant", "learning_rate": 1e-5, "lr_scale": True}
    config.update(train_batch_size=2, gradient_accumulation_steps=3, max_train_steps=10)
    config.update(train_text_encoder=True, text_encoder_lr=1)
    path.write_text(json.dumps(config))
    run = read_run(str(path), RunFacts(num_processes=2))
    assert run.groups == {"unet": 1e-5 * 12, "text_encoder": 1.0}
    assert any("trainer.py:1197" in str(w) for w in run.warnings)


# ---- keys, counting, recognition ----------------------------------------------------------------
def test_toml_with_dashed_keys_and_later_key_wins(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        'model_family = "flux"\nlr_scheduler = "cosine"\n"--lr_scheduler" = "linear"\n'
        '"--learning_rate" = "2e-4"\nlr_warmup_steps = "3"\nmax_train_steps = 30\n'
    )
    document = read_document(str(path))
    assert TRAINER.recognise(document) == 3 and recognise(document).name == "simpletuner"
    run = read_run(str(path))
    assert run.groups == {"unet": 2e-4} and run.resolved.name == "linear" and run.resolved.warmup == 3


def test_epochs_need_data_then_count_like_simpletuner(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    config = {"model_family": "flux", "lr_scheduler": "linear", "num_train_epochs": 4}
    path.write_text(json.dumps({**config, "train_batch_size": 3, "gradient_accumulation_steps": 2}))
    unknown = read_run(str(path))
    assert unknown.run_length is None and "--steps-per-epoch" in unknown.counting
    # 20 samples / batch 3 -> 7 batches -> 4 steps per epoch (ceil) x 4 epochs
    assert read_run(str(path), RunFacts(samples_per_epoch=20)).run_length == 16
    assert read_run(str(path), RunFacts(steps_per_epoch=9)).run_length == 36


def test_other_trainers_files_not_recognised(tmp_path: Path) -> None:
    onetrainer = tmp_path / "onetrainer.json"
    onetrainer.write_text(json.dumps({"__version": 6, "training_method": "LORA", "model_type": "FLUX_DEV_1"}))
    assert TRAINER.recognise(read_document(str(onetrainer))) == 0
    kohya = tmp_path / "kohya.toml"
    kohya.write_text('learning_rate = 1e-4\nlr_scheduler = "cosine"\nmax_train_steps = 100\n')
    assert TRAINER.recognise(read_document(str(kohya))) == 0
    assert recognise(read_document(str(kohya))).name == "sd-scripts"


# ---- bad input ----------------------------------------------------------------------------------
BAD = [
    ({"text_encoder_lr": 5e-05, "train_text_encoder": True}, "text_encoder_lr", "int()"),
    ({"lr_warmup_steps": 10.0}, "lr_warmup_steps", "int()"),
    ({"lr_warmup_steps": "ten"}, "lr_warmup_steps", "whole number"),
    ({"learning_rate": [1e-4]}, "learning_rate", "number"),
    ({"lr_scheduler": "cosine_annealing"}, "lr_scheduler", "one of linear"),
    ({"lr_scheduler": "polynomial", "lr_end": 1e-3}, "lr_end", "below learning_rate"),
    ({"lr_scheduler": "sine", "lr_warmup_steps": 0}, "lr_warmup_steps", "custom_schedule.py:392"),
    ({"lr_scheduler": "cosine_with_restarts", "lr_warmup_steps": 0}, "lr_warmup_steps", "custom_schedule.py:324"),
    ({"train_text_encoder": "maybe"}, "train_text_encoder", "true or false"),
]


@pytest.mark.parametrize(("change", "key", "says"), BAD, ids=[b[1] + "-" + str(i) for i, b in enumerate(BAD)])
def test_bad_values_name_file_line_and_key(change: dict, key: str, says: str, tmp_path: Path) -> None:
    config = {"model_family": "sdxl", "learning_rate": 1e-4, "lr_scheduler": "linear", "max_train_steps": 50}
    config.update(change)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config, indent=2))
    with pytest.raises(ConfigError) as info:
        read_run(str(path))
    text = str(info.value)
    line = next(i for i, row in enumerate(path.read_text().splitlines(), 1) if f'"{key}"' in row)
    assert f"{path}:{line}" in text and key in text and says in text


def test_malformed_json_is_located(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "model_family": "flux",\n  "lr_scheduler": "linear",\n}\n')
    with pytest.raises(ConfigError) as info:
        read_run(str(path), trainer="simpletuner")
    assert f"{path}:4" in str(info.value)


# ---- writing ------------------------------------------------------------------------------------
HEAD = "learning_rate = 1e-4\nunet_lr = 1e-4\nmax_train_steps = 100\n"
GRID = {
    "cosine_warmup": ('lr_scheduler = "cosine"\nlr_warmup_steps = 10\n', "cosine is a wave"),
    "linear": ('lr_scheduler = "linear"\nlr_warmup_steps = 10\n', None),
    "constant_with_warmup": ('lr_scheduler = "constant_with_warmup"\nlr_warmup_steps = 10\n', None),
    "restarts3": ('lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 3\n', "no restarting schedule"),
    "polynomial2": ('lr_scheduler = "polynomial"\nlr_scheduler_power = 2.0\nlr_warmup_steps = 5\n', None),
    "rex": ('lr_scheduler = "rex"\nlr_warmup_steps = 5\n', "no restarting schedule"),
    "wsd": ('lr_scheduler = "warmup_stable_decay"\nlr_warmup_steps = 5\nlr_decay_steps = 20\n', "none of"),
    "linear_floor": (
        'lr_scheduler = "linear"\nlr_warmup_steps = 5\nlr_scheduler_args = { min_lr_ratio = 0.2 }\n',
        None,
    ),
    "cosine_floor": ('lr_scheduler = "cosine_with_min_lr"\nlr_scheduler_min_lr_ratio = 0.1\n', "none of"),
    "short_horizon": ('lr_scheduler = "linear"\n[lora_sched]\nschedule_steps = 150\n', "over 150 steps"),
}


@pytest.mark.parametrize("name", sorted(GRID))
def test_write_runs_the_schedule_or_refuses(name: str, tmp_path: Path) -> None:
    body, refusal = GRID[name]
    run = toml_run(tmp_path, HEAD + body)
    if refusal is not None:
        with pytest.raises(ConfigError) as info:
            write_run(run, "simpletuner")
        assert refusal in str(info.value) and "SimpleTuner" in str(info.value)
        return
    for facts in (RunFacts(), RunFacts(num_processes=2)):
        _, back = write_and_read(run, tmp_path, facts)
        steps = np.arange(run.run_length)
        assert back.run_length == run.run_length and not back.warnings
        assert back.shared == {"text_encoder": "unet"}  # the text encoder at learning_rate: in its group
        assert_same(back.lrs(steps), run.lrs(steps))


def test_two_groups_with_fractional_text_encoder_lr_refused(tmp_path: Path) -> None:
    run = toml_run(tmp_path, HEAD + 'text_encoder_lr = 5e-5\nlr_scheduler = "linear"\n')
    with pytest.raises(ConfigError) as info:
        write_run(run, "simpletuner")
    assert "int()" in str(info.value) and "cmd_args.py:448" in str(info.value)


def test_two_groups_written_when_simpletuner_can_parse_them(tmp_path: Path) -> None:
    same = toml_run(tmp_path, HEAD + 'text_encoder_lr = 1e-4\nlr_scheduler = "linear"\nlr_warmup_steps = 4\n')
    text, back = write_and_read(same, tmp_path)
    assert json.loads(text)["train_text_encoder"] is True and "text_encoder_lr" not in json.loads(text)
    steps = np.arange(100)
    np.testing.assert_allclose(back.lrs(steps)["unet"], same.lrs(steps)["text_encoder"], rtol=1e-9, atol=0)
    whole = toml_run(
        tmp_path,
        "learning_rate = 0.5\nunet_lr = 0.5\ntext_encoder_lr = 1.0\nmax_train_steps = 60\n"
        'lr_scheduler = "polynomial"\nlr_scheduler_power = 2.0\nlr_scheduler_args = { lr_end = 0.01 }\n',
    )
    text, back = write_and_read(whole, tmp_path)
    assert json.loads(text)["text_encoder_lr"] == 1
    assert_same(back.lrs(np.arange(60)), whole.lrs(np.arange(60)))


def test_missing_warmup_located_at_lr_scheduler(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "model_family": "flux",\n  "lr_scheduler": "sine",\n  "max_train_steps": 9\n}\n')
    with pytest.raises(ConfigError) as info:
        read_run(str(path))
    assert f"{path}:3: lr_warmup_steps" in str(info.value)


def test_write_of_a_run_without_catalogue_curve_refused() -> None:
    run = read_run(str(DATA / "configs" / "ace_step-v1-0.json"))
    with pytest.raises(ConfigError, match="no lora_sched schedule"):
        write_run(run, "simpletuner")


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if "written_from" in c))
def test_written_files_checked_by_simpletuners_code(name: str, tmp_path: Path) -> None:
    """The writer's output for these runs is what the tool ran through SimpleTuner's own scheduler."""
    case = CASES[name]
    run = toml_run(tmp_path, case["written_from"])
    assert json.loads(write_run(run, "simpletuner")) == case["config"]
    _, rows = golden(case)
    assert_same({"unet": run.lrs(np.arange(run.run_length))["unet"]}, {"unet": rows[:, 1]})

"""lora-easy: LoRA_Easy_Training_Scripts' UI TOML, read as its backend runs it, and written back.

Goldens (tests/data/trainers/lora-easy/, tools/gen_lora_easy_ui_golden.py): the UI's own save code
made configs/; the backend's own mapping gave golden/NAME.json; sd-scripts' get_scheduler_fix on
that mapping gave golden/NAME.csv; written/ holds files lora_sched wrote, run the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lora_sched.errors import ConfigError
from lora_sched.trainers import lora_easy, read_document, sd_scripts
from lora_sched.trainers.base import RunFacts, TrainerRun

DATA = Path(__file__).parent / "data" / "trainers" / "lora-easy"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
CASES = MANIFEST["cases"]
RUNS = [name for name, case in CASES.items() if "run_length" in case]
CORPUS = sorted(p.stem for p in (DATA / "configs").glob("*.toml"))

#: the quirks each corpus file shows (keys of its warnings)
QUIRKS = {
    "rex_cycles_steps": {"optimizer_args.args.warmup_ratio", "optimizer_args.args.lr_scheduler_num_cycles"},
    "cawr_epochs": {"optimizer_args.args.warmup_ratio"},
    "rex_no_cycles": {"optimizer_args.args.lr_scheduler_type"},
    "polynomial_te_zero": {"optimizer_args.args.text_encoder_lr"},
}


def _read(path: Path, facts: RunFacts | None = None) -> TrainerRun:
    return lora_easy.read(read_document(str(path)), facts or RunFacts())


def _facts(name: str) -> RunFacts:
    return RunFacts(steps_per_epoch=CASES[name].get("steps_per_epoch"))


def _golden(name: str) -> tuple[list[str], np.ndarray]:
    path = DATA / "golden" / f"{name}.csv"
    header = path.read_text().split("\n", 1)[0].split(",")[1:]
    return [h.removeprefix("lr_") for h in header], np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def _assert_lrs(run: TrainerRun, name: str) -> None:
    groups, table = _golden(name)
    assert list(run.groups) == groups  # sd-scripts' group order: text encoder, then U-Net
    assert run.run_length == len(table) == CASES[name]["run_length"]
    lrs = run.lrs(np.arange(run.run_length))
    for column, group in enumerate(groups, start=1):
        np.testing.assert_allclose(lrs[group], table[:, column], rtol=1e-9, atol=0)


def _file(name: str) -> Path:
    return DATA / CASES[name]["file"]


def test_corpus_has_provenance_for_every_file() -> None:
    provenance = json.loads((DATA / "configs" / "PROVENANCE.json").read_text())
    assert sorted(provenance) == [f"{n}.toml" for n in CORPUS]
    assert all(p["commit"] == lora_easy.UI_COMMIT and p["repository"] == lora_easy.UI_REPO for p in provenance.values())


@pytest.mark.parametrize("name", CORPUS + [f"written/{p.stem}" for p in (DATA / "written").glob("*.toml")])
def test_recognised_as_lora_easy_not_sd_scripts(name: str) -> None:
    path = DATA / (f"{name}.toml" if "/" in name else f"configs/{name}.toml")
    document = read_document(str(path))
    assert lora_easy.recognise(document) == 3
    assert sd_scripts.recognise(document) < 3


@pytest.mark.parametrize("name", RUNS)
def test_curve_is_what_the_backend_and_sd_scripts_run(name: str) -> None:
    _assert_lrs(_read(_file(name), _facts(name)), name)


@pytest.mark.parametrize("name", [n for n in RUNS if not n.startswith("written_")])
def test_mapping_is_the_backends(name: str) -> None:
    """The flat sd-scripts values replayed here are those the backend's own code wrote."""
    document = read_document(str(_file(name)))
    mapped = lora_easy.flatten(document)
    steps, _length, _how = lora_easy.run_steps(document, mapped, _facts(name))
    lora_easy.apply_steps(document, mapped, steps)
    golden = json.loads((DATA / "golden" / f"{name}.json").read_text())["config_toml"]
    keys = set(lora_easy.SCHEDULE_KEYS) | {"max_train_steps", "max_train_epochs", "gradient_accumulation_steps"}
    ours = {k: v for k, v in mapped.args.items() if k in keys}
    assert ours == {k: v for k, v in golden.items() if k in keys}


@pytest.mark.parametrize("name", CORPUS)
def test_quirks_warn_exactly_where_they_apply(name: str) -> None:
    run = _read(DATA / "configs" / f"{name}.toml", _facts(name) if name in CASES else RunFacts())
    quirks = [w for w in run.warnings if w.expected == "the curve its name promises"]
    assert {w.key for w in quirks} == QUIRKS.get(name, set())
    for w in quirks:
        assert w.line is not None and w.file.endswith(f"{name}.toml")
        assert lora_easy.BACKEND_COMMIT[:10] in w.hint or lora_easy.UI_COMMIT[:10] in w.hint


def test_quirks_are_declared_with_full_commits() -> None:
    assert lora_easy.TRAINER.quirks == lora_easy.QUIRKS
    assert all(len(q.cited.commit) == 40 and q.cited.line > 0 for q in lora_easy.QUIRKS)


def test_remainder_cycle_is_gone_when_steps_divide(tmp_path: Path) -> None:
    text = (
        (DATA / "configs" / "rex_cycles_steps.toml")
        .read_text()
        .replace("max_train_steps = 1000", "max_train_steps = 999")
    )
    (tmp_path / "a.toml").write_text(text)
    keys = {w.key for w in _read(tmp_path / "a.toml").warnings if w.severity == "warning"}
    assert keys == {"optimizer_args.args.warmup_ratio"}


def test_partial_file_the_backend_refuses() -> None:
    run = _read(DATA / "configs" / "optimizer_only.toml")
    assert json.loads((DATA / "golden" / "optimizer_only.json").read_text())["backend"] == "refused"
    assert run.run_length == 1600 and dict(run.groups) == {"text_encoder": 1e-4, "unet": 1e-4}
    assert np.all(run.lrs(np.arange(1600))["unet"] == 1e-4)
    notice = [w for w in run.warnings if w.severity == "notice" and "pretrained_model_name_or_path" in w.found]
    assert notice and "output_dir" in notice[0].found


def test_only_optimizer_args_is_lora_easy(tmp_path: Path) -> None:
    path = tmp_path / "opt.toml"
    path.write_text('[optimizer_args.args]\nlearning_rate = 3e-4\nlr_scheduler = "linear"\n')
    document = read_document(str(path))
    assert lora_easy.recognise(document) == 3 > sd_scripts.recognise(document)
    run = lora_easy.read(document, RunFacts())
    assert run.summary.startswith("linear") and run.run_length == 1600
    assert run.lrs(np.array([0]))["unet"][0] == pytest.approx(3e-4, rel=1e-12)


def test_sd_scripts_file_is_not_lora_easy(tmp_path: Path) -> None:
    path = tmp_path / "kohya.toml"
    path.write_text('learning_rate = 1e-4\nlr_scheduler = "cosine"\nmax_train_steps = 10\n[optimizer_args]\nx = 1\n')
    assert lora_easy.recognise(read_document(str(path))) == 0


# ---- counting ------------------------------------------------------------------------------------
def test_epochs_need_the_data_or_a_fact() -> None:
    path = _file("defaults_cosine_epochs")
    run = _read(path)
    assert run.run_length is None and "--steps-per-epoch" in run.counting
    by_samples = _read(path, RunFacts(samples_per_epoch=40))  # 20 images x 2 repeats, batch 2
    assert by_samples.run_length == 200 and "40 samples" in by_samples.counting
    _assert_lrs(by_samples, "defaults_cosine_epochs")


def test_epochs_with_accumulation_and_buckets() -> None:
    run = _read(_file("restarts_buckets_epochs"), RunFacts(steps_per_epoch=10))
    assert run.run_length == 60 and "6 epochs" in run.counting
    guess = _read(_file("restarts_buckets_epochs"), RunFacts(samples_per_epoch=37))
    assert "one bucket assumed" in guess.counting


# ---- writing ---------------------------------------------------------------------------------------
WRITE_GRID = {
    "cosine_warmup": 'lr_scheduler = "cosine"\nlr_warmup_steps = 10',
    "linear": 'lr_scheduler = "linear"\nlr_warmup_steps = 3',
    "constant_with_warmup": 'lr_scheduler = "constant_with_warmup"\nlr_warmup_steps = 17',
    "restarts_3": 'lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 3\nlr_warmup_steps = 5',
    "polynomial_2": 'lr_scheduler = "polynomial"\nlr_scheduler_power = 2.0\nlr_warmup_steps = 9',
    "rex": 'lr_scheduler = "rex"\nlr_warmup_steps = 10',
    "wsd": 'lr_scheduler = "warmup_stable_decay"\nlr_warmup_steps = 10\nlr_decay_steps = 30',
    "min_lr_floor": 'lr_scheduler = "cosine_with_min_lr"\nlr_scheduler_min_lr_ratio = 0.1\nlr_warmup_steps = 8',
    "warmup_start": 'lr_scheduler = "cosine"\nlr_warmup_steps = 10\nwarmup_start = 0.1',
}


def _source(tmp_path: Path, schedule: str, steps: int = 97) -> TrainerRun:
    path = tmp_path / "src.toml"
    path.write_text(
        f"learning_rate = 1e-4\nunet_lr = 1e-4\ntext_encoder_lr = 5e-5\n{schedule}\nmax_train_steps = {steps}\n"
    )
    return sd_scripts.read(read_document(str(path)), RunFacts())


@pytest.mark.parametrize("name", WRITE_GRID)
def test_written_file_runs_the_same_lrs(tmp_path: Path, name: str) -> None:
    run = _source(tmp_path, WRITE_GRID[name])
    out = tmp_path / "out.toml"
    out.write_text(lora_easy.write(run, RunFacts()))
    back = _read(out)
    assert lora_easy.recognise(read_document(str(out))) == 3
    assert back.run_length == run.run_length and set(back.groups) == {"unet", "text_encoder"}
    steps = np.arange(run.run_length)
    ours, want = back.lrs(steps), run.lrs(steps)
    for group in ("unet", "text_encoder"):
        np.testing.assert_allclose(ours[group], want[group], rtol=1e-9, atol=1e-300)


def test_builtin_names_are_written_where_they_fit(tmp_path: Path) -> None:
    text = lora_easy.write(_source(tmp_path, WRITE_GRID["restarts_3"], 150), RunFacts())
    assert 'lr_scheduler = "cosine_with_restarts"' in text and "lr_scheduler_type" not in text
    assert "warmup_ratio = " in text
    rex = lora_easy.write(_source(tmp_path, WRITE_GRID["rex"]), RunFacts())
    assert 'lr_scheduler_type = "lora_sched.torch.LoraSchedLR"' in rex


def test_lora_easy_class_is_written_for_its_own_run() -> None:
    run = _read(_file("rex_cycles_steps"))
    text = lora_easy.write(run, RunFacts())
    assert "RexAnnealingWarmRestarts" in text and "first_cycle_max_steps = 333" in text


def test_untrained_text_encoder_is_written_as_unet_only(tmp_path: Path) -> None:
    path = tmp_path / "src.toml"
    path.write_text(
        'learning_rate = 1e-4\nnetwork_train_unet_only = true\nlr_scheduler = "linear"\nmax_train_steps = 50\n'
    )
    text = lora_easy.write(sd_scripts.read(read_document(str(path)), RunFacts()), RunFacts())
    assert "network_train_unet_only = true" in text and "text_encoder_lr" not in text
    out = tmp_path / "out.toml"
    out.write_text(text)
    assert list(_read(out).groups) == ["unet"]


@pytest.mark.parametrize("name", [p.stem for p in (DATA / "written").glob("*.toml")])
def test_written_goldens_are_what_write_makes(tmp_path: Path, name: str) -> None:
    src = tmp_path / "src.toml"
    src.write_text(CASES[f"written_{name}"]["from"])
    text = lora_easy.write(sd_scripts.read(read_document(str(src)), RunFacts()), RunFacts())
    assert text == (DATA / "written" / f"{name}.toml").read_text()


def test_refuses_a_curve_without_a_schedule() -> None:
    run = TrainerRun("other", "x.json", {"unet": 1e-4}, 10, "", own_lrs=lambda s: {"unet": np.ones(len(s))})
    with pytest.raises(ConfigError, match="no lora_sched schedule expresses"):
        lora_easy.write(run, RunFacts())


def test_refuses_two_text_encoder_lrs(tmp_path: Path) -> None:
    run = _source(tmp_path, WRITE_GRID["linear"])
    run = run._replace(groups={"unet": 1e-4, "text_encoder": 5e-5, "text_encoder_2": 2e-5})
    with pytest.raises(ConfigError, match="one text encoder LR"):
        lora_easy.write(run, RunFacts())


# ---- bad input ---------------------------------------------------------------------------------------
BAD = {
    "ratio_text": (
        '[general_args.args]\nmax_train_steps = 100\n[optimizer_args.args]\nwarmup_ratio = "x"\n',
        4,
        "warmup_ratio",
    ),
    "args_not_table": ("[optimizer_args]\nargs = 3\n", 2, "optimizer_args.args"),
    "scheduler_args_list": (
        '[general_args.args]\nmax_train_steps = 9\n[optimizer_args.args]\nlr_scheduler_args = ["a=1"]\n',
        4,
        "lr_scheduler_args",
    ),
    "lr_text": ('[optimizer_args.args]\nlearning_rate = "fast"\nlr_scheduler = "cosine"\n', 2, "learning_rate"),
    "steps_float": (
        "[general_args.args]\nmax_train_steps = 10.5\n[train_mode]\ntrain_mode = 'lora'\n",
        2,
        "max_train_steps",
    ),
    "ratio_without_length": (
        '[general_args.args]\nseed = 1\n[optimizer_args.args]\nwarmup_ratio = 0.1\nlr_scheduler = "cosine"\n',
        1,
        "general_args.args",
    ),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_values_are_located(tmp_path: Path, name: str) -> None:
    text, line, key = BAD[name]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        _read(path)
    message = str(info.value)
    assert f"bad.toml:{line}" in message and key in message


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[optimizer_args.args]\nlearning_rate = = 1\n")
    with pytest.raises(ConfigError, match=r"broken.toml:2"):
        read_document(str(path))


def test_sd_scripts_export_keeps_learning_rate_as_l0(tmp_path: Path) -> None:
    """learning_rate 1e-4 with unet_lr 2e-4: polynomial's absolute lr_end is relative to learning_rate
    (the optimizer's default LR), so the sd-scripts export keeps it and sets unet_lr / text_encoder_lr."""
    run = _read(DATA / "configs" / "polynomial_te_zero.toml", RunFacts(samples_per_epoch=400))
    text = sd_scripts.write(run, RunFacts(steps_per_epoch=run.run_length))
    path = tmp_path / "out.toml"
    path.write_text(text)
    back = sd_scripts.read(read_document(str(path)), RunFacts())
    assert "learning_rate = 0.0001" in text and "unet_lr = 0.0002" in text
    steps = np.arange(run.run_length)
    want, got = run.lrs(steps), back.lrs(steps)
    for group in want:
        np.testing.assert_allclose(got[group], want[group], rtol=1e-9, atol=0, err_msg=group)

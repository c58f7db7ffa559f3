"""OneTrainer's config JSON: recognised, read as OneTrainer runs it (goldens from its own scheduler code
at the recorded commit, tools/gen_onetrainer_golden.py), its quirks warned, and written back exactly."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from lora_sched.errors import ConfigError
from lora_sched.trainers import MODULES, RunFacts, read_document, read_run
from lora_sched.trainers.onetrainer import COMMIT, TRAINER

DATA = Path(__file__).parent / "data" / "trainers" / "onetrainer"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
CASES = sorted(MANIFEST["cases"])
CORPUS = sorted(p.name for p in (DATA / "configs").glob("*.json") if p.name != "PROVENANCE.json")

#: the quirks each corpus file sets off (keys of its warnings)
QUIRKS = {
    "preset_flux_lora.json": {"learning_rate_warmup_steps"},
    "preset_pixart_sigma_lora.json": {"learning_rate_warmup_steps"},
    "preset_sd15_embedding.json": set(),
    "preset_sd15_lora.json": {"learning_rate_warmup_steps", "text_encoder.stop_training_after"},
    "preset_sdxl_lora.json": {"learning_rate_warmup_steps"},
    "preset_wuerstchen2_lora.json": {"learning_rate_warmup_steps", "text_encoder.stop_training_after"},
    "ui_cosine_accum.json": {"learning_rate_warmup_steps"},
    "ui_cosine_restarts.json": {"learning_rate_warmup_steps", "learning_rate_scheduler"},
    "ui_custom_cosine_annealing.json": {"learning_rate_scheduler"},
    "ui_hard_restarts.json": set(),
    "ui_hard_restarts_fractional.json": set(),
    "ui_linear_floor.json": set(),
    "ui_rex_scaler.json": {"learning_rate_scaler"},
    "ui_schedule_free.json": {"learning_rate_scheduler"},
}


def _read(rel: str, facts: RunFacts | None = None):
    return TRAINER.read(read_document(str(DATA / rel)), facts or RunFacts())


def _golden(case: dict) -> dict[str, np.ndarray]:
    rows = np.genfromtxt(DATA / case["csv"], delimiter=",", names=True)
    return {role: np.atleast_1d(rows[f"lr_{role}"]) for role in case["groups"]}


def _same(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for role in want:
        np.testing.assert_allclose(got[role], want[role], rtol=1e-9, atol=0, err_msg=role)


def _other_json_trainers() -> list:
    """Every other trainer module present with a TRAINER that reads JSON."""
    here = Path(__file__).parent.parent / "lora_sched" / "trainers"
    out = []
    for name, module in MODULES.items():
        if name == "onetrainer" or not (here / f"{module}.py").exists():
            continue
        trainer = getattr(importlib.import_module(f"lora_sched.trainers.{module}"), "TRAINER", None)
        if trainer is not None and "json" in trainer.formats:
            out.append(trainer)
    return out


def test_corpus_covers_the_schedulers():
    assert len(CORPUS) >= 5
    schedulers = {
        json.loads((DATA / "configs" / n).read_text()).get("learning_rate_scheduler", "CONSTANT") for n in CORPUS
    }
    assert {
        "CONSTANT",
        "COSINE",
        "COSINE_WITH_RESTARTS",
        "COSINE_WITH_HARD_RESTARTS",
        "REX",
        "LINEAR",
        "CUSTOM",
    } <= schedulers
    provenance = json.loads((DATA / "configs" / "PROVENANCE.json").read_text())
    assert set(provenance) == set(CORPUS)
    assert all(p["commit"] == COMMIT == MANIFEST["commit"] for p in provenance.values())


@pytest.mark.parametrize("name", CORPUS)
def test_recognised_as_onetrainer_only(name):
    document = read_document(str(DATA / "configs" / name))
    assert TRAINER.recognise(document) == 3
    for other in _other_json_trainers():
        assert other.recognise(document) < 3, other.name
    assert (
        read_run(str(DATA / "configs" / name), RunFacts(steps_per_epoch=4), trainer="onetrainer").trainer
        == "onetrainer"
    )


def test_not_recognising_other_json():
    from lora_sched.trainers.documents import parse

    assert TRAINER.recognise(parse("x.json", '{"lr_scheduler": "cosine", "learning_rate": 1e-4}')) == 0
    assert TRAINER.recognise(parse("x.toml", 'model_type = "STABLE_DIFFUSION_15"\n')) == 0


@pytest.mark.parametrize("rel", CASES)
def test_lrs_equal_onetrainer_scheduler(rel):
    case = MANIFEST["cases"][rel]
    run = _read(rel, RunFacts(steps_per_epoch=case["steps_per_epoch"]))
    assert run.run_length == case["run_length"]
    _same(run.lrs(np.arange(run.run_length)), _golden(case))


@pytest.mark.parametrize("name", CORPUS)
def test_quirks_warned_exactly_when_they_apply(name):
    case = MANIFEST["cases"][f"configs/{name}"]
    run = _read(f"configs/{name}", RunFacts(steps_per_epoch=case["steps_per_epoch"]))
    assert {w.key for w in run.warnings} == QUIRKS[name]
    for warning in run.warnings:
        assert f"@ {COMMIT[:10]}" in warning.hint and "Nerogar/OneTrainer" in warning.hint


def test_quirk_texts_name_the_fix():
    accum = _read("configs/ui_cosine_accum.json", RunFacts(steps_per_epoch=48))
    (warmup,) = accum.warnings
    assert "divided by gradient_accumulation_steps 4: 25 optimizer steps" in warmup.found
    assert "x 4" in warmup.hint and "create.py:1128" in warmup.hint
    restarts = _read("configs/ui_cosine_restarts.json", RunFacts(steps_per_epoch=12))
    scheduler = next(w for w in restarts.warnings if w.key == "learning_rate_scheduler")
    assert "climbs back up" in scheduler.found and "COSINE_WITH_HARD_RESTARTS" in scheduler.hint
    assert restarts.warnings[0].line is not None


def test_catalogue_expresses_the_builtin_names():
    def name_of(rel, spe):
        run = _read(rel, RunFacts(steps_per_epoch=spe))
        return None if run.own_lrs is not None else (run.resolved.name, dict(run.resolved.params))

    assert name_of("configs/ui_cosine_restarts.json", 12) == ("cosine", {"num_cycles": 4.0, "min_lr_ratio": 0.0})
    assert name_of("configs/ui_hard_restarts.json", 30)[0] == "cosine_with_restarts"
    assert name_of("configs/ui_rex_scaler.json", 25)[0] == "rex"
    assert name_of("configs/ui_hard_restarts_fractional.json", 20) is None  # 1.5 hard cycles: OneTrainer's own
    assert name_of("configs/ui_custom_cosine_annealing.json", 15) is None  # behind OneTrainer's warmup


def test_counting_from_samples_and_unknown():
    run = _read("configs/preset_sd15_lora.json", RunFacts(samples_per_epoch=43))  # batch 4: 10 full batches
    assert run.run_length == 1000 and "= 10 batches" in run.counting
    unknown = _read("configs/preset_sd15_lora.json")
    assert unknown.run_length is None and "--steps-per-epoch" in unknown.counting
    assert list(unknown.groups) == ["text_encoder", "unet"]  # text encoders first, as OneTrainer adds them


# ---- writing ---------------------------------------------------------------------------------------
_TOML = "learning_rate = 1e-4\nunet_lr = 1e-4\ntext_encoder_lr = 5e-5\nmax_train_steps = 120\nlr_warmup_steps = 12\n"
GRID = {
    "cosine": ('lr_scheduler = "cosine"\n', "COSINE"),
    "linear": ('lr_scheduler = "linear"\n', "LINEAR"),
    "constant_with_warmup": ('lr_scheduler = "constant_with_warmup"\n', "CONSTANT"),
    "restarts3": ('lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 3\n', "COSINE_WITH_HARD_RESTARTS"),
    "polynomial2": ('lr_scheduler = "polynomial"\nlr_scheduler_power = 2.0\n', "CUSTOM"),
    "rex": ('lr_scheduler = "rex"\n', "REX"),
    "wsd": ('lr_scheduler = "warmup_stable_decay"\nlr_scheduler_args = ["decay=0.3"]\n', "CUSTOM"),
    "floor": ('lr_scheduler = "cosine"\nlr_scheduler_args = ["min_lr_ratio=0.1"]\n', "COSINE"),
    "warmup_start": ('lr_scheduler = "cosine"\n[lora_sched]\nwarmup_start = 0.1\n', "CUSTOM"),
}


def _kohya_run(tmp_path, body: str):
    path = tmp_path / "kohya.toml"
    head, _, section = body.partition("[lora_sched]")
    path.write_text(_TOML + head + (f"[lora_sched]{section}" if section else ""))
    return read_run(str(path), trainer="sd-scripts")


def _write_and_read(tmp_path, run, spe: int):
    text = TRAINER.write(run, RunFacts(steps_per_epoch=spe))
    out = tmp_path / "onetrainer.json"
    out.write_text(text)
    return json.loads(text), TRAINER.read(read_document(str(out)), RunFacts(steps_per_epoch=spe))


@pytest.mark.parametrize("case", sorted(GRID))
def test_write_then_read_gives_the_same_lrs(tmp_path, case):
    body, name = GRID[case]
    run = _kohya_run(tmp_path, body)
    data, back = _write_and_read(tmp_path, run, 12)
    assert data["learning_rate_scheduler"] == name
    assert back.run_length == run.run_length == 120 and back.warnings == ()
    steps = np.arange(120)
    want = run.lrs(steps)
    _same(back.lrs(steps), {"text_encoder": want["text_encoder"], "unet": want["unet"]})


def test_write_compensates_the_accumulation(tmp_path):
    run = _read("configs/ui_cosine_accum.json", RunFacts(steps_per_epoch=48))
    data, back = _write_and_read(tmp_path, run, 48)
    assert data["learning_rate_warmup_steps"] == 25 * 4 and data["gradient_accumulation_steps"] == 4
    assert data["learning_rate_scheduler"] == "COSINE" and data["learning_rate_min_factor"] == 0.1
    _same(back.lrs(np.arange(120)), run.lrs(np.arange(120)))


@pytest.mark.parametrize("rel", [c for c in CASES if c.startswith("written/")])
def test_written_goldens_are_what_write_produces(tmp_path, rel):
    case = MANIFEST["cases"][rel]
    path = tmp_path / "source.toml"
    path.write_text(case["source_toml"])
    text = TRAINER.write(read_run(str(path), trainer="sd-scripts"), RunFacts(steps_per_epoch=case["steps_per_epoch"]))
    assert text == (DATA / rel).read_text()


def test_write_refusals(tmp_path):
    run = _kohya_run(tmp_path, 'lr_scheduler = "cosine"\n')
    with pytest.raises(ConfigError, match="--steps-per-epoch"):
        TRAINER.write(run, RunFacts())
    with pytest.raises(ConfigError, match="not a whole number of epochs of 7 batches"):
        TRAINER.write(run, RunFacts(steps_per_epoch=7))
    own = _read("configs/ui_hard_restarts_fractional.json", RunFacts(steps_per_epoch=20))
    with pytest.raises(ConfigError, match="which no lora_sched schedule expresses"):
        TRAINER.write(own, RunFacts(steps_per_epoch=20))
    embedding = _read("configs/preset_sd15_embedding.json", RunFacts(steps_per_epoch=3))
    with pytest.raises(ConfigError, match="param groups embedding"):
        TRAINER.write(embedding, RunFacts(steps_per_epoch=3))


# ---- bad input -------------------------------------------------------------------------------------
def _bad(tmp_path, text: str, facts: RunFacts | None = None) -> str:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        TRAINER.read(read_document(str(path)), facts or RunFacts(steps_per_epoch=5))
    return str(err.value)


@pytest.mark.parametrize(
    ("text", "where", "key"),
    [
        ('{\n  "training_method": "LORA",\n  "learning_rate": "fast"\n}', ":3", "learning_rate"),
        ('{\n  "training_method": "LORA",\n  "epochs": [3]\n}', ":3", "epochs"),
        (
            '{\n  "training_method": "LORA",\n  "learning_rate_scheduler": "COSINE_FOO"\n}',
            ":3",
            "learning_rate_scheduler",
        ),
        ('{\n  "training_method": "LORA",\n  "unet": {\n    "learning_rate": true\n  }\n}', ":4", "unet.learning_rate"),
        ('{\n  "training_method": "LORA",\n  "batch_size": 0\n}', ":3", "batch_size"),
        ('{\n  "learning_rate_scheduler": "ADAFACTOR"\n}', ":2", "learning_rate_scheduler"),
        (
            '{\n  "learning_rate_scheduler": "CUSTOM",\n  "custom_learning_rate_scheduler": "x.Y",\n'
            '  "scheduler_params": [\n    {"key": "T_max", "value": "not a literal"}\n  ]\n}',
            ":5",
            "scheduler_params[0].value",
        ),
        (
            '{\n  "learning_rate_scheduler": "CUSTOM",\n  "custom_learning_rate_scheduler": "os.system"\n}',
            ":3",
            "custom_learning_rate_scheduler",
        ),
        ('{\n  "training_method": "LORA",\n  "epochs": 3,\n}', ":4", ""),
    ],
)
def test_bad_input_names_file_line_and_key(tmp_path, text, where, key):
    message = _bad(tmp_path, text)
    assert f"bad.json{where}" in message
    assert key in message


def test_custom_class_args_reach_the_class(tmp_path):
    text = json.dumps(
        {
            "learning_rate_scheduler": "CUSTOM",
            "custom_learning_rate_scheduler": "torch.optim.lr_scheduler.StepLR",
            "scheduler_params": [{"key": "step_size", "value": "%STEPS_PER_EPOCH%"}, {"key": "gamma", "value": "0.5"}],
            "learning_rate_warmup_steps": 0,
            "learning_rate": 1.0,
            "epochs": 3,
            "training_method": "LORA",
            "text_encoder": {"train": False},
        }
    )
    (tmp_path / "c.json").write_text(text)
    run = TRAINER.read(read_document(str(tmp_path / "c.json")), RunFacts(steps_per_epoch=4))
    np.testing.assert_allclose(run.lrs(np.arange(12))["unet"], [1.0] * 4 + [0.5] * 4 + [0.25] * 4, rtol=1e-12)

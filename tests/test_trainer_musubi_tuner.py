"""musubi-tuner's --config_file TOML: recognised, read as musubi runs it (goldens from its own
get_lr_scheduler at the recorded commit, tools/gen_musubi_tuner_golden.py), its quirks warned, and
written back exactly (files the writer produced, run through musubi's own code, in written/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lora_sched.errors import ConfigError
from lora_sched.trainers import MODULES, RunFacts, get, read_document, read_run, write_run
from lora_sched.trainers.musubi_tuner import COMMIT, REPO, TRAINER

DATA = Path(__file__).parent / "data" / "trainers" / "musubi-tuner"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
CORPUS_CASES = sorted(k for k in MANIFEST["cases"] if not k.startswith("written_"))
WRITTEN_CASES = sorted(k for k in MANIFEST["cases"] if k.startswith("written_"))
CORPUS = sorted(p.name for p in (DATA / "configs").glob("*.toml"))

#: the quirks each golden case sets off: (key, "file:line" cited)
BASE, REX = "trainer_base.py", "lr_schedulers.py"
QUIRKS = {
    "wan_cosine_warmup_2gpu": {("lr_warmup_steps", f"{BASE}:290")},
    "wan_cosine_warmup_4gpu": {("lr_warmup_steps", f"{BASE}:290")},
    "wan_rex": {("lr_scheduler", f"{BASE}:340")},
    "wan_rex_2gpu": {("lr_scheduler", f"{BASE}:340")},
    "wan_rex_paper": {("lr_scheduler", f"{BASE}:340")},
    "wan_rex_warmup_loraplus": {("lr_warmup_steps", f"{REX}:47"), ("network_args", f"{REX}:49")},
    "wan_rex_warmup_loraplus_2gpu": {
        ("lr_warmup_steps", f"{REX}:47"),
        ("network_args", f"{REX}:49"),
        ("lr_warmup_steps", f"{BASE}:290"),
    },
    "zimage_custom_cosine_annealing": {("lr_scheduler_type", f"{BASE}:314")},
}


def _others() -> list:
    """Every other trainer module present with a TRAINER that reads TOML (modules being written are skipped)."""
    import importlib

    here = Path(__file__).parent.parent / "lora_sched" / "trainers"
    out = []
    for name, module in MODULES.items():
        if name != "musubi-tuner" and (here / f"{module}.py").exists():
            trainer = getattr(importlib.import_module(f"lora_sched.trainers.{module}"), "TRAINER", None)
            if trainer is not None and "toml" in trainer.formats:
                out.append(trainer)
    assert any(t.name == "sd-scripts" for t in out)
    return out


def _golden(case: dict) -> dict[str, np.ndarray]:
    rows = np.genfromtxt(DATA / case["csv"], delimiter=",", names=True)
    return {role: np.atleast_1d(rows[f"lr_{role}"]) for role in case["groups"]}


def _same(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for role in want:
        np.testing.assert_allclose(got[role], want[role], rtol=1e-9, atol=0, err_msg=role)


def _trained(run, steps) -> dict:
    """The LRs of the groups that train (sd-scripts' unet-only run keeps its text encoder at 0)."""
    return {g: lrs for g, lrs in run.lrs(steps).items() if run.groups[g]}


def _read(path: Path | str, **facts) -> object:
    return TRAINER.read(read_document(str(path)), RunFacts(**facts))


def _cited(run) -> set[tuple[str, str]]:
    """(key, "file:line") of each warning citing musubi-tuner, each located in the file."""
    out = set()
    for p in run.warnings:
        if REPO in p.hint:
            assert p.file == run.source and p.line is not None, p
            assert COMMIT[:10] in p.hint
            cited = p.hint.rsplit(" @ ", 1)[0].rsplit("/", 1)[-1]
            out.add((p.key.split(".")[-1], cited))
    return out


# ---- recognising ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CORPUS)
def test_corpus_recognised_as_musubi(name: str) -> None:
    doc = read_document(str(DATA / "configs" / name))
    assert TRAINER.recognise(doc) == 3
    assert get("sd-scripts").recognise(doc) in (1, 2)
    assert all(other.recognise(doc) < 3 for other in _others())


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "configs").glob("*.toml")), ids=str)
def test_sd_scripts_files_are_not_musubi(path: Path) -> None:
    doc = read_document(str(path))
    assert TRAINER.recognise(doc) == 0
    assert get("sd-scripts").recognise(doc) > 0


def test_own_network_module_alone_is_recognised(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('network_module = "networks.lora_wan"\nlearning_rate = 1e-4\n')
    (tmp_path / "b.toml").write_text('network_module = "networks.lora_flux"\nlearning_rate = 1e-4\n')
    assert TRAINER.recognise(read_document(str(tmp_path / "a.toml"))) == 3
    assert TRAINER.recognise(read_document(str(tmp_path / "b.toml"))) == 0  # sd-scripts has lora_flux too


def test_import_is_light() -> None:
    heavy = "{'numpy', 'torch', 'json', 'yaml'}"
    code = f"import sys, lora_sched.trainers.musubi_tuner; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- reading: goldens and quirks ----------------------------------------------------------------
@pytest.mark.parametrize("name", CORPUS_CASES)
def test_corpus_golden(name: str) -> None:
    case = MANIFEST["cases"][name]
    run = _read(DATA / case["config"], **case["facts"])
    assert run.run_length == case["steps"]
    assert list(run.groups) == case["groups"]
    _same(run.lrs(np.arange(run.run_length)), _golden(case))


@pytest.mark.parametrize("name", CORPUS_CASES)
def test_quirks_exactly_where_they_apply(name: str) -> None:
    case = MANIFEST["cases"][name]
    run = _read(DATA / case["config"], **case["facts"])
    assert _cited(run) == QUIRKS.get(name, set())


def test_manifest_records_the_snapshot() -> None:
    assert MANIFEST["repository"] == REPO and MANIFEST["commit"] == COMMIT
    provenance = json.loads((DATA / "configs" / "PROVENANCE.json").read_text())
    assert sorted(provenance) == CORPUS
    assert all(p["commit"] == COMMIT and p["repository"] == REPO for p in provenance.values())


def test_rex_warmup_dips_to_the_floor_at_step_1() -> None:
    run = _read(DATA / "configs" / "wan_rex_warmup_loraplus.toml")
    lrs = run.lrs(np.arange(25))
    assert lrs["unet"][0] > 0.5 * run.groups["unet"] and lrs["unet"][1] == 0.0  # floor: min_lr_ratio 0
    assert lrs["unet"][20] == run.groups["unet"]
    np.testing.assert_array_equal(lrs["unet"][1:20], lrs["unet_plus"][1:20])  # one absolute LR in the warmup
    assert run.resolved is None  # no catalogue schedule draws it


def test_epochs_counted_from_facts(tmp_path: Path) -> None:
    config = DATA / "configs" / "advanced_config_example.toml"
    unknown = _read(config)
    assert unknown.run_length is None and "--steps-per-epoch" in unknown.counting
    assert _read(config, samples_per_epoch=40).run_length == 10 * 40  # batch_size 1: the dataset default
    dataset = tmp_path / "dataset.toml"
    dataset.write_text('[general]\nbatch_size = 4\n[[datasets]]\nimage_directory = "x"\n')
    run = _read(config, samples_per_epoch=40, num_processes=2, dataset_config=str(dataset))
    assert run.run_length == 10 * 5  # ceil(40 / (4 x 2)) per epoch
    dataset.write_text('[[datasets]]\nimage_directory = "x"\nbatch_size = 2\n[[datasets]]\nimage_directory = "y"\n')
    assert _read(config, samples_per_epoch=40, dataset_config=str(dataset)).run_length is None


def test_dataset_config_is_refused_with_its_line() -> None:
    with pytest.raises(ConfigError) as err:
        _read(DATA / "configs" / "dataset_config_example.toml")
    text = str(err.value)
    assert "dataset_config_example.toml:12" in text and "--dataset-config" in text


# ---- bad input -------------------------------------------------------------------------------------
BAD = {
    'learning_rate = "1e-4"': ("learning_rate", "a number"),
    "learning_rate = true": ("learning_rate", "a number"),
    'lr_scheduler_args = "T_max=10"': ("lr_scheduler_args", "list"),
    'lr_scheduler = "cosine"\nlr_scheduler_args = ["num_cycles=0.5=1"]': ("lr_scheduler_args", 'one "="'),
    'lr_scheduler = "cosine"\nlr_scheduler_args = ["num_cycles=half"]': ("lr_scheduler_args", "literal"),
    'lr_scheduler = "cosine"\nlr_warmup_steps = 100.0': ("lr_warmup_steps", "ratio"),
    'lr_scheduler = "cosine_warm"': ("lr_scheduler", "constant_with_warmup"),
    "lr_warmup_steps = 10": ("lr_warmup_steps", "constant_with_warmup"),
    'lr_scheduler = "rex"\nlr_scheduler_args = ["gamma=0.9"]': ("lr_scheduler_args", "rex_alpha"),
    'lr_scheduler = "rex"\nlr_scheduler_min_lr_ratio = 2.0': ("lr_scheduler_min_lr_ratio", "at most 1"),
    "max_train_epochs = 0": ("max_train_epochs", ">= 1"),
    "gradient_accumulation_steps = 1.5": ("gradient_accumulation_steps", "an int"),
    'lr_scheduler = "adafactor"': ("lr_scheduler", "AdaFactor"),
}


@pytest.mark.parametrize("text", sorted(BAD))
def test_bad_values_name_file_line_and_key(tmp_path: Path, text: str) -> None:
    key, expected = BAD[text]
    path = tmp_path / "bad.toml"
    path.write_text('dit = "x"\n[training]\nmax_train_steps = 100\n' + text + "\n")
    with pytest.raises(ConfigError) as err:
        _read(path)
    line = next(i for i, row in enumerate(path.read_text().split("\n"), 1) if row.startswith(key + " "))
    message = str(err.value)
    assert f"bad.toml:{line}: {key}" in message.replace("training.", "")
    assert expected in message


def test_malformed_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('dit = "x"\nlearning_rate = = 1\n')
    with pytest.raises(ConfigError) as err:
        read_run(str(path), trainer="musubi-tuner")
    assert "bad.toml:2" in str(err.value)


# ---- writing ----------------------------------------------------------------------------------------
SD = "learning_rate = 1e-4\nnetwork_train_unet_only = true\nmax_train_steps = 100\n"
GRID = {
    "cosine_warmup": 'lr_scheduler = "cosine"\nlr_warmup_steps = 10\n',
    "linear": 'lr_scheduler = "linear"\nlr_warmup_steps = 5\n',
    "constant_with_warmup": 'lr_scheduler = "constant_with_warmup"\nlr_warmup_steps = 7\n',
    "restarts3": 'lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 3\nlr_warmup_steps = 4\n',
    "polynomial2": 'lr_scheduler = "polynomial"\nlr_scheduler_power = 2.0\nlr_warmup_steps = 3\n',
    "rex": 'lr_scheduler = "rex"\n',
    "rex_warmup": 'lr_scheduler = "rex"\nlr_warmup_steps = 9\nlr_scheduler_args = ["min_lr_ratio=0.1"]\n',
    "wsd": 'lr_scheduler = "warmup_stable_decay"\nlr_warmup_steps = 10\nlr_decay_steps = 30\n',
    "min_lr_floor": 'lr_scheduler = "cosine_with_min_lr"\nlr_scheduler_min_lr_ratio = 0.1\nlr_warmup_steps = 6\n',
}


def _written_back(tmp_path: Path, source: Path, reader: str, n: int):
    run = read_run(str(source), RunFacts(), reader)
    text = write_run(run, "musubi-tuner", RunFacts(num_processes=n))
    out = tmp_path / (source.stem + f"_musubi{n}.toml")
    out.write_text(text)
    back = read_run(str(out), RunFacts(num_processes=n), "musubi-tuner")
    return run, back


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(GRID))
def test_write_reads_back_the_same_curve(tmp_path: Path, name: str, n: int) -> None:
    source = tmp_path / f"{name}.toml"
    source.write_text(SD + GRID[name])
    run, back = _written_back(tmp_path, source, "sd-scripts", n)
    steps = np.arange(run.run_length)
    _same(back.lrs(steps), _trained(run, steps))


@pytest.mark.parametrize("schedule", ["cosine", "rex", "linear", "warmup_stable_decay"])
def test_write_two_groups_lora_plus(tmp_path: Path, schedule: str) -> None:
    source = tmp_path / "plus.toml"
    source.write_text(
        f'dit = "x"\nlearning_rate = 1e-4\nmax_train_steps = 80\nlr_scheduler = "{schedule}"\n'
        'network_args = ["loraplus_lr_ratio=4"]\nlr_scheduler_min_lr_ratio = 0.0\n'
    )
    run, back = _written_back(tmp_path, source, "musubi-tuner", 1)
    assert run.groups == {"unet": 1e-4, "unet_plus": 4e-4}
    _same(back.lrs(np.arange(80)), run.lrs(np.arange(80)))


def test_write_refuses_a_text_encoder_group(tmp_path: Path) -> None:
    source = tmp_path / "sd.toml"
    source.write_text('unet_lr = 1e-4\ntext_encoder_lr = 5e-5\nlr_scheduler = "cosine"\nmax_train_steps = 100\n')
    with pytest.raises(ConfigError) as err:
        write_run(read_run(str(source), trainer="sd-scripts"), "musubi-tuner")
    assert "text_encoder at 5e-05" in str(err.value) and "trains only the DiT" in str(err.value)


def test_write_refuses_a_curve_without_a_schedule() -> None:
    run = _read(DATA / "configs" / "wan_rex_warmup_loraplus.toml")
    with pytest.raises(ConfigError) as err:
        write_run(run, "musubi-tuner")
    assert "musubi-tuner" in str(err.value) and "no lora_sched schedule expresses" in str(err.value)


@pytest.mark.parametrize("name", WRITTEN_CASES)
def test_written_files_run_exactly_in_musubi(tmp_path: Path, name: str) -> None:
    """The writer's file, run by musubi's own scheduler code (the golden), gives the source's curve."""
    case = MANIFEST["cases"][name]
    n = case["facts"]["num_processes"]
    source = tmp_path / "source.toml"
    source.write_text(case["source"])
    run = read_run(str(source), RunFacts(), case["source_trainer"])
    assert write_run(run, "musubi-tuner", RunFacts(num_processes=n)) == (DATA / case["config"]).read_text()
    want = _golden(case)
    _same(_trained(run, np.arange(case["steps"])), want)
    back = _read(DATA / case["config"], num_processes=n)
    _same(back.lrs(np.arange(case["steps"])), want)

"""A schedule written once runs the same curve in every trainer, or the export says why it cannot.

For every source (a grid of lora_sched schedules, and every trainer's own corpus files) and every
target trainer: `export --to TARGET` writes a file; the target's reader (whose curve each trainer's
own tests check against that trainer's code, step for step) reads it back; every param group's LR
must equal the source's at every step (relative 1e-9). A target that cannot express the curve
raises a ConfigError whose hint names the nearest faithful choice. The trainers that have a
custom-class hook (sd-scripts, musubi-tuner, OneTrainer) never refuse a catalogue schedule on the
parts they train (musubi-tuner trains the DiT alone). An epoch-counting trainer (OneTrainer) is
told the run is one epoch (--steps-per-epoch = the run length).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lora_sched.errors import ConfigError
from lora_sched.trainers import TRAINER_NAMES, get, read_run, write_run
from lora_sched.trainers.base import RunFacts, TrainerRun

DATA = Path(__file__).parent / "data" / "trainers"
#: Trainers that run any lora_sched schedule through their custom scheduler class hook.
CUSTOM_HOOK = ("sd-scripts", "musubi-tuner", "onetrainer")
#: ... on the parts they train: musubi-tuner trains a DiT's LoRA, no text encoder.
DIT_ONLY = ("musubi-tuner",)

HEAD = "learning_rate = 1e-4\nunet_lr = 1e-4\ntext_encoder_lr = 5e-5\nmax_train_steps = 120\n"
GRID = {
    "constant": 'lr_scheduler = "constant"\n',
    "constant_with_warmup": 'lr_scheduler = "constant_with_warmup"\nlr_warmup_steps = 7\n',
    "linear": 'lr_scheduler = "linear"\nlr_warmup_steps = 12\n',
    "cosine_warmup": 'lr_scheduler = "cosine"\nlr_warmup_steps = 10\n',
    "cosine_restarts_3": 'lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 3\nlr_warmup_steps = 5\n',
    "polynomial_2": 'lr_scheduler = "polynomial"\nlr_scheduler_power = 2.0\n',
    "cosine_floor": 'lr_scheduler = "cosine_with_min_lr"\nlr_scheduler_min_lr_ratio = 0.1\nlr_warmup_steps = 10\n',
    "rex": 'lr_scheduler = "rex"\n',
    "wsd": 'lr_scheduler = "warmup_stable_decay"\nlr_warmup_steps = 10\nlr_decay_steps = 30\n',
}


def _grid_runs(tmp: Path) -> list[tuple[str, TrainerRun]]:
    """Every grid schedule with a text encoder trained at its own LR, and with the denoiser alone."""
    runs = []
    for name, body in GRID.items():
        for label, head in (("grid", HEAD), ("grid-dit", HEAD + "network_train_unet_only = true\n")):
            path = tmp / f"{label}_{name}.toml"
            path.write_text(head + body)
            runs.append((f"{label}:{name}", read_run(str(path))))
    return runs


def _must_write(target: str, label: str) -> bool:
    """A grid schedule a trainer with a custom-class hook runs (on the parts it trains)."""
    if target not in CUSTOM_HOOK or not label.startswith("grid"):
        return False
    return target not in DIT_ONLY or label.startswith("grid-dit:")


def _corpus_runs() -> list[tuple[str, TrainerRun]]:
    """Every corpus file of every trainer that reads with a known run length and a catalogue curve
    (as its own trainer's tests read it: the facts each manifest records, else 400 samples an epoch)."""
    runs = []
    for folder in sorted(DATA.glob("*/configs")):
        trainer = folder.parent.name
        facts = _facts(folder.parent)
        for path in sorted(folder.iterdir()):
            if path.name.startswith(("PROVENANCE", "README")) or path.suffix == ".md":
                continue
            try:
                run = read_run(str(path), facts.get(path.name, RunFacts(samples_per_epoch=400)), trainer)
            except ConfigError:
                continue  # a corpus file its own trainer's tests show refused (e.g. a scheduler it cannot run)
            if run.run_length is not None and run.resolved is not None and run.own_lrs is None:
                runs.append((f"{trainer}:{path.name}", run))
    return runs


def _facts(folder: Path) -> dict[str, RunFacts]:
    manifest = folder / "facts.json"
    if not manifest.exists():
        return {}
    return {name: RunFacts(**given) for name, given in json.loads(manifest.read_text()).items()}


def _lrs(run: TrainerRun) -> dict[str, np.ndarray]:
    return run.lrs(np.arange(run.run_length))


def _group(lrs: dict[str, np.ndarray], role: str, steps: int) -> np.ndarray:
    """A group's LRs; a trainer with one group for every text encoder trains text_encoder_2 in it; an
    absent group is not trained (LR 0)."""
    if role not in lrs and role.startswith("text_encoder_") and "text_encoder" in lrs:
        return lrs["text_encoder"]
    return lrs.get(role, np.zeros(steps))


def _same_curve(source: TrainerRun, target: TrainerRun, label: str) -> None:
    assert target.run_length == source.run_length, label
    want, got = _lrs(source), _lrs(target)
    for role in sorted(set(want) | set(got)):
        expected = _group(want, role, source.run_length)
        found = _group(got, role, target.run_length)
        np.testing.assert_allclose(found, expected, rtol=1e-9, atol=1e-300, err_msg=f"{label}: group {role}")


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, TrainerRun]]:
    corpus = _corpus_runs()
    assert len(corpus) >= 60, "the trainers' corpora give at least 60 sources with a catalogue curve"
    assert {label.split(":")[0] for label, _ in corpus} >= {"lora-easy", "onetrainer", "musubi-tuner", "diffusers"}
    return _grid_runs(tmp_path_factory.mktemp("grid")) + corpus


@pytest.mark.parametrize("target", TRAINER_NAMES)
def test_every_source_runs_the_same_curve_in_every_trainer(
    target: str, sources: list[tuple[str, TrainerRun]], tmp_path: Path
) -> None:
    trainer = get(target)
    written = refused = 0
    for label, run in sources:
        facts = RunFacts(steps_per_epoch=run.run_length)  # one epoch, for trainers that count epochs
        try:
            text = write_run(run, target, facts)
        except ConfigError as exc:
            refused += 1
            assert not _must_write(target, label), f"{label} -> {target}: {exc}"
            assert all(p.hint for p in exc.problems), f"{label} -> {target}: a refusal names the nearest choice"
            continue
        path = tmp_path / f"{label.replace(':', '_').replace('/', '_')}{trainer.suffix}"
        path.write_text(text, encoding="utf-8")
        back = read_run(str(path), facts, target)
        _same_curve(run, back, f"{label} -> {target}")
        written += 1
    assert written > 0 and written + refused == len(sources), f"{target} wrote nothing"


def _corpus_files() -> list[tuple[str, Path]]:
    """(trainer, file) for every real file of every trainer's corpus, and the sd-scripts files of the
    project's own corpus (tests/realworld, configs)."""
    files = [
        (folder.parent.name, path)
        for folder in sorted(DATA.glob("*/configs"))
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name not in ("PROVENANCE.json", "README.md")
    ]
    root = Path(__file__).parent.parent
    for path in [*sorted((root / "tests" / "realworld").glob("*.toml")), *sorted((root / "configs").glob("*.toml"))]:
        if not path.name.endswith(".dataset.toml"):
            files.append(("sd-scripts", path))
    return files


@pytest.mark.parametrize(("trainer", "path"), _corpus_files(), ids=lambda x: x.name if isinstance(x, Path) else x)
def test_every_corpus_file_is_recognised_as_its_own_trainer(trainer: str, path: Path) -> None:
    """Every trainer is asked (not only the file's own): no other trainer claims the file as surely."""
    from lora_sched.trainers import read_document, recognise

    assert recognise(read_document(str(path))).name == trainer


@pytest.mark.parametrize(("trainer", "path"), _corpus_files(), ids=lambda x: x.name if isinstance(x, Path) else x)
def test_the_plain_sd_scripts_shortcut_agrees_with_every_trainer(trainer: str, path: Path) -> None:
    """A file in lora_sched's own keys is taken as sd-scripts' without asking the other trainers: no
    trainer claims such a file more surely (each trainer asked directly)."""
    from lora_sched.trainers import available, read_document
    from lora_sched.trainers.sd_scripts import plain

    document = read_document(str(path))
    if document.kind != "toml" or not plain(document):
        assert trainer != "sd-scripts" or document.kind == "toml"  # sd-scripts' corpus is TOML
        return
    assert trainer == "sd-scripts"
    others = {t.name: t.recognise(document) for t in available("toml") if t.name != "sd-scripts"}
    assert all(score < 1 for score in others.values()), others


def test_the_plain_shortcut_takes_lora_scheds_own_files_only() -> None:
    from lora_sched.trainers.documents import parse
    from lora_sched.trainers.sd_scripts import plain

    assert plain(parse("a.toml", "learning_rate = 1e-4\n[training_arguments]\nmax_train_steps = 10\n"))
    assert not plain(parse("b.toml", 'network_module = "networks.lora_wan"\nlearning_rate = 1e-4\n'))
    assert not plain(parse("c.toml", "[general_args.args]\nmax_train_steps = 10\n"))  # LoRA_Easy's nesting
    assert not plain(parse("d.toml", "[[datasets]]\nresolution = 512\n"))


@pytest.mark.parametrize("trainer", ["musubi-tuner", "onetrainer"])
def test_a_class_curve_other_than_its_carried_schedule_is_refused(tmp_path: Path, trainer: str) -> None:
    """A run whose LRs come from a scheduler class (own_lrs) that its carried schedule does not draw:
    refused, never written as the carried schedule's curve."""
    path = tmp_path / "src.toml"
    path.write_text("learning_rate = 1e-4\nnetwork_train_unet_only = true\nmax_train_steps = 20\n")
    run = read_run(str(path), trainer="sd-scripts")
    halved = run._replace(own_lrs=lambda steps: {"unet": np.full(len(steps), 5e-5)})
    with pytest.raises(ConfigError, match="scheduler class") as err:
        write_run(halved, trainer, RunFacts(steps_per_epoch=20))
    assert all(p.hint for p in err.value.problems)
    same = run._replace(own_lrs=lambda steps: {"unet": np.full(len(steps), 1e-4)})
    write_run(same, trainer, RunFacts(steps_per_epoch=20))

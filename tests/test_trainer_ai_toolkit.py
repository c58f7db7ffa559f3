"""ai-toolkit (ostris/ai-toolkit) job files: recognised, read as ai-toolkit runs them (goldens from
its own scheduler code, tools/gen_ai_toolkit_golden.py), its quirks warned exactly where they
apply, and lora_sched schedules written as ai-toolkit jobs (or refused, saying why)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from lora_sched.errors import ConfigError
from lora_sched.trainers import read_document, read_run, recognise, write_run
from lora_sched.trainers.ai_toolkit import COMMIT, TRAINER
from lora_sched.trainers.base import RunFacts
from lora_sched.trainers.documents import parse

DATA = Path(__file__).parent / "data" / "trainers" / "ai-toolkit"
MANIFEST = json.loads((DATA / "manifest.json").read_text(encoding="utf-8"))
CASES = MANIFEST["cases"]
RUNS = [c for c in CASES if "csv" in c]
FAILS = [c for c in CASES if "raises" in c]
CORPUS = sorted(p for p in (DATA / "configs").iterdir() if p.suffix in (".yaml", ".json") and p.stem != "PROVENANCE")
T = "config.process[0].train."
#: The quirk keys each file's read must warn about (one entry per warning), every other file none.
QUIRKS = {
    "variants/linear_default.yaml": [T + "lr_scheduler"],
    "variants/linear_decay.yaml": [T + "unet_lr"],
    "variants/cosine.yaml": [T + "lr_scheduler"],
    "variants/cosine_eta_min.yaml": [T + "lr_scheduler", T + "lr_scheduler_params.T_max"],
    "variants/cosine_with_restarts.yaml": [T + "lr_scheduler", T + "lr_scheduler_params.T_0"],
    "variants/constant_with_warmup_default.yaml": [T + "lr_scheduler"],
    "variants/constant_factor.yaml": [T + "lr_scheduler_params.total_iters"],
    "variants/accumulation_steps.yaml": [T + "gradient_accumulation_steps", T + "lr_scheduler"],
    "variants/cosine_restarts_full_finetune.json": [T + "lr_scheduler"],
    "written/cosine_floor.yaml": [T + "lr_scheduler"],
    "written/restarts_one_cycle.yaml": [T + "lr_scheduler"],
}


def golden(case: dict) -> tuple[list[str], np.ndarray]:
    with open(DATA / case["csv"], encoding="utf-8") as f:
        rows = list(csv.reader(f))
    roles = [h.removeprefix("lr_") for h in rows[0][1:]]
    values = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    assert [int(row[0]) for row in rows[1:]] == list(range(len(rows) - 1))
    return roles, values


def read(file: str, processes: int = 1):
    return read_run(str(DATA / file), RunFacts(num_processes=processes), trainer="ai-toolkit")


def test_manifest_records_the_snapshot_and_covers_the_corpus():
    assert MANIFEST["repository"] == "ostris/ai-toolkit" and MANIFEST["commit"] == COMMIT
    assert MANIFEST["torch"] and len(RUNS) >= 25
    provenance = json.loads((DATA / "configs" / "PROVENANCE.json").read_text(encoding="utf-8"))
    assert sorted(provenance) == sorted(p.name for p in CORPUS)
    assert all(v["commit"] == COMMIT and v["repository"] == "ostris/ai-toolkit" for v in provenance.values())
    golden_files = {c["file"] for c in RUNS}
    assert {f"configs/{p.name}" for p in CORPUS} <= golden_files


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_is_recognised_as_ai_toolkit(path):
    document = read_document(str(path))
    assert TRAINER.recognise(document) == 3
    assert recognise(document).name == "ai-toolkit"


def test_other_files_are_not_recognised():
    for text, name in (
        ('learning_rate = 1e-4\nlr_scheduler = "cosine"\n', "a.toml"),
        ('{"learning_rate": 0.0001, "scheduler": "COSINE"}', "a.json"),
        ("model: x\ntrain:\n  lr: 1\n", "a.yaml"),
        ('{"job": "extension", "config": {"process": []}}', "b.json"),
    ):
        assert TRAINER.recognise(parse(name, text)) == 0, name


@pytest.mark.parametrize("case", RUNS, ids=lambda c: c["name"])
def test_reads_as_its_own_scheduler_code_runs(case):
    run = read(case["file"], case["num_processes"])
    roles, values = golden(case)
    assert list(run.groups) == roles == case["groups"]
    assert run.run_length == len(values) == case["optimizer_steps"]
    lrs = run.lrs(np.arange(run.run_length))
    assert list(lrs) == roles
    for i, role in enumerate(roles):
        np.testing.assert_allclose(lrs[role], values[:, i], rtol=1e-9, atol=0)


@pytest.mark.parametrize("case", RUNS, ids=lambda c: c["name"])
def test_quirks_warned_exactly_where_they_apply(case):
    run = read(case["file"], case["num_processes"])
    quirks = [w for w in run.warnings if "ostris/ai-toolkit" in w.hint]
    expected = list(QUIRKS.get(case["file"], []))
    if case["num_processes"] > 1:
        expected.append(T + "lr_scheduler")
    assert sorted(w.key for w in quirks) == sorted(expected)
    document = read_document(str(DATA / case["file"]))
    for w in quirks:
        assert w.severity == "warning" and w.file == str(DATA / case["file"]) and w.line is not None
        assert COMMIT[:10] in w.hint
        line = document.text.splitlines()[w.line - 1].strip().lstrip('"')
        assert line.startswith(w.key.rsplit(".", 1)[-1])


def test_catalogue_expression_where_exact():
    assert read("variants/cosine.yaml").resolved.name == "cosine"
    assert read("variants/constant_with_warmup.yaml").resolved.warmup == 30
    assert read("configs/train_lora_flux_24gb.yaml").resolved.name == "constant"
    assert read("variants/linear_default.yaml").resolved is None  # rises from 1/3: no catalogue schedule
    assert read("variants/accumulation_steps.yaml").resolved is None  # sampled every 4th micro-batch


def test_yaml_exponent_is_a_float_as_its_loader_reads_it():
    run = read("variants/linear_default.yaml")
    assert run.groups == {"unet": 1e-4}


def test_defaults_apply():
    run = read("variants/defaults.yaml")
    assert run.run_length == 1000 and run.groups == {"unet": 1e-6}
    assert "its default" in run.counting


@pytest.mark.parametrize("case", FAILS, ids=lambda c: c["name"])
def test_schedules_it_cannot_build_are_errors(case):
    with pytest.raises(ConfigError) as info:
        read(case["file"])
    text = str(info.value)
    assert f"{DATA / case['file']}:" in text and "config.process[0].train.lr_scheduler" in text
    assert "total_iters" in text or "one of" in text


def test_processes_run_the_curve_faster():
    one, two = read("variants/cosine.yaml"), read("variants/cosine.yaml", 2)
    steps = np.arange(100)
    np.testing.assert_allclose(two.lrs(steps)["unet"], one.lrs(2 * steps)["unet"], rtol=1e-12)


# ---- bad input ---------------------------------------------------------------------------------
JOB = (
    "job: extension\nconfig:\n  name: x\n  process:\n    - type: sd_trainer\n"
    "      network: {{type: lora}}\n      train:\n{}"
)


@pytest.mark.parametrize(
    ("train", "key", "line"),
    [
        ("        steps: many\n", "train.steps", 8),
        ("        steps: 10.5\n", "train.steps", 8),
        ("        lr: fast\n", "train.lr", 8),
        ("        lr: true\n", "train.lr", 8),
        ("        steps: 10\n        lr_scheduler: 3\n", "train.lr_scheduler", 9),
        ("        lr_scheduler: linear\n        lr_scheduler_params: {start_factor: 2}\n", "start_factor", 9),
        ("        lr_scheduler: cosine\n        lr_scheduler_params: {gamma: 0.5}\n", "gamma", 9),
        ("        lr_scheduler: constant\n        lr_scheduler_params: [1]\n", "lr_scheduler_params", 9),
        (
            "        gradient_accumulation: 2\n        gradient_accumulation_steps: 2\n",
            "gradient_accumulation_steps",
            9,
        ),
        ("        train_unet: 'yes'\n", "train.train_unet", 8),
    ],
)
def test_bad_values_name_file_line_and_key(tmp_path, train, key, line):
    path = tmp_path / "job.yaml"
    path.write_text(JOB.format(train), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_run(str(path), trainer="ai-toolkit")
    text = str(info.value)
    assert f"{path}:{line}:" in text and key in text


def test_malformed_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("job: extension\nconfig: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        read_run(str(bad), trainer="ai-toolkit")
    slider = tmp_path / "slider.yaml"
    slider.write_text("job: train\nconfig:\n  name: s\n  process:\n    - type: slider\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"slider.yaml:1: job"):
        read_run(str(slider), trainer="ai-toolkit")
    embedding = tmp_path / "ti.yaml"
    embedding.write_text(
        "job: extension\nconfig:\n  name: t\n  process:\n    - type: sd_trainer\n      embedding: {tokens: 4}\n"
        "      train: {lr: 1.0e-4}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"ti.yaml:6: config.process\[0\].embedding"):
        read_run(str(embedding), trainer="ai-toolkit")


# ---- writing -------------------------------------------------------------------------------------
BASE = "max_train_steps = 120\n"
SCHEDULES = {
    "cosine_warmup": ('lr_scheduler = "cosine"\nlr_warmup_steps = 10\n', "warmup"),
    "cosine": ('lr_scheduler = "cosine"\n', None),
    "linear": ('lr_scheduler = "linear"\n', None),
    "constant_with_warmup": ('lr_scheduler = "constant_with_warmup"\nlr_warmup_steps = 15\n', None),
    "restarts_3": ('lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 3\n', "cosine_with_restarts"),
    "restarts_1": ('lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 1\n', None),
    "polynomial_2": ('lr_scheduler = "polynomial"\nlr_scheduler_power = 2\n', "polynomial"),
    "polynomial_1": ('lr_scheduler = "polynomial"\nlr_scheduler_power = 1\n', None),
    "rex": ('lr_scheduler = "rex"\n', "rex"),
    "wsd": ('lr_scheduler = "warmup_stable_decay"\nlr_warmup_steps = 10\n', "warmup"),
    "cosine_floor": ('lr_scheduler = "cosine"\nlr_scheduler_args = ["min_lr_ratio=0.2"]\n', None),
    "linear_floor": ('lr_scheduler = "linear"\nlr_scheduler_args = ["min_lr_ratio=0.05"]\n', None),
    "warmup_start": ('lr_scheduler = "constant_with_warmup"\nlr_warmup_steps = 15\nwarmup_start = 0.1\n', "warmup"),
}
SAME = "learning_rate = 1e-4\nunet_lr = 1e-4\ntext_encoder_lr = 1e-4\n"
DIFFERENT = "learning_rate = 1e-4\nunet_lr = 1e-4\ntext_encoder_lr = 5e-5\n"


def source_run(tmp_path, text):
    path = tmp_path / "source.toml"
    path.write_text(text, encoding="utf-8")
    return read_run(str(path), trainer="sd-scripts")


def write_and_read(tmp_path, run, facts=None):
    facts = facts or RunFacts()
    out = tmp_path / "job.yaml"
    out.write_text(write_run(run, "ai-toolkit", facts), encoding="utf-8")
    assert TRAINER.recognise(read_document(str(out))) == 3
    return read_run(str(out), facts, trainer="ai-toolkit")


@pytest.mark.parametrize("name", SCHEDULES)
def test_write_runs_the_same_curve_or_refuses(tmp_path, name):
    text, refusal = SCHEDULES[name]
    run = source_run(tmp_path, SAME + text + BASE)
    if refusal is not None:
        with pytest.raises(ConfigError, match=refusal) as info:
            write_run(run, "ai-toolkit")
        assert "ai-toolkit" in str(info.value)
        return
    back = write_and_read(tmp_path, run)
    assert set(back.groups) == set(run.groups) and back.run_length == run.run_length
    steps = np.arange(run.run_length)
    want, got = run.lrs(steps), back.lrs(steps)
    for group in run.groups:
        np.testing.assert_allclose(got[group], want[group], rtol=1e-9, atol=0)


@pytest.mark.parametrize("name", ["cosine", "linear", "constant_with_warmup"])
def test_different_group_lrs_are_refused(tmp_path, name):
    run = source_run(tmp_path, DIFFERENT + SCHEDULES[name][0] + BASE)
    with pytest.raises(ConfigError, match=r"every group gets train\.lr"):
        write_run(run, "ai-toolkit")


def test_write_compensates_accumulation_and_processes(tmp_path):
    run = source_run(tmp_path, SAME + SCHEDULES["constant_with_warmup"][0] + BASE + "gradient_accumulation_steps = 4\n")
    back = write_and_read(tmp_path, run)
    job = read_document(str(tmp_path / "job.yaml")).data["config"]["process"][0]["train"]
    assert job["gradient_accumulation"] == 4 and "gradient_accumulation_steps" not in job
    assert not [w for w in back.warnings if "gradient_accumulation" in w.key]
    two = write_and_read(tmp_path, run, RunFacts(num_processes=2))
    steps = np.arange(run.run_length)
    np.testing.assert_allclose(two.lrs(steps)["unet"], run.lrs(steps)["unet"], rtol=1e-9, atol=0)
    cosine = source_run(tmp_path, SAME + SCHEDULES["cosine"][0] + BASE)
    with pytest.raises(ConfigError, match="process"):
        write_run(cosine, "ai-toolkit", RunFacts(num_processes=2))


def test_a_curve_without_catalogue_schedule_is_refused():
    with pytest.raises(ConfigError, match="no lora_sched schedule expresses"):
        write_run(read("variants/linear_default.yaml"), "ai-toolkit")


@pytest.mark.parametrize("case", [c for c in RUNS if c["file"].startswith("written/")], ids=lambda c: c["name"])
def test_written_files_run_by_its_code(tmp_path, case):
    """The committed written/ file is what write() gives today, and ai-toolkit's own code ran it
    (the golden) to the source schedule's LRs."""
    run = source_run(tmp_path, case["input_toml"])
    assert write_run(run, "ai-toolkit") == (DATA / case["file"]).read_text(encoding="utf-8")
    roles, values = golden(case)
    want = run.lrs(np.arange(run.run_length))
    assert len(values) == run.run_length
    for i, role in enumerate(roles):
        np.testing.assert_allclose(values[:, i], want[role], rtol=1e-9, atol=0)


def test_accumulation_over_a_whole_epoch_is_not_counted(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(JOB.format("        steps: 100\n        gradient_accumulation_steps: -1\n"), encoding="utf-8")
    run = read_run(str(path), trainer="ai-toolkit")
    assert run.run_length is None and "once per epoch" in run.counting
    with pytest.raises(ValueError, match="once per epoch"):
        run.lrs(np.arange(3))

"""lora_sched.trainers.diffusers_scripts: diffusers' LoRA example scripts' launch commands.

Goldens: tools/gen_diffusers_scripts_golden.py ran diffusers' own get_scheduler (optimization.py at the
recorded commit) stepped as accelerate steps it (N times per update) for each README command and for
files this module wrote."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from lora_sched.errors import ConfigError
from lora_sched.trainers import read_document, read_run, recognise, write_run
from lora_sched.trainers.base import RunFacts
from lora_sched.trainers.diffusers_scripts import TRAINER

DATA = Path(__file__).parent / "data" / "trainers" / "diffusers"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
CASES = MANIFEST["cases"]
CORPUS = sorted(p.name for p in (DATA / "configs").glob("*.sh"))
WRITTEN = sorted(p.name for p in (DATA / "golden").glob("written_*.sh"))


def golden(name: str) -> dict[str, np.ndarray]:
    with open(DATA / "golden" / (name.rsplit(".", 1)[0] + ".csv")) as fh:
        rows = list(csv.DictReader(fh))
    return {k[3:]: np.array([float(r[k]) for r in rows]) for k in rows[0] if k.startswith("lr_")}


def facts_of(name: str) -> RunFacts:
    case = CASES[name]
    return RunFacts(samples_per_epoch=case["samples_per_epoch"], num_processes=case["processes"])


def assert_lrs(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for group in want:
        np.testing.assert_allclose(got[group], want[group], rtol=1e-9, atol=0)


def own_groups(run, lrs: dict) -> dict:
    """`lrs` without the roles trained inside another group (each checked at its host's LR): the
    groups the script's own scheduler steps."""
    for role, host in run.shared.items():
        np.testing.assert_array_equal(lrs.pop(role), lrs[host], err_msg=role)
    return lrs


def test_corpus_and_cases_complete():
    assert 8 <= len(CORPUS) <= 15
    assert set(CASES) == set(CORPUS) | set(WRITTEN)
    provenance = json.loads((DATA / "configs" / "PROVENANCE.json").read_text())
    assert set(provenance) == set(CORPUS)
    assert all(len(p["commit"]) == 40 for p in provenance.values())


@pytest.mark.parametrize("name", CORPUS)
def test_recognised_as_diffusers_only(name):
    document = read_document(str(DATA / "configs" / name))
    assert recognise(document).name == "diffusers"
    assert TRAINER.recognise(document) == 3


@pytest.mark.parametrize("name", CORPUS + WRITTEN)
def test_read_matches_diffusers_own_scheduler(name):
    folder = "configs" if name in CORPUS else "golden"
    run = read_run(str(DATA / folder / name), facts_of(name), trainer="diffusers")
    want = golden(name)
    assert run.run_length == len(next(iter(want.values())))
    assert_lrs(own_groups(run, run.lrs(np.arange(run.run_length))), want)


QUIRKS = {
    "flux_kontext_warmup.sh": "constant takes none",
    "flux2_constant_warmup.sh": "constant takes none",
}


@pytest.mark.parametrize("name", CORPUS)
def test_quirk_warnings_exactly_when_they_apply(name):
    run = read_run(str(DATA / "configs" / name), facts_of(name), trainer="diffusers")
    warnings = [w for w in run.warnings if w.severity == "warning"]
    if name in QUIRKS:
        assert len(warnings) == 1 and QUIRKS[name] in str(warnings[0])
        assert "lr_warmup_steps" in str(warnings[0]) and "optimization.py:331" in str(warnings[0])
        assert warnings[0].line is not None
    else:
        assert warnings == []


def _args(tmp_path, text: str, **facts) -> object:
    path = tmp_path / "run.sh"
    path.write_text(text)
    return read_run(str(path), RunFacts(**facts), trainer="diffusers")


def _own_lambda_warning(run, needle: str) -> bool:
    return any(needle in str(w) for w in run.warnings)


def test_accumulation_scaling_quirk_sdxl(tmp_path):
    run = _args(
        tmp_path,
        "accelerate launch train_text_to_image_lora_sdxl.py \\\n  --lr_scheduler=linear \\\n"
        "  --lr_warmup_steps=10 --max_train_steps=100 --gradient_accumulation_steps=4\n",
    )
    assert _own_lambda_warning(run, "x accumulation 4")
    lrs = run.lrs(np.arange(100))["unet"]
    assert lrs[39] < 1e-4 and lrs[40] == pytest.approx(1e-4)  # warmup 10 x 4 = 40 updates
    assert lrs[-1] == pytest.approx(1e-4 * (400 - 99) / 360)  # decay over 400, cut at 100


def test_processes_multiply_cancels(tmp_path):
    text = "accelerate launch train_dreambooth_lora.py --lr_scheduler=cosine --lr_warmup_steps=5 --max_train_steps=50\n"
    one = _args(tmp_path, text).lrs(np.arange(50))
    four = _args(tmp_path, text, num_processes=4).lrs(np.arange(50))
    assert_lrs(four, one)


def test_cosine_cycles_and_restart_count_quirks(tmp_path):
    run = _args(tmp_path, "train_dreambooth_lora_sdxl.py --lr_scheduler=cosine --lr_num_cycles=3 --max_train_steps=9\n")
    assert _own_lambda_warning(run, "passes no num_cycles")
    run = _args(
        tmp_path,
        "train_dreambooth_lora_sdxl.py --lr_scheduler=cosine_with_restarts --lr_num_cycles=3 "
        "--lr_warmup_steps=0 --max_train_steps=30\n",
    )
    assert _own_lambda_warning(run, "2 restarts")


def test_polynomial_default_lr_quirk(tmp_path):
    run = _args(
        tmp_path,
        "train_dreambooth_lora_flux.py --lr_scheduler=polynomial --lr_warmup_steps=0 "
        "--max_train_steps=10 --learning_rate=1e-4\n",
    )
    assert _own_lambda_warning(run, "default lr")
    assert run.lrs(np.array([9]))["unet"][0] == pytest.approx(1e-4 * ((1e-3 - 1e-7) * 0.1 + 1e-7) / 1e-3)


def test_epochs_before_sharding_quirk(tmp_path):
    text = "train_dreambooth_lora_hidream.py --lr_scheduler=linear --lr_warmup_steps=0 --num_train_epochs=2\n"
    run = _args(tmp_path, text, samples_per_epoch=80, num_processes=2)
    assert run.run_length == 2 * 10 and _own_lambda_warning(run, "unsharded")
    # scheduler: 2 epochs x 20 unsharded batches x 2 processes = 80; update 19 is at position 38
    assert run.lrs(np.array([19]))["unet"][0] == pytest.approx(1e-4 * (80 - 19 * 2) / 80)


def test_epochs_unknown_then_counted(tmp_path):
    text = (
        "accelerate launch train_text_to_image_lora.py --lr_scheduler=linear --lr_warmup_steps=0 --num_train_epochs=3\n"
    )
    assert _args(tmp_path, text).run_length is None
    assert _args(tmp_path, text, samples_per_epoch=33).run_length == 3 * 3  # ceil(33 / 16) batches


GRID = {
    "cosine_warmup": 'lr_scheduler = "cosine"\nlr_warmup_steps = 10\n',
    "linear": 'lr_scheduler = "linear"\nlr_warmup_steps = 0\n',
    "constant_with_warmup": 'lr_scheduler = "constant_with_warmup"\nlr_warmup_steps = 7\n',
    "restarts3": 'lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 3\nlr_warmup_steps = 4\n',
    "poly2": 'lr_scheduler = "polynomial"\nlr_scheduler_power = 2.0\nlr_warmup_steps = 4\n',
    "rex": 'lr_scheduler = "rex"\nlr_warmup_steps = 4\n',
    "wsd": 'lr_scheduler = "warmup_stable_decay"\nlr_warmup_steps = 4\nlr_scheduler_args = ["decay=20"]\n',
    "floor": 'lr_scheduler = "cosine"\nlr_warmup_steps = 4\nlr_scheduler_args = ["min_lr_ratio=0.1"]\n',
}
REFUSED = {"rex": "custom scheduler hook", "wsd": "custom scheduler hook", "floor": "custom scheduler hook"}


@pytest.mark.parametrize("groups", ["one", "two"])
@pytest.mark.parametrize("case", sorted(GRID))
@pytest.mark.parametrize("processes", [1, 3])
def test_write_then_read_back(tmp_path, case, groups, processes):
    te = "text_encoder_lr = 5e-5\n" if groups == "two" else ""
    src = tmp_path / "src.toml"
    src.write_text("learning_rate = 1e-4\nmax_train_steps = 90\n" + te + GRID[case])
    run = read_run(str(src), trainer="sd-scripts")
    facts = RunFacts(num_processes=processes)
    if case in REFUSED or (case == "poly2" and groups == "two"):
        with pytest.raises(ConfigError) as err:
            write_run(run, "diffusers", facts)
        assert REFUSED.get(case, "AdamW default lr") in str(err.value)
        return
    text = write_run(run, "diffusers", facts)
    out = tmp_path / "out.sh"
    out.write_text(text)
    back = read_run(str(out), trainer="diffusers")
    assert back.run_length == 90 and ("--num_processes=3" in text) == (processes == 3)
    want, got = run.lrs(np.arange(90)), back.lrs(np.arange(90))
    if groups == "one":  # every group at one LR: diffusers' one param group
        got = {group: got["unet"] for group in want}
    assert_lrs(got, want)


def test_written_files_are_current():
    """The committed written_*.sh (whose goldens diffusers' code produced) are what write() gives now."""
    import importlib.util

    path = Path(__file__).parents[1] / "tools" / "gen_diffusers_scripts_golden.py"
    spec = importlib.util.spec_from_file_location("gen_diffusers_scripts_golden", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    written = tool.written_files()
    assert sorted(written) == WRITTEN
    for name, (text, _) in written.items():
        assert (DATA / "golden" / name).read_text() == text


def test_refuses_own_lrs_and_unknown_groups(tmp_path):
    run = _args(
        tmp_path,
        "train_text_to_image_lora_sdxl.py --lr_scheduler=cosine --lr_warmup_steps=0 "
        "--max_train_steps=20 --gradient_accumulation_steps=2\n",
    )
    with pytest.raises(ConfigError, match="no catalogue schedule"):
        write_run(run, "diffusers")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("train_dreambooth_lora.py --lr_scheduler=cosine --max_train_steps=ten\n", "max_train_steps"),
        ("train_dreambooth_lora.py --lr_scheduler=piecewise_constant --max_train_steps=9\n", "lr_scheduler"),
        ("train_dreambooth_lora.py --learning_rate=abc --max_train_steps=9\n", "learning_rate"),
        ("train_text_to_image_lora.py --lr_num_cycles=2 --max_train_steps=9\n", "lr_num_cycles"),
        (
            "train_dreambooth_lora.py\n --lr_scheduler=polynomial --learning_rate=1e-8 --max_train_steps=9\n",
            "learning_rate",
        ),
        (
            "train_dreambooth_lora.py --gradient_accumulation_steps=0 --max_train_steps=9\n",
            "gradient_accumulation_steps",
        ),
    ],
)
def test_bad_values_name_file_line_key(tmp_path, text, key):
    path = tmp_path / "bad.sh"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_run(str(path), trainer="diffusers")
    message = str(err.value)
    assert key in message and ("bad.sh:1" in message or "bad.sh:2" in message)


def test_malformed_file(tmp_path):
    path = tmp_path / "bad.sh"
    path.write_text('accelerate launch train_dreambooth_lora.py --lr_scheduler="cosine\n')
    with pytest.raises(ConfigError, match=r"bad\.sh"):
        read_run(str(path), trainer="diffusers")


def test_not_recognised_elsewhere(tmp_path):
    path = tmp_path / "other.sh"
    path.write_text("python train.py --lr 1e-4 --epochs 3\n")
    assert TRAINER.recognise(read_document(str(path))) == 0


def test_one_group_scripts_share_their_text_encoders(tmp_path):
    """--train_text_encoder in a one-group script: the text encoders (both of SDXL's in
    train_text_to_image_lora_sdxl.py) follow the denoiser's LR, and lrs() gives them too."""
    run = _args(tmp_path, "train_text_to_image_lora_sdxl.py --train_text_encoder --max_train_steps=9\n")
    assert dict(run.groups) == {"unet": 1e-4}
    assert dict(run.shared) == {"text_encoder": "unet", "text_encoder_2": "unet"}
    lrs = run.lrs(np.arange(9))
    assert set(lrs) == {"unet", "text_encoder", "text_encoder_2"} and lrs["text_encoder_2"] is lrs["unet"]


def _sd(tmp_path, body: str):
    path = tmp_path / "src.toml"
    path.write_text("max_train_steps = 30\nlr_scheduler = 'constant'\n" + body)
    return read_run(str(path), trainer="sd-scripts")


def test_written_groups_by_role_not_order(tmp_path):
    """A trained part the scripts have no group for is refused, never written as the denoiser; the
    denoiser's LR is found by role whatever the source's group order."""
    from lora_sched.trainers.base import TrainerRun

    base = _sd(tmp_path, "learning_rate = 1e-4\n")
    embedding = TrainerRun("x", "x", {"embedding": 3e-4}, 30, "", resolved=base.resolved)
    with pytest.raises(ConfigError, match=r"embedding at 0\.0003") as err:
        write_run(embedding, "diffusers")
    assert all(p.hint for p in err.value.problems)
    te_only = _sd(tmp_path, "learning_rate = 1e-4\nnetwork_train_text_encoder_only = true\n")
    with pytest.raises(ConfigError, match=r"text_encoder at 0\.0001"):
        write_run(te_only, "diffusers")
    swapped = TrainerRun("x", "x", {"text_encoder": 5e-5, "unet": 1e-4}, 30, "", resolved=base.resolved)
    text = write_run(swapped, "diffusers")
    assert "train_dreambooth_lora_flux.py" in text and "--learning_rate=0.0001" in text
    assert "--text_encoder_lr=5e-05" in text

"""diffusion-pipe's TOML: recognised, read as its train.py runs it (goldens from its own scheduler
lines, tools/gen_diffusion_pipe_golden.py), its quirks warned exactly where they apply, and files
written for it that run lora_sched schedules exactly or are refused with the reason."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from lora_sched.errors import ConfigError
from lora_sched.trainers import available, read_run
from lora_sched.trainers import diffusion_pipe as dp
from lora_sched.trainers.base import RunFacts, TrainerRun
from lora_sched.trainers.documents import parse

DATA = Path(__file__).parent / "data" / "trainers" / "diffusion-pipe"
MANIFEST = json.loads((DATA / "golden" / "manifest.json").read_text())
CORPUS = sorted(p.name for p in (DATA / "configs").glob("*.toml"))
CASES = MANIFEST["cases"]


def doc(text: str, name: str = "dp.toml"):
    return parse(name, text)


def golden(name: str) -> dict[str, np.ndarray]:
    with open(DATA / CASES[name]["csv"]) as f:
        rows = list(csv.reader(f))
    head, body = rows[0], np.array(rows[1:], dtype=np.float64)
    assert np.array_equal(body[:, 0], np.arange(len(body)))
    return {h[3:]: body[:, i] for i, h in enumerate(head) if h.startswith("lr_")}


def same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert np.all(np.abs(a - b) <= 1e-9 * np.maximum(np.abs(a), np.abs(b))), np.max(np.abs(a - b))


def other_scores(document) -> dict[str, int]:
    """Scores of every other trainer that reads TOML."""
    return {t.name: t.recognise(document) for t in available("toml") if t.name != "diffusion-pipe"}


@pytest.mark.parametrize("name", CORPUS + [f"../written/{n}.toml" for n in ("w_constant_groups", "w_cosine_floor")])
def test_recognised_as_diffusion_pipe_only(name: str) -> None:
    path = DATA / "configs" / name
    document = doc(path.read_text(), str(path))
    assert dp.recognise(document) == 3
    others = other_scores(document)
    assert "sd-scripts" in others
    assert all(score < 3 for score in others.values()), others


def test_not_recognised_elsewhere() -> None:
    assert dp.recognise(doc('learning_rate = 1e-4\nlr_scheduler = "cosine"\nmax_train_steps = 10\n')) == 0
    assert dp.recognise(doc("epochs = 3\n[optimizer]\nlr = 1e-4\n")) == 0  # no optimizer type
    assert dp.recognise(doc("[[directory]]\npath = '/x'\nnum_repeats = 1\n")) == 0  # its data set file
    assert dp.recognise(parse("x.json", '{"epochs": 1, "optimizer": {"type": "adamw"}}')) == 0


@pytest.mark.parametrize("name", [n for n in CASES if n.endswith(".toml") or n.startswith("w_")])
def test_read_equals_trainer_golden(name: str) -> None:
    case = CASES[name]
    run = read_run(str(DATA / case["file"]), RunFacts(steps_per_epoch=case["steps_per_epoch"]), "diffusion-pipe")
    assert run.run_length == case["run_length"]
    want = golden(name)
    got = run.lrs(np.arange(run.run_length))
    assert list(got) == list(want)  # the trainer's group order
    for role in want:
        same(got[role], want[role])


def test_every_corpus_file_has_a_golden_or_is_refused() -> None:
    for name in CORPUS:
        if name in CASES:
            continue
        with pytest.raises(ConfigError, match=r"(?s)qwen_image_24gb_vram.toml:48: optimizer.type.*Automagic"):
            read_run(str(DATA / "configs" / name), RunFacts(steps_per_epoch=2), "diffusion-pipe")
    assert len(CASES) - len(CORPUS) + 1 == 5  # five written cases besides the four read ones


def test_run_length_needs_the_data_unless_max_steps() -> None:
    text = (DATA / "configs" / "main_example.toml").read_text()
    run = dp.read(doc(text), RunFacts())
    assert run.run_length is None and "--steps-per-epoch" in run.counting
    run = dp.read(doc(text), RunFacts(samples_per_epoch=41, num_processes=2))  # 41 // (1 x 1 x 2)
    assert run.run_length == 1000 * 20 and "= 20 steps per epoch" in run.counting
    hunyuan = (DATA / "configs" / "hunyuan_video_407c04f.toml").read_text()  # accumulation 4
    assert dp.read(doc(hunyuan), RunFacts(samples_per_epoch=41)).run_length == 1000 * 10
    capped = dp.read(doc("max_steps = 7\n" + text), RunFacts())
    assert capped.run_length == 7 and capped.counting.startswith("max_steps = 7")


BASE = "epochs = 4\nmicro_batch_size_per_gpu = 1\n{extra}\n[optimizer]\ntype = 'adamw_optimi'\nlr = {lr}\n"


def quirk_keys(extra: str, lr: str = "2e-4", steps: int | None = 5) -> list[str]:
    run = dp.read(doc(BASE.format(extra=extra, lr=lr)), RunFacts(steps_per_epoch=steps))
    return sorted(w.key + ":" + w.hint.split("(tdrussell")[1].split(" @")[0] for w in run.warnings)


def test_quirks_exactly_where_they_apply() -> None:
    assert quirk_keys("") == []
    assert quirk_keys("lr_scheduler = 'linear'") == []
    assert quirk_keys("warmup_steps = 3") == ["warmup_steps:/diffusion-pipe train.py:860"]
    assert quirk_keys("lr_scheduler = 'linear'\nwarmup_steps = 3") == [
        "warmup_steps:/diffusion-pipe train.py:860",
        "warmup_steps:/diffusion-pipe train.py:861",
    ]
    assert quirk_keys("lr_scheduler = 'cosine'") == ["lr_scheduler:/diffusion-pipe train.py:855"]
    assert quirk_keys("lr_scheduler = 'cosine'\nmax_steps = 12") == [
        "lr_scheduler:/diffusion-pipe train.py:855",
        "max_steps:/diffusion-pipe train.py:961",
    ]
    assert quirk_keys("lr_scheduler = 'linear'\nmax_steps = 20") == []  # 4 x 5 steps: max_steps ends nothing early
    assert quirk_keys("lr_scheduler = 'constant'\nmax_steps = 2") == []
    assert quirk_keys("force_constant_lr = 1e-5\nlr_scheduler = 'cosine'\nwarmup_steps = 3") == [
        "force_constant_lr:/diffusion-pipe train.py:893"
    ]


def test_quirk_is_located_and_cited() -> None:
    run = dp.read(doc(BASE.format(extra="lr_scheduler = 'cosine'", lr="2e-4"), "c.toml"), RunFacts(steps_per_epoch=5))
    (w,) = run.warnings
    assert (w.file, w.line, w.severity) == ("c.toml", 3, "warning")
    assert "1e-06" in w.found and dp.COMMIT[:10] in w.hint


def test_curves_as_train_py_draws_them() -> None:
    """Warmup chained in front with the decay at full length; cosine to an absolute 1e-6."""
    text = BASE.format(extra="lr_scheduler = 'cosine'\nwarmup_steps = 4", lr="1e-4")
    run = dp.read(doc(text), RunFacts(steps_per_epoch=5))  # T = 20, run 20 steps
    lr = run.lrs(np.arange(20))["unet"]
    same(lr[:4], 1e-4 * (0.25 + 0.75 * np.arange(4) / 4))
    same(lr[4:], 1e-6 + (1e-4 - 1e-6) * 0.5 * (1 + np.cos(np.pi * np.arange(16) / 20)))
    rs = run.resolved
    assert (rs.name, rs.warmup, rs.horizon, rs.warmup_start) == ("cosine", 4, 24, 0.25)
    assert rs.params["min_lr_ratio"] == pytest.approx(0.01)


def test_cosine_with_groups_or_tiny_lr_is_own_curve() -> None:
    sdxl = "[model]\ntype = 'sdxl'\nunet_lr = 1e-4\ntext_encoder_1_lr = 0\n"
    run = dp.read(doc(BASE.format(extra="lr_scheduler = 'cosine'", lr="5e-5") + sdxl), RunFacts(steps_per_epoch=5))
    assert run.resolved is None and list(run.groups) == ["unet", "text_encoder", "text_encoder_2"]
    lrs = run.lrs(np.arange(20))
    same(lrs["text_encoder"][1:], 1e-6 * 0.5 * (1 - np.cos(np.pi * np.arange(1, 20) / 20)))  # rises from 0
    assert lrs["text_encoder_2"][0] == 5e-5
    tiny = dp.read(doc(BASE.format(extra="lr_scheduler = 'cosine'", lr="5e-7")), RunFacts(steps_per_epoch=5))
    assert tiny.resolved is None and tiny.lrs([19])["unet"][0] > 5e-7
    assert any("rises to it" in w.found for w in tiny.warnings)


def test_cosmos_groups() -> None:
    model = "[model]\ntype = 'anima'\nllm_adapter_lr = 0\nmlp_lr = 3e-5\n"
    run = dp.read(doc(BASE.format(extra="", lr="1e-4") + model), RunFacts(steps_per_epoch=5))
    assert dict(run.groups) == {"unet": 1e-4, "mlp": 3e-5}


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("epochs = 'ten'\n", "dp.toml:1: epochs", "whole number"),
        ("lr_scheduler = 'cosin'\n", "dp.toml:1: lr_scheduler", "did you mean `cosine`"),
        ("lr_scheduler = 'rex'\n", "dp.toml:1: lr_scheduler", "NotImplementedError"),
        ("warmup_steps = 0.05\n", "dp.toml:1: warmup_steps", "dev branch"),
        ("warmup_steps = true\n", "dp.toml:1: warmup_steps", "whole number"),
        ("max_steps = '5'\n", "dp.toml:1: max_steps", "whole number"),
        ("force_constant_lr = 'x'\n", "dp.toml:1: force_constant_lr", "number"),
    ],
)
def test_bad_values_name_file_line_and_key(text: str, where: str, what: str) -> None:
    base = "epochs = 2\npipeline_stages = 1\n[optimizer]\ntype = 'adamw'\nlr = 1e-4\n"
    body = text + (base if not text.startswith("epochs") else base.split("\n", 1)[1])
    with pytest.raises(ConfigError) as info:
        dp.read(doc(body), RunFacts(steps_per_epoch=3))
    assert where in str(info.value) and what in str(info.value)


def test_bad_lr_and_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dp.toml:5: optimizer.lr.*\"1e-4\""):
        dp.read(doc("epochs = 2\npipeline_stages = 1\n[optimizer]\ntype = 'adamw'\nlr = '1e-4'\n"), RunFacts())
    with pytest.raises(ConfigError, match=r"(?s)optimizer\.lr.*own default"):
        dp.read(doc("epochs = 2\npipeline_stages = 1\n[optimizer]\ntype = 'adamw'\n"), RunFacts())
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = 2\n[optimizer\ntype = 'adamw'\n")
    with pytest.raises(ConfigError, match=r"bad.toml:2"):
        read_run(str(bad), trainer="diffusion-pipe")


# ---- write ----------------------------------------------------------------------------------
def sd_run(tmp_path: Path, body: str):
    path = tmp_path / "sd.toml"
    path.write_text(body)
    return read_run(str(path), trainer="sd-scripts")


def written_back(tmp_path: Path, run, facts: RunFacts):
    text = dp.write(run, facts)
    path = tmp_path / "written.toml"
    path.write_text(text)
    back = read_run(str(path), facts, "diffusion-pipe")
    assert back.run_length == run.run_length
    steps = np.arange(run.run_length)
    want, got = run.lrs(steps), back.lrs(steps)
    for role, lr in want.items():
        if run.roles[role] != 0:  # a trained part is written, never dropped
            same(got[role], lr)
    return text, back


TWO = "learning_rate = 1e-4\nunet_lr = 1e-4\ntext_encoder_lr = 5e-5\nmax_train_steps = 100\n"
ONE = "learning_rate = 2e-4\nnetwork_train_unet_only = true\nmax_train_steps = 100\n"
GRID = {  # lora_sched schedule -> None (written exactly) or the refusal's reason
    "constant": (TWO + 'lr_scheduler = "constant"\n', None),
    "constant_with_warmup 1/W": (
        ONE + 'lr_scheduler = "constant_with_warmup"\nlr_warmup_steps = 10\nwarmup_start = 0.1\n',
        None,
    ),
    "linear": (TWO + 'lr_scheduler = "linear"\n', None),
    "linear, warmup 1/W, horizon + W": (
        TWO + 'lr_scheduler = "linear"\nlr_warmup_steps = 5\nwarmup_start = 0.2\nschedule_steps = 105\n',
        None,
    ),
    "wsd without decay": (ONE + 'lr_scheduler = "wsd"\n', None),  # sd-scripts' lr_decay_steps default 0
    "cosine floor 1e-6": (ONE + 'lr_scheduler = "cosine"\nlr_scheduler_args = {min_lr_ratio = 0.005}\n', None),
    "cosine with warmup": (ONE + 'lr_scheduler = "cosine"\nlr_warmup_steps = 10\n', "rises linearly from LR/10"),
    "cosine, warmup 1/W": (
        ONE + 'lr_scheduler = "cosine"\nlr_warmup_steps = 10\nwarmup_start = 0.1\n'
        "lr_scheduler_args = {min_lr_ratio = 0.005}\n",
        "needs a run of at most 90 steps, not 100",
    ),
    "cosine to 0": (ONE + 'lr_scheduler = "cosine"\n', "falls to 1e-06"),
    "cosine two groups": (TWO + 'lr_scheduler = "cosine"\n', "falls to 1e-06"),
    "constant_with_warmup from 0": (ONE + 'lr_scheduler = "constant_with_warmup"\nlr_warmup_steps = 10\n', "LR/10"),
    "cosine_with_restarts 3": (
        ONE + 'lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 3\n',
        "falls to",
    ),
    "polynomial power 2": (ONE + 'lr_scheduler = "polynomial"\nlr_scheduler_power = 2.0\n', "falls to 0"),
    "rex": (ONE + 'lr_scheduler = "rex"\n', "falls to"),
    "wsd": (ONE + 'lr_scheduler = "wsd"\nlr_decay_steps = 20\n', "falls to 0"),
    "polynomial power 1, lr_end 1e-7": (ONE + 'lr_scheduler = "polynomial"\nlr_scheduler_power = 1.0\n', "falls to 0"),
    "linear min_lr_ratio": (ONE + 'lr_scheduler = "linear"\nlr_scheduler_args = {min_lr_ratio = 0.1}\n', "falls to 0"),
}


@pytest.mark.parametrize("case", GRID)
def test_write_grid(tmp_path: Path, case: str) -> None:
    body, reason = GRID[case]
    run = sd_run(tmp_path, body)
    facts = RunFacts(steps_per_epoch=10)
    if reason is None:
        text, _ = written_back(tmp_path, run, facts)
        assert ("\n[model]\n" in text) == bool(run.groups["text_encoder"])  # text encoders trained: SDXL's
        return
    with pytest.raises(ConfigError, match="a curve diffusion-pipe can run") as info:
        dp.write(run, facts)
    assert reason in str(info.value) and "lr_scheduler = '" in str(info.value)


def test_write_needs_steps_for_a_decay_not_for_constant(tmp_path: Path) -> None:
    run = sd_run(tmp_path, ONE + 'lr_scheduler = "linear"\n')
    with pytest.raises(ConfigError, match="--steps-per-epoch"):
        dp.write(run, RunFacts())
    with pytest.raises(ConfigError, match="not a whole number of epochs of 7 steps"):
        dp.write(run, RunFacts(steps_per_epoch=7))
    written_back(tmp_path, run, RunFacts(samples_per_epoch=50, num_processes=2))  # 25 steps an epoch
    text, _ = written_back(tmp_path, sd_run(tmp_path, ONE + 'lr_scheduler = "constant"\n'), RunFacts())
    assert "max_steps = 100" in text


def test_write_refuses_other_groups_and_no_schedule(tmp_path: Path) -> None:
    run = sd_run(tmp_path, TWO + 'lr_scheduler = "constant"\n')
    odd = TrainerRun("x", "x", {"a": 1e-4, "b": 2e-4}, run.run_length, "", resolved=run.resolved)
    with pytest.raises(ConfigError, match="only for SDXL"):
        dp.write(odd, RunFacts())
    text = BASE.format(extra="lr_scheduler = 'cosine'", lr="1e-4") + "[model]\ntype = 'sdxl'\ntext_encoder_1_lr = 0\n"
    own = dp.read(doc(text), RunFacts(steps_per_epoch=5))
    with pytest.raises(ConfigError, match="which no lora_sched schedule expresses"):
        dp.write(own, RunFacts(steps_per_epoch=5))


def test_written_goldens_are_the_lora_sched_curve(tmp_path: Path) -> None:
    """Each written case: the sd-scripts run it came from has, at every step, the LRs diffusion-pipe's
    own code stepped for the written file (golden), and the writer still writes that file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gen", Path(__file__).parents[1] / "tools" / "gen_diffusion_pipe_golden.py"
    )
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for name in (n for n in CASES if n.startswith("w_")):
        assert gen.written_file(name, tmp_path) == (DATA / "written" / f"{name}.toml").read_text()
        values, length, _ = gen.WRITTEN_CASES[name]
        import tomli_w

        run = sd_run(tmp_path, tomli_w.dumps({**values, **length}))
        want = golden(name)
        got = run.lrs(np.arange(run.run_length))
        assert len(want["unet"]) == run.run_length
        for role, lr in want.items():
            same(got.get(role, got["unet"]) if role != "text_encoder_2" else got["text_encoder"], lr)


def test_text_encoders_at_the_denoisers_lr_are_written_not_dropped(tmp_path: Path) -> None:
    """A run training its text encoders at the denoiser's LR: SDXL's three groups (the only model
    whose text encoders diffusion-pipe trains), not one [optimizer] lr that trains the denoiser alone."""
    run = sd_run(tmp_path, 'learning_rate = 2e-4\nmax_train_steps = 100\nlr_scheduler = "constant"\n')
    assert run.roles == {"unet": 2e-4, "text_encoder": 2e-4}
    text, back = written_back(tmp_path, run, RunFacts(steps_per_epoch=10))
    assert 'type = "sdxl"' in text and back.groups == {"unet": 2e-4, "text_encoder": 2e-4, "text_encoder_2": 2e-4}
    flux = TrainerRun("x", "x", {"unet": 1e-4, "embedding": 1e-4}, run.run_length, "", resolved=run.resolved)
    with pytest.raises(ConfigError, match=r"embedding at 0\.0001"):
        dp.write(flux, RunFacts(steps_per_epoch=10))

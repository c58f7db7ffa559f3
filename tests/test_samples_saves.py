"""Sample prompts (sd-scripts' .txt / .toml / .json forms), when samples are drawn and how the files
are named, which per-epoch / per-step LoRA files are written and pruned: sd-scripts' rules, checked
without training (tests/test_train_samples.py trains)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from train_support import logged_text

from lora_sched.config import load_config
from lora_sched.config.prompts import SamplePrompt, read_prompt_file
from lora_sched.config.samplers import SAMPLERS
from lora_sched.errors import ConfigError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_txt_prompts_with_every_option(tmp_path):
    found = read_prompt_file(
        _write(
            tmp_path / "p.txt",
            "# a comment line\n"
            "a red circle --n blurry, dark --w 640 --h 452 --s 20 --l 5.5 --d 7\n"
            "\n"
            "   \n"
            "a blue square --ss euler_a --D 3\n"
            "a triangle --s 5000 --g 3.5\n",
        )
    )
    assert found.prompts == [
        SamplePrompt(0, "a red circle", "blurry, dark", 640, 452, 20, 5.5, 7),
        SamplePrompt(1, "a blue square", None, seed=3, sampler="euler_a"),  # option letters in any case
        SamplePrompt(2, "a triangle", sample_steps=1000),  # steps kept within 1..1000; --g is FLUX's: no notice
    ]
    assert found.prompts[0].size == (640, 448)  # rounded down to a multiple of 8
    assert SamplePrompt(0, "x", width=20, height=70).size == (64, 64)  # at least 64
    assert found.warnings == []


def test_txt_options_sd_scripts_ignores_are_warnings_at_their_line(tmp_path):
    path = _write(tmp_path / "p.txt", "one\ntwo --w abc --x 3 --ss nosuch\n")
    found = read_prompt_file(path)
    assert found.prompts[1] == SamplePrompt(1, "two", sampler="ddim")  # an unknown sampler: sd-scripts' DDIM
    texts = [str(w) for w in found.warnings]
    assert len(texts) == 3 and all(t.startswith(f"{path}:2: warning: ") for t in texts)
    assert 'got "--w abc"' in texts[0] and 'got "--x 3"' in texts[1] and 'got "nosuch"' in texts[2]


def test_toml_prompts_share_the_prompt_table(tmp_path):
    path = _write(
        tmp_path / "p.toml",
        '[prompt]\nnegative_prompt = "lowres"\nwidth = 96\nsample_steps = 3\nscale = 4\nclip_skip = 2\n\n'
        '[[prompt.subset]]\nprompt = "a red circle"\nseed = 1\n\n'
        '[[prompt.subset]]\nprompt = "a blue square"\nheight = 128\nsample_sampler = "k_euler"\nwidth = 80\n',
    )
    found = read_prompt_file(path)
    assert found.prompts == [
        SamplePrompt(0, "a red circle", "lowres", 96, 512, 3, 4.0, 1),
        SamplePrompt(1, "a blue square", "lowres", 80, 128, 3, 4.0, None, "k_euler"),  # the subset's width wins
    ]
    assert [p.line for p in found.prompts] == [8, 12]  # their [[prompt.subset]] lines
    # a key sd-scripts does not read, in the shared table: one warning, at [prompt]
    assert [(w.key, w.line, w.severity) for w in found.warnings] == [("[prompt]: clip_skip", 1, "warning")]


def test_json_prompts_mix_lines_and_tables(tmp_path):
    path = _write(
        tmp_path / "p.json",
        json.dumps(["a red circle --w 64 --h 64 --d 5", {"prompt": "a square", "width": 80, "seed": 2, "foo": 1}]),
    )
    found = read_prompt_file(path)
    assert found.prompts == [
        SamplePrompt(0, "a red circle", width=64, height=64, seed=5),
        SamplePrompt(1, "a square", width=80, seed=2),
    ]
    assert [w.key for w in found.warnings] == ["prompt 1: foo"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "p.toml",
            '[prompt]\nwidth = "wide"\n[[prompt.subset]]\nprompt = "x"\n',
            ':1: [prompt]: width: expected an int, got "wide"',
        ),
        ("p.toml", 'prompt = "x"\n', "prompt.subset: expected a [prompt] table with [[prompt.subset]] entries"),
        ("p.toml", "[prompt\n", "expected valid TOML"),
        ("p.json", '{"prompt": "x"}', "expected a JSON list of prompts"),
        ("p.json", "[1]", "prompt 0: expected an option line or a table of prompt fields, got 1"),
        ("p.json", '[{"seed": 1.5}]', "prompt 0: seed: expected an int, got 1.5"),
        ("p.yaml", "x", "expected a .txt, .toml or .json file"),
    ],
)
def test_prompt_files_sd_scripts_cannot_use_are_errors_naming_the_file(tmp_path, name, text, message):
    path = _write(tmp_path / name, text)
    with pytest.raises(ConfigError) as caught:
        read_prompt_file(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_toml_errors_name_the_subset_line(tmp_path):
    path = _write(tmp_path / "p.toml", '[prompt]\n\n[[prompt.subset]]\nprompt = "a"\n\n[[prompt.subset]]\nseed = "x"\n')
    with pytest.raises(ConfigError, match=re.escape(f"{path}:6: prompt 1: seed: expected an int")):
        read_prompt_file(path)


def _plan(**values):
    from lora_sched.train.sampling import SamplePlan

    return SamplePlan((SamplePrompt(0, "x"),), Path("out/sample"), "lora", **values)


def test_sampling_points_follow_sd_scripts():
    steps = _plan(every_n_steps=4)
    assert [d for d in range(1, 21) if steps.point_after(d, 6, 20)] == [4, 8, 12, 16, 20]
    assert steps.point_after(8, 6, 20) == "000008"
    epochs = _plan(every_n_epochs=2, every_n_steps=4)  # the epoch interval wins: steps ignored
    points = {d: epochs.point_after(d, 6, 20) for d in range(1, 21)}
    # epochs of 6 steps, the 4th one cut short by the run's end (20 steps): sampled at its end too
    assert {d: p for d, p in points.items() if p} == {12: "e000002", 20: "e000004"}


def test_image_names_are_sd_scripts_names():
    from lora_sched.train.sampling import image_name

    now = 1_700_000_000.0
    stamp = __import__("time").strftime("%Y%m%d%H%M%S", __import__("time").localtime(now))
    assert image_name("mylora", "000040", 3, 12345, now) == f"mylora_000040_03_{stamp}_12345.png"
    assert image_name("mylora", "e000002", 0, None, now) == f"mylora_e000002_00_{stamp}.png"


@pytest.mark.slow  # imports diffusers' schedulers: ~10 s on a loaded 2-core machine
def test_every_sampler_name_maps_to_its_diffusers_scheduler():
    pytest.importorskip("diffusers")
    from lora_sched.train.model import sd_noise_scheduler
    from lora_sched.train.sampling import make_scheduler

    config = sd_noise_scheduler().config
    expected = {
        "ddim": "DDIMScheduler",
        "pndm": "PNDMScheduler",
        "lms": "LMSDiscreteScheduler",
        "euler": "EulerDiscreteScheduler",
        "euler_a": "EulerAncestralDiscreteScheduler",
        "heun": "HeunDiscreteScheduler",
        "dpm_2": "KDPM2DiscreteScheduler",
        "dpm_2_a": "KDPM2AncestralDiscreteScheduler",
        "dpmsolver": "DPMSolverMultistepScheduler",
        "dpmsolver++": "DPMSolverMultistepScheduler",
        "dpmsingle": "DPMSolverSinglestepScheduler",
    }
    for name in SAMPLERS:
        plain = name.removeprefix("k_")
        if "lms" in name and not _has_scipy():
            continue  # diffusers' LMS needs scipy; the refusal is tested below
        scheduler = make_scheduler(name, config)
        assert type(scheduler).__name__ == expected[plain], name
        assert scheduler.config.beta_start == 0.00085 and scheduler.config.beta_end == 0.012
        assert scheduler.config.beta_schedule == "scaled_linear" and scheduler.config.prediction_type == "epsilon"
        if plain.startswith("dpmsolver"):
            assert scheduler.config.algorithm_type == plain
    assert make_scheduler("ddim", config).config.clip_sample is True  # as sd-scripts sets it
    v_model = sd_noise_scheduler("v_prediction").config  # an SD 2.x v model samples with v-prediction
    assert make_scheduler("euler_a", v_model).config.prediction_type == "v_prediction"


def _has_scipy() -> bool:
    import importlib.util

    return importlib.util.find_spec("scipy") is not None


def _values(tmp_path, prompts: str, **extra):
    path = _write(tmp_path / "p.txt", prompts)
    return {"sample_prompts": str(path), "output_name": "lora", "sample_every_n_steps": 2, **extra}


def test_sample_plan_refuses_what_fails_at_the_first_sampling_point(tmp_path, monkeypatch):
    import importlib.util

    from lora_sched.train.sampling import sample_plan

    too_few = "p.txt:2: prompt 1: sample_steps: expected at least 4 steps with pndm"
    with pytest.raises(ConfigError, match=re.escape(too_few)):
        sample_plan(_values(tmp_path, "x --s 4\nx --s 3", sample_sampler="pndm"), tmp_path)
    assert sample_plan(_values(tmp_path, "x --s 4", sample_sampler="pndm"), tmp_path) is not None
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scipy" else real(name, *a))
    with pytest.raises(ConfigError, match="LMS scheduler needs scipy"):
        sample_plan(_values(tmp_path, "x --ss k_lms"), tmp_path)


def test_sample_plan_is_none_without_prompts_or_timing(tmp_path, caplog):
    from lora_sched.train.sampling import sample_plan

    assert sample_plan(_values(tmp_path, "x", sample_every_n_steps=None), tmp_path) is None  # nothing says when
    assert sample_plan(_values(tmp_path, "x", sample_every_n_steps=0), tmp_path) is None  # 0: off, as sd-scripts
    assert sample_plan({"output_name": "lora", "sample_at_first": True}, tmp_path) is None  # no file named
    missing = {"sample_prompts": str(tmp_path / "none.txt"), "output_name": "lora", "sample_at_first": True}
    assert sample_plan(missing, tmp_path) is None
    assert f"warning: sample_prompts: no prompt file at {tmp_path / 'none.txt'}" in logged_text(caplog)
    plan = sample_plan(_values(tmp_path, "a --d 1\nb", sample_every_n_epochs=3, sample_sampler="euler"), tmp_path)
    assert (plan.every_n_steps, plan.every_n_epochs, plan.sampler, len(plan.prompts)) == (2, 3, "euler", 2)
    assert plan.folder == tmp_path / "sample"


def _saves(**values):
    from lora_sched.train.saving import SavePlan

    return SavePlan(Path("out"), "lora", **values)


def test_epoch_and_step_files_are_sd_scripts_names():
    from lora_sched.train.saving import files_due

    plan = _saves(every_n_epochs=1, every_n_steps=5)
    # 4 steps per epoch, 12 steps: epochs 1 and 2 saved, the 3rd is the final file
    due = {d: [name for name, _ in files_due(plan, d, 4, 12)] for d in range(1, 13)}
    assert {d: names for d, names in due.items() if names} == {
        4: ["lora-000001.safetensors"],
        5: ["lora-step00000005.safetensors"],
        8: ["lora-000002.safetensors"],
        10: ["lora-step00000010.safetensors"],
    }


def test_save_last_n_removes_what_sd_scripts_removes():
    from lora_sched.train.saving import files_due

    epochs = _saves(every_n_epochs=2, last_n_epochs=2)
    removed = {d // 3: files_due(epochs, d, 3, 30)[0][1] for d in range(6, 30, 6)}
    # epochs 2, 4, 6, 8 saved (10 is the final file); keeping 2: epoch 2 goes at 6, 4 at 8 (and "0" at 4)
    assert removed == {
        2: None,
        4: "lora-000000.safetensors",
        6: "lora-000002.safetensors",
        8: "lora-000004.safetensors",
    }
    steps = _saves(every_n_steps=10, last_n_steps=30)
    removed = {d: files_due(steps, d, 100, 100)[0][1] for d in range(10, 70, 10)}
    # sd-scripts' own example: every 10 steps, the last 30 steps kept: at step 50 the file of step 10 goes
    assert removed == {
        10: None,
        20: None,
        30: None,
        40: "lora-step00000000.safetensors",  # never written: nothing to remove
        50: "lora-step00000010.safetensors",
        60: "lora-step00000020.safetensors",
    }


def test_save_files_writes_and_prunes(tmp_path):
    from lora_sched.train.saving import SavePlan, files_due, save_files

    plan = SavePlan(tmp_path, "lora", every_n_epochs=1, last_n_epochs=2)
    for done in range(1, 5):
        save_files(plan, files_due(plan, done, 1, 5), lambda path: path.write_bytes(b"x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lora-000003.safetensors", "lora-000004.safetensors"]


def test_sample_and_save_keys_are_honoured_keys(tmp_path):
    config = _write(
        tmp_path / "c.toml",
        'sample_prompts = "p.txt"\nsample_every_n_epochs = 1\nsample_sampler = "k_dpm_2_a"\n'
        "sample_at_first = true\nsave_every_n_epochs = 2\nsave_last_n_epochs = 3\nsave_last_n_steps = 9\n",
    )
    cfg = load_config(config)
    assert cfg.values["sample_sampler"] == "k_dpm_2_a" and cfg.values["save_last_n_steps"] == 9
    assert not any("it does not use" in str(w) for w in cfg.warnings)
    bad = _write(tmp_path / "bad.toml", 'sample_sampler = "euler_ancestral"\n')
    with pytest.raises(ConfigError, match='sample_sampler: expected one of "ddim"'):
        load_config(bad)


def test_validate_reads_the_prompt_file_of_a_run_that_samples(tmp_path, monkeypatch):
    """Its errors and warnings at their lines, before any training; a run that never samples never reads it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.txt").write_text("a (red:1.2) circle --x 3\na (red:1.2.3) circle\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path / "c.toml", 'sample_prompts = "p.txt"\nsample_every_n_steps = 2\n'))
    text = str(exc.value)
    assert "p.txt:2: prompt 1: prompt: expected a weight such as (text:1.2), got :1.2.3)" in text, text
    (tmp_path / "p.txt").write_text("a (red:1.2) circle --x 3\n", encoding="utf-8")
    cfg = load_config(_write(tmp_path / "c.toml", 'sample_prompts = "p.txt"\nsample_at_first = true\n'))
    assert [(w.file, w.line, w.key) for w in cfg.warnings] == [("p.txt", 1, "sample_prompts")]
    (tmp_path / "p.txt").write_text("a (red:1.2.3) circle\n", encoding="utf-8")
    for off in ("", "sample_every_n_steps = 0\n"):  # nothing says when, or 0 (off, as sd-scripts reads it)
        assert load_config(_write(tmp_path / "c.toml", f'sample_prompts = "p.txt"\n{off}')).warnings == []

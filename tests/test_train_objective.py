"""sd-scripts' training objective options in `lora-sched train` (lora_sched.train.objective).

Each function is compared with sd-scripts' own on the same tensors and random stream
(tests/data/sdscripts_objective/golden.json, made by tools/gen_sdscripts_objective_golden.py from
kohya-ss/sd-scripts at the commit it records), exactly: the same float32 operations in the same
order. Then the options' keys and cross-checks, and short training runs with them.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")

from train_support import write_train_config  # noqa: E402

from lora_sched.cli import main  # noqa: E402
from lora_sched.config import loads_config  # noqa: E402
from lora_sched.config.keys import KEY_BY_NAME  # noqa: E402
from lora_sched.errors import ConfigError  # noqa: E402
from lora_sched.train.objective import (  # noqa: E402
    OBJECTIVE_KEYS,
    Objective,
    draw_noised_batch,
    draw_timesteps,
    elementwise_loss,
    huber_threshold,
    lora_pairs,
    max_norm_regularize,
    objective_from_values,
    objective_loss,
    prepare_noise_scheduler,
    snr_table,
    weighted_loss,
    zero_terminal_snr_betas,
)

GOLDEN: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "sdscripts_objective" / "golden.json").read_text(encoding="utf-8")
)


def f32(values: Any) -> Any:
    return torch.tensor(values, dtype=torch.float32)


def scheduler(objective: Objective) -> Any:
    """sd-scripts' DDPM scheduler, prepared as `train` prepares the model's."""
    from diffusers import DDPMScheduler

    made = DDPMScheduler(**GOLDEN["scheduler"])
    prepare_noise_scheduler(made, objective)
    return made


def objective_of(options: dict[str, Any]) -> tuple[Objective, bool]:
    """A golden case's options as an Objective, and whether it trains v-prediction."""
    return Objective(**{k: v for k, v in options.items() if k in OBJECTIVE_KEYS}), bool(
        options.get("v_parameterization")
    )


def case_id(case: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in case["options"].items()) or "defaults"


def test_golden_provenance() -> None:
    assert GOLDEN["provenance"]["repository"] == "kohya-ss/sd-scripts"
    assert GOLDEN["provenance"]["commit"] == "48d368fa557731ad0488c07304dfeba8c07910eb"


def test_objective_defaults_are_sd_scripts_argparse_defaults() -> None:
    ours = Objective()
    for name, value in GOLDEN["arg_defaults"].items():
        if name in OBJECTIVE_KEYS:
            assert getattr(ours, name) == value, name
            assert KEY_BY_NAME[name].default == value, name


def test_snr_table_and_zero_terminal_snr_match_sd_scripts() -> None:
    plain, fixed = scheduler(Objective()), scheduler(Objective(zero_terminal_snr=True))
    expected = GOLDEN["schedule"]
    assert torch.equal(plain.all_snr, f32(expected["all_snr"]))
    assert torch.equal(fixed.all_snr, plain.all_snr)  # sd-scripts takes the table before the rescale
    for name in ("betas", "alphas", "alphas_cumprod"):
        assert torch.equal(getattr(fixed, name), f32(expected["zero_terminal_snr"][name])), name
    assert float(fixed.alphas_cumprod[-1]) == 0.0 and float(plain.alphas_cumprod[-1]) > 0.0
    assert torch.equal(snr_table(plain.alphas_cumprod), plain.all_snr)
    assert torch.equal(zero_terminal_snr_betas(plain.betas), fixed.betas)


@pytest.mark.parametrize("case", GOLDEN["noise"], ids=case_id)
def test_noise_timesteps_and_noisy_latents_match_sd_scripts(case: dict[str, Any]) -> None:
    objective, _ = objective_of(case["options"])
    latents = f32(GOLDEN["noise_latents"])
    gen = torch.Generator().manual_seed(case["seed"])
    drawn = draw_noised_batch(latents, scheduler(objective), objective, gen, 1000)
    assert drawn.timesteps.tolist() == case["timesteps"]
    assert torch.equal(drawn.noise, f32(case["noise"]))
    assert torch.equal(drawn.noisy, f32(case["noisy"]))


def test_timestep_range_semantics() -> None:
    """[min, max) when min < max; every timestep max otherwise (even when min > max)."""
    assert [c["timesteps"] for c in GOLDEN["noise"] if c["options"].get("min_timestep") in (500, 600)] == [
        [500, 500],
        [300, 300],
    ]
    gen = torch.Generator().manual_seed(0)
    assert draw_timesteps(600, 300, 3, gen).tolist() == [300, 300, 300]
    assert set(draw_timesteps(998, 1000, 64, gen).tolist()) == {998, 999}
    assert Objective(min_timestep=990).timestep_range(1000) == (990, 1000)
    assert Objective(max_timestep=10).timestep_range(1000) == (0, 10)


@pytest.mark.parametrize("case", GOLDEN["loss"], ids=case_id)
def test_loss_matches_sd_scripts(case: dict[str, Any]) -> None:
    objective, v_prediction = objective_of(case["options"])
    inputs = GOLDEN["loss_inputs"]
    pred, target = f32(inputs["pred"]), f32(inputs["target"])
    timesteps, weights = torch.tensor(inputs["timesteps"]), f32(inputs["weights"])
    noise_scheduler = scheduler(objective)
    threshold = huber_threshold(objective, timesteps, noise_scheduler.alphas_cumprod, 1000)
    per_sample = elementwise_loss(pred, target, objective.loss_type, threshold).mean(dim=[1, 2, 3])
    weighted = weighted_loss(per_sample, timesteps, noise_scheduler.all_snr, objective, v_prediction, weights)
    assert torch.equal(weighted, f32(case["per_sample"]))
    loss = objective_loss(pred, target, timesteps, noise_scheduler, objective, v_prediction, weights)
    assert float(loss) == case["loss"]


def test_sample_weights_scale_each_sample_before_the_batch_mean() -> None:
    """sd-scripts' loss_weights (prior_loss_weight): a weight of 0 drops a sample from the mean's sum."""
    inputs = GOLDEN["loss_inputs"]
    pred, target, timesteps = f32(inputs["pred"]), f32(inputs["target"]), torch.tensor(inputs["timesteps"])
    noise_scheduler = scheduler(Objective())
    per_sample = ((pred - target) ** 2).mean(dim=[1, 2, 3])
    only_first = objective_loss(pred, target, timesteps, noise_scheduler, Objective(), False, f32([1, 0, 0, 0]))
    assert float(only_first) == pytest.approx(float(per_sample[0]) / 4, rel=1e-6)
    unweighted = objective_loss(pred, target, timesteps, noise_scheduler, Objective(), False, None)
    assert float(unweighted) == float(
        objective_loss(pred, target, timesteps, noise_scheduler, Objective(), False, f32([1] * 4))
    )


def norm_pairs(weights: dict[str, list]) -> list[tuple[Any, Any, Any]]:
    """(down, up, alpha / dim) per golden module, in sd-scripts' state-dict order."""
    pairs = []
    for name, _, _, alpha in GOLDEN["norm_modules"]:
        down = f32(weights[f"{name}.lora_down.weight"])
        pairs.append((down, f32(weights[f"{name}.lora_up.weight"]), f32(alpha) / down.shape[0]))
    return pairs


@pytest.mark.parametrize("case", GOLDEN["max_norm"], ids=lambda c: f"weights{c['weights']}-max{c['max_norm']}")
def test_max_norm_regularization_matches_sd_scripts(case: dict[str, Any]) -> None:
    pairs = norm_pairs(GOLDEN["norm_weights"][case["weights"]])
    report = max_norm_regularize(pairs, case["max_norm"])
    assert report == (case["keys_scaled"], case["mean_norm"], case["max_key_norm"])
    for (name, *_), (down, up, _) in zip(GOLDEN["norm_modules"], pairs, strict=True):
        assert torch.equal(down, f32(case["after"][f"{name}.lora_down.weight"])), name
        assert torch.equal(up, f32(case["after"][f"{name}.lora_up.weight"])), name


def test_golden_max_norm_cases_scale_some_modules_and_not_others() -> None:
    """The goldens exercise both branches: modules under the norm untouched, modules over it scaled."""
    scaled = [c["keys_scaled"] for c in GOLDEN["max_norm"]]
    assert 0 in scaled and max(scaled) == len(GOLDEN["norm_modules"]) and any(0 < n < max(scaled) for n in scaled)


def test_lora_pairs_group_peft_lora_a_with_its_lora_b() -> None:
    """One (down, up, alpha / rank) per adapted layer, with that layer's own alpha and rank: peft's
    lora_A is kohya's lora_down."""
    a1, b1, a2, b2 = (torch.nn.Parameter(torch.zeros(2)) for _ in range(4))
    params = {
        "unet.x.to_q.lora_A.default.weight": a1,
        "unet.x.to_q.lora_B.default.weight": b1,
        "text_encoder.y.q_proj.lora_A.default.weight": a2,
        "text_encoder.y.q_proj.lora_B.default.weight": b2,
    }
    pairs = lora_pairs(params, {"unet.x.to_q": 2.0, "text_encoder.y.q_proj": 1.0})
    assert [(down is a, up is b) for (down, up, _), a, b in zip(pairs, (a1, a2), (b1, b2), strict=True)] == [
        (True, True),
        (True, True),
    ]
    assert [float(scale) for _, _, scale in pairs] == [1.0, 0.5]  # each layer's alpha over its rank (2)


# --- keys and cross-checks --------------------------------------------------------------------


def test_the_options_are_keys_not_unused_sd_scripts_options() -> None:
    text = "noise_offset = 0.05\nmin_snr_gamma = 5\nloss_type = 'huber'\nscale_weight_norms = 1\nlowram = true\n"
    cfg = loads_config(text)
    (notice,) = [p for p in cfg.warnings if "does not use" in p.found]
    assert notice.found == "1 sd-scripts option(s) it does not use: lowram"
    assert (cfg.values["noise_offset"], cfg.values["min_snr_gamma"], cfg.values["loss_type"]) == (0.05, 5.0, "huber")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loss_type = 'l3'", 'loss_type: expected one of "l1", "l2", "huber", "smooth_l1"'),
        ("huber_schedule = 'linear'", 'huber_schedule: expected one of "constant", "exponential", "snr"'),
        ("huber_c = 0", "huber_c: expected a number in (0, 1000]"),
        ("min_timestep = 1000", "min_timestep: expected an int in [0, 999]"),
        ("max_timestep = 1001", "max_timestep: expected an int in [0, 1000]"),
        ("noise_offset = -0.1", "noise_offset: expected a number in [0, 10]"),
    ],
)
def test_out_of_range_values_are_refused_at_their_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        loads_config(text + "\n")


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"adaptive_noise_scale": 0.01}, "adaptive_noise_scale"),
        ({"scale_v_pred_loss_like_noise_pred": True}, "scale_v_pred_loss_like_noise_pred"),
        ({"v_pred_like_loss": 0.1, "v_parameterization": True}, "v_pred_like_loss"),
    ],
)
def test_sd_scripts_cross_checks_are_config_errors(values: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        objective_from_values(values)
    assert [p.key for p in caught.value.problems] == [key]


def test_what_sd_scripts_accepts_passes_the_cross_checks() -> None:
    assert objective_from_values({"noise_offset": 0.0, "adaptive_noise_scale": 0.01}).noise_offset == 0.0
    assert objective_from_values({"scale_v_pred_loss_like_noise_pred": True, "v_parameterization": True})
    assert objective_from_values({"v_pred_like_loss": 0.1}).v_pred_like_loss == 0.1


def test_zero_terminal_snr_without_v_parameterization_is_a_warning(caplog) -> None:
    with caplog.at_level("WARNING", logger="lora_sched.train"):
        assert objective_from_values({"zero_terminal_snr": True}).zero_terminal_snr
        assert objective_from_values({"zero_terminal_snr": True, "v_parameterization": True}).zero_terminal_snr
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["zero_terminal_snr without v_parameterization"]


def test_train_refuses_adaptive_noise_scale_without_noise_offset_at_its_line(tmp_path, capsys) -> None:
    config = write_train_config(tmp_path / "c.toml", tmp_path / "out", {}, section=None, adaptive_noise_scale=0.01)
    assert main(["train", str(config)]) == 1
    err = capsys.readouterr().err
    line = next(i for i, t in enumerate(config.read_text().splitlines(), 1) if t.startswith("adaptive_noise_scale"))
    assert f"{config}:{line}: adaptive_noise_scale: expected noise_offset set too" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


# --- training with the options ----------------------------------------------------------------

#: option groups trained for real; each differs from the plain run as stated in test_training_with
RUNS: dict[str, dict[str, Any]] = {
    "noise": {
        "noise_offset": 0.1,
        "noise_offset_random_strength": True,
        "adaptive_noise_scale": 0.05,
        "multires_noise_iterations": 4,
        "ip_noise_gamma": 0.1,
        "min_timestep": 200,
        "max_timestep": 800,
    },
    "loss": {"loss_type": "huber", "huber_schedule": "constant", "huber_c": 0.05, "min_snr_gamma": 1.0},
    "max_norm": {"scale_weight_norms": 0.002},
}


def train(tmp_path: Path, name: str, **values: Any) -> tuple[list[float], dict[str, Any]]:
    """A 2-step run: its logged losses and its LoRA tensors."""
    from safetensors.torch import load_file

    out = tmp_path / name
    config = write_train_config(
        tmp_path / f"{name}.toml",
        out,
        {"max_train_steps": 2, "lr_warmup_steps": 0, "lr_scheduler": "constant", "learning_rate": 0.05},
        section=None,
        **values,
    )
    assert main(["train", str(config)]) == 0
    with open(out / "train_log.csv", newline="", encoding="utf-8") as fh:
        losses = [float(row["loss"]) for row in csv.DictReader(fh)]
    return losses, load_file(out / "lora.safetensors")


def module_norms(tensors: dict[str, Any]) -> list[float]:
    """norm((alpha / dim) x up @ down) of every module of a kohya LoRA file."""
    norms = []
    for key, down in tensors.items():
        if key.endswith(".lora_down.weight"):
            base = key[: -len(".lora_down.weight")]
            up, alpha = tensors[f"{base}.lora_up.weight"], tensors[f"{base}.alpha"]
            product = up.flatten(1) @ down.flatten(1)  # a conv's kernel taps stay apart: the same entries
            norms.append(float((product * (alpha / down.shape[0])).norm()))
    return norms


def logged_norms(logging_dir: Path) -> tuple[list[float], list[float]]:
    """The TensorBoard values of max_norm/keys_scaled and max_norm/max_key_norm, by step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = {p.parent for p in logging_dir.rglob("events.out.tfevents.*")}
    acc = EventAccumulator(str(events))
    acc.Reload()
    return [e.value for e in acc.Scalars("max_norm/keys_scaled")], [
        e.value for e in acc.Scalars("max_norm/max_key_norm")
    ]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> tuple[list[float], dict[str, Any]]:
    return train(tmp_path_factory.mktemp("plain"), "plain")


@pytest.mark.slow
@pytest.mark.parametrize("group", list(RUNS))
def test_training_with(tmp_path, plain_run, group: str) -> None:
    """Each group trains bit-identically twice with one seed, and differs from the plain run as it should."""
    logged = {"logging_dir": str(tmp_path / "tb")} if group == "max_norm" else {}
    first, second = train(tmp_path, "a", **RUNS[group], **logged), train(tmp_path, "b", **RUNS[group])
    assert first[0] == second[0]
    assert first[1].keys() == second[1].keys() and all(torch.equal(t, second[1][k]) for k, t in first[1].items())
    plain_losses, plain_lora = plain_run
    if group == "noise":  # other noise and timesteps for the same first weights: another first loss
        assert first[0][0] != plain_losses[0]
    elif group == "loss":  # huber <= squared error and min(SNR, 1) / SNR <= 1, on the same first step
        assert first[0][0] < plain_losses[0]
    else:  # the first step is the plain run's; every module then ends at most scale_weight_norms
        assert first[0][0] == plain_losses[0]
        assert max(module_norms(plain_lora)) > 0.002
        assert max(module_norms(first[1])) <= 0.002 * (1 + 1e-5)
        keys_scaled, max_key_norms = logged_norms(tmp_path / "tb")
        assert len(keys_scaled) == 2 and all(n > 0 for n in keys_scaled)
        assert max_key_norms == pytest.approx([0.002, 0.002], rel=1e-5)  # the largest is cut to the limit

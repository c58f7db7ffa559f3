"""Optimizers by kohya name: `validate` and `train` read one table and accept the same names; every
name builds its real class (the optional packages come with the `optimizers` extra) and steps.

The end-to-end runs of `lora-sched train` with optional optimizers are in test_train_options.py.
"""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")

from lora_sched.config import loads_config, optimizers  # noqa: E402
from lora_sched.config.keys import unusable_optimizer  # noqa: E402
from lora_sched.errors import ConfigError  # noqa: E402
from lora_sched.train.optim import build_optimizer, evaluation_weights, optimizer_class  # noqa: E402

#: pytorch_optimizer's optimizers as sd-scripts users name them (module.Class).
PYTORCH_OPTIMIZER_NAMES = ["pytorch_optimizer.CAME", "pytorch_optimizer.AdEMAMix", "pytorch_optimizer.Lamb"]
OTHER_DOTTED = ["torch.optim.AdamW", "came_pytorch.CAME", "bitsandbytes.optim.AdamW8bit"]
ALL_NAMES = [s.name for s in optimizers.KOHYA_OPTIMIZERS] + [
    n for n in optimizers.TORCH_OPTIMIZERS if unusable_optimizer(n) is None  # LBFGS, SparseAdam: refused
]
#: Names that need more than dense float32 CPU parameters.
NOT_STEPPED_HERE = {"Muon": "2-D parameters only, with its own LR rules"}


def validates(name: str) -> bool:
    """No problem with optimizer_type (Adafactor's schedule pairing is another key's check)."""
    try:
        loads_config(f'optimizer_type = "{name}"\n', source="t.toml")
    except ConfigError as exc:
        return all(p.key != "optimizer_type" for p in exc.problems)
    return True


def builds(name: str) -> bool:
    try:
        optimizer_class(name)
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("name", ALL_NAMES + PYTORCH_OPTIMIZER_NAMES + OTHER_DOTTED)
def test_every_accepted_name_validates_and_resolves_to_an_optimizer_class(name):
    assert validates(name) and validates(name.lower() if "." not in name else name)
    cls, _ = optimizer_class(name)
    assert issubclass(cls, torch.optim.Optimizer)


@pytest.mark.parametrize("name", ["AdamWW", "Prodigyy", "adam-w", "", "1bit", "LBFGS", "torch.optim.SparseAdam"])
def test_names_rejected_by_validate_are_rejected_by_train(name):
    assert not validates(name) and not builds(name)


def test_dotted_names_with_a_missing_class_or_package_fail_in_train_with_one_paragraph():
    with pytest.raises(ConfigError) as exc:
        optimizer_class("pytorch_optimizer.NoSuchOptimizer")
    text = str(exc.value)
    assert "pytorch-optimizer 4." in text and "no pytorch_optimizer.NoSuchOptimizer" in text
    with pytest.raises(ConfigError, match=r"no_such_package is not installed: pip install no_such_package"):
        optimizer_class("no_such_package.Optim")
    with pytest.raises(ConfigError, match="is not one"):
        optimizer_class("torch.nn.Linear")


def test_kohya_spellings_map_to_sd_scripts_classes():
    """sd-scripts' mapping (library/train_util.py get_optimizer): DAdaptation is the preprint Adam."""
    import dadaptation.experimental
    import schedulefree

    assert optimizer_class("DAdaptation")[0] is dadaptation.experimental.DAdaptAdamPreprint
    assert optimizer_class("dadaptadam")[0].__name__ == "DAdaptAdam"
    assert optimizer_class("AdamWScheduleFree")[0] is schedulefree.AdamWScheduleFree
    cls, defaults = optimizer_class("SGDNesterov8bit")
    assert cls.__name__ == "SGD8bit" and defaults == {"momentum": 0.9, "nesterov": True}
    assert optimizer_class("Adafactor")[0].__module__.startswith("transformers.")


def _model(te_lr: float = 5e-3) -> tuple[torch.nn.Module, list[dict]]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 80), torch.nn.Tanh(), torch.nn.Linear(80, 1))
    # two groups with their own LR, as training has for the UNet and the text encoder
    groups = [
        {"params": list(model[0].parameters()), "lr": 1e-2, "name": "unet"},
        {"params": list(model[2].parameters()), "lr": te_lr, "name": "text_encoder"},
    ]
    return model, groups


STEPPED = [n for n in dict.fromkeys(ALL_NAMES + PYTORCH_OPTIMIZER_NAMES) if n not in NOT_STEPPED_HERE]


@pytest.mark.parametrize("name", STEPPED)
def test_each_optimizer_trains_a_few_steps(name):
    spec = optimizers.lookup(name)
    model, groups = _model(te_lr=1e-2 if spec.one_lr else 5e-3)
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    y = x[:, :1] * 0.5
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = build_optimizer(name, groups, {}, relative_step=False)  # paged ones fall back to CPU memory
    for _ in range(5):
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    with evaluation_weights(optimizer):  # schedule-free ones are read in eval mode
        after = [p.detach() for p in model.parameters()]
        assert all(torch.isfinite(p).all() for p in after)
        assert any(not torch.equal(a, b) for a, b in zip(before, after)), f"{name} changed no weight"


def test_a_missing_optional_package_is_one_paragraph_naming_it(monkeypatch):
    for module in ("prodigyopt",):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr("lora_sched.train.optim.installed_version", lambda package: None)
    with pytest.raises(ConfigError) as exc:
        optimizer_class("Prodigy")
    assert str(exc.value) == (
        'optimizer_type: expected an optimizer whose package is installed (prodigyopt), got "Prodigy" (a string)\n'
        "    hint: the package prodigyopt is not installed: pip install prodigyopt (or pick AdamW)"
    )


@pytest.mark.parametrize("name", ["Prodigy", "DAdaptation", "DAdaptLion"])
def test_one_lr_optimizers_refuse_different_group_lrs_before_training(name):
    """They would raise at the first step(); the message names text_encoder_lr and the fix."""
    _, groups = _model(te_lr=5e-3)
    with pytest.raises(ConfigError) as exc:
        build_optimizer(name, groups, {}, relative_step=False)
    problem = exc.value.problems[0]
    assert problem.key == "text_encoder_lr" and "0.01" in problem.expected
    assert "text_encoder_lr = unet_lr" in problem.hint
    _, groups = _model(te_lr=0.0)  # a frozen part's 0 is allowed
    build_optimizer(name, groups, {}, relative_step=False)

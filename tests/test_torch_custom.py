"""Custom torch classes through lr_scheduler_type: checked at validation, warmup composed in front."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lora_sched.api import loads_config  # noqa: E402
from lora_sched.errors import ConfigError  # noqa: E402
from lora_sched.torch import build_scheduler  # noqa: E402
from lora_sched.torch.custom import WarmupThen, check_scheduler_type  # noqa: E402
from lora_sched.torch.preview import preview_lrs, preview_multipliers  # noqa: E402

TEMPLATE = """[optimizer_arguments]
learning_rate = 1e-3
text_encoder_lr = 5e-4
lr_warmup_steps = {warmup}
lr_scheduler_type = "{cls}"
lr_scheduler_args = [{args}]
[training_arguments]
max_train_steps = 40
"""

# class, valid args (kohya list items), optional steps per loss feed
VALID = {
    "StepLR": ["step_size=5", "gamma=0.5"],
    "MultiStepLR": ["milestones=[8, 20]", "gamma=0.3"],
    "ExponentialLR": ["gamma=0.9"],
    "CosineAnnealingLR": ["T_max=30", "eta_min=1e-5"],
    "CosineAnnealingWarmRestarts": ["T_0=7", "T_mult=2"],
    "CyclicLR": ["base_lr=1e-5", "max_lr=1e-3", "step_size_up=5"],
    "OneCycleLR": ["max_lr=1e-3", "total_steps=40"],
    "PolynomialLR": ["total_iters=20", "power=2.0"],
    "LinearLR": ["start_factor=0.5", "total_iters=10"],
    "ConstantLR": ["factor=0.5", "total_iters=10"],
    "ReduceLROnPlateau": ["patience=0", "factor=0.5"],
}

# class, args, text the error must contain: one row per kind of mistake
INVALID = [
    ("StepLR", ["gamma=0.5"], "StepLR needs `step_size`"),
    ("StepLR", ["step_size=5", "step_sise=5"], "did you mean `step_size`?"),
    ("StepLR", ["step_size=5.0"], "write 5: torch needs an int here"),
    ("MultiStepLR", [], "MultiStepLR needs `milestones`"),
    ("MultiStepLR", ["milestones=[8.5, 20]"], "lr_scheduler_args.milestones: expected list[int]"),
    ("MultiStepLR", ["milestones=[8, 20]", "milestone=3"], "did you mean `milestones`?"),
    ("ExponentialLR", [], "ExponentialLR needs `gamma`"),
    ("ExponentialLR", ["gamma='0.9'"], "remove the quotes"),
    ("ExponentialLR", ["gamma=0.9", "gama=0.9"], "did you mean `gamma`?"),
    ("CosineAnnealingLR", ["t_max=30"], "did you mean `T_max`?"),
    ("CosineAnnealingLR", ["T_max=30.0"], "write 30"),
    ("CosineAnnealingLR", [], "CosineAnnealingLR needs `T_max`"),
    ("CosineAnnealingWarmRestarts", ["T_0=7", "T_mult=2.0"], "write 2: torch needs an int here"),
    ("CosineAnnealingWarmRestarts", ["T_mult=2"], "needs `T_0`"),
    ("CosineAnnealingWarmRestarts", ["T_0=7", "Tmult=2"], "did you mean `T_mult`?"),
    ("CyclicLR", ["base_lr=1e-5"], "CyclicLR needs `max_lr`"),
    ("CyclicLR", ["base_lr=1e-5", "max_lr=1e-3", "mode='triangle'"], "Literal['triangular'"),
    ("CyclicLR", ["base_lr=1e-5", "max_lr=1e-3", "step_size=5"], "did you mean `step_size_up`"),
    ("OneCycleLR", ["max_lr=1e-3"], "total_steps OR (epochs AND steps_per_epoch)"),
    ("OneCycleLR", ["max_lr=1e-3", "total_steps=40.0"], "write 40"),
    ("OneCycleLR", ["max_lr=1e-3", "total_step=40"], "did you mean `total_steps`?"),
    ("PolynomialLR", ["total_iters='20'"], "remove the quotes"),
    ("PolynomialLR", ["powr=2.0"], "did you mean `power`?"),
    ("LinearLR", ["start_factor='half'"], "lr_scheduler_args.start_factor: expected float"),
    ("LinearLR", ["start_factor=0.0"], "LinearLR rejects"),
    ("ConstantLR", ["factor=2.0"], "ConstantLR rejects"),
    ("ConstantLR", ["factr=0.5"], "did you mean `factor`?"),
    ("ReduceLROnPlateau", ["mode='minimum'"], "Literal['min', 'max']"),
    ("ReduceLROnPlateau", ["patients=2"], "did you mean `patience`?"),
    ("StepLR", ["step_size=5", "last_epoch=10"], "resuming restores the step"),
    ("LambdaLR", [], "LambdaLR needs a Python function"),
]


def _text(cls: str, args: list[str], warmup: int = 0) -> str:
    items = ", ".join(f'"{a}"' for a in args)
    return TEMPLATE.format(cls=cls, args=items, warmup=warmup)


def _optimizer(lrs=(1e-3, 5e-4)):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    return torch.optim.AdamW(groups, lr=lrs[0])


def _step(opt, sched, steps: int, loss: float | None = None) -> np.ndarray:
    rows = []
    for _ in range(steps):
        rows.append([g["lr"] for g in opt.param_groups])
        opt.step()
        if loss is None:
            sched.step()
        else:
            sched.step_update(loss)
    return np.asarray(rows)


def _plain_torch(cls: str, args: list[str], steps: int) -> np.ndarray:
    from lora_sched.config.args import parse_kv_list

    kwargs = parse_kv_list(args, "a")[0]
    opt = _optimizer()
    return _step(opt, getattr(torch.optim.lr_scheduler, cls)(opt, **kwargs), steps)


def test_warmup_then_is_initialised_as_a_torch_scheduler():
    opt = _optimizer()
    sched = WarmupThen(opt, "CyclicLR", warmup=4, base_lr=1e-5, max_lr=1e-3, step_size_up=5)
    # LRScheduler.__init__ ran: the groups record their initial LR, the counters start at update 0
    assert [g["initial_lr"] for g in opt.param_groups] == [1e-5, 1e-5]  # CyclicLR's own, as alone
    assert (sched.last_epoch, sched._step_count, sched.base_lrs) == (0, 1, [1e-3, 5e-4])
    assert sched.get_last_lr() == [0.0, 0.0]  # warmup_start 0
    for _ in range(4):
        opt.step()
        sched.step()
    assert sched.get_last_lr() == [1e-5, 1e-5] == sched.inner.get_last_lr()  # the class's LR at its step 0


@pytest.mark.parametrize("cls", sorted(set(VALID) - {"ReduceLROnPlateau"}))  # plateau: tests at the end
def test_valid_class_without_warmup_is_exactly_the_torch_class(cls):
    cfg = loads_config(_text(cls, VALID[cls]), source="c.toml")
    assert cfg.scheduler_type == cls
    opt = _optimizer()
    got = _step(opt, build_scheduler(cfg, opt), 40)
    np.testing.assert_array_equal(got, _plain_torch(cls, VALID[cls], 40))


@pytest.mark.parametrize("cls", sorted(set(VALID) - {"ReduceLROnPlateau"}))
def test_warmup_is_composed_in_front_and_preview_matches(cls):
    w = 6
    cfg = loads_config(_text(cls, VALID[cls], warmup=w), source="c.toml")
    opt = _optimizer()
    got = _step(opt, build_scheduler(cfg, opt), 40)
    plain = _plain_torch(cls, VALID[cls], 40 - w)
    np.testing.assert_array_equal(got[w:], plain)  # the class from its own step 0
    ramp = np.arange(w) / w
    np.testing.assert_allclose(got[:w], ramp[:, None] * plain[0], rtol=1e-15, atol=0)
    # preview (by the same code path on a dummy optimizer) equals what training steps
    np.testing.assert_array_equal(preview_lrs(cls, cfg.scheduler_type_args, [1e-3, 5e-4], 40, warmup=w), got)
    np.testing.assert_allclose(preview_multipliers(cfg), got[:, 0] / 1e-3, rtol=1e-15, atol=0)


@pytest.mark.parametrize(("cls", "args", "needle"), INVALID, ids=[f"{c}-{'-'.join(a)}" for c, a, _ in INVALID])
def test_invalid_args_fail_at_validation_with_file_and_line(cls, args, needle):
    with pytest.raises(ConfigError) as info:
        loads_config(_text(cls, args), source="c.toml")
    text = str(info.value)
    assert needle in text
    assert "c.toml:" in text


@pytest.mark.parametrize(
    "path", ["os.system", "builtins.eval", "subprocess.Popen", "posix.system", "importlib.import_module", "sys.exit"]
)
@pytest.mark.parametrize("trust", [False, True])
def test_dangerous_paths_are_refused_even_with_trust(path, trust):
    problems = check_scheduler_type(path, {}, trust=trust)
    assert len(problems) == 1
    assert "is never imported" in problems[0].hint


def test_other_modules_need_trust_and_are_not_imported():
    code = (
        "import sys\n"
        "from lora_sched.torch.custom import check_scheduler_type\n"
        "p = check_scheduler_type('antigravity.Anything', {})\n"
        "assert 'antigravity' not in sys.modules\n"
        "print(p[0].hint)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--trust-scheduler-code" in out


def test_trust_still_requires_a_scheduler_class():
    assert check_scheduler_type("transformers.optimization.AdafactorSchedule", {}, trust=False)[0].hint.endswith(
        "pass --trust-scheduler-code"
    )
    # trusted: a real LRScheduler subclass from another package is accepted ...
    assert check_scheduler_type("transformers.optimization.AdafactorSchedule", {}, trust=True) == []
    # ... but a class that is not a scheduler, or a function, is not
    for path in ("collections.OrderedDict", "json.loads", "transformers.optimization.get_scheduler"):
        problems = check_scheduler_type(path, {}, trust=True)
        assert "not a subclass of torch's LRScheduler" in problems[0].hint, path


def test_trust_flag_reaches_validation(tmp_path):
    text = _text("transformers.optimization.AdafactorSchedule", [])
    with pytest.raises(ConfigError, match="--trust-scheduler-code"):
        loads_config(text, source="t.toml")
    cfg = loads_config(text, source="t.toml", trust_scheduler_code=True)
    assert cfg.scheduler_type == "transformers.optimization.AdafactorSchedule"


def test_plateau_sees_the_mean_loss_of_each_window():
    cfg = loads_config(
        _text("ReduceLROnPlateau", ["patience=0", "factor=0.5"], warmup=3) + "[lora_sched]\nplateau_every = 4\n",
        source="p.toml",
    )
    opt = _optimizer()
    sched = build_scheduler(cfg, opt)
    assert isinstance(sched, WarmupThen)
    got = _step(opt, sched, 20, loss=1.0)[:, 0]
    # warmup 0, 1/3, 2/3; the first window (updates 4..7) sets the best loss, the second (8..11)
    # does not improve on it: the LR halves at update 3 + 8 = 11, and again at 15, 19
    expected = [0.0, 1e-3 / 3, 2e-3 / 3] + [1e-3] * 8 + [5e-4] * 4 + [2.5e-4] * 4 + [1.25e-4]
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)


def test_plateau_is_not_stepped_without_a_loss():
    cfg = loads_config(_text("ReduceLROnPlateau", ["patience=0"]), source="p.toml")
    opt = _optimizer()
    got = _step(opt, build_scheduler(cfg, opt), 30)  # step() carries no loss: the LR holds
    assert (got[:, 0] == 1e-3).all()


def test_adafactor_rule_does_not_import_torch():
    code = "import sys, lora_sched.config.adafactor; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_public_name_of_the_torch_package_resolves():
    import lora_sched.torch as pkg

    for name in pkg.__all__:
        assert getattr(pkg, name) is not None, name
    with pytest.raises(AttributeError):
        pkg.NoSuchThing  # noqa: B018


# -- a class that raises when stepped: a validate error, a refused export, a preview error ---------
RUN = """learning_rate = 1e-3
max_train_steps = {steps}
lr_warmup_steps = {warmup}
lr_scheduler_type = "{cls}"
lr_scheduler_args = [{args}]
"""
RAISES_AT = '''
from torch.optim.lr_scheduler import LRScheduler


class RaisesAt(LRScheduler):
    """Constant LR that raises RuntimeError at its step `at` (a stand-in for any class that fails mid-run)."""

    def __init__(self, optimizer, at: int, last_epoch: int = -1) -> None:
        self.at = at
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch >= self.at:
            raise RuntimeError(f"step {self.last_epoch} is past the end")
        return list(self.base_lrs)
'''


def _run(cls: str, args: list[str], steps: int = 100, warmup: int = 0) -> str:
    return RUN.format(cls=cls, args=", ".join(f'"{a}"' for a in args), steps=steps, warmup=warmup)


def _only_error(text: str, **kwargs):
    with pytest.raises(ConfigError) as info:
        loads_config(text, source="c.toml", **kwargs)
    (p,) = [p for p in info.value.problems if p.severity == "error"]
    return p


@pytest.mark.parametrize(
    ("args", "warmup", "key"),
    [
        (["max_lr=1e-3", "total_steps=99"], 0, "lr_scheduler_args.total_steps"),
        (["max_lr=1e-3", "epochs=9", "steps_per_epoch=10"], 0, "lr_scheduler_args.epochs"),
        (["max_lr=1e-3", "total_steps=89"], 10, "lr_scheduler_args.total_steps"),  # stepped after the warmup
    ],
)
def test_one_cycle_shorter_than_the_run_is_a_validate_error(args, warmup, key):
    p = _only_error(_run("torch.optim.lr_scheduler.OneCycleLR", args, warmup=warmup))
    assert (p.file, p.line, p.key) == ("c.toml", 5, key)
    assert f"at least {100 - warmup} steps" in p.expected and "raises ValueError" in p.hint


@pytest.mark.parametrize(
    ("args", "warmup"), [(["max_lr=1e-3", "total_steps=100"], 0), (["max_lr=1e-3", "total_steps=90"], 10)]
)
def test_one_cycle_as_long_as_the_run_is_valid_and_runs(args, warmup):
    """sd-scripts steps the class once per update, the last one too: total_steps = the class's steps is enough."""
    cfg = loads_config(_run("OneCycleLR", args, warmup=warmup))
    lrs = preview_lrs("OneCycleLR", cfg.scheduler_type_args, [1e-3], 100, warmup)
    assert lrs.shape == (100, 1)
    opt = _optimizer((1e-3,))
    sched = build_scheduler(cfg, opt)
    _step(opt, sched, 100)  # all 100 updates step the scheduler without an error


@pytest.fixture
def raises_at(tmp_path, monkeypatch):
    (tmp_path / "raises_at_mod.py").write_text(RAISES_AT)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "raises_at_mod.RaisesAt"


def test_a_class_that_raises_mid_run_is_a_validate_error_naming_the_step(raises_at):
    p = _only_error(_run(raises_at, ["at=37"]), trust_scheduler_code=True)
    assert (p.line, p.key) == (5, "lr_scheduler_args")
    assert "raises at its step 37: RuntimeError: step 37 is past the end" in p.found
    assert loads_config(_run(raises_at, ["at=101"]), trust_scheduler_code=True).scheduler_type == raises_at


def test_past_the_dry_run_budget_validate_notes_it_and_preview_and_export_refuse(raises_at, monkeypatch, tmp_path):
    import lora_sched.torch.custom.checks as custom
    from lora_sched.cli import main

    monkeypatch.setattr(custom, "DRY_RUN_STEPS", 20)
    text = _run(raises_at, ["at=60"])
    cfg = loads_config(text, trust_scheduler_code=True)  # the first 20 steps run: no error yet ...
    (note,) = [w for w in cfg.warnings if w.key == "lr_scheduler_type"]
    assert note.severity == "notice" and "stepped 20 times without an error" in note.found
    path = tmp_path / "late.toml"
    path.write_text(text)
    for argv in (["preview", str(path)], ["export", "--kohya", str(path)]):  # ... the whole run does
        assert main([*argv, "--trust-scheduler-code"]) == 1, argv


def test_cli_validate_and_export_refuse_a_short_one_cycle(tmp_path, capsys):
    from lora_sched.cli import main

    path = tmp_path / "oc.toml"
    path.write_text(_run("OneCycleLR", ["max_lr=1e-3", "total_steps=50"]))
    for argv in (["validate", str(path)], ["export", "--kohya", str(path)], ["preview", str(path)]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert f"{path}:5: lr_scheduler_args.total_steps: expected a OneCycleLR cycle of at least 100 steps" in err
        assert "Traceback" not in err


def test_a_custom_class_is_checked_the_same_whoever_loads_it_and_in_whatever_order(tmp_path):
    """No import installs anything: the torch layer's support is passed to the loader. The public
    lora_sched.api.load_config and the command line check the class in a fresh interpreter; the config
    layer's loader given no support says it did not check it (and still loads)."""
    path = tmp_path / "zero.toml"
    path.write_text(_text("StepLR", ["step_size=0"]))
    code = (
        "import sys\n"
        "import lora_sched.torch\n"  # importing the torch layer first changes nothing
        "from lora_sched.config import loads_config\n"
        f"cfg = loads_config(open({str(path)!r}).read())\n"
        "assert cfg.scheduler_type == 'StepLR'\n"
        "assert any('not checked' in w.found for w in cfg.warnings), cfg.warnings\n"
        "from lora_sched.api import load_config\n"
        "from lora_sched.errors import ConfigError\n"
        "try:\n"
        f"    load_config({str(path)!r})\n"
        "except ConfigError as exc:\n"
        "    print('api:', exc.problems[0].found, file=sys.stderr)\n"
        "from lora_sched.cli import main\n"
        f"sys.exit(main(['validate', {str(path)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert "api: " in done.stderr
    assert "zero.toml:6: optimizer_arguments.lr_scheduler_args" in done.stderr
    assert "StepLR raises at its step 1: ZeroDivisionError" in done.stderr

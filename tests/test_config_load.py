"""The config API contract: values and defaults, the schedule request, kohya's global keys and
REX class, data-set counting, per-group LRs, lines of problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_sched.api import load_config, loads_config
from lora_sched.builtins import BUILTIN_DATA, BUILTIN_SHAPES_SIZE
from lora_sched.config import from_values
from lora_sched.config.args import KvItem, parse_kv_list, parse_literal, split_kv
from lora_sched.config.keys import KEYS
from lora_sched.config.locate import key_lines
from lora_sched.errors import ConfigError
from lora_sched.notebook.translate import flat_to_form
from lora_sched.schedules import ScheduleRequest, TrainingShape, resolve

ROOT = Path(__file__).parent.parent


def errors_of(text: str) -> list:
    with pytest.raises(ConfigError) as info:
        loads_config(text, source="t.toml")
    return [p for p in info.value.problems if p.severity == "error"]


def test_defaults_of_an_empty_file_with_a_notice() -> None:
    cfg = loads_config("")
    expected = {
        "pretrained_model_name_or_path": "builtin:tiny-sd",
        "train_data_dir": BUILTIN_DATA,
        "resolution": 64,
        "network_dim": 4,
        "network_alpha": 1.0,
        "learning_rate": 2e-6,  # sd-scripts' default
        "unet_lr": None,
        "text_encoder_lr": None,
        "max_train_steps": 1600,
        "train_batch_size": 1,
        "gradient_accumulation_steps": 1,
        "seed": 42,
        "output_dir": "output",
        "output_name": "lora",
        "save_every_n_steps": None,
        "mixed_precision": "no",
        "optimizer_type": "AdamW",
        "optimizer_args": [],
        "max_grad_norm": 1.0,
        "caption_extension": ".txt",
        "resume": None,
        "plateau_every": 10,
        "lr_scheduler": "constant",
        "lr_warmup_steps": 0,
        "lr_scheduler_type": None,
        "lr_scheduler_args": {},
        "hold_after_horizon": False,
        "warmup_start": 0.0,
        "warmup_type": "linear",
        "scale_schedule_ratio": 1.0,
        "scale_warmup": False,
        "schedule_steps": None,
    }
    for key, value in expected.items():
        assert cfg.get(key) == value, key
    assert set(cfg.values) == {k.name for k in KEYS}
    assert [p.severity for p in cfg.warnings] == ["notice"]
    assert "empty file" in str(cfg.warnings[0])
    rs = cfg.resolve()
    assert (rs.name, rs.run_length, rs.warmup) == ("constant", 1600, 0)
    with pytest.raises(KeyError):
        cfg.get("noise_offset_type")  # the kohya_ss GUI's, not a key (noise_offset is one)


def test_sections_are_for_humans_keys_are_what_count() -> None:
    a = loads_config('[optimizer_arguments]\nlearning_rate = 3e-4\nlr_scheduler = "linear"\n')
    b = loads_config('learning_rate = 3e-4\n[whatever]\nlr_scheduler = "linear"\n')
    assert a.values == b.values
    assert b.sections["learning_rate"] is None and b.section_of("lr_scheduler") == "whatever"
    assert b.section_of("learning_rate") == "optimizer_arguments"  # where we would write it


def test_group_lrs_follow_learning_rate_unless_set() -> None:
    assert loads_config("learning_rate = 2e-4").group_lrs() == {"unet": 2e-4, "text_encoder": 2e-4}
    cfg = loads_config("learning_rate = 2e-4\nunet_lr = 5e-4\ntext_encoder_lr = 0.0")
    assert cfg.group_lrs() == {"unet": 5e-4, "text_encoder": 0.0}
    assert cfg.resolve().base_lr == 2e-4  # the optimizer's default LR, as sd-scripts passes it


def test_schedule_request_carries_everything_resolution_needs() -> None:
    cfg = loads_config(
        """
[optimizer_arguments]
learning_rate = 2e-4
lr_scheduler = "cosine"
lr_warmup_steps = "5%"
lr_scheduler_args = ["min_lr_ratio=0.1"]
[training_arguments]
max_train_steps = 400
[lora_sched]
schedule_steps = 500
warmup_start = 0.1
warmup_type = "cosine"
scale_schedule_ratio = 0.5
scale_warmup = true
"""
    )
    request = cfg.schedule_request()
    assert request == ScheduleRequest(
        name="cosine",
        args={"min_lr_ratio": 0.1},
        warmup="5%",
        warmup_start=0.1,
        warmup_type="cosine",
        max_train_steps=400,
        max_train_epochs=None,
        schedule_steps=500,
        hold_after_horizon=False,
        scale_schedule_ratio=0.5,
        scale_warmup=True,
        base_lr=2e-4,
        arg_keys={},
    )
    request.args["min_lr_ratio"] = 0.5  # a copy: the config is not changed
    assert cfg.schedule_request().args == {"min_lr_ratio": 0.1}
    assert cfg.resolve() == resolve(cfg.schedule_request(), cfg.training_shape())
    rs = cfg.resolve()
    assert (rs.run_length, rs.horizon, rs.warmup) == (200, 250, 12)  # floor(0.05 x 250) = 12


def test_kohya_global_keys_feed_the_schedule_and_errors_name_them() -> None:
    cfg = loads_config('lr_scheduler = "cosine_with_restarts"\nlr_scheduler_num_cycles = 3\nmax_train_steps = 90')
    assert cfg.resolve().params["num_cycles"] == 3
    assert cfg.schedule_request().arg_keys == {"num_cycles": "lr_scheduler_num_cycles"}
    cfg = loads_config('lr_scheduler = "polynomial"\nlr_scheduler_power = 2\nlearning_rate = 1e-3')
    assert cfg.resolve().params["power"] == 2.0
    (err,) = errors_of('lr_scheduler = "cosine_with_restarts"\n\nlr_scheduler_num_cycles = 0')
    assert (err.key, err.line) == ("lr_scheduler_num_cycles", 3)


def test_unused_global_keys_load_silently_at_default_and_warn_otherwise() -> None:
    quiet = loads_config('lr_scheduler = "constant"\nlr_scheduler_num_cycles = 1\nlr_scheduler_power = 1.0')
    assert quiet.warnings == []
    gui = loads_config('lr_scheduler = "linear"\nlr_decay_steps = 0')
    assert gui.warnings == []
    loud = loads_config('lr_scheduler = "constant"\nlr_scheduler_num_cycles = 3')
    (warning,) = loud.warnings
    assert warning.severity == "warning" and warning.line == 2 and warning.key == "lr_scheduler_num_cycles"
    assert "constant does not use it" in str(warning)


def test_duplicate_key_names_both_lines() -> None:
    (err,) = errors_of("[a]\nseed = 1\n[b]\n\nseed = 2\n")
    assert (err.key, err.line) == ("b.seed", 5)
    assert "a.seed at line 2" in err.found


def test_list_and_table_forms_are_the_same_schedule() -> None:
    listed = loads_config('lr_scheduler = "step"\nlr_scheduler_args = ["step_size=10", "gamma=0.5"]')
    tabled = loads_config('lr_scheduler = "step"\n[x.lr_scheduler_args]\nstep_size = 10\ngamma = 0.5\n')
    inline = loads_config('lr_scheduler = "step"\nlr_scheduler_args = { step_size = 10, gamma = 0.5 }')
    assert listed.resolve() == tabled.resolve() == inline.resolve()


def test_kohya_list_items_split_on_the_first_equals_and_read_literals() -> None:
    values, problems, where = parse_kv_list(
        ["betas=[0.9,0.99]", "step_rules='1:10,0.1:20'", "anneal=cos", "flag=True", "n= 3 ", "s='a=b'"], "k"
    )
    assert problems == []
    assert values == {
        "betas": [0.9, 0.99],
        "step_rules": "1:10,0.1:20",
        "anneal": "cos",
        "flag": True,
        "n": 3,
        "s": "a=b",
    }
    assert where == {"betas": 0, "step_rules": 1, "anneal": 2, "flag": 3, "n": 4, "s": 5}
    assert parse_literal("__import__('os')") == (False, None)
    (bad,) = parse_kv_list(["step_rules=1:10,0.1"], "k")[1]  # text that is not one word needs quotes
    assert bad.key == "k[0]" and "step_rules='1:10,0.1'" in bad.hint
    assert parse_literal("1j") == (False, None)  # not a value TOML could hold
    assert parse_literal("[" * 5000 + "]" * 5000) == (False, None)


def test_one_reader_splits_key_value_items_for_the_config_the_key_check_and_the_form() -> None:
    assert split_kv(" betas = [0.9,0.99]") == KvItem("betas", " [0.9,0.99]")
    assert split_kv("s='a=b'") == KvItem("s", "'a=b'") and split_kv("s='a=b'").literal() == (True, "a=b")
    assert split_kv("no_equals") is None and split_kv(3) is None
    # the key table's check and the list parser agree on what is an item
    cfg = loads_config('optimizer_args = ["weight_decay=0.1", "betas=[0.9,0.99]"]')
    assert cfg.optimizer_kwargs() == {"weight_decay": 0.1, "betas": [0.9, 0.99]}
    with pytest.raises(ConfigError, match=r"optimizer_args\[1\]: expected a \"key=value\" string"):
        loads_config('optimizer_args = ["weight_decay=0.1", "=3"]')
    # the form reads a list the same way; text that is no literal stays text for the validator to name
    form = flat_to_form({"lr_scheduler": "cosine", "lr_scheduler_args": ["num_cycles = 2", "min_lr_ratio=a b"]})
    assert form["args"]["num_cycles"] == 2 and form["args"]["min_lr_ratio"] == "a b"


def test_kohya_colab_rex_class_maps_to_rex() -> None:
    cfg = load_config(ROOT / "configs" / "kohya_colab_xl_rex.toml")
    assert cfg.scheduler_type is None
    assert cfg.values["lr_scheduler"] == "rex" and cfg.values["lr_scheduler_type"] is None
    rs = cfg.resolve()
    assert rs.name == "rex"
    assert (rs.params["min_lr"], rs.params["min_lr_ratio"]) == (1e-9, 0.0)  # absolute, in every param group
    assert (rs.params["restart_decay"], rs.params["d"], rs.params["cycle_steps"], rs.params["cycle_warmup"]) == (
        0.9,
        0.9,
        333,
        16,
    )
    assert any("RexAnnealingWarmRestarts" in str(w) and w.line == 12 for w in cfg.warnings)
    m = rs.multipliers()
    peaks = [m[k * 333 : (k + 1) * 333].max() for k in range(3)]
    assert peaks == pytest.approx([1.0, 0.9, 0.81], rel=1e-3)


def test_custom_torch_class_is_kept_with_its_args() -> None:
    cfg = loads_config(
        'lr_scheduler_type = "CosineAnnealingLR"\nlr_scheduler_args = ["T_max=100"]\n'
        "lr_warmup_steps = 10\nmax_train_steps = 100"
    )
    assert cfg.scheduler_type == "CosineAnnealingLR"
    assert cfg.scheduler_type_args == {"T_max": 100}
    frame = cfg.resolve()  # the warmup in front of the class and the run length
    assert (frame.name, frame.warmup, frame.run_length) == ("constant", 10, 100)


def test_training_shape_counts_a_kohya_data_folder(tmp_path: Path) -> None:
    for folder, n in (("3_cat", 4), ("1_dog", 2), ("not_a_concept", 5)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            (tmp_path / folder / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # counting reads the signature only
            (tmp_path / folder / f"{i}.txt").write_text("a caption")
    text = (
        f"train_data_dir = {str(tmp_path)!r}\n"
        "train_batch_size = 3\ngradient_accumulation_steps = 2\nmax_train_epochs = 2"
    )
    cfg = loads_config(text)
    assert cfg.num_samples() == 3 * 4 + 1 * 2  # folders without "N_" repeats are not kohya concepts
    shape = cfg.training_shape()
    assert shape == TrainingShape(steps_per_epoch=3, samples_per_step=6)  # ceil(ceil(14 / 3) / 2)
    assert cfg.resolve().run_length == 6
    assert cfg.training_shape(num_processes=2) == TrainingShape(steps_per_epoch=2, samples_per_step=12)
    assert cfg.training_shape(num_samples=100).steps_per_epoch == 17


def test_builtin_data_size_and_missing_folder() -> None:
    assert loads_config('train_data_dir = "builtin:shapes"').num_samples() == BUILTIN_SHAPES_SIZE
    assert loads_config("").num_samples() is None  # no data named: epochs are never counted on a built-in set
    cfg = loads_config('train_data_dir = "/no/such/folder"\nmax_train_epochs = 3', source="c.toml")
    assert cfg.unknown_run_length() == 'train_data_dir "/no/such/folder" is not a folder on this machine'
    (note,) = [p for p in cfg.warnings if p.key == "max_train_epochs"]
    assert (note.severity, note.line) == ("notice", 2) and "--samples-per-epoch" in note.hint
    assert loads_config('train_data_dir = "/no/such/folder"').resolve().run_length == 1600


def test_lines_in_strings_arrays_and_inline_tables() -> None:
    text = '''[a]
caption = """
lr_warmup_steps = 5
"""
x = 'C:\\path = "x"'
lr_scheduler_args = [
  "gamma=0.5",  # a comment with "quotes"
  'step_size=3',
]
"dotted.key" = { inner = 1, other = [1,
  2] }
'''
    lines = key_lines(text)
    assert lines[("a", "caption")] == 2
    assert ("a", "lr_warmup_steps") not in lines
    assert lines[("a", "lr_scheduler_args", 0)] == 7
    assert lines[("a", "lr_scheduler_args", 1)] == 8
    assert lines[("a", "dotted.key", "inner")] == 10
    assert lines[("a", "dotted.key", "other", 1)] == 11


def test_key_lines_nests_arrays_of_tables_as_toml_does() -> None:
    text = "[[d]]\n[[d.s]]\nx = 1\n[[d]]\n[d.t]\ny = 2\n[[d.s]]\nx = 3\n[[d.s]]\nx = 4\n"
    lines = key_lines(text)
    assert lines[("d", 0, "s", 0, "x")] == 3
    assert lines[("d", 1, "t", "y")] == 6
    assert lines[("d", 1, "s", 0, "x")] == 8
    assert lines[("d", 1, "s", 1, "x")] == 10


def test_bytes_with_bom_and_crlf() -> None:
    cfg = loads_config(b"\xef\xbb\xbf[optimizer_arguments]\r\nlearning_rate = 3e-4\r\n", source="bom.toml")
    assert cfg.values["learning_rate"] == 3e-4
    with pytest.raises(ConfigError) as info:
        loads_config(b"[x]\r\nseed = -3\r\n", source="crlf.toml")
    assert (info.value.problems[0].line, info.value.problems[0].key) == (2, "x.seed")


def test_from_values_validates_like_a_file() -> None:
    cfg = from_values({"lr_scheduler": "linear", "max_train_steps": 10, "lr_warmup_steps": 2})
    assert cfg.resolve().warmup == 2
    with pytest.raises(ConfigError) as info:
        from_values({"learning_rate": -1.0})
    assert info.value.problems[0].key == "optimizer_arguments.learning_rate"


def test_every_problem_at_once_in_file_order() -> None:
    errs = errors_of('seed = "x"\nlr_scheduler = "cosine"\nlr_scheduler_args = ["gamma=0.5"]\nnetwork_dim = 0\n')
    assert [(e.line, e.key) for e in errs] == [
        (1, "seed"),
        (3, "lr_scheduler_args.gamma"),
        (4, "network_dim"),
    ]


def test_optimizer_names_and_kwargs() -> None:
    for name in ("AdamW8bit", "Prodigy", "adamw", "SGD", "torch.optim.RAdam", "LoraEasyCustomOptimizer.came.CAME"):
        assert loads_config(f'optimizer_type = "{name}"').values["optimizer_type"] == name
    cfg = loads_config('optimizer_args = ["weight_decay=0.1", "betas=[0.9,0.99]", "decouple=True"]')
    assert cfg.optimizer_kwargs() == {"weight_decay": 0.1, "betas": [0.9, 0.99], "decouple": True}


class _NoTorch:
    """The torch layer's custom class support where torch is not installed."""

    def check(self, *args):
        raise ImportError("No module named 'torch'")

    check_run = preview_lrs = check


@pytest.mark.parametrize("support", [None, _NoTorch()], ids=["nothing installed", "torch missing"])
def test_without_the_torch_adapter_custom_classes_load_but_do_not_preview(support) -> None:
    from lora_sched.config import loads_config as config_layer_loads
    from lora_sched.config import preview

    # step_size=0 is refused by StepLR itself: unchecked here, as no torch class can be built
    text = 'lr_scheduler_type = "StepLR"\nlr_scheduler_args = ["step_size=0"]\nmax_train_steps = 9'
    cfg = config_layer_loads(text, custom_classes=support)
    assert cfg.scheduler_type == "StepLR"
    with pytest.raises(ConfigError) as info:
        preview.curve(cfg)
    (p,) = info.value.problems
    assert (p.key, p.line) == ("lr_scheduler_type", 1)
    assert "torch adapter" in p.hint


def test_where_keys_were_read_is_data_and_a_config_is_changed_only_by_copy() -> None:
    from lora_sched.config.places import Place
    from lora_sched.errors import problem

    text = (
        '[optimizer_arguments]\nlearning_rate = 1e-4\nlr_scheduler = "cosine"\n'
        'lr_scheduler_args = [\n  "num_cycles=2",\n]\n'
    )
    cfg = loads_config(text, source="a.toml")
    assert cfg.locations.places["lr_scheduler"] == Place("optimizer_arguments", ("optimizer_arguments", "lr_scheduler"))
    found = problem("learning_rate", "a number", "x")
    (located,) = cfg.locate([found])
    assert (located.file, located.line, located.key) == ("a.toml", 2, "optimizer_arguments.learning_rate")
    (arg,) = cfg.locate([problem("lr_scheduler_args.num_cycles", "a number", "x")])
    assert (arg.line, arg.key) == (5, "optimizer_arguments.lr_scheduler_args.num_cycles")  # the item's own line
    (flag,) = cfg.locations.with_overrides({"learning_rate": "--lr"}).locate([found])
    assert (flag.file, flag.key) == (None, "--lr (learning_rate)")
    changed = cfg.replace(warnings=[located])
    (notice,) = cfg.warnings  # num_cycles = 2 in the list is transformers' two periods: four half-cosines
    assert notice.severity == "notice" and cfg.resolve().params["num_cycles"] == 4
    assert changed.warnings == [located] and changed.locations is cfg.locations
    assert changed.resolve() == cfg.resolve()

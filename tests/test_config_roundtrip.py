"""Property tests: what we write reads back unchanged; nothing but a ConfigError comes out of bad input."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_sched.config import LoraConfig, dump_config, dumps_config, load_config, loads_config
from lora_sched.config.keys import KEYS
from lora_sched.errors import ConfigError
from lora_sched.schedules import all_names

CONFIGS = sorted((Path(__file__).parent.parent / "configs").rglob("*.toml"))
TEXT_KEYS = ("output_name", "output_dir", "train_data_dir", "pretrained_model_name_or_path", "resume")

# Any text TOML can hold: everything but lone surrogates; at least one visible character.
any_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40).filter(lambda s: s.strip())
tricky_text = st.one_of(
    any_text,
    st.sampled_from(['a "quoted" caption', "C:\\new\\table", "line1\nline2\r\n", "'''", '"""', "#not a comment", "é✓"]),
)

# What each key can hold: no key takes a NUL (the OS refuses it in paths), output_name no folder.
NOT_IN = {k: ("\0", "/") if k == "output_name" else ("\0",) for k in TEXT_KEYS}


def _text_for(key: str) -> st.SearchStrategy[str]:
    return tricky_text.filter(lambda s: not any(c in s for c in NOT_IN[key]))


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({k: _text_for(k) for k in TEXT_KEYS}), st.sampled_from([None, "", "a\nb"]))
def test_text_values_round_trip(values: dict[str, str], caption_extension: str | None) -> None:
    flat = dict(values)
    if caption_extension is not None:
        flat["caption_extension"] = caption_extension
    cfg = loads_config(dumps_config(flat))
    for key, value in flat.items():
        assert cfg.values[key] == value
    again = loads_config(dumps_config(cfg))
    assert again.values == cfg.values


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_give_a_config_or_a_config_error(data: bytes) -> None:
    try:
        assert isinstance(loads_config(data, source="fuzz.toml"), LoraConfig)
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.toml")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_random_text_gives_a_config_or_a_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        loads_config(text)


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_random_files_give_a_config_or_a_config_error(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.toml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert all(p.file == str(path) for p in exc.problems)


scalar = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(all_names()),
    st.sampled_from(["5%", "2ep", "100ba", "512sp", "0.3dur", "1tok", "-3ba"]),
)
arg_item = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["gamma", "num_cycles", "t_0", "d", "power", "x"]), scalar),
    st.text(max_size=10),
)
value = st.one_of(scalar, st.lists(arg_item, max_size=4), st.dictionaries(st.sampled_from(["gamma", "t_0"]), scalar))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([k.name for k in KEYS] + ["noise_offset", "typo_key"]), value, max_size=8))
def test_random_documents_never_crash(section: dict) -> None:
    text = tomli_w.dumps({"optimizer_arguments": section})
    try:
        cfg = loads_config(text)
    except ConfigError as exc:
        assert all(p.file == "<string>" for p in exc.problems)
        return
    # whatever loads, resolves (once its data is known: epochs without data load with a notice), and
    # its values read back unchanged
    if cfg.unknown_run_length() is None:
        assert cfg.resolve().run_length >= 1
    assert repr(loads_config(dumps_config(cfg)).values) == repr(cfg.values)  # repr: NaN == NaN


def test_every_shipped_config_round_trips_in_both_argument_forms() -> None:
    for path in CONFIGS:
        cfg = load_config(path, data={"samples_per_epoch": 100})  # kohya-colab's data is elsewhere
        for kohya in (False, True):
            again = loads_config(dumps_config(cfg, kohya_list_args=kohya))
            assert again.values == cfg.values, path
            assert again.extras == {k: (s, v) for k, (s, v) in cfg.extras.items()}, path
            assert again.resolve() == cfg.resolve(), path


def test_kohya_list_form_is_written_only_on_request() -> None:
    cfg = loads_config(
        '[optimizer_arguments]\nlr_scheduler = "step"\nlr_scheduler_args = ["step_size=10", "gamma=0.5"]'
    )
    table = dumps_config(cfg)
    assert "[optimizer_arguments.lr_scheduler_args]" in table
    assert "step_size = 10" in table
    listed = dumps_config(cfg, kohya_list_args=True)
    assert 'lr_scheduler_args = [\n    "step_size=10",\n    "gamma=0.5",\n]' in listed


def test_dump_is_atomic_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.toml"
    target.write_text("old", encoding="utf-8")
    cfg = load_config(CONFIGS[0])
    dump_config(cfg, target, schema_header=True)
    text = target.read_text(encoding="utf-8")
    assert text.startswith("#:schema lora_sched.schema.json\n")
    assert os.listdir(tmp_path) == ["out.toml"]  # no temp file left behind
    assert load_config(target).values == cfg.values
    dump_config(cfg.values, target, schema_header="https://example.org/s.json")
    assert target.read_text(encoding="utf-8").startswith("#:schema https://example.org/s.json\n")


def test_none_omitted_and_stable_order() -> None:
    cfg = loads_config("[x]\nlearning_rate = 2e-4\n[y]\nseed = 7\nmax_train_steps = 10\n")
    text = dumps_config(cfg)
    assert "unet_lr" not in text and "resume" not in text  # None values are not written
    # nor the defaults the file does not set (train_data_dir = "builtin:shapes" would read back as named)
    assert "train_data_dir" not in text and "output_dir" not in text and "resolution" not in text
    sections = [line for line in text.splitlines() if line.startswith("[")]
    assert sections == ["[optimizer_arguments]", "[training_arguments]"]
    assert text == dumps_config(loads_config(text))  # writing is a fixed point
    assert text.index("max_train_steps") < text.index("seed")  # key-table order, not file order


def test_float_values_keep_every_bit() -> None:
    for lr in (1e-4, 3.0000000000000004e-4, 0.1 + 0.2, math.nextafter(1e-5, 1)):
        assert loads_config(dumps_config({"learning_rate": lr})).values["learning_rate"] == lr


toml_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
toml_key = st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True), toml_text)
toml_value = st.one_of(
    toml_text,
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(toml_text, max_size=4),
    st.dictionaries(toml_key, st.one_of(toml_text, st.integers()), max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(toml_key, st.dictionaries(toml_key, toml_value, max_size=5), max_size=4))
def test_key_lines_finds_every_key_and_item_where_it_is_written(doc: dict) -> None:
    from lora_sched.config.locate import key_lines

    text = tomli_w.dumps(doc)
    lines = text.split("\n")  # TOML lines end at \n only (str.splitlines would also split at \x85)
    found = key_lines(text)

    def written(key: str) -> str:
        return tomli_w.dumps({key: 1}).split(" = ")[0]

    for section, table in doc.items():
        for key, value in table.items():
            line = lines[found[(section, key)] - 1].lstrip()
            if not isinstance(value, dict):  # a sub-table is written as its own [section.key] header
                assert line.startswith(written(key) + " = "), (section, key, line)
            if isinstance(value, list):
                for i, item in enumerate(value):
                    item_line = lines[found[(section, key, i)] - 1].strip()
                    assert item_line in (tomli_w.dumps({"k": [item]}).split("\n")[1].strip(), line), item

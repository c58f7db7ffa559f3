"""Hostile inputs to the config layer: every one gets a located message in bounded time and memory.

Each slow-if-broken case runs in a subprocess with a timeout generous enough for a loaded 2-core
machine (the fixed code takes well under a second; the broken one took a minute or hung).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lora_sched.config import load_config, loads_config
from lora_sched.config.loader import MAX_CONFIG_BYTES, MAX_KEY_PARTS, MAX_KEYS
from lora_sched.errors import ConfigError
from lora_sched.schedules.durations import MAX_LIST_ITEMS

TIMEOUT = 60  # seconds; the fixed checks take < 1 s each


def validate(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lora_sched", "validate", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
    )


def only_problem(exc: pytest.ExceptionInfo) -> object:
    assert len(exc.value.problems) == 1, exc.value.problems
    return exc.value.problems[0]


# -- files that are not configs -------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)  # nobody writes to it: opening it for reading in blocking mode would hang
    out = validate(str(fifo))
    assert out.returncode == 1
    hint = "    hint: configs are read from ordinary files only\n"
    assert out.stderr == f"{fifo}: expected a regular file, got a FIFO (named pipe)\n{hint}"


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_is_refused_before_reading():
    out = validate("/dev/zero")
    assert out.returncode == 1
    assert out.stderr.startswith("/dev/zero: expected a regular file, got a character device\n")


def test_an_oversized_file_is_refused_by_its_size(tmp_path):
    big = tmp_path / "big.toml"
    big.write_bytes(b"# comment\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(ConfigError) as exc:
        load_config(big)
    p = only_problem(exc)
    assert str(p) == (
        f"{big}: expected a config of at most 1,048,576 bytes, got 1,048,580 bytes\n"
        "    hint: a training config is a few KB; is this the right file?"
    )


def test_a_file_at_the_size_cap_is_read(tmp_path):
    config = tmp_path / "c.toml"
    body = b'lr_scheduler = "cosine"\n'
    config.write_bytes(body + b"#" * (MAX_CONFIG_BYTES - len(body) - 1) + b"\n")
    assert os.path.getsize(config) == MAX_CONFIG_BYTES
    assert load_config(config).values["lr_scheduler"] == "cosine"


def test_oversized_text_is_refused_by_loads_config():
    with pytest.raises(ConfigError, match="at most 1,048,576 bytes, got 1,048,577 bytes"):
        loads_config("#" * MAX_CONFIG_BYTES + "\n", source="form")


def test_a_directory_and_a_nul_in_the_name(tmp_path):
    with pytest.raises(ConfigError, match="expected a file, got a directory"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="expected a readable file, got embedded null byte"):
        load_config(str(tmp_path / "a\0b.toml"))


# -- shapes that cost time --------------------------------------------------------------------
def test_a_100k_deep_table_header_is_refused_quickly(tmp_path):
    config = tmp_path / "deep.toml"
    config.write_text("lr_scheduler = 'cosine'\n[" + ".".join(["a"] * 100_000) + "]\nx = 1\n")
    out = validate(str(config))
    assert out.returncode == 1
    assert out.stderr.startswith(
        f"{config}:2: expected keys and [table] headers of fewer than 1,000 dotted parts, got 1,000 or more\n"
    )


def test_deep_dotted_keys_in_inline_tables_and_quoted_parts_count_too():
    text = "x = {" + " . ".join(['"a"'] * MAX_KEY_PARTS) + " = 1}\n"
    with pytest.raises(ConfigError, match="fewer than 1,000 dotted parts"):
        loads_config(text)


def test_a_key_just_under_the_depth_cap_and_dots_inside_strings_are_not_refused():
    with pytest.raises(ConfigError) as exc:
        loads_config("[" + ".".join(["a"] * (MAX_KEY_PARTS - 1)) + "]\nx = 1\n")
    assert "dotted parts" not in str(exc.value)  # an unknown key, reported as usual
    caption = " ".join(["a." * MAX_KEY_PARTS] * 3)  # one line with 3,000 dots, all inside a string
    cfg = loads_config(f'log_prefix = "{caption}"\n')
    assert cfg.extras["log_prefix"] == (None, caption)


def test_too_many_keys_is_one_error(tmp_path):
    text = "".join(f"unknown_key_{i} = 1\n" for i in range(MAX_KEYS + 1))
    with pytest.raises(ConfigError) as exc:
        loads_config(text, source="k.toml")
    assert str(only_problem(exc)) == "k.toml: expected a config of at most 2,000 keys, got 2,001 keys"


def _items(template: str, count: int) -> str:
    return ",".join(template.format(i + 1) for i in range(count))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f"lr_scheduler = 'multistep'\nlr_scheduler_args = {{milestones = [{_items('{}', MAX_LIST_ITEMS + 1)}]}}\n",
            "k.toml:2: lr_scheduler_args.milestones: expected a list of at most 10,000 durations, got 10,001 items",
        ),
        (
            "lr_scheduler = 'piecewise_constant'\n"
            f'lr_scheduler_args = {{step_rules = "{_items("1:{}", MAX_LIST_ITEMS)},0.1"}}\n',
            "step_rules holds at most 10,000 rules (found 10,001)",
        ),
        (
            "lr_scheduler_args = [" + _items('"a{}=1"', MAX_LIST_ITEMS + 1) + "]\n",
            'k.toml:1: lr_scheduler_args: expected a list of at most 10,000 "key=value" strings, got 10,001 items',
        ),
        (
            "optimizer_args = [" + _items('"a{}=1"', MAX_LIST_ITEMS + 1) + "]\n",
            'k.toml:1: optimizer_args: expected a list of "key=value" strings, at most 10,000, got 10,001 items',
        ),
    ],
    ids=["milestones", "step_rules", "lr_scheduler_args", "optimizer_args"],
)
def test_list_arguments_have_a_cap(text, message):
    with pytest.raises(ConfigError) as exc:
        loads_config(text, source="k.toml")
    assert message in str(exc.value)


def test_lists_at_the_cap_are_accepted():
    milestones = ",".join(str(10 * i + 1) for i in range(MAX_LIST_ITEMS))
    cfg = loads_config(
        f"lr_scheduler = 'multistep'\nmax_train_steps = 1000000\nlr_scheduler_args = {{milestones = [{milestones}]}}\n"
    )
    assert len(cfg.resolve().params["milestones"]) == MAX_LIST_ITEMS

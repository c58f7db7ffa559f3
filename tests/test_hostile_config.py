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
from lora_sched.config.loader import MAX_KEYS
from lora_sched.config.toml_file import MAX_CONFIG_BYTES, MAX_KEY_PARTS
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


def refused(text: str) -> object:
    """The one problem loads_config reports for `text` (read as c.toml)."""
    with pytest.raises(ConfigError) as exc:
        loads_config(text, source="c.toml")
    return only_problem(exc)


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
    deep = loads_config("[" + ".".join(["a"] * (MAX_KEY_PARTS - 1)) + "]\nx = 1\n")
    [unknown] = deep.warnings  # an unknown key, reported as usual (a warning: sd-scripts ignores it)
    assert unknown.severity == "warning" and unknown.found == 'unknown key "a"' and "dotted parts" not in unknown.hint
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


# -- every output stays inside output_dir -----------------------------------------------------
@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../../x", '"../../x" (a string)'),
        ("/tmp/x", '"/tmp/x" (a string)'),
        ("sub/dir/lora", '"sub/dir/lora" (a string)'),
        ("lora/", '"lora/" (a string)'),
        ("..//..//etc/cron.d/x", '"..//..//etc/cron.d/x" (a string)'),
    ],
)
def test_output_name_with_a_folder_is_refused_with_file_and_line(name, shown):
    text = f'[saving_arguments]\noutput_dir = "out"\noutput_name = "{name}"\n'
    assert str(refused(text)) == (
        "c.toml:3: saving_arguments.output_name: expected a file name, without folders "
        f"(it is written as output_dir/NAME.safetensors), got {shown}\n"
        "    hint: a name with / (or an absolute path) would write outside output_dir: put folders in output_dir"
    )


def test_a_nul_in_any_text_key_is_refused_and_shown_escaped():
    for key in ("output_name", "output_dir", "train_data_dir", "pretrained_model_name_or_path", "caption_extension"):
        message = str(refused(f'{key} = "a\\u0000b"\n'))
        assert message.startswith(f"c.toml:1: {key}: expected "), key
        assert message.endswith("without a NUL character, got 'a\\x00b' (a string)"), key


def test_output_name_longer_than_a_file_name_is_refused():
    ok = "x" * (255 - len(".safetensors"))
    assert loads_config(f'output_name = "{ok}"\n').values["output_name"] == ok
    assert (
        str(refused(f'output_name = "{ok}é"\n'))
        == "c.toml:1: output_name: expected a file name of at most 243 bytes (UTF-8), got 245 bytes"
    )


@pytest.mark.parametrize("name", ["..", ".", "lora.v2", "C:\\new\\table", "my lora (final)", "é✓", "-lora", "a:b"])
def test_names_that_stay_inside_output_dir_are_accepted(name):
    # with .safetensors appended, ".." is the file "...safetensors" inside output_dir; on POSIX \ and : are
    # ordinary characters, as in sd-scripts
    assert loads_config(f"output_name = {name!r}\n".replace("\\\\", "\\")).values["output_name"] == name


def test_output_dir_may_be_any_folder_but_each_part_a_valid_name(tmp_path):
    for folder in (str(tmp_path / "runs"), "../elsewhere", "~/loras", "out/sub/dir"):
        assert loads_config(f"output_dir = {folder!r}\n").values["output_dir"] == folder
    assert str(refused(f'output_dir = "out/{"d" * 256}/x"\n')).startswith(
        "c.toml:1: output_dir: expected folder names of at most 255 bytes, got"
    )


def test_caption_extension_reads_as_sd_scripts_does(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    from lora_sched.train.data import load_examples

    concept = tmp_path / "data" / "2_thing"
    concept.mkdir(parents=True)
    for stem, caption in (("a", "first caption"), ("b.v2", "second caption")):
        Image.new("RGB", (8, 8)).save(concept / f"{stem}.png")
        (concept / f"{stem}.txt").write_text(caption)
    (concept / "a.caption").write_text("other")
    for extension in ("txt", ".txt"):  # sd-scripts adds the missing dot
        assert loads_config(f'caption_extension = "{extension}"\n').values["caption_extension"] == extension
        got = {e.name: e.caption for e in load_examples(str(tmp_path / "data"), extension)}
        assert got == {"2_thing/a.png": "first caption", "2_thing/b.v2.png": "second caption"}
    got = {e.name: e.caption for e in load_examples(str(tmp_path / "data"), "caption")}
    assert got == {"2_thing/a.png": "other", "2_thing/b.v2.png": "thing"}  # no caption file: the concept name


@pytest.mark.parametrize("extension", ["/x", "../x.txt", "sub/.txt"])
def test_caption_extension_with_a_folder_is_refused(extension):
    assert str(refused(f'[dataset_arguments]\ncaption_extension = "{extension}"\n')) == (
        f'c.toml:2: dataset_arguments.caption_extension: expected a file extension such as ".txt" or ".caption", '
        f'got "{extension}" (a string)'
    )


def test_train_refuses_an_escaping_output_name_when_loading_the_config(tmp_path):
    from argparse import Namespace

    from lora_sched.train.commands import load_train_config

    config = tmp_path / "c.toml"
    config.write_text('output_name = "../../x"\nmax_train_steps = 2\n')
    with pytest.raises(ConfigError, match=r"c.toml:1: output_name: expected a file name, without folders"):
        load_train_config(Namespace(file=str(config), output_dir=str(tmp_path / "o"), max_train_steps=None))
    assert not (tmp_path / "o").exists()


def test_a_caption_name_too_long_to_exist_means_no_caption(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    from lora_sched.train.data import load_examples

    concept = tmp_path / "3_thing"
    concept.mkdir()
    stem = "i" * 250  # with .png a valid name; with .caption-long, 256+ bytes: the OS refuses to look it up
    Image.new("RGB", (8, 8)).save(concept / f"{stem}.png")
    got = load_examples(str(tmp_path), ".caption-long")
    assert [(e.name, e.caption) for e in got] == [(f"3_thing/{stem}.png", "thing")]


# -- optimizers validate accepts are the ones train can step ------------------------------------
@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("LBFGS", "LBFGS needs a closure"),
        ("lbfgs", "LBFGS needs a closure"),
        ("torch.optim.LBFGS", "LBFGS needs a closure"),
        ("torch.optim.lbfgs.LBFGS", "LBFGS needs a closure"),
        ("SparseAdam", "SparseAdam takes sparse gradients only"),
        ("torch.optim.Optimizer", "abstract base class"),
    ],
)
def test_optimizers_that_cannot_step_a_lora_are_refused_by_validate_and_train(name, why):
    p = refused(f'[optimizer_arguments]\noptimizer_type = "{name}"\n')
    assert str(p).startswith(
        f"c.toml:2: optimizer_arguments.optimizer_type: expected an optimizer that steps once per batch on dense "
        f'gradients, got "{name}" (a string)\n    hint: '
    )
    assert why in p.hint
    torch = pytest.importorskip("torch")
    from lora_sched.train.optim import build_optimizer

    groups = [{"params": [torch.nn.Parameter(torch.zeros(2, 2))], "lr": 1e-3}]
    with pytest.raises(ConfigError) as trained:
        build_optimizer(name, groups, {}, relative_step=False)
    assert trained.value.problems[0]._replace(file=None, line=None, key="") == p._replace(file=None, line=None, key="")


@pytest.mark.parametrize("name", ["Adam", "torch.optim.RMSprop", "Muon", "my_pkg.optim.LBFGS"])
def test_other_torch_optimizers_and_other_packages_classes_of_the_same_name_pass(name):
    assert loads_config(f'optimizer_type = "{name}"\n').values["optimizer_type"] == name

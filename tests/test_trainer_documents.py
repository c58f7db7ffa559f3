"""Trainers' files parsed safely, with positions: JSON, YAML and command-line flags in a file.

Hostile input never ends in a traceback or in unbounded work: a YAML alias bomb, a JSON array nested
a hundred thousand deep, a Python object tag, NaN, a duplicate key, a file that is not UTF-8; every
error names the file and, where there is one, the line.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lora_sched.cli import main
from lora_sched.config.toml_file import MAX_CONFIG_BYTES
from lora_sched.errors import ConfigError
from lora_sched.trainers import read_run, recognise
from lora_sched.trainers.documents import parse, parse_args, parse_json, parse_yaml

JSON_TEXT = """{
  "learning_rate": 1e-4,
  "unet": {
    "learning_rate": 3e-4,
    "layers": [1, {"name": "x"}]
  },
  "items": [
    "a",
    "b"
  ]
}
"""


def test_json_values_and_the_line_of_every_key() -> None:
    doc = parse_json("c.json", JSON_TEXT)
    assert doc.data["unet"]["learning_rate"] == 3e-4
    assert doc.line_of(("learning_rate",)) == 2
    assert doc.line_of(("unet", "learning_rate")) == 4
    assert doc.line_of(("unet", "layers", 1, "name")) == 5
    assert doc.line_of(("items", 1)) == 9
    assert doc.line_of(("unet", "missing")) == 3  # the nearest parent that has a line


def test_json_problem_names_file_line_and_key() -> None:
    doc = parse_json("c.json", JSON_TEXT)
    p = doc.problem(("unet", "layers", 1, "name"), "an int", "x")
    assert str(p) == 'c.json:5: unet.layers[1].name: expected an int, got "x" (a string)'


@pytest.mark.parametrize(
    ("text", "line", "found"),
    [
        ('{\n  "a": 1,\n  "a": 2\n}', 3, "`a` twice"),
        ('{\n  "a": 1,\n}', 3, "(column 1)"),
        ('{"a": NaN}', None, "NaN is not a JSON number"),
        ("[" * 100_000 + "]" * 100_000, None, "deeper nesting"),
    ],
)
def test_bad_json_is_one_located_error(text: str, line: int | None, found: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_json("bad.json", text)
    (p,) = err.value.problems
    assert p.file == "bad.json" and p.line == line and found in p.found


YAML_TEXT = """job: extension
config:
  name: my_lora
  process:
    - type: sd_trainer
      train:
        lr: 1.0e-4
        steps: 2000
        lr_scheduler: cosine
"""


def test_yaml_values_and_positions() -> None:
    doc = parse_yaml("job.yaml", YAML_TEXT)
    assert doc.data["config"]["process"][0]["train"] == {"lr": 1e-4, "steps": 2000, "lr_scheduler": "cosine"}
    assert doc.line_of(("config", "process", 0, "train", "lr_scheduler")) == 9
    assert doc.line_of(("config", "process", 0)) == 5


def test_yaml_alias_bomb_is_refused_quickly() -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):  # 10^9 strings once expanded
        previous = chr(ord("a") + i - 1)
        name = chr(ord("a") + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 10) + "]")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        parse_yaml("bomb.yaml", "\n".join(lines))
    assert time.perf_counter() - start < 10  # bounded work, not 10^9 values (a generous bound, not a timing test)
    assert "aliases count each use" in str(err.value)


def test_yaml_never_constructs_objects() -> None:
    text = "a: 1\nb: !!python/object/apply:os.system ['echo pwned']\n"
    with pytest.raises(ConfigError) as err:
        parse_yaml("evil.yaml", text)
    assert err.value.problems[0].line == 2 and "python/object/apply" in err.value.problems[0].found


def test_yaml_duplicate_key_and_syntax_errors_are_located() -> None:
    with pytest.raises(ConfigError) as err:
        parse_yaml("d.yaml", "train:\n  lr: 1\n  lr: 2\n")
    assert err.value.problems[0].line == 3 and err.value.problems[0].key == "train.lr"
    with pytest.raises(ConfigError) as err:
        parse_yaml("s.yaml", "train:\n  lr: [1, 2\n")
    assert err.value.problems[0].file == "s.yaml" and err.value.problems[0].line is not None


def test_yaml_merge_keys_are_honoured() -> None:
    doc = parse_yaml("m.yaml", "base: &b\n  lr: 1\n  steps: 5\nrun:\n  <<: *b\n  steps: 9\n")
    assert doc.data["run"] == {"lr": 1, "steps": 9}


ARGS = """#!/bin/bash
export MODEL_NAME="x"
accelerate launch train_text_to_image_lora.py \\
  --pretrained_model_name_or_path=$MODEL_NAME \\
  --learning_rate=1e-04 --lr_scheduler="cosine" \\
  --lr_warmup_steps 0 \\
  --gradient_checkpointing \\
  --validation_prompt="a cat, 'quoted'" \\
  --seed=1337
"""


def test_flags_in_a_shell_script_keep_their_lines() -> None:
    doc = parse_args("run.sh", ARGS)
    assert doc.data["learning_rate"] == "1e-04" and doc.data["lr_scheduler"] == "cosine"
    assert doc.data["lr_warmup_steps"] == "0" and doc.data["gradient_checkpointing"] is True
    assert doc.data["validation_prompt"] == "a cat, 'quoted'"
    assert doc.line_of(("lr_scheduler",)) == 5 and doc.line_of(("seed",)) == 9
    assert "train_text_to_image_lora.py" in doc.data["__command__"]


def test_an_unclosed_quote_is_located() -> None:
    with pytest.raises(ConfigError) as err:
        parse_args("run.sh", 'accelerate launch x.py \\\n  --prompt="open\n')
    assert err.value.problems[0].line == 2


def test_kind_from_the_name_and_size_and_encoding_limits(tmp_path: Path) -> None:
    assert parse("a.yml", "a: 1").kind == "yaml"
    assert parse("a.json", "{}").kind == "json"
    assert parse("a.sh", "--x 1").kind == "args"
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="at most 1,048,576 bytes"):
        read_run(str(big))
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(ConfigError) as err:
        read_run(str(latin))
    assert err.value.problems[0].line == 2


def test_a_file_no_trainer_recognises_names_the_from_option(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"hello": "world"}')
    with pytest.raises(ConfigError) as err:
        recognise(parse(str(path), path.read_text()))
    assert "--from" in err.value.problems[0].hint


def test_from_a_trainer_that_reads_another_kind_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "c.toml"
    path.write_text("learning_rate = 1e-4\nmax_train_steps = 10\n")
    assert main(["validate", str(path), "--from", "diffusers"]) == 1
    assert "check --from" in capsys.readouterr().err


def test_validate_preview_export_take_from_and_to(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "c.toml"
    path.write_text('learning_rate = 1e-4\nlr_scheduler = "cosine"\nlr_warmup_steps = 5\nmax_train_steps = 50\n')
    assert main(["validate", str(path), "--from", "sd-scripts"]) == 0
    assert "ok (cosine, 50 steps, warmup 5, LR 0.0001)" in capsys.readouterr().out
    assert main(["export", str(path), "--to", "sd-scripts"]) == 0
    positional = capsys.readouterr().out
    assert main(["export", "--kohya", str(path)]) == 0
    assert capsys.readouterr().out == positional and 'lr_scheduler = "cosine"' in positional
    assert main(["export", str(path)]) == 2  # no --to
    assert "--to TRAINER" in capsys.readouterr().err


def test_preview_checks_its_output_paths_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "c.toml"
    path.write_text("learning_rate = 1e-4\nmax_train_steps = 50\n")
    assert main(["preview", str(path), "--png", str(tmp_path / "nodir" / "x.png")]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("lora-sched preview: ")
    assert "its folder does not exist (nothing was done)" in captured.err

"""`train` refuses, before anything is built, an sd-scripts option that changes what is learned and
that it does not apply; `--train-without KEY` trains without it on the user's say-so."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lora_sched.config import load_config, loads_config
from lora_sched.config.keys import KEY_BY_NAME
from lora_sched.config.kohya_keys import kohya_key
from lora_sched.config.learning_keys import LEARNING_KEYS, TRAIN_READS
from lora_sched.errors import ConfigError
from lora_sched.train.options import check_applied
from tests.train_support import write_train_config

#: Options no release of lora-sched applies yet, by design (each changes what is learned).
STILL_REFUSED = sorted(key for key in LEARNING_KEYS if key not in KEY_BY_NAME)


def test_an_option_is_either_applied_or_refused_never_both():
    assert not set(LEARNING_KEYS) & set(KEY_BY_NAME)
    assert all(record.needs in LEARNING_KEYS for record in LEARNING_KEYS.values() if record.needs)


def test_every_refusable_option_is_one_sd_scripts_reads():
    for key in LEARNING_KEYS:
        record = kohya_key(key)
        assert record is not None and any(s.startswith("kohya-ss/sd-scripts:") for s in record["sources"]), key


def _refused(text: str, train_without: frozenset[str] = frozenset()) -> list:
    cfg = loads_config("[training_arguments]\nlearning_rate = 1e-4\nmax_train_steps = 10\n" + text, "run.toml")
    try:
        check_applied(cfg, train_without)
    except ConfigError as exc:
        return cfg.locate(exc.problems)
    return []


def test_an_unapplied_option_is_refused_at_its_line_with_what_it_changes():
    key = next(k for k in STILL_REFUSED if LEARNING_KEYS[k].needs is None)
    (found,) = _refused(f"{key} = 7\n")
    assert (found.file, found.line, found.key) == ("run.toml", 4, f"training_arguments.{key}")
    assert found.expected == "an option lora-sched train applies"
    assert LEARNING_KEYS[key].changes in found.hint
    assert f"--train-without {key}" in found.hint
    assert _refused(f"{key} = 7\n", frozenset({key})) == []


def test_every_refused_option_is_listed_at_once():
    keys = [k for k in STILL_REFUSED if LEARNING_KEYS[k].needs is None][:3]
    text = "".join(f"{k} = 7\n" for k in keys)
    assert [p.key.split(".")[-1] for p in _refused(text)] == keys
    assert [p.line for p in _refused(text)] == [4, 5, 6]


@pytest.mark.parametrize(
    "text",
    [
        "color_aug = false\n",  # sd-scripts tests its truthiness
        'in_json = ""\n',
        "token_warmup_min = 1\n",  # the whole caption from the first step, as without it
        "base_weights_multiplier = 0.5\n",  # no base_weights: nothing to scale
        "base_weights = []\n",
        "max_data_loader_n_workers = 4\nlowram = true\n",  # change nothing learned
    ],
)
def test_values_that_change_nothing_are_not_refused(text):
    assert _refused(text) == []


def test_train_without_names_only_options_the_file_sets():
    with pytest.raises(ConfigError) as exc:
        check_applied(loads_config("learning_rate = 1e-4\n", "run.toml"), frozenset({"no_such_option"}))
    (found,) = exc.value.problems
    assert (found.key, found.found) == ("--train-without", '"no_such_option" (a string)')


def test_no_notice_calls_an_option_train_reads_unused():
    cfg = loads_config('learning_rate = 1e-4\nlogging_dir = "logs"\nlog_prefix = "run"\n', "run.toml")
    assert not [w for w in cfg.warnings if "option(s)" in w.found]
    assert {"logging_dir", "log_prefix", "log_with", "network_module"} <= TRAIN_READS


def test_the_command_refuses_before_the_output_folder_exists(tmp_path):
    key = next(k for k in STILL_REFUSED if LEARNING_KEYS[k].needs is None)
    out = tmp_path / "out"
    config = write_train_config(tmp_path / "run.toml", out, {}, **{key: 7})
    run = subprocess.run(
        [sys.executable, "-m", "lora_sched", "train", str(config)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 1 and f"--train-without {key}" in run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists()
    loaded = load_config(config)
    check_applied(loaded, frozenset({key}))  # named: the plan goes on


def test_the_docs_table_of_refused_options_is_the_refusal_table():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "tools" / "gen_refused_md.py"
    spec = importlib.util.spec_from_file_location("gen_refused_md", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = module.PAGE.read_text(encoding="utf-8")
    assert module.render(page) == page, "run: python tools/gen_refused_md.py --write"
    for key in STILL_REFUSED:
        assert f"| `{key}` |" in page
    assert "| `min_snr_gamma` |" not in page and "min_snr_gamma" in KEY_BY_NAME  # applied: in the config reference

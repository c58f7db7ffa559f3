"""The Colab notebook: its #@param fields come from the catalogue, and it runs top to bottom on a real kernel."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest
from notebook_kernel import NOTEBOOK, install_kernel

from lora_sched.config import load_config
from lora_sched.notebook import quick_settings
from lora_sched.schedules import all_specs


def _cells() -> list:
    return nbformat.read(NOTEBOOK, as_version=4).cells


def _parameters_cell() -> nbformat.NotebookNode:
    (cell,) = [c for c in _cells() if "parameters" in c.metadata.get("tags", [])]
    return cell


def test_notebook_is_valid_and_needs_no_colab() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "google.colab" not in source
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    # the install only happens when lora_sched cannot be imported
    setup = next(c.source for c in nb.cells if "%pip" in c.source)
    assert re.search(r"try:\n\s+import lora_sched\nexcept ImportError:\n\s+%pip install", setup)


def test_quick_settings_fields_follow_the_catalogue() -> None:
    cell = _parameters_cell()
    params = {}
    for line in cell.source.splitlines():
        match = re.match(r"^(\w+) = (.+?)\s+#@param (.+)$", line)
        if match:
            params[match.group(1)] = (ast.literal_eval(match.group(2)), match.group(3))
    assert set(params) >= {"scheduler", "warmup_ratio", "num_cycles", "power", "learning_rate", "unet_lr"}
    assert set(params) >= {"text_encoder_lr", "run_length_unit", "max_train_steps", "max_train_epochs"}
    # the dropdown is exactly the catalogue, and the default is one of them
    options = ast.literal_eval(params["scheduler"][1])
    assert options == [s.name for s in all_specs()]
    assert params["scheduler"][0] in options
    assert '"slider"' in params["warmup_ratio"][1]
    # the defaults make a valid config
    values = {k: v for k, (v, _) in params.items() if k not in ("scheduler", "config_file")}
    from lora_sched.notebook.translate import translate

    cfg, _ = translate(quick_settings(params["scheduler"][0], **values))
    assert cfg.values["lr_scheduler"] == params["scheduler"][0]


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_on_a_real_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    install_kernel(tmp_path / "kernel", monkeypatch)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # papermill-style parameter injection: a 4-step run keeps the training cell short in CI
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source, n = re.subn(r"^max_train_steps = \d+", "max_train_steps = 4", cell.source, flags=re.M)
    assert n == 1
    work = tmp_path / "work"
    work.mkdir()
    client = NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(work)}}, allow_errors=False
    )
    client.execute()

    outputs = {i: c.get("outputs", []) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    assert not any(o.get("output_type") == "error" for outs in outputs.values() for o in outs)
    text = json.dumps(outputs)
    assert "application/vnd.jupyter.widget-view+json" in text  # the form cell displayed the widget
    assert "Successfully installed" not in text  # lora_sched was importable: no pip install ran

    saved = work / "lora_sched.toml"
    cfg = load_config(saved)
    assert cfg.values["lr_scheduler"] == "cosine_with_restarts"
    assert cfg.values["max_train_steps"] == 4
    assert cfg.values["lr_scheduler_num_cycles"] == 3
    assert "lr_scheduler_power" not in saved.read_text(encoding="utf-8")
    # the training cell ran the CLI on the saved file and wrote the LoRA
    out_dir = work / cfg.values["output_dir"]
    weights = list(out_dir.rglob("*.safetensors"))
    assert weights, f"no .safetensors under {out_dir}: {sorted(p.name for p in work.rglob('*'))}"
